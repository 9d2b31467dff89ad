"""How wrk's connections spread over gunicorn's workers, and what cold reads (the workers' cache
off) reach in each case, on a database of the bench's own on the configured server.

    python -m bench.worker_balance [--orders 50000] [--duration 10] [--rounds 4]

gunicorn's workers share one listening socket; whichever is on a core when the connections arrive
accepts them, and keeps them (keep-alive). On 2 cores shared with wrk and PostgreSQL, one worker
often takes all 64. Each round starts the service afresh, samples each worker's established
connections a few seconds into the load, and reports the rate next to the split.
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

from bench import bulk_load
from bench.run import COLD_READS, Progress, Settings, migrate, wrk
from bench.scale import random_ids
from config import Config
from harness.kafka import create_topics, delete_topics
from harness.postgres import create_database, drop_database
from harness.service import Service, exit_through_finally_on_sigterm, service_env


def one_round(url: str, topics, ids_file: Path, settings: Settings, work: Path, say: Progress) -> tuple:
    service = Service(service_env(url, topics, **COLD_READS), work / "cold.log").start()
    split: list[int] = []

    def sample() -> None:
        time.sleep(settings.duration_s / 3)
        split.extend(service.connections_per_worker())

    sampler = threading.Thread(target=sample)
    try:
        sampler.start()
        result = wrk(service, ids_file, settings, "cold", say)
        sampler.join()
    finally:
        service.stop()
    return split, result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_balance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    exit_through_finally_on_sigterm()
    say = Progress()
    settings = Settings(duration_s=args.duration)
    url = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_balance")
    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
    work = Path(tempfile.mkdtemp(prefix="worker-balance-"))
    try:
        migrate(url)
        bulk_load.grow(url, args.orders, say)
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(random_ids(url, 20_000)) + "\n")
        for _ in range(args.rounds):
            split, result = one_round(url, topics, ids_file, settings, work, say)
            say(f"connections per worker {split}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.1f} ms")
    finally:
        delete_topics(topics)
        drop_database(url)


if __name__ == "__main__":
    main()
