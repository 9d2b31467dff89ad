"""The scale section of the benchmark: the same service against a database of BENCH_SCALE_ORDERS
orders (default 2,000,000, grown by bench/bulk_load.py) and against one that starts empty, in one run.

By default it runs on a PostgreSQL cluster of its own (harness/cluster.py: a new data directory, a
free port, the settings of infra/postgres/postgresql.conf that `make infra` applies), so that the
gigabytes and the checkpoints stay out of the shared server and no one else's tests run on it;
`--configured-server` uses DATABASE_URL's server instead. Kafka is the configured one (new topics).

Measured, each database the same way:
- ingest of `new_orders` new orders through the service (gunicorn, 2 workers, real Kafka), the
  empty and the large database alternated round by round, each round right after a CHECKPOINT
  (the worst case for full-page writes, the same for both); the new orders are dated after the
  loaded ones, as orders arriving today are (produce_recent_orders);
- cold reads (the workers' cache off) of random stored ids, directly on gunicorn, with the CPU
  they cost per request, against their ceiling in the same run (bench/miss_ceiling.py: a bare
  WSGI app whose every request is the same one indexed read); and through the edge, one pass in
  which every request is a miss;
- the recent-orders list: its first page and a page `deep_rows` rows deep;
- bytes stored per order, tables and indexes.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

from app.api.pages import encode_cursor
from app.documents import format_utc
from app.seed import OrderFactory, encode
from app.seed.common import WINDOW_END
from bench import bulk_load
from bench.cpu import CpuMeter
from bench.report import merge_scale, results_dir
from bench.run import (
    COLD_READS,
    Progress,
    Settings,
    best_round,
    cached_reads,
    git_commit,
    measure_ingest,
    migrate,
    miss_ceiling,
    running_edge,
    sql,
    warmed_caches,
    wrk,
    wrk_one_pass,
)
from config import Config
from harness.cluster import OwnCluster
from harness.kafka import Topics, create_topics, delete_topics, produce
from harness.postgres import create_database, drop_database
from harness.service import Service, exit_through_finally_on_sigterm, service_env
from harness.waiting import wait_until

DEFAULT_ORDERS = 2_000_000
NEW_ORDERS_SEED = 100


@dataclass
class ScaleSettings:
    orders: int = DEFAULT_ORDERS
    new_orders: int = 20_000
    read_ids: int = 20_000
    rounds: int = 2
    duration_s: int = 20
    connections: int = 64
    deep_rows: int = 1_000_000
    own_cluster: bool = True
    pg_settings: dict[str, str] = field(default_factory=dict)
    smoke: bool = False

    @property
    def read_rounds(self) -> int:
        return 1 if self.smoke else 2


def run_scale(settings: ScaleSettings, say: Progress) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="order-bench-scale-"))
    with _server(settings, say) as (server_url, cluster):
        large = _new_database(server_url, "orders_scale")
        small: str | None = None
        try:
            load = bulk_load.grow(large, settings.orders, say)
            checked = bulk_load.verify(large)
            say(f"load: {load.orders:,} orders and {load.items:,} items in {load.seconds:.0f} s; "
                f"{checked} sampled orders read back to their hashes")
            settle(large, say)
            results: dict[str, Any] = {
                "orders": settings.orders,
                "load": {"seconds": load.seconds, "items": load.items, "verified": checked},
                "storage": stored_bytes(large),
                "server": _server_settings(large),
            }
            say(f"storage: {results['storage']['bytes_per_order']:,.0f} bytes per order")
            ingest, small = ingest_rounds(server_url, large, settings, work, say)
            results["ingest"] = ingest
            topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
            try:
                results["read"] = {
                    "small": read_cases(small, topics, settings, work, say, "small"),
                    "large": read_cases(large, topics, settings, work, say, "large"),
                }
            finally:
                delete_topics(topics)
        finally:
            for database in (large, small):
                if database:
                    drop_database(database, timeout_s=120)
            shutil.rmtree(work, ignore_errors=True)
    results.update(ratios=scale_ratios(results), own_cluster=settings.own_cluster, commit=git_commit(),
                   date=datetime.now(UTC).isoformat(timespec="seconds"),
                   settings={k: v for k, v in vars(settings).items()})
    return results


@contextmanager
def _server(settings: ScaleSettings, say: Progress) -> Iterator[tuple[str, OwnCluster | None]]:
    if not settings.own_cluster:
        yield Config.SQLALCHEMY_DATABASE_URI, None
        return
    cluster = OwnCluster(settings.pg_settings, parent=_cluster_parent()).start()
    say(f"PostgreSQL of the bench's own: {cluster.data} on port {cluster.port}")
    try:
        yield cluster.url(), cluster
    finally:
        cluster.destroy()


def _cluster_parent() -> Path | None:
    """The bench cluster's directory: BENCH_SCALE_DIR if set (a disk with room), else the system's
    temporary directory. Never tmpfs: the disk's cost is part of what is measured."""
    chosen = os.environ.get("BENCH_SCALE_DIR")
    return Path(chosen) if chosen else None


def _new_database(server_url: str, prefix: str) -> str:
    database = create_database(server_url, prefix)
    migrate(database)
    return database


def settle(database_url: str, say: Progress) -> None:
    """VACUUM ANALYZE after the load, as a database in steady state would be (else autovacuum runs
    during the measurements), then a CHECKPOINT."""
    sql(database_url, "VACUUM (ANALYZE) orders, order_items")
    checkpoint(database_url)
    say("load: vacuumed, analysed and checkpointed")


def checkpoint(database_url: str) -> bool:
    """A CHECKPOINT, where the role may (superuser or pg_checkpoint); False where it may not."""
    try:
        sql(database_url, "CHECKPOINT")
        return True
    except psycopg2.errors.InsufficientPrivilege:
        return False


def stored_bytes(database_url: str) -> dict[str, Any]:
    """Bytes on disk of the two tables, their TOAST and each index, and their sum per order."""
    relations = {}
    for name, size, toast in sql(database_url, """
            SELECT c.relname, pg_relation_size(c.oid), coalesce(pg_total_relation_size(c.reltoastrelid), 0)
            FROM pg_class c WHERE c.relname IN ('orders', 'order_items')
            UNION ALL
            SELECT i.relname, pg_relation_size(i.oid), 0
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relname IN ('orders', 'order_items') ORDER BY 1"""):
        relations[name] = size
        if toast:
            relations[f"{name} (TOAST)"] = toast
    orders, total = count(database_url), sum(relations.values())
    return {"orders": orders, "bytes": total, "bytes_per_order": round(total / max(orders, 1), 1),
            "relations": relations}


def _server_settings(database_url: str) -> dict[str, str]:
    """The server settings that matter here, as they were during the run."""
    names = ["shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression", "synchronous_commit",
             "full_page_writes", "wal_buffers"]
    return dict(sql(database_url, "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                    (names,)))


def ingest_rounds(server_url: str, large: str, settings: ScaleSettings, work: Path,
                  say: Progress) -> tuple[dict[str, Any], str]:
    """Ingest of `new_orders` new orders into an empty database and into the large one, alternated
    (empty first in even rounds, large first in odd ones); returns the figures and the last empty
    database (kept, with its orders, for the reads)."""
    runs: dict[str, list[dict]] = {"empty": [], "large": []}
    small: str | None = None
    for round_number in range(settings.rounds):
        sides = ("empty", "large") if round_number % 2 == 0 else ("large", "empty")
        for side in sides:
            if side == "empty":
                if small:
                    drop_database(small)
                small = _new_database(server_url, "orders_scale_empty")
            database = small if side == "empty" else large
            runs[side].append(_ingest_once(database, side, round_number, settings, work, say))
    assert small is not None
    summary = {side: _best_ingest(side_runs) for side, side_runs in runs.items()}
    return summary, small


def _ingest_once(database: str, side: str, round_number: int, settings: ScaleSettings, work: Path,
                 say: Progress) -> dict:
    label = f"{side}, round {round_number + 1}"
    seed = NEW_ORDERS_SEED + 2 * round_number + (side == "large")
    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
    try:
        # Dated after the loaded history, each round after the one before, as arriving orders are.
        produce_recent_orders(topics, settings.new_orders, seed, round_number * settings.new_orders, say)
        checkpointed = checkpoint(database)
        before = count(database)
        say(f"ingest ({label}): {before:,} orders stored before")
        wal_before = wal_written(database)
        result = measure_ingest(database, topics, Settings(orders=settings.new_orders), work, say)
        wal = {name: round((value - wal_before[name]) / settings.new_orders, 2)
               for name, value in wal_written(database).items()}
        stored = count(database) - before
        assert stored == settings.new_orders, f"{stored} of {settings.new_orders} new orders stored"
        result.pop("timeline")
        say(f"ingest ({label}): WAL per order {wal['bytes']:,.0f} bytes, {wal['full_page_images']:.2f} "
            "full-page images")
        return {**result, "orders_before": before, "checkpoint_before": checkpointed, "wal_per_order": wal}
    finally:
        delete_topics(topics)


def produce_recent_orders(topics: Topics, orders: int, seed: int, first_second: int, say: Progress) -> None:
    """The generator's orders of `seed`, dated one second apart from `first_second` seconds after
    every loaded order (bulk_load's history ends at WINDOW_END): new orders go onto the newest edge
    of ix_orders_recent, as orders arriving today do, where the generator's own dates (2021-2025)
    would scatter them over the whole index."""
    first = WINDOW_END + first_second
    say(f"producing {orders:,} orders of seed {seed}, dated from {format_utc(_utc(first))} on")
    records = []
    for index, order in enumerate(OrderFactory(seed).orders(orders)):
        order["date_created"] = format_utc(_utc(first + index))
        records.append((order["order_uid"].encode(), encode(order)))
    produce(topics.bootstrap, topics.orders, records)


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _best_ingest(runs: list[dict]) -> dict:
    """The round with the highest rate (background work only ever slows a round down), every round kept."""
    best = max(runs, key=lambda run: run["orders_per_s"])
    kept = ("orders_per_s", "orders_per_s_whole_run", "group_stable_after_s", "stored_before_group_stable",
            "orders_before", "cpu_us_per_order", "machine", "wal_per_order")
    return {**best, "runs": [{key: run[key] for key in kept} for run in runs]}


def wal_written(database_url: str) -> dict[str, int]:
    """The server's WAL written so far (pg_stat_wal): bytes, and full-page images among the records.
    The whole cluster's: on the bench's own cluster, the bench's alone."""
    [(wal_bytes, fpi)] = sql(database_url, "SELECT wal_bytes, wal_fpi FROM pg_stat_wal")
    return {"bytes": int(wal_bytes), "full_page_images": int(fpi)}


def count(database_url: str) -> int:
    return sql(database_url, "SELECT count(*) FROM orders")[0][0]


def random_ids(database_url: str, wanted: int) -> list[str]:
    """`wanted` distinct stored order_uids drawn at random from the whole table."""
    [(low, high)] = sql(database_url, "SELECT min(id), max(id) FROM orders")
    ids = [uid for (uid,) in sql(database_url, "SELECT DISTINCT order_uid FROM orders WHERE id IN "
                                 "(SELECT %s + (random() * %s)::bigint FROM generate_series(1, %s))",
                                 (low, high - low, wanted * 2))]
    assert len(ids) >= min(wanted, count(database_url)) // 2, "too few stored ids drawn"
    return ids[:wanted]


def _deep_cursor(database_url: str, depth: int) -> str:
    """The `before` cursor of the page that starts `depth` rows down the recent-orders list."""
    [(moment, order_id)] = sql(database_url, "SELECT date_created, id FROM orders "
                               "ORDER BY date_created DESC, id DESC OFFSET %s LIMIT 1", (depth - 1,))
    return encode_cursor(moment, order_id)


def read_cases(database: str, topics: Topics, settings: ScaleSettings, work: Path, say: Progress,
               label: str) -> dict[str, Any]:
    """Reads with the workers' cache off: every GET /order/<id> goes to PostgreSQL."""
    stored = count(database)
    ids = random_ids(database, settings.read_ids)
    ids_file = work / f"ids-{label}.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    depth = min(settings.deep_rows, stored // 2)
    wrk_settings = Settings(duration_s=settings.duration_s, connections=settings.connections)
    # The service's own read path, as `make bench`'s read cases measure it: without the token check,
    # whose cost `make bench` measures apart (read.cached_auth).
    env = service_env(database, topics, **COLD_READS)
    service = Service(env, work / f"cold-{label}.log").start()
    results: dict[str, Any] = {"orders": stored, "ids": len(ids), "deep_rows": depth}
    try:
        # The first pass brings the sampled rows into PostgreSQL's cache, as the rounds after it find them.
        rounds = [_metered_wrk(service, database, ids_file, wrk_settings, f"cold {label}", say)
                  for _ in range(settings.read_rounds)]
        results["cold"] = best_round(rounds)
        results["miss_ceiling"] = _miss_ceiling(database, ids_file, wrk_settings, work, say, label,
                                                settings.read_rounds)
        with running_edge(service, work) as edge:
            results["edge_first_pass"] = wrk_one_pass(edge, ids_file, wrk_settings, work, say)
        list_duration = settings.duration_s if settings.smoke else max(2, settings.duration_s // 2)
        list_settings = Settings(duration_s=list_duration, connections=settings.connections)
        first_page = work / f"first-page-{label}.txt"
        first_page.write_text("20\n")
        results["list_first_page"] = wrk(service, first_page, list_settings, f"list {label}", say,
                                         prefix="/orders?limit=")
        deep_page = work / f"deep-page-{label}.txt"
        deep_page.write_text(_deep_cursor(database, depth) + "\n")
        results["list_deep_page"] = wrk(service, deep_page, list_settings, f"list {label} {depth:,} deep",
                                        say, prefix="/orders?limit=20&before=")
    finally:
        service.stop()
    results["cached"] = _cached_reads(database, topics, len(ids), wrk_settings, work, say, label)
    return results


def _miss_ceiling(database: str, ids_file: Path, settings: Settings, work: Path, say: Progress, label: str,
                  rounds: int) -> dict:
    """The same load on bench/miss_ceiling.py under the service's gunicorn settings."""
    ceiling = miss_ceiling(database, work / f"miss-ceiling-{label}.log")
    try:
        return best_round([_metered_wrk(ceiling, database, ids_file, settings, f"miss ceiling {label}", say)
                           for _ in range(rounds)])
    finally:
        ceiling.stop()


def _cached_reads(database: str, topics: Topics, ids: int, settings: Settings, work: Path, say: Progress,
                  label: str) -> dict:
    """Reads from the workers' caches in the same run (the most recent orders, which each worker's
    warm-up loads): what the cold figures compare with on a machine whose speed others' work
    changes from minute to minute."""
    newest = "SELECT order_uid FROM orders ORDER BY date_created DESC, id DESC LIMIT %s"
    recent = [uid for (uid,) in sql(database, newest, (ids,))]
    ids_file = work / f"recent-{label}.txt"
    ids_file.write_text("\n".join(recent) + "\n")
    env = service_env(database, topics, **cached_reads(len(recent)))
    service = Service(env, work / f"cached-{label}.log").start()
    try:
        wait_until(lambda: warmed_caches(service.log(), workers=2), 300, "both caches warmed")
        return _metered_wrk(service, database, ids_file, settings, f"cached {label}", say)
    finally:
        service.stop()


def _metered_wrk(service: Service, database: str, ids_file: Path, settings: Settings, name: str,
                 say: Progress) -> dict:
    """wrk, with the CPU the service's workers and PostgreSQL spent per request over the same window."""
    url = make_url(database)
    workers = service.worker_pids()
    meter = CpuMeter(lambda: workers, url.port or 5432, int(Config.KAFKA_BOOTSTRAP_SERVERS.split(",")[0]
                                                           .rsplit(":", 1)[1]), url.database)
    before = meter.snapshot()
    result = wrk(service, ids_file, settings, name, say)
    cpu = CpuMeter.between(before, meter.snapshot(), max(result["requests"], 1))
    per_request = {group: cpu["cpu_us_per_order"][group] for group in ("service", "postgres_bench_db")}
    say(f"read/{name}: CPU per request: workers {per_request['service']:.0f} µs, "
        f"PostgreSQL backends {per_request['postgres_bench_db']:.0f} µs")
    return {**result, "cpu_us_per_request": per_request}


def round_ratios(ingest: dict) -> list[float]:
    """Each round's large ÷ empty rate. A round's two runs come minutes apart, so the machine's drift
    over a run (others' work, its caches filling) weighs on both alike, which best ÷ best, taken
    from different rounds, does not ensure."""
    return [round(large["orders_per_s"] / empty["orders_per_s"], 3)
            for empty, large in zip(ingest["empty"]["runs"], ingest["large"]["runs"], strict=True)]


def scale_ratios(results: dict) -> dict[str, float]:
    ingest, small, large = results["ingest"], results["read"]["small"], results["read"]["large"]
    return {
        "ingest_large_vs_empty": round(ingest["large"]["orders_per_s"] / ingest["empty"]["orders_per_s"], 3),
        "ingest_large_vs_empty_round_median": round(statistics.median(round_ratios(ingest)), 3),
        "cold_large_vs_small": round(large["cold"]["rps"] / small["cold"]["rps"], 3),
        "cold_vs_cached_large": round(large["cold"]["rps"] / large["cached"]["rps"], 3),
        "cold_vs_miss_ceiling_large": round(large["cold"]["rps"] / large["miss_ceiling"]["rps"], 3),
    }


def _orders_from_environment() -> int:
    raw = os.environ.get("BENCH_SCALE_ORDERS") or str(DEFAULT_ORDERS)
    if not raw.replace("_", "").isdecimal() or not raw.isascii() or int(raw) < 1:
        sys.exit(f"bench: BENCH_SCALE_ORDERS={raw!r} is not a positive whole number (2000000, 10_000_000)")
    return int(raw)


def settings_from_args(argv: list[str] | None = None) -> tuple[ScaleSettings, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=_orders_from_environment(),
                        help="orders in the large database (default: BENCH_SCALE_ORDERS, or 2,000,000)")
    parser.add_argument("--new-orders", type=int, default=20_000, help="orders ingested per round")
    parser.add_argument("--rounds", type=int, default=2, help="ingest rounds per database, alternated")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per read case")
    parser.add_argument("--configured-server", action="store_true",
                        help="use DATABASE_URL's PostgreSQL instead of a cluster of the bench's own")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the bench's own cluster on top of infra/postgres/postgresql.conf")
    parser.add_argument("--out", type=Path,
                        help="where the results go (default bench/results, a new temporary directory for "
                             "--smoke); README's table is updated only from bench/results")
    parser.add_argument("--smoke", action="store_true", help="tiny run that exercises every step")
    args = parser.parse_args(argv)
    pg_settings = dict(item.split("=", 1) for item in args.pg_setting)
    if args.smoke:
        return ScaleSettings(orders=3000, new_orders=300, read_ids=200, rounds=2, duration_s=1, connections=8,
                             deep_rows=1000, own_cluster=not args.configured_server, pg_settings=pg_settings,
                             smoke=True), results_dir(args.out, smoke=True)
    return ScaleSettings(orders=args.orders, new_orders=args.new_orders, rounds=args.rounds,
                         duration_s=args.duration, own_cluster=not args.configured_server,
                         pg_settings=pg_settings), results_dir(args.out, smoke=False)


def main(argv: list[str] | None = None) -> None:
    settings, out_dir = settings_from_args(argv)
    exit_through_finally_on_sigterm()
    say = Progress()
    started = time.monotonic()
    results = run_scale(settings, say)
    say(f"scale: done in {time.monotonic() - started:.0f} s")
    for path in merge_scale(results, out_dir, settings.smoke):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
