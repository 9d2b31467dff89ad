"""The benchmark run: ingest and read throughput against the real services, each paired with the
ceiling the stack allows on this machine in the same run."""

import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import create_app
from app.data.store import save_orders
from app.extensions import db
from app.ingest.records import decode_order
from app.seed import OrderFactory, encode
from bench.cpu import CpuMeter, Snapshot
from bench.report import RESULTS_DIR
from config import Config
from harness import ROOT, contract_example
from harness.edge import Edge
from harness.kafka import admin, committed_offsets, create_topics, delete_topics, stable_members
from harness.oidc import Tokens
from harness.postgres import admin_dsn, app_database, create_database, drop_database, dsn
from harness.service import GUNICORN, Service, service_env
from harness.waiting import wait_until

WRK_SCRIPT = ROOT / "bench" / "wrk_random_ids.lua"
WRK_ONE_PASS = ROOT / "bench" / "wrk_one_pass.lua"
WRK_THREADS = 2
NO_AUTH = {"AUTH_ENABLED": "false"}
# A service that only reads, with the workers' cache off: every request is a miss.
COLD_READS = {"CONSUMER_ENABLED": "false", "CACHE_THRESHOLD": "0", "CACHE_WARMUP": "0", **NO_AUTH}


def cached_reads(ids: int) -> dict[str, str]:
    """A service that only reads, each worker's cache warmed with the `ids` most recent orders and
    room for at least twice as many: every read of those is a hit."""
    return {"CONSUMER_ENABLED": "false", "CACHE_WARMUP": str(ids),
            "CACHE_THRESHOLD": str(max(20_000, 2 * ids)), **NO_AUTH}


# One wrk client stands for many clients: the edge's per-address limits are lifted in the bench.
UNLIMITED = {"EDGE_LOOKUP_RATE": "1000000", "EDGE_LOOKUP_BURST": "1000000"}
SCOPES = ("orders:read", "orders:pii")
SEED = 1


@dataclass
class Settings:
    orders: int = 50_000
    read_ids: int = 10_000
    duration_s: int = 20
    connections: int = 64
    store_batch: int = 500
    out_dir: Path = RESULTS_DIR
    smoke: bool = False
    # Rounds of the alternated read cases, each case keeping its best.
    read_rounds: int = 2


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {message}", flush=True)


def run(settings: Settings) -> dict[str, Any]:
    say = Progress()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing; install it with `apt-get install wrk` (make bench does).")
    work = Path(tempfile.mkdtemp(prefix="order-bench-"))
    database = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_bench")
    store_database = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_bench_store")
    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
    say(f"database {database.rsplit('/', 1)[1]}, topic {topics.orders}, work dir {work}")
    try:
        migrate(database)
        migrate(store_database)
        values = seed_topic(settings, topics, work, say)
        results: dict[str, Any] = {"ingest": {"orders": settings.orders}}
        results["validation"] = validation_cost(say)
        results["ingest"]["ceiling_validate_per_s"] = validate_ceiling(values, say)
        results["ingest"]["ceiling_store_per_s"] = store_ceiling(store_database, values, settings, say)
        drop_database(store_database)  # no autovacuum of it later, in the middle of the read runs
        results["ingest"].update(measure_ingest(database, topics, settings, work, say))
        vacuum(database, say)
        results["read"] = measure_reads(database, topics, settings, work, say)
    finally:
        delete_topics(topics)
        drop_database(database)
        drop_database(store_database)
        shutil.rmtree(work, ignore_errors=True)
    results.update(ratios(results), machine=machine(), date=datetime.now(UTC).isoformat(timespec="seconds"),
                   commit=git_commit(), settings={k: v for k, v in vars(settings).items() if k != "out_dir"})
    say(f"done in {time.monotonic() - say.started:.0f} s")
    return results


def migrate(database_url: str) -> None:
    app = create_app(Config, app_database(database_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def seed_topic(settings: Settings, topics, work: Path, say: Progress) -> list[bytes]:
    """Produce the orders with `flask seed-orders` (the real tool), and rebuild the same bytes here
    (same seed, same generator) for the ceilings."""
    ids_file = produce_orders(topics, settings.orders, SEED, work, say)
    values = [encode(order) for order in OrderFactory(SEED).orders(settings.orders)]
    first_id = ids_file.read_text().split("\n", 1)[0]
    assert json.loads(values[0])["order_uid"] == first_id, "the rebuilt orders differ from the seeded ones"
    return values


def produce_orders(topics, count: int, seed: int, work: Path, say: Progress) -> Path:
    """`count` orders to the topic with `flask seed-orders` (the real tool); the file of their ids."""
    say(f"producing {count:,} orders with flask seed-orders --seed {seed}")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap}
    ids_file = work / f"seeded-ids-{seed}.txt"
    subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "seed-orders", "--count", str(count),
         "--seed", str(seed), "--topic", topics.orders, "--ids-file", str(ids_file), "--quiet"],
        cwd=ROOT, env=env, check=True,
    )
    return ids_file


def vacuum(database_url: str, say: Progress) -> None:
    """VACUUM ANALYZE after the bulk load, as a database in steady state would be: otherwise
    autovacuum starts on its own during the read runs."""
    sql(database_url, "VACUUM (ANALYZE) orders, order_items")
    say("vacuumed and analysed the ingested tables")


def validation_cost(say: Progress, rounds: int = 2000) -> dict[str, float]:
    """µs to validate one order (already decoded) with 1 and with 20 items, on one thread."""
    from app.validation import validate_order

    example = contract_example()
    costs = {}
    for items in (1, 20):
        order = {**example, "items": example["items"] * items}
        assert validate_order(order) == {}
        started = time.perf_counter()
        for _ in range(rounds):
            validate_order(order)
        costs[f"us_per_order_{items}_items"] = round((time.perf_counter() - started) / rounds * 1e6, 1)
    say(f"validation: {costs['us_per_order_1_items']} µs per order with 1 item, "
        f"{costs['us_per_order_20_items']} µs with 20")
    return costs


def _validate_share(args: tuple[int, int]) -> int:
    share, shares = args
    return sum(1 for value in _VALUES[share::shares] if isinstance(decode_order(value), dict))


_VALUES: list[bytes] = []


def validate_ceiling(values: list[bytes], say: Progress, processes: int = 2) -> float:
    """Decode and validate every record, and nothing else, in `processes` processes."""
    global _VALUES
    _VALUES = values
    context = multiprocessing.get_context("fork")  # the children inherit the values, no copying
    started = time.perf_counter()
    with context.Pool(processes) as pool:
        valid = sum(pool.map(_validate_share, [(share, processes) for share in range(processes)]))
    rate = len(values) / (time.perf_counter() - started)
    assert valid == len(values)
    say(f"ceiling, decode + validate in {processes} processes: {rate:,.0f} orders/s")
    return round(rate, 1)


def store_ceiling(database_url: str, values: list[bytes], settings: Settings, say: Progress) -> float:
    """save_orders alone, in batches, on an empty database: no Kafka, no validation."""
    orders = [json.loads(value) for value in values]
    app = create_app(Config, {"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        started = time.perf_counter()
        for start in range(0, len(orders), settings.store_batch):
            save_orders(orders[start : start + settings.store_batch])
        rate = len(orders) / (time.perf_counter() - started)
        db.engine.dispose()
    say(f"ceiling, save_orders in batches of {settings.store_batch}: {rate:,.0f} orders/s")
    return round(rate, 1)


def measure_ingest(database: str, topics, settings: Settings, work: Path, say: Progress,
                   root: Path = ROOT, attach: Callable[[Service], Callable[[], None]] | None = None,
                   gunicorn: Path = GUNICORN) -> dict:
    """The service (gunicorn, 2 workers, consumers on) consumes the pre-produced topic. The rate is
    taken from the start times of the batches stored once both workers share the partitions
    (steady_batches, batch_rate), and the CPU time of each process group from then to the last
    sample of the committed offsets. The whole run's rate, the group's start-up included, is kept
    beside it.
    `root`: the tree gunicorn runs from (bench/cpu_ab.py compares two); `attach`: started with the
    service (a profiler), returns what stops it; `gunicorn`: the executable (bench/ingest_ab.py)."""
    env = service_env(database, topics, CONSUMER_BATCH_SIZE=str(Config.CONSUMER_BATCH_SIZE),
                      CONSUMER_BATCH_WAIT_MS=str(Config.CONSUMER_BATCH_WAIT_MS))
    workers: list[int] = []
    meter = CpuMeter(lambda: workers, make_url(database).port or 5432,
                     int(topics.bootstrap.rsplit(":", 1)[1]), make_url(database).database)
    stored_before = _last_order_id(database)
    # Before the service starts (no workers yet, nothing committed): the window of a run so small
    # that it is all stored before the first sample starts here, the workers' start-up included.
    started = time.monotonic()
    timeline: list[tuple[float, int]] = [(0.0, 0)]
    snapshots: list[Snapshot] = [meter.snapshot()]
    expected_workers = int(env["WEB_CONCURRENCY"])
    say(f"ingest: starting gunicorn with {expected_workers} workers")
    service = Service(env, work / "ingest.log", root=root, gunicorn=gunicorn).start()
    detach: Callable[[], None] | None = None
    kafka_admin = None
    peak_rss = 0
    try:
        workers.extend(service.wait_for_workers(expected_workers))
        detach = attach(service) if attach else None
        kafka_admin = admin(topics.bootstrap)

        def sample() -> bool:
            nonlocal peak_rss
            committed = sum(committed_offsets(topics.bootstrap, topics.group, topics.orders,
                                              kafka_admin).values())
            snapshots.append(meter.snapshot())
            timeline.append((time.monotonic() - started, committed))
            # The pids known above: no pgrep inside the window whose CPU is measured.
            peak_rss = max(peak_rss, service.rss_bytes([service.process.pid, *workers]))
            if len(timeline) % 20 == 0:
                say(f"ingest: {committed:,} of {settings.orders:,} committed")
            return committed >= settings.orders

        # The first worker to join takes every partition until the others' joins reach it on a
        # heartbeat (CONSUMER_HEARTBEAT_INTERVAL_MS): the group's start-up, the same whatever the
        # database, which is over in a second but would weigh a fifth of a 20,000-order run.
        wait_until(lambda: stable_members(kafka_admin, topics.group) == expected_workers, 60,
                   f"the {expected_workers} workers share the partitions of {topics.orders} "
                   f"(group {topics.group}; log: {work / 'ingest.log'})", interval_s=0.05)
        # The database's clock, as the batches' start times are.
        [(group_stable,)] = sql(database, "SELECT clock_timestamp()")
        group_stable_after_s = time.monotonic() - started
        # Its first sample (timeline[1]) is the moment the group became stable.
        wait_until(sample, 600, "the service committed every order", interval_s=0.25)
    finally:
        if detach:
            detach()
        service.stop()
        if kafka_admin:
            kafka_admin.close()
    batches = stored_batches(database, stored_before)
    steady = steady_batches(batches, group_stable)
    # The CPU and the sampled rate from the moment the group became stable; from before the service
    # started in a run so small that every order was committed by then.
    start = 1 if timeline[-1][1] > timeline[1][1] else 0
    (t_start, count_start), (t_last, count_last) = timeline[start], timeline[-1]
    sampled = (count_last - count_start) / (t_last - t_start)
    whole_run = batch_rate(batches) or sampled
    rate = batch_rate(steady) or whole_run
    cpu = CpuMeter.between(snapshots[start], snapshots[-1], max(count_last - count_start, 1))
    per_order, machine = cpu["cpu_us_per_order"], cpu["machine"]
    say(f"ingest: {rate:,.0f} orders/s once all {expected_workers} workers consumed ({whole_run:,.0f} over "
        f"the whole run, {len(batches) - len(steady)} of {len(batches)} batches begun in the group's first "
        f"{group_stable_after_s:.2f} s), peak RSS {peak_rss / 2**20:.0f} MiB; CPU per order: service "
        f"{per_order['service']:.0f} µs, PostgreSQL {per_order['postgres']:.0f} "
        f"({per_order['postgres_bench_db']:.0f} in the bench database's backends), "
        f"Kafka {per_order['kafka']:.0f}, "
        f"total {per_order['total']:.0f}; machine busy {machine['busy_share']:.0%}, "
        f"{machine['others_us_per_order']:.0f} µs per order outside the three; waiting for the disks "
        f"{machine['iowait_share']:.0%}, disks read {machine['disk_read_bytes_per_order']:,} and wrote "
        f"{machine['disk_written_bytes_per_order']:,} bytes per order")
    return {"orders_per_s": round(rate, 1), "orders_per_s_whole_run": round(whole_run, 1),
            "orders_per_s_sampled": round(sampled, 1), "group_stable_after_s": round(group_stable_after_s, 2),
            "stored_before_group_stable": _orders(batches) - _orders(steady),
            "peak_rss_mb": round(peak_rss / 2**20, 1), **cpu,
            "processes": {"postgres": meter.postmaster, "kafka": meter.broker},
            "timeline": [[round(t, 2), count] for t, count in timeline]}


def _orders(batches: list[tuple[datetime, int]]) -> int:
    return sum(orders for _, orders in batches)


def _last_order_id(database: str) -> int:
    return sql(database, "SELECT coalesce(max(id), 0) FROM orders")[0][0]


def stored_batches(database: str, after_id: int) -> list[tuple[datetime, int]]:
    """(start, orders) of each batch stored after order `after_id`, oldest first: a batch is one
    transaction, and ingested_at is now(), its transaction's start."""
    return sql(database, "SELECT ingested_at, count(*) FROM orders WHERE id > %s GROUP BY ingested_at "
                         "ORDER BY ingested_at", (after_id,))


def steady_batches(batches: list[tuple[datetime, int]], since: datetime) -> list[tuple[datetime, int]]:
    """The batches begun at `since` or later (oldest first, as stored_batches gives them)."""
    return [batch for batch in batches if batch[0] >= since]


def batch_rate(batches: list[tuple[datetime, int]]) -> float | None:
    """Orders per second from the first batch's start to the last one's, in which every order but
    the last batch's was stored; None for fewer than two batches. The committed offsets, sampled
    every quarter of a second, put a run's end up to a sample late: 7 % of a 3.5 s run, which set
    the rates of bench.scale's rounds in steps of about 0.26 s (bench/README.md)."""
    if len(batches) < 2:
        return None
    window = (batches[-1][0] - batches[0][0]).total_seconds()
    return (sum(orders for _, orders in batches) - batches[-1][1]) / window if window > 0 else None


def sql(database_url: str, statement: str, params: tuple = ()) -> list[tuple]:
    """One statement on its own autocommit connection (VACUUM and CHECKPOINT need one); its rows."""
    connection = psycopg2.connect(admin_dsn(database_url, make_url(database_url).database))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def bare_app(app: str, env: dict[str, str], log_path: Path) -> Service:
    """A bare WSGI app (a ceiling) started under the service's gunicorn settings without its hooks."""
    return Service(env, log_path, args=("-c", "bench/ceiling.conf.py", app)).start()


def miss_ceiling(database: str, log_path: Path) -> Service:
    """The cold-read ceiling (bench/miss_ceiling.py) on `database`."""
    return bare_app("bench.miss_ceiling:app", {"BENCH_MISS_CEILING_DSN": dsn(database)}, log_path)


def measure_reads(database: str, topics, settings: Settings, work: Path, say: Progress) -> dict:
    ids_file, missing_file, body_file = work / "ids.txt", work / "missing.txt", work / "body.json"
    app = create_app(Config, {"SQLALCHEMY_DATABASE_URI": database})
    with app.app_context():
        newest = text("SELECT order_uid FROM orders ORDER BY date_created DESC, id DESC LIMIT :n")
        ids = list(db.session.scalars(newest, {"n": settings.read_ids}))
        db.engine.dispose()
    ids_file.write_text("\n".join(ids) + "\n")
    missing_file.write_text("\n".join(f"missing-{i:06d}" for i in range(len(ids))) + "\n")
    read_only = {"CONSUMER_ENABLED": "false", "CACHE_THRESHOLD": str(max(20_000, 2 * len(ids)))}
    results: dict[str, Any] = {}

    # The service's own speed without authentication (as before it existed), and the same service
    # checking tokens, with the reads of a caller who may see everything (orders:read orders:pii).
    env = service_env(database, topics, CACHE_WARMUP=str(len(ids)), **read_only, **NO_AUTH)
    service = Service(env, work / "cached.log").start()
    secured = Service(service_env(database, topics, CACHE_WARMUP=str(len(ids)), **read_only),
                      work / "cached_auth.log").start()
    tokens = Tokens()
    ceiling: Service | None = None
    try:
        wait_until(lambda: warmed_caches(secured.log(), workers=2), 120, "both caches warmed (with auth)")
        warmups = wait_until(lambda: warmed_caches(service.log(), workers=2), 120, "both caches warmed")
        results["warmup_s"] = max(float(seconds) for _, seconds in warmups)
        results["warmup_orders"] = int(warmups[0][0])
        say(f"read: caches warmed with {warmups[0][0]} orders in {results['warmup_s']} s")
        status, _, body = service.get(f"/order/{ids[0]}")
        assert status == 200
        body_file.write_bytes(body)
        ceiling = bare_app("bench.ceiling:app", {"BENCH_CEILING_BODY": str(body_file)}, work / "ceiling.log")
        # Ceiling and service alternate, twice, and each keeps its better round: background work on
        # this shared machine (a checkpoint after the load, a noisy neighbour) only ever slows a
        # round down, and it once cut a ceiling round to a quarter of the other.
        # The edge (nginx, the config `make infra` renders) in front of the same gunicorn, with
        # the same load as "cached": from an empty edge cache (edge_cold: each id's first request
        # is a miss), then warm (edge). And one strict pass, every id once, all misses.
        # With a token: gunicorn directly (every request checks it), then the edge (which asks
        # gunicorn once per token and AUTH_EDGE_CACHE_S), its cache filled by one pass first.
        rounds: dict[str, list[dict]] = {name: [] for name in ("ceiling", "cached", "edge_cold", "edge",
                                                               "edge_first_pass", "cached_auth", "edge_auth")}
        for _ in range(settings.read_rounds):
            rounds["ceiling"].append(wrk(ceiling, ids_file, settings, "ceiling", say))
            rounds["cached"].append(wrk(service, ids_file, settings, "cached", say))
            rounds["cached_auth"].append(
                wrk(secured, ids_file, settings, "cached_auth", say, token=tokens(*SCOPES)))
            with running_edge(secured, work, auth=True) as edge:
                wrk_one_pass(edge, ids_file, settings, work, say, "edge_auth_fill", tokens(*SCOPES))
                rounds["edge_auth"].append(
                    wrk(edge, ids_file, settings, "edge_auth", say, token=tokens(*SCOPES)))
            with running_edge(service, work) as edge:
                rounds["edge_cold"].append(wrk(edge, ids_file, settings, "edge_cold", say))
                rounds["edge"].append(wrk(edge, ids_file, settings, "edge", say))
            with running_edge(service, work) as edge:
                rounds["edge_first_pass"].append(wrk_one_pass(edge, ids_file, settings, work, say))
        results.update({name: best_round(runs) for name, runs in rounds.items()})
        results["edge_first_pass"]["ids"] = len(ids)
        results["missing"] = wrk(service, missing_file, settings, "missing", say)
    finally:
        service.stop()
        secured.stop()
        if ceiling is not None:
            ceiling.stop()

    env = service_env(database, topics, **COLD_READS)
    service = Service(env, work / "cold.log").start()
    try:
        results["cold"] = wrk(service, ids_file, settings, "cold", say)
    finally:
        service.stop()
    return results


def best_round(runs: list[dict]) -> dict:
    """The round with the most requests per second, with every round kept for the record."""
    best = max(runs, key=lambda run: run["rps"])
    return {**best, "runs": runs}


def warmed_caches(log: str, workers: int) -> list[tuple[str, str]] | None:
    found = re.findall(r"cache warmed with (\d+) orders in ([\d.]+) s", log)
    return found if len(found) >= workers else None


def wrk(service: Service | Edge, ids_file: Path, settings: Settings, name: str, say: Progress,
        prefix: str = "/order/", token: str = "") -> dict:
    """GET <prefix><id> for ids drawn at random from `ids_file`; with `token`, as its bearer."""
    say(f"read/{name}: wrk, {settings.connections} connections, {settings.duration_s} s")
    env = {**os.environ, "BENCH_IDS_FILE": str(ids_file), "BENCH_PATH_PREFIX": prefix,
           **({"BENCH_AUTHORIZATION": f"Bearer {token}"} if token else {})}
    out = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{settings.connections}", f"-d{settings.duration_s}s", "--timeout",
         "5s", "-s", str(WRK_SCRIPT), service.url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return _wrk_result(out, name, say)


@contextmanager
def running_edge(service: Service, work: Path, auth: bool = False) -> Iterator[Edge]:
    """A new edge, with an empty cache, in front of `service`; checking tokens with `auth`."""
    edge = Edge(f"127.0.0.1:{service.port}", work, {**UNLIMITED, **({} if auth else NO_AUTH)}).start()
    try:
        yield edge
    finally:
        edge.stop()


def wrk_one_pass(edge: Edge, ids_file: Path, settings: Settings, work: Path, say: Progress,
                 name: str = "edge_first_pass", token: str = "") -> dict:
    """Every id once, through the edge's empty cache (bench/wrk_one_pass.lua); wrk is stopped as
    soon as both of its threads have had their share answered."""
    say(f"read/{name}: wrk, one pass over the ids, {settings.connections} connections")
    # wrk's -d only guards a pass that hangs (it is stopped once the pass is done): long enough for
    # the whole pass even at 100 requests a second.
    with ids_file.open() as ids:
        limit_s = max(30, sum(1 for _ in ids) // 100)
    done_dir = Path(tempfile.mkdtemp(prefix="wrk-pass-", dir=work))
    env = {**os.environ, "BENCH_IDS_FILE": str(ids_file), "BENCH_PATH_PREFIX": "/order/",
           "BENCH_THREADS": str(WRK_THREADS), "BENCH_DONE_DIR": str(done_dir),
           **({"BENCH_AUTHORIZATION": f"Bearer {token}"} if token else {})}
    process = subprocess.Popen(
        ["wrk", f"-t{WRK_THREADS}", f"-c{settings.connections}", f"-d{limit_s}s",
         "--timeout", "5s", "-s", str(WRK_ONE_PASS), edge.url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_until(lambda: len(list(done_dir.iterdir())) >= WRK_THREADS or process.poll() is not None,
               limit_s + 30, "wrk finished its pass over the ids", interval_s=0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # wrk then reports at once instead of sleeping out -d
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return _wrk_result(out, name, say)


def _wrk_result(out: str, name: str, say: Progress) -> dict:
    summary = json.loads(next(line for line in out.splitlines() if line.startswith("BENCH_JSON "))[11:])
    seconds = summary["duration_us"] / 1e6
    latency = {p: us / 1000 for p, us in summary["latency_us"].items()}
    errors = summary["errors"]
    result = {
        "requests": summary["requests"],
        "rps": round(summary["requests"] / seconds, 1),
        "p50_ms": round(latency["50"], 3),
        "p99_ms": round(latency["99"], 3),
        # For "missing" every answer is a 404 by design; wrk counts those as status errors.
        "errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
        + (errors["status"] if name != "missing" else 0),
        "latency_ms": {p: round(ms, 3) for p, ms in latency.items()},
    }
    say(f"read/{name}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"errors {result['errors']}")
    return result


def ratios(results: dict) -> dict:
    ingest, read = results["ingest"], results["read"]
    return {"ratios": {
        "ingest_vs_validate_ceiling": round(ingest["orders_per_s"] / ingest["ceiling_validate_per_s"], 3),
        "ingest_vs_store_ceiling": round(ingest["orders_per_s"] / ingest["ceiling_store_per_s"], 3),
        "cached_vs_ceiling": round(read["cached"]["rps"] / read["ceiling"]["rps"], 3),
        "cold_vs_ceiling": round(read["cold"]["rps"] / read["ceiling"]["rps"], 3),
        "edge_vs_cached": round(read["edge"]["rps"] / read["cached"]["rps"], 3),
        "edge_cold_vs_cached": round(read["edge_cold"]["rps"] / read["cached"]["rps"], 3),
        "edge_first_pass_vs_cached": round(read["edge_first_pass"]["rps"] / read["cached"]["rps"], 3),
        "edge_auth_vs_cached_auth": round(read["edge_auth"]["rps"] / read["cached_auth"]["rps"], 3),
        "edge_auth_vs_edge": round(read["edge_auth"]["rps"] / read["edge"]["rps"], 3),
    }}


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
    return {"cores": os.cpu_count(), "memory_gb": round(total_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
