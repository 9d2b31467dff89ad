"""A tiny run of the benchmark code (300 orders, 2 s of load per case) so that `make bench` can't rot."""

import json
import subprocess
import sys

import pytest

from harness import ROOT

pytestmark = pytest.mark.slow

REQUIRED = [
    "ingest.orders", "ingest.orders_per_s", "ingest.ceiling_validate_per_s", "ingest.ceiling_store_per_s",
    "ingest.peak_rss_mb", "ingest.cpu_us_per_order.service",
    "ingest.cpu_us_per_order.total", "ingest.machine.busy_us_per_order",
    "read.cached.rps", "read.cached.p50_ms", "read.cached.p99_ms", "read.cold.rps",
    "read.cold.p99_ms", "read.missing.rps", "read.ceiling.rps", "read.edge.rps", "read.edge.p99_ms",
    "read.edge_cold.rps", "read.edge_cold.p99_ms", "read.edge_first_pass.rps", "read.edge_first_pass.ids",
    "read.cached_auth.rps", "read.edge_auth.rps", "read.edge_auth.p99_ms", "ratios.edge_auth_vs_cached_auth",
    "machine.cores", "machine.memory_gb",
]


def test_the_benchmark_runs_end_to_end_and_reports_every_figure(tmp_path, kafka_bootstrap, database_url):
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    for dotted in REQUIRED:
        value = results
        for part in dotted.split("."):
            value = value[part]
        assert isinstance(value, int | float) and not isinstance(value, bool) and value > 0, dotted
    # A smoke run's 300 orders cost PostgreSQL and Kafka a few clock ticks (10 ms each) of CPU at most,
    # which can read as 0: present and never negative is what such a short run can show.
    for group in ("postgres", "kafka"):
        value = results["ingest"]["cpu_us_per_order"][group]
        assert isinstance(value, int | float) and not isinstance(value, bool) and value >= 0, group
    assert results["read"]["cached"]["errors"] == 0
    assert all(results["read"][case]["errors"] == 0
               for case in ("edge", "edge_cold", "edge_first_pass", "cached_auth", "edge_auth"))
    # The strict first pass through an empty edge cache asked for every id once.
    assert results["read"]["edge_first_pass"]["requests"] == results["read"]["edge_first_pass"]["ids"]
    assert len(results["commit"]) == 40 and results["date"]
    assert (tmp_path / "ingest.png").stat().st_size > 0 and (tmp_path / "latency.png").stat().st_size > 0
    assert "| measure | service |" in (tmp_path / "latest.md").read_text()
