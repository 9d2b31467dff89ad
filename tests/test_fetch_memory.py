"""A worker's memory is bounded whatever it fetches: decompression bombs spread over many batches,
against the real service under gunicorn, Kafka and PostgreSQL."""

import json

import pytest

from app.ingest.kafka_records import MAX_FETCH_RECORD_BYTES
from app.seed import OrderFactory, encode
from harness.batches import ZSTD, produce_batches, record_batch
from harness.kafka import all_committed, produce, read_all
from harness.service import Service, service_env
from harness.waiting import wait_until
from tests.helpers import stored_uids

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
# Their 63 MiB each, decompressed, add up to many times the bound below: only a bound per fetch keeps
# a worker within it (README's figure was measured with BOMBS=200).
BOMBS = int(__import__("os").environ.get("BOMBS", "50"))
# The bound this test holds the worker to (the issue's): a worker idles at about 100 MiB.
PEAK_RSS_LIMIT = 400 * MIB


def zstd_bomb() -> bytes:
    """A batch of one record whose value is 63 MiB of zeros: about 2 KB on the wire, under the
    per-batch bound once decompressed, so that only a bound per fetch can stop BOMBS of them."""
    import zstandard

    return record_batch([(b"bomb", bytes(63 * MIB))], ZSTD, zstandard.ZstdCompressor().compress)


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(row for row in status if row.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_a_partition_of_decompression_bombs_keeps_a_worker_within_its_bound(
        ingest_app, topics, database_url, tmp_path):
    bomb = zstd_bomb()
    assert len(bomb) < 4096
    produce_batches(topics.bootstrap, topics.orders, 0, [bomb] * BOMBS)
    orders = list(OrderFactory(seed=83).orders(100))
    produce(topics.bootstrap, topics.orders, [(o["order_uid"].encode(), encode(o)) for o in orders])
    env = service_env(database_url, topics, WEB_CONCURRENCY="1")
    service = Service(env, tmp_path / "service.log").start()
    try:
        (worker,) = service.worker_pids()
        wait_until(lambda: all_committed(topics), 240, "the worker consumed every bomb and order")
        peak = peak_rss(worker)
        assert service.worker_pids() == [worker], "the worker was replaced (killed?)"
    finally:
        service.kill()
    print(f"peak RSS of the worker: {peak / MIB:.0f} MiB for {BOMBS} bombs "
          f"(bound per fetch: {MAX_FETCH_RECORD_BYTES / MIB:.0f} MiB)")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / MIB:.0f} MiB"
    assert sorted(stored_uids(ingest_app)) == sorted(o["order_uid"] for o in orders)
    dead = read_all(topics.bootstrap, topics.dlq)
    assert len(dead) == BOMBS
    for letter in dead:
        headers = dict(letter.headers)
        assert headers["dlq.error.type"] == b"too_large"
        assert headers["dlq.source.partition"] == b"0"
        assert letter.value is None and headers["dlq.dropped"] == b"value"
        assert letter.key == b"bomb"
        assert json.loads(headers["dlq.error.detail"])["message"].startswith(
            f"the record's value ({63 * MIB} bytes)")
    assert sorted(int(dict(letter.headers)["dlq.source.offset"]) for letter in dead) == list(range(BOMBS))


# `flask` run so that it reports its own peak resident memory on exit. VmHWM belongs to the process's
# memory since exec; getrusage's ru_maxrss would include the RSS of the test process that forked it.
_FLASK_REPORTING_PEAK = """
import atexit, sys
from flask.cli import main
atexit.register(lambda: print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")),
                              file=sys.stderr))
sys.argv = ["flask", *sys.argv[1:]]
main()
"""


def test_flask_dlq_reads_a_dead_letter_topic_of_bombs_within_the_same_bound(topics):
    """Anyone who can write to the dead-letter topic can write bombs to it: `flask dlq` reads with
    the same bound (it counts them as dead letters without source coordinates)."""
    import os
    import subprocess
    import sys

    from harness import ROOT

    produce_batches(topics.bootstrap, topics.dlq, 0, [zstd_bomb()] * BOMBS)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap, "KAFKA_TOPIC": topics.orders,
           "KAFKA_DLQ_TOPIC": topics.dlq, "KAFKA_GROUP_ID": topics.group}
    run = subprocess.run([sys.executable, "-c", _FLASK_REPORTING_PEAK, "dlq", "stats", "--json"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["records"] == BOMBS and stats["without_source_coordinates"] == BOMBS
    peak = int(run.stderr.strip().splitlines()[-1].split()[1]) * 1024
    print(f"peak RSS of flask dlq stats: {peak / MIB:.0f} MiB for {BOMBS} bombs")
    assert peak < 200 * MIB, f"peak RSS {peak / MIB:.0f} MiB"
