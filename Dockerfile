# The service image for docker-compose.yml. (Not built in this project's CI: its machines have no
# Docker engine; `make run` / `make test` are the tested path.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/order-service

# Debian's nginx and its set-misc module, the same as `make infra` installs: docker-compose runs the
# edge from this image too, with the config rendered by devstack/edge_config.py.
RUN apt-get update && apt-get install -y --no-install-recommends nginx libnginx-mod-http-set-misc \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY config.py wsgi.py gunicorn.conf.py .flaskenv ./
COPY infra/nginx ./infra/nginx
COPY devstack/__init__.py devstack/edge_config.py devstack/template.py ./devstack/

RUN useradd --system --uid 10001 orders
USER orders

# gunicorn on APP_BIND (the edge, on 8080, is the nginx service of docker-compose.yml).
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request; from config import Config; port = Config.APP_BIND.rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)" || exit 1

# Migrations first (idempotent), then gunicorn; exec so that SIGTERM reaches the master.
CMD ["sh", "-c", "flask db upgrade && exec gunicorn wsgi:app"]
