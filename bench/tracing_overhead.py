"""python -m bench.tracing_overhead --before DIR [--orders N] [--rounds R]

What tracing costs: cached `GET /order/<id>` and ingest, for three variants alternated round by
round (these machines are shared and noisy): the code before tracing (DIR: an export of that
commit, e.g. `git archive 128af97 | tar -x -C DIR`), this code with tracing off (no endpoint), and
this code with tracing on at the default sampler, exporting to a real OTLP/HTTP receiver.

- cached reads: the app's whole WSGI stack called in-process on a cached order (µs a request, the
  median of 7 runs of 20,000 calls), in a process of each variant's own;
- ingest: gunicorn (2 workers) consumes N pre-produced orders into an emptied table; orders/s
  between the first and the last committed offset (`make bench` now counts from the moment its
  workers share the partitions: bench/run.py `measure_ingest`).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from config import Config
from harness import ROOT
from harness.kafka import admin, committed_offsets, create_topics, delete_topics, produce
from harness.otlp import OtlpReceiver
from harness.postgres import admin_dsn, app_database, create_database, drop_database
from harness.service import exit_through_finally_on_sigterm, free_port
from harness.waiting import wait_until

READS = r"""
import json, os, statistics, sys, time
sys.path.insert(0, os.getcwd())
from app import create_app
from app.cache import order_cache_for
from app.documents import served_form
from app.seed import OrderFactory
from config import Config

app = create_app(Config, {"SQLALCHEMY_DATABASE_URI": sys.argv[1], "CACHE_WARMUP": 0})
if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
    from app.tracing import start_tracing
    assert start_tracing()
order = next(OrderFactory(seed=1).orders(1))
order_cache_for(app).put_document(served_form(order))
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/order/" + order["order_uid"], "QUERY_STRING": "",
           "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
           "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "HTTP_HOST": "bench",
           "HTTP_X_FORWARDED_FOR": "10.0.0.1"}
statuses = []
def start_response(status, headers, exc_info=None):
    statuses.append(status)
def one():
    for chunk in app.wsgi_app(dict(environ), start_response):
        pass
for _ in range(2000):
    one()
runs = []
for _ in range(7):
    started = time.perf_counter()
    for _ in range(20000):
        one()
    runs.append((time.perf_counter() - started) / 20000 * 1e6)
assert set(statuses) == {"200 OK"}, set(statuses)
print(json.dumps({"us_per_request": statistics.median(runs)}))
"""


def reads(code: Path, database: str, env: dict[str, str]) -> float:
    # stderr to /dev/null: the access lines (ACCESS_LOG=true, the default) are part of the cost.
    out = subprocess.run([sys.executable, "-c", READS, database], cwd=code, env=env, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=300)
    return json.loads(out.stdout)["us_per_request"]


def ingest(code: Path, database: str, topics, group: str, orders: int, env: dict[str, str]) -> float:
    with psycopg2.connect(admin_dsn(database, database.rsplit("/", 1)[1])) as connection:
        connection.cursor().execute("TRUNCATE orders CASCADE")
    env = {**env, "DATABASE_URL": database, "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
           "KAFKA_TOPIC": topics.orders, "KAFKA_DLQ_TOPIC": topics.dlq, "KAFKA_GROUP_ID": group,
           "WEB_CONCURRENCY": "2", "CACHE_WARMUP": "0", "APP_BIND": f"127.0.0.1:{free_port()}"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen([str(gunicorn), "wsgi:app"], cwd=code, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = admin(topics.bootstrap)
    timeline: list[tuple[float, int]] = []
    try:
        def sample() -> bool:
            done = sum(committed_offsets(topics.bootstrap, group, topics.orders, client).values())
            timeline.append((time.monotonic(), done))
            return done >= orders

        wait_until(sample, 600, "every order committed", interval_s=0.25)
    finally:
        process.terminate()
        process.wait(timeout=60)
        client.close()
    first = next(i for i, (_, count) in enumerate(timeline) if count > 0)
    (t0, c0), (t1, c1) = timeline[first], timeline[-1]
    return (c1 - c0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_overhead", description=__doc__)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    exit_through_finally_on_sigterm()

    from flask_migrate import upgrade

    from app import create_app
    from app.seed import OrderFactory, encode

    receiver = OtlpReceiver().start()
    database = create_database(Config.SQLALCHEMY_DATABASE_URI, prefix="orders_bench_tracing")
    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
    base = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    variants = {
        "before": (args.before, base),
        "off": (ROOT, base),
        "on": (ROOT, {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}),
    }
    results: dict[str, dict[str, list[float]]] = {name: {"reads_us": [], "ingest": []} for name in variants}
    try:
        with create_app(Config, app_database(database)).app_context():
            upgrade()
        produce(topics.bootstrap, topics.orders,
                [(o["order_uid"].encode(), encode(o)) for o in OrderFactory(seed=5).orders(args.orders)])
        for round_number in range(args.rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for name in order:
                code, env = variants[name]
                results[name]["reads_us"].append(round(reads(code, database, env), 2))
                group = f"bench-tracing-{name}-{round_number}-{os.getpid()}"
                results[name]["ingest"].append(round(ingest(code, database, topics, group, args.orders, env)))
                print(name, round_number, results[name], flush=True)
    finally:
        delete_topics(topics)
        drop_database(database)
        receiver.stop()
    print(json.dumps({"spans_received": len(receiver.spans()), **results}, indent=1))


if __name__ == "__main__":
    main()
