"""Tiny runs of the benchmark code (`make bench` and its scale section) so that they can't rot:
every figure reported, and the ones that can be checked, checked."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.run import sql
from config import Config
from harness import ROOT
from harness.waiting import wait_until

pytestmark = pytest.mark.slow

REQUIRED = [
    "ingest.orders", "ingest.orders_per_s", "ingest.orders_per_s_whole_run", "ingest.group_stable_after_s",
    "ingest.ceiling_validate_per_s", "ingest.ceiling_store_per_s",
    "ingest.peak_rss_mb", "ingest.cpu_us_per_order.service", "ingest.cpu_us_per_order.postgres",
    "ingest.cpu_us_per_order.postgres_bench_db", "ingest.cpu_us_per_order.total",
    "ingest.machine.busy_us_per_order",
    "read.cached.rps", "read.cached.p50_ms", "read.cached.p99_ms", "read.cold.rps",
    "read.cold.p99_ms", "read.missing.rps", "read.ceiling.rps", "read.edge.rps", "read.edge.p99_ms",
    "read.edge_cold.rps", "read.edge_cold.p99_ms", "read.edge_first_pass.rps", "read.edge_first_pass.ids",
    "read.cached_auth.rps", "read.edge_auth.rps", "read.edge_auth.p99_ms", "ratios.edge_auth_vs_cached_auth",
    "machine.cores", "machine.memory_gb",
]

SCALE_REQUIRED = [
    "orders", "load.items", "load.verified", "storage.bytes_per_order",
    "storage.relations.uq_orders_order_uid",
    "ingest.empty.orders_per_s", "ingest.large.orders_per_s", "ingest.large.wal_per_order.bytes",
    "ingest.empty.cpu_us_per_order.total", "ingest.large.cpu_us_per_order.total",
    "read.small.cold.rps", "read.large.cold.rps", "read.large.cold.p99_ms", "read.large.miss_ceiling.rps",
    "read.large.miss_ceiling.cpu_us_per_request.postgres_bench_db", "ratios.cold_vs_miss_ceiling_large",
    "read.large.cold.cpu_us_per_request.service", "read.large.cold.cpu_us_per_request.postgres_bench_db",
    "read.large.edge_first_pass.rps", "read.large.list_first_page.rps", "read.large.list_deep_page.rps",
    "read.large.cached.rps", "ratios.cold_vs_cached_large",
    "ratios.ingest_large_vs_empty", "ratios.ingest_large_vs_empty_round_median", "ratios.cold_large_vs_small",
    "ingest.large.machine.disk_written_bytes_per_order",  # its WAL, made durable at each commit
]


def figure(results: dict, dotted: str):
    for part in dotted.split("."):
        results = results[part]
    return results


def assert_positive_figures(results: dict, required: list[str]) -> None:
    for dotted in required:
        value = figure(results, dotted)
        assert isinstance(value, int | float) and not isinstance(value, bool) and value > 0, dotted


def run_bench(module: str, out: Path) -> dict:
    run = subprocess.run([sys.executable, "-m", module, "--smoke", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "latest.json").read_text())


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_benchmark_runs_end_to_end_and_reports_every_figure(tmp_path, kafka_bootstrap, database_url):
    results = run_bench("bench", tmp_path)
    assert_positive_figures(results, REQUIRED)
    cpu = results["ingest"]["cpu_us_per_order"]
    # The CPU was read from the right processes: PostgreSQL's postmaster and the Kafka broker (the
    # broker's share of 2,000 orders can round to 0 clock ticks, its process cannot be missing).
    processes = results["ingest"]["processes"]
    assert command_line(processes["postgres"]).startswith("/usr/lib/postgresql/")
    assert "kafka.Kafka" in command_line(processes["kafka"])
    assert cpu["postgres_bench_db"] <= cpu["postgres"] + 0.1, "its backends are part of the cluster"
    assert cpu["total"] == pytest.approx(cpu["service"] + cpu["postgres"] + cpu["kafka"], abs=0.2)
    assert results["read"]["cached"]["errors"] == 0
    assert all(results["read"][case]["errors"] == 0
               for case in ("edge", "edge_cold", "edge_first_pass", "cached_auth", "edge_auth"))
    # The strict first pass through an empty edge cache asked for every id once.
    assert results["read"]["edge_first_pass"]["requests"] == results["read"]["edge_first_pass"]["ids"]
    assert len(results["commit"]) == 40 and results["date"]
    assert (tmp_path / "ingest.png").stat().st_size > 0 and (tmp_path / "latency.png").stat().st_size > 0
    assert "| measure | service |" in (tmp_path / "latest.md").read_text()


def test_the_scale_section_runs_end_to_end_and_reports_every_figure(tmp_path, kafka_bootstrap):
    (tmp_path / "latest.json").write_text(json.dumps({"kept": "an earlier run's figures"}))
    results = run_bench("bench.scale", tmp_path)
    assert results["kept"] == "an earlier run's figures", "the scale run replaces its own section only"
    scale = results["scale"]
    assert_positive_figures(scale, SCALE_REQUIRED)
    # The large database was grown to the size asked for, the empty one got exactly the new orders.
    assert scale["read"]["large"]["orders"] == scale["orders"] + 2 * scale["settings"]["new_orders"]
    assert scale["read"]["small"]["orders"] == scale["settings"]["new_orders"]
    assert [run["orders_before"] for run in scale["ingest"]["empty"]["runs"]] == [0, 0]
    assert scale["storage"]["orders"] == scale["orders"]
    every_read = [scale["read"][size][case] for size in ("small", "large")
                  for case in ("cold", "miss_ceiling", "edge_first_pass", "list_first_page", "list_deep_page",
                               "cached")]
    assert all(case["errors"] == 0 for case in every_read)
    first_pass = scale["read"]["large"]["edge_first_pass"]
    assert first_pass["requests"] == scale["read"]["large"]["ids"]
    small, large = scale["read"]["small"]["orders"], scale["read"]["large"]["orders"]
    assert f"| measure | {small:,} orders | {large:,} orders |" in (tmp_path / "latest.md").read_text()


def bench_databases() -> set[str]:
    return {name for (name,) in sql(Config.SQLALCHEMY_DATABASE_URI,
                                    "SELECT datname FROM pg_database WHERE datname LIKE 'orders_bench%%'")}


def test_a_benchmark_stopped_by_sigterm_stops_its_services_and_drops_its_databases(tmp_path, kafka_bootstrap):
    before = bench_databases()
    run = subprocess.Popen([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench = psutil.Process(run.pid)
        # Stopped while its gunicorn ingests: a master and its workers running, its databases made.
        gunicorn = wait_until(lambda: [child for child in bench.children(recursive=True)
                                       if "gunicorn" in " ".join(child.cmdline())], 120,
                              "the benchmark started gunicorn")
        made = bench_databases() - before
        assert made, "the benchmark made its databases before starting gunicorn"
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if run.poll() is None:
            run.kill()
    _, alive = psutil.wait_procs(gunicorn, timeout=10)
    assert not alive, [process.cmdline() for process in alive]
    assert not made & bench_databases()
