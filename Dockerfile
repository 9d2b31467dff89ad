# The service image for docker-compose.yml. (Not built in this project's CI: its machines have no
# Docker engine; `make run` / `make test` are the tested path.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/order-service

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY config.py wsgi.py gunicorn.conf.py .flaskenv ./

RUN useradd --system --uid 10001 orders
USER orders

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1

# Migrations first (idempotent), then gunicorn; exec so that SIGTERM reaches the master.
CMD ["sh", "-c", "flask db upgrade && exec gunicorn wsgi:app"]
