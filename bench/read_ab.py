"""Reads of stored orders by different checkouts or settings of the service, alternated round by
round on one database of `make infra`'s server: what a lever does to the rate, the p99 and the CPU
of a request.

    python -m bench.read_ab --orders 20000 --rounds 5 --ceiling \\
        --variant before:root=/path/to/checkout --variant after:

A variant is NAME:SETTING=VALUE,... (the service's settings, on top of the bench's; `root=DIR` runs
gunicorn from another checkout, which must work on this database's schema). Every request reads a
random stored id with wrk (64 connections). By default the cache is off, so each one is a miss read
from PostgreSQL (bench.run's COLD_READS); with --cached, each worker's cache is warmed with every id
first and every request is a hit. --ceiling adds the bare read (bench/miss_ceiling.py) as a variant.
Each service gets one warm-up pass before the first round.
"""

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import bulk_load
from bench.run import (
    COLD_READS,
    Progress,
    Settings,
    cached_reads,
    migrate,
    miss_ceiling,
    warmed_caches,
)
from bench.scale import _metered_wrk, random_ids
from config import Config
from harness import ROOT
from harness.kafka import create_topics, delete_topics
from harness.postgres import create_database, drop_database
from harness.service import Service, exit_through_finally_on_sigterm, service_env
from harness.waiting import wait_until

CEILING = "ceiling"


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, str]
    root: Path


def parse_variant(text: str) -> Variant:
    """A variant of the command line; a root that does not exist stops the run here, before the
    database is grown."""
    name, _, rest = text.partition(":")
    settings = dict(item.split("=", 1) for item in rest.split(",") if item)
    root = Path(settings.pop("root", ROOT)).expanduser().resolve()
    if not name or name == CEILING or not root.is_dir():
        raise SystemExit(f"bench.read_ab: variant {text!r}: a name other than {CEILING!r} is needed, "
                         f"and a checkout at {root}")
    return Variant(name, settings, root)


def parse_variants(texts: list[str]) -> list[Variant]:
    """The command line's variants, each with a name of its own."""
    variants = [parse_variant(text) for text in texts]
    names = [variant.name for variant in variants]
    if len(set(names)) < len(names):
        raise SystemExit(f"bench.read_ab: each variant needs a name of its own: {', '.join(names)}")
    return variants


def start(variant: Variant, database: str, topics, ids: int, cached: bool, work: Path) -> Service:
    reads = cached_reads(ids) if cached else COLD_READS
    env = service_env(database, topics, **{**reads, **variant.settings})
    service = Service(env, work / f"{variant.name}.log", root=variant.root).start()
    if cached:
        wait_until(lambda: warmed_caches(service.log(), workers=2), 300, f"{variant.name}: caches warmed")
    return service


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.read_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--ids", type=int, default=20_000, help="distinct stored ids the reads draw from")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10, help="each round's wrk run")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:SETTING=VALUE,...")
    parser.add_argument("--ceiling", action="store_true", help="the bare read as a variant too")
    parser.add_argument("--cached", action="store_true", help="every request a cache hit")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    variants = parse_variants(args.variant)
    exit_through_finally_on_sigterm()
    say = Progress()
    work = Path(tempfile.mkdtemp(prefix="order-bench-read-ab-"))
    database = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_read_ab")
    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
    services: dict[str, Service] = {}
    runs: dict[str, list[dict]] = {}
    try:
        migrate(database)
        bulk_load.grow(database, args.orders, say)
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(random_ids(database, args.ids)) + "\n")
        for variant in variants:
            services[variant.name] = start(variant, database, topics, args.ids, args.cached, work)
        if args.ceiling:
            services[CEILING] = miss_ceiling(database, work / f"{CEILING}.log")
        for name, service in services.items():
            _metered_wrk(service, database, ids_file, Settings(duration_s=3), f"{name}, warm-up", say)
        names = list(services)
        runs = {name: [] for name in names}
        for round_number in range(args.rounds):
            for name in names if round_number % 2 == 0 else reversed(names):
                result = _metered_wrk(services[name], database, ids_file, Settings(duration_s=args.seconds),
                                      f"{name}, round {round_number + 1}", say)
                runs[name].append({"rps": result["rps"], "p99_ms": result["p99_ms"],
                                   "cpu_us_per_request": result["cpu_us_per_request"]})
    finally:
        for service in services.values():
            service.stop()
        delete_topics(topics)
        drop_database(database)
    print("\n| variant | req/s, each round | mean | p99 ms, each round | workers' CPU µs a request, mean |"
          "\n| --- | --- | ---: | --- | ---: |")
    for name, rounds in runs.items():
        rates = [run["rps"] for run in rounds]
        p99s = ", ".join(f"{run['p99_ms']:.1f}" for run in rounds)
        cpu = statistics.mean(run["cpu_us_per_request"]["service"] for run in rounds)
        print(f"| {name} | {', '.join(f'{rate:,.0f}' for rate in rates)} | {statistics.mean(rates):,.0f} | "
              f"{p99s} | {cpu:.0f} |")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
