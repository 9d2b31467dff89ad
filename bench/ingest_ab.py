"""Ingest into a large database under different PostgreSQL settings, code or gunicorn, alternated
round by round on one loaded database: what a lever does to the rate, the CPU and the WAL per order.

    python -m bench.ingest_ab --orders 2000000 --rounds 2 \\
        --variant base: --variant zstd:wal_compression=zstd --variant old:root=/path/to/checkout \\
        --variant g24:gunicorn=/path/to/venv/bin/gunicorn

A variant is NAME:SETTING=VALUE,... (settings of the bench's own cluster on top of
infra/postgres/postgresql.conf; `root=DIR` runs gunicorn from another checkout, whose code must
work on this database's schema; `gunicorn=PATH` runs another gunicorn executable, such as another
version's in a virtualenv of its own; `dates=recent` gives the new orders dates after every loaded
one, one second apart and each round's after the one before, as orders arriving today would have,
instead of the generator's 2021-2025).
Before each round of a variant whose settings differ from the running ones, the cluster is restarted
with them and the indexes of the two tables are read back into shared_buffers (pg_prewarm: a
long-running server keeps them there); unless --no-checkpoint, a CHECKPOINT is taken. Each round
ingests `--new-orders` new orders through gunicorn (2 workers) from a topic of its own. With one
variant and --no-checkpoint, the rounds follow each other as a steady stream would: the full-page
images per order then show when checkpoints come.
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import bulk_load
from bench.run import Progress, Settings, measure_ingest, produce_orders, sql
from bench.scale import (
    NEW_ORDERS_SEED,
    _new_database,
    checkpoint,
    count,
    produce_recent_orders,
    settle,
    wal_written,
)
from config import Config
from harness import ROOT
from harness.cluster import PG_BIN, OwnCluster, as_owner
from harness.kafka import create_topics, delete_topics
from harness.service import GUNICORN, exit_through_finally_on_sigterm


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, str]
    root: Path
    gunicorn: Path
    recent_dates: bool


def parse_variant(text: str) -> Variant:
    """A variant of the command line; a root or gunicorn that does not exist stops the run here,
    before the database is grown."""
    name, _, rest = text.partition(":")
    settings = dict(item.split("=", 1) for item in rest.split(",") if item)
    root = Path(settings.pop("root", ROOT)).expanduser().resolve()
    gunicorn = Path(settings.pop("gunicorn", GUNICORN)).expanduser().absolute()
    if not root.is_dir() or not gunicorn.is_file():
        raise SystemExit(f"bench.ingest_ab: variant {name}: no checkout at {root} "
                         f"or no gunicorn at {gunicorn}")
    dates = settings.pop("dates", "generator")
    if dates not in ("generator", "recent"):
        raise SystemExit(f"bench.ingest_ab: variant {name}: dates={dates}: 'generator' or 'recent'")
    return Variant(name, settings, root, gunicorn, dates == "recent")


def prewarm(database: str) -> None:
    sql(database, "CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    sql(database, "SELECT sum(pg_prewarm(indexrelid)) FROM pg_index "
        "WHERE indrelid IN ('orders'::regclass, 'order_items'::regclass)")


def full_page_images_by_relation(cluster: OwnCluster, database: str, start: str, end: str) -> dict[str, int]:
    """How many full-page images the five relations with most got between two WAL positions
    (pg_waldump)."""
    out = subprocess.run(as_owner([str(PG_BIN / "pg_waldump"), "-p", str(cluster.data / "pg_wal"),
                                    "-s", start, "-e", end]), capture_output=True, text=True).stdout
    counts: dict[int, int] = {}
    for match in re.finditer(r"rel \d+/\d+/(\d+) (?:fork \w+ )?blk \d+ FPW", out):
        counts[int(match[1])] = counts.get(int(match[1]), 0) + 1
    names = dict(sql(database, "SELECT relfilenode, relname FROM pg_class WHERE relfilenode = ANY(%s)",
                     (list(counts),)))
    most = sorted(counts.items(), key=lambda item: -item[1])[:5]
    return {names.get(node, str(node)): images for node, images in most}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--new-orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:SETTING=VALUE,...")
    parser.add_argument("--no-checkpoint", action="store_true", help="no CHECKPOINT before each round")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    exit_through_finally_on_sigterm()
    variants = [parse_variant(text) for text in args.variant]
    say = Progress()
    work = Path(tempfile.mkdtemp(prefix="order-bench-ab-"))
    runs: dict[str, list[dict]] = {variant.name: [] for variant in variants}
    with OwnCluster() as cluster:
        database = _new_database(cluster.url(), "orders_ab")
        bulk_load.grow(database, args.orders, say)
        settle(database, say)
        try:
            for round_number in range(args.rounds):
                order = variants if round_number % 2 == 0 else list(reversed(variants))
                for index, variant in enumerate(order):
                    name, settings = variant.name, variant.settings
                    if settings != cluster.settings or (round_number, index) == (0, 0):
                        cluster.restart(settings)
                        prewarm(database)
                    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
                    try:
                        seed = NEW_ORDERS_SEED + 10 * round_number + index
                        if variant.recent_dates:
                            # Each produce after the one before, whichever variant it is for.
                            batch = round_number * len(variants) + index
                            produce_recent_orders(topics, args.new_orders, seed, batch * args.new_orders, say)
                        else:
                            produce_orders(topics, args.new_orders, seed, work, say)
                        if not args.no_checkpoint:
                            checkpoint(database)
                        before, wal_before = count(database), wal_written(database)
                        [(start,)] = sql(database, "SELECT pg_current_wal_lsn()")
                        say(f"{name}, round {round_number + 1}: {before:,} orders before; {settings}")
                        result = measure_ingest(database, topics, Settings(orders=args.new_orders), work, say,
                                                root=variant.root, gunicorn=variant.gunicorn)
                        wal = {key: (value - wal_before[key]) / args.new_orders
                               for key, value in wal_written(database).items()}
                        assert count(database) - before == args.new_orders
                        [(end,)] = sql(database, "SELECT pg_current_wal_lsn()")
                        by_relation = full_page_images_by_relation(cluster, database, start, end)
                    finally:
                        delete_topics(topics)
                    runs[name].append({"orders_per_s": result["orders_per_s"],
                                       "cpu_us_per_order": result["cpu_us_per_order"],
                                       "machine": result["machine"], "wal_per_order": wal,
                                       "full_page_images": by_relation})
                    say(f"{name}: {result['orders_per_s']:,.0f} orders/s, WAL {wal['bytes']:,.0f} bytes and "
                        f"{wal['full_page_images']:.2f} full-page images per order; images by relation "
                        f"{by_relation}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| variant | orders/s, each round | CPU µs per order (all three), each round | "
          "WAL bytes per order | full-page images per order |\n| --- | --- | --- | ---: | ---: |")
    for name, variant_runs in runs.items():
        rates = ", ".join(f"{run['orders_per_s']:,.0f}" for run in variant_runs)
        cpu = ", ".join(f"{run['cpu_us_per_order']['total']:.0f}" for run in variant_runs)
        wal = statistics.median(run["wal_per_order"]["bytes"] for run in variant_runs)
        fpi = statistics.median(run["wal_per_order"]["full_page_images"] for run in variant_runs)
        print(f"| {name} | {rates} | {cpu} | {wal:,.0f} | {fpi:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
