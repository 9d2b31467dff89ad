"""gunicorn settings (`gunicorn wsgi:app` reads this file) and the hooks that run one Kafka
consumer thread in every worker. Every setting can be overridden from the environment; the
defaults are config.py's."""

import functools
import gc
import os
import shutil
import signal
import socket
import sys
import tempfile

# config loads .env itself (the environment wins), before any setting below is read; a setting out
# of its range (or Kafka settings that can't work together) stops the start here, once, with
# config's message (not a traceback per worker).
try:
    from app.kafka_clients import KafkaSettings
    from config import Config, env_int, env_str, private_dir

    KafkaSettings.from_config(vars(Config))
except ValueError as exc:
    sys.exit(f"order-service: {exc}")

# prometheus-client's multiprocess mode: every worker writes its metrics here and /metrics adds
# them up. Set before any worker imports prometheus_client; emptied at each start.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"order-service-metrics-{os.getpid()}")
)

# Imported here, not in child_exit: that hook runs inside the master's SIGCHLD handler, which can
# interrupt another import; a nested import there once crashed the master ("partially initialized
# module"), exit code 255 on a SIGINT stop.
from gunicorn.workers.base import Worker  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402

from app.speedups import count_metrics_with_a_kept_process_id, format_dates_once_a_second  # noqa: E402

# Before any worker makes its first metric (the app, imported after the fork).
count_metrics_with_a_kept_process_id()

# Behind the edge (nginx on PORT, see infra/nginx/), which buffers slow clients for gunicorn.
bind = env_str("APP_BIND")
# Each worker listens on a socket of its own (SO_REUSEPORT), and the kernel spreads new connections
# over them. With one shared socket, whichever worker is on a core when connections arrive takes
# them all and keeps them (keep-alive): on 2 cores, often 64 of 64, leaving the other worker idle
# (bench/README.md, "connections over the workers"). Not for a Unix socket, which can't be shared so.
reuse_port = not bind.startswith(("unix:", "fd://"))
# Defaults chosen by measurement (bench/README.md): one worker per core, and a few threads so a
# worker keeps answering while its consumer thread or a slow query holds it. On 2 cores, more
# threads gained little and more workers lost throughput, both at a higher p99.
workers = env_int("WEB_CONCURRENCY")
worker_class = env_str("GUNICORN_WORKER_CLASS")
threads = env_int("GUNICORN_THREADS")
timeout = env_int("GUNICORN_TIMEOUT")
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT")
keepalive = env_int("GUNICORN_KEEPALIVE_S")
accesslog = env_str("GUNICORN_ACCESS_LOG") or None
# Never preload: the app, its engine and every Kafka client are created after the fork.
preload_app = False

# The consumer gets this long to finish its batch, commit and leave the group; well inside
# graceful_timeout, after which the master kills the worker. It needs it only when Kafka is away
# (the client then blocks inside poll or commit); abandoning it then loses nothing, as whatever it
# had not committed is redelivered and stored once.
CONSUMER_STOP_TIMEOUT = max(1.0, min(10.0, graceful_timeout / 3))


def on_starting(server):
    refuse_a_taken_port(bind)
    format_dates_once_a_second()
    # The page's session cookie must verify in every worker: without a SECRET_KEY, one random key
    # for all the workers of this master (made before they fork; sign-ins end when it restarts).
    if not Config.SECRET_KEY:
        import secrets

        Config.SECRET_KEY = secrets.token_urlsafe(32)
    # /tmp is everyone's: a symlink or a directory someone else planted at the path must never get
    # the workers' files (nor have ours read back as metrics). Ours is private, and emptied.
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        private_dir(metrics_dir)
    except PermissionError as exc:
        raise SystemExit(f"gunicorn: PROMETHEUS_MULTIPROC_DIR: {exc}") from None
    for entry in os.scandir(metrics_dir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def refuse_a_taken_port(address: str) -> None:
    """With SO_REUSEPORT the master binds nothing, and another server of this user that also sets
    it could share our port without a word: a plain bind first says whether anyone holds it."""
    if not reuse_port:
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past our own TIME_WAITs only
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise SystemExit(f"gunicorn: APP_BIND={address} can't be used ({exc.strerror}): another "
                             "program holds it; stop it, or set APP_BIND to a free address") from None


def on_exit(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    # gunicorn installs the worker's signal handlers only after this hook and more start-up work;
    # a stop signal that came in the meantime was lost, and the master waited graceful_timeout
    # before killing the worker. The base worker's graceful exit (it only clears `alive`), for the
    # quick stops too: gthread's own handlers need its thread pool and wake-up pipe, which do not
    # exist yet (its handle_exit raised AttributeError here).
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, functools.partial(Worker.handle_exit, worker))

    from app.ingest import ConsumerRuntime

    # After the fork, so that no Kafka client thread or socket crosses it; it waits for
    # post_worker_init to hand it the loaded app.
    worker.order_consumer = ConsumerRuntime().start()


def post_worker_init(worker):
    from app.cache.warmup import start_cache_warmup
    from app.tracing import start_tracing

    start_tracing()  # in the worker: the exporter's thread must not cross the fork
    # What start-up built (the app, SQLAlchemy, kafka-python) lives as long as the worker: out of
    # the collector's way, a collection during a batch or a request scans only their objects.
    gc.freeze()
    worker.order_consumer.attach(worker.wsgi)
    start_cache_warmup(worker.wsgi)


def worker_exit(server, worker):
    consumer = getattr(worker, "order_consumer", None)
    if consumer is not None:
        consumer.shutdown(CONSUMER_STOP_TIMEOUT)
    from app.tracing import flush_tracing

    flush_tracing()
