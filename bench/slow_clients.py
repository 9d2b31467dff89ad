"""python -m bench.slow_clients: a normal client's answers while connections send their headers one
byte a second, through the edge (500 of them) and against gunicorn directly (16 of them).

Needs only the service's /healthz (no orders); prints one line per side. Figures go in
bench/results/edge_slow_clients.md.
"""

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.edge import Edge
from harness.service import Service, exit_through_finally_on_sigterm
from harness.slow_clients import slow_connections

PROBES = 50


def probe(get_status: Callable[[], int], count: int) -> str:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        if get_status() == 200:
            times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    if not times:
        return f"answered 0/{count}"
    return f"answered {len(times)}/{count}, p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms"


def main() -> None:
    exit_through_finally_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="order-slow-clients-"))
    service = Service({"CONSUMER_ENABLED": "false", "CACHE_WARMUP": "0"}, work / "service.log").start()
    edge = Edge(f"127.0.0.1:{service.port}", work).start()
    try:
        with slow_connections(edge.port, 500):
            time.sleep(1)  # let every slow connection be accepted before the probes
            print("through the edge, 500 slow connections:",
                  probe(lambda: edge.get("/healthz", timeout_s=8)[0], PROBES))
        with slow_connections(service.port, 16):
            time.sleep(1)
            # Service.get gives up after 5 s.
            print("gunicorn directly, 16 slow connections:", probe(lambda: service.get("/healthz")[0], 3))
    finally:
        edge.stop()
        service.kill()


if __name__ == "__main__":
    main()
