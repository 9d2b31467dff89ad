"""Writing a run's results: latest.json, a Markdown table (also put into README when written to
bench/results), and plots."""

import json
import tempfile
from pathlib import Path

from harness import ROOT

README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
# Where `make bench` and `make bench-scale` write; README shows this directory's latest.md.
RESULTS_DIR = ROOT / "bench" / "results"
README = ROOT / "README.md"


def results_dir(requested: Path | None, smoke: bool) -> Path:
    """Where a run writes: `--out` if given; else bench/results, or for a smoke run a new temporary
    directory, so that its tiny figures never replace the real ones in bench/results/latest.*."""
    if requested is not None:
        return requested
    return Path(tempfile.mkdtemp(prefix="order-service-bench-smoke-")) if smoke else RESULTS_DIR


def readme_to_update(out_dir: Path, smoke: bool) -> Path | None:
    """README, when this run's results are the ones it shows (bench/results/latest.md). A smoke run
    leaves it alone, and so does a run written elsewhere (--out, such as a one-off run at 10,000,000
    orders): README would show that run's table alone, without the rest of the latest results."""
    if smoke or out_dir.resolve() != RESULTS_DIR.resolve():
        return None
    return README


def write_all(results: dict, out_dir: Path, smoke: bool) -> list[Path]:
    """A `make bench` run's results; the scale section of an earlier run (bench/scale.py, a run of
    its own) is kept. README's table follows, unless readme_to_update says no."""
    earlier = _load(out_dir)
    if "scale" in earlier and "scale" not in results:
        results = {**results, "scale": earlier["scale"]}
    return _write(results, out_dir, smoke) + plot(results, out_dir)


def merge_scale(scale: dict, out_dir: Path, smoke: bool) -> list[Path]:
    """A scale run's results, in place of the scale section of latest.json (the rest is kept); README's
    table as in write_all."""
    return _write({**_load(out_dir), "scale": scale}, out_dir, smoke)


def _load(out_dir: Path) -> dict:
    path = out_dir / "latest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write(results: dict, out_dir: Path, smoke: bool) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "latest.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    sections = []
    if "ingest" in results:
        sections.append(markdown_table(results))
    if "scale" in results:
        sections.append(scale_table(results["scale"]))
    table = "\n".join(sections)
    md_path = out_dir / "latest.md"
    md_path.write_text(table)
    if (readme := readme_to_update(out_dir, smoke)) is not None:
        update_readme(readme, table)
    return [json_path, md_path]


def markdown_table(results: dict) -> str:
    ingest, read, ratios, machine = results["ingest"], results["read"], results["ratios"], results["machine"]
    rows = [
        ("ingest, gunicorn 2 workers (orders/s)", f"{ingest['orders_per_s']:,.0f}",
         f"decode + validate, 2 processes: {ingest['ceiling_validate_per_s']:,.0f}",
         f"{ratios['ingest_vs_validate_ceiling']:.2f} (goal ≥ 0.6)"),
        ("", "", f"save_orders alone: {ingest['ceiling_store_per_s']:,.0f}",
         f"{ratios['ingest_vs_store_ceiling']:.2f}"),
        ("cached `GET /order/<id>` (req/s)", f"{read['cached']['rps']:,.0f}",
         f"bare WSGI app, same bytes: {read['ceiling']['rps']:,.0f}",
         f"{ratios['cached_vs_ceiling']:.2f} (goal ≥ 0.7)"),
        ("cached p50 / p99 (ms)", f"{read['cached']['p50_ms']:.2f} / {read['cached']['p99_ms']:.2f}",
         f"{read['ceiling']['p50_ms']:.2f} / {read['ceiling']['p99_ms']:.2f}", "p99 goal ≤ 20 ms"),
        ("edge: cached reads through nginx (req/s; p50 / p99 ms)", _rate(read["edge"]),
         f"gunicorn directly (cached, above): {read['cached']['rps']:,.0f}",
         f"{ratios['edge_vs_cached']:.2f}× (goal ≥ 3×, p99 ≤ 10 ms)"),
        ("edge from an empty cache, same load (req/s; p50 / p99 ms)", _rate(read["edge_cold"]),
         f"gunicorn directly (cached, above): {read['cached']['rps']:,.0f}",
         f"{ratios['edge_cold_vs_cached']:.2f}× (goal ≥ 1×, p99 ≤ 50 ms)"),
        ("edge with a token: cached reads through nginx, auth on (req/s; p50 / p99 ms)",
         _rate(read["edge_auth"]),
         f"gunicorn directly, same token: {read['cached_auth']['rps']:,.0f} "
         f"(p99 {read['cached_auth']['p99_ms']:.2f} ms)",
         f"{ratios['edge_auth_vs_cached_auth']:.2f}× (goal ≥ 3×, p99 ≤ 10 ms); "
         f"{ratios['edge_auth_vs_edge']:.2f} of the edge without auth"),
        (f"edge, one pass over {read['edge_first_pass']['ids']:,} ids, every request a miss "
         "(req/s; p50 / p99 ms)", _rate(read["edge_first_pass"]), "",
         f"{ratios['edge_first_pass_vs_cached']:.2f}×"),
        ("cold, cache off (req/s; p50 / p99 ms)",
         f"{read['cold']['rps']:,.0f}; {read['cold']['p50_ms']:.2f} / {read['cold']['p99_ms']:.2f}", "",
         f"{ratios['cold_vs_ceiling']:.2f}"),
        ("unknown ids, remembered misses (req/s)", f"{read['missing']['rps']:,.0f}", "", ""),
        *_cpu_rows(ingest),
        ("peak RSS of the service during ingest (MiB)", f"{ingest['peak_rss_mb']:.0f}", "", ""),
        (f"cache warm-up, {read['warmup_orders']:,} orders (s)", f"{read['warmup_s']:.2f}", "", ""),
        ("Cerberus validation, 1 / 20 items (µs per order)",
         f"{results['validation']['us_per_order_1_items']:.0f} / "
         f"{results['validation']['us_per_order_20_items']:.0f}", "", ""),
    ]
    lines = [
        f"Run of {results['date']} at commit `{results['commit'][:10]}` on {machine['cores']} cores, "
        f"{machine['memory_gb']} GiB; {ingest['orders']:,} orders; wrk {results['settings']['connections']} "
        f"connections × {results['settings']['duration_s']} s per read case.",
        "",
        "| measure | service | ceiling in the same run | ratio |",
        "| --- | ---: | --- | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        "![ingest rate](bench/results/ingest.png) ![read latency](bench/results/latency.png)",
        "",
    ]
    return "\n".join(lines)


def _ingest_ratio_cell(ratios: dict) -> str:
    cell = f"{ratios['ingest_large_vs_empty']:.2f}× best ÷ best"
    if "ingest_large_vs_empty_round_median" in ratios:  # since 2026-12-04
        cell += f"; {ratios['ingest_large_vs_empty_round_median']:.2f}× the median of each round's ratio"
    return cell + " (goal ≥ 0.9×)"


def scale_table(scale: dict) -> str:
    """The scale run: each measure on the small database (the empty one after its ingest) and on
    the large one, and the goals."""
    ingest, small, large = scale["ingest"], scale["read"]["small"], scale["read"]["large"]
    new_orders = scale["settings"]["new_orders"]

    def ingest_cell(run: dict) -> str:
        rounds = ", ".join(f"{each['orders_per_s']:,.0f}" for each in run["runs"])
        cell = f"{run['orders_per_s']:,.0f} ({run['cpu_us_per_order']['total']:.0f} µs CPU per order, all; " \
               f"rounds {rounds}"
        if "orders_per_s_whole_run" not in run:  # runs before 2026-12-05 counted the group's start-up
            return cell + ")"
        whole = ", ".join(f"{each['orders_per_s_whole_run']:,.0f}" for each in run["runs"])
        return f"{cell}; whole rounds, the group's start-up included: {whole})"

    disks_measured = "iowait_share" in ingest["large"]["machine"]  # not in runs before 2026-12-04

    def machine_cell(run: dict) -> str:
        machine = run["machine"]
        cell = f"{machine['busy_share']:.0%}; {machine['others_us_per_order']:,.0f}"
        if not disks_measured:
            return cell
        return f"{cell}; {machine['iowait_share']:.0%}; {machine['disk_read_bytes_per_order']:,}"

    def wal_cell(run: dict) -> str:
        return f"{run['wal_per_order']['bytes']:,.0f}; {run['wal_per_order']['full_page_images']:.2f}"

    def cold_cpu(case: dict) -> str:
        cpu = case["cpu_us_per_request"]
        return f"{cpu['service']:.0f} / {cpu['postgres_bench_db']:.0f}"

    def ceiling_cell(side: dict) -> str:
        return f"{_rate(side['miss_ceiling'])}; {cold_cpu(side['miss_ceiling'])}"

    rows = [
        (f"ingest of {new_orders:,} new orders, gunicorn 2 workers, once both consume (orders/s)",
         ingest_cell(ingest["empty"]), ingest_cell(ingest["large"]), _ingest_ratio_cell(scale["ratios"])),
        ("its WAL per new order (bytes; full-page images)", wal_cell(ingest["empty"]),
         wal_cell(ingest["large"]), "each round right after a CHECKPOINT"),
        ("the machine in the best round: both cores busy; µs an order of other people's work"
         + ("; cores waiting for the disks; bytes read from the disks an order"
            if disks_measured else ""),
         machine_cell(ingest["empty"]), machine_cell(ingest["large"]), "a shared machine"),
        ("cold `GET /order/<id>`, cache off, gunicorn directly (req/s; p50 / p99 ms)", _rate(small["cold"]),
         _rate(large["cold"]), "goal ≥ 4,500 req/s, p99 ≤ 30 ms"),
        ("its CPU per request: workers / PostgreSQL (µs)", cold_cpu(small["cold"]), cold_cpu(large["cold"]),
         ""),
        *([("ceiling, same load: a bare WSGI app doing only the miss's one read, same gunicorn settings "
            "(req/s; p50 / p99 ms; CPU µs: workers / PostgreSQL)", ceiling_cell(small), ceiling_cell(large),
            f"cold / ceiling: {scale['ratios']['cold_vs_miss_ceiling_large']:.2f}")]
          if "miss_ceiling" in large else []),
        ("reads from the workers' caches, same run (req/s; p50 / p99 ms)", _rate(small["cached"]),
         _rate(large["cached"]), f"cold / cached: {scale['ratios']['cold_vs_cached_large']:.2f}"),
        (f"edge, one pass over {large['edge_first_pass']['requests']:,} random stored ids, every request "
         "a miss (req/s; p50 / p99 ms)", _rate(small["edge_first_pass"]), _rate(large["edge_first_pass"]),
         ""),
        ("`GET /orders?limit=20`, first page (req/s; p50 / p99 ms)", _rate(small["list_first_page"]),
         _rate(large["list_first_page"]), ""),
        (f"the page {small['deep_rows']:,} / {large['deep_rows']:,} rows deep (req/s; p50 / p99 ms)",
         _rate(small["list_deep_page"]), _rate(large["list_deep_page"]), ""),
        ("bytes stored per order, tables and indexes", "",
         f"{scale['storage']['bytes_per_order']:,.0f}", ""),
    ]
    server = scale["server"]
    lines = [
        f"Scale run of {scale['date']} at commit `{scale['commit'][:10]}`: {small['orders']:,} against "
        f"{large['orders']:,} orders (grown by bulk load in {scale['load']['seconds']:.0f} s), "
        f"PostgreSQL {'of the bench' + chr(39) + 's own' if scale['own_cluster'] else 'of DATABASE_URL'} "
        f"(shared_buffers {server['shared_buffers']}, max_wal_size {server['max_wal_size']}, "
        f"wal_compression {server['wal_compression']}).",
        "",
        f"| measure | {small['orders']:,} orders | {large['orders']:,} orders | ratio / goal |",
        "| --- | ---: | ---: | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
    ]
    return "\n".join(lines)


def _cpu_rows(ingest: dict) -> list[tuple[str, str, str, str]]:
    """CPU per stored order during the ingest run, by process group, and the machine's busy CPU over
    the same window: what it has beyond the three groups is other people's work on a shared machine."""
    per_order, machine = ingest["cpu_us_per_order"], ingest["machine"]
    goals = {"service": "goal ≤ 250", "total": "goal ≤ 330"}
    names = {"service": "the service's workers", "postgres": "PostgreSQL", "kafka": "Kafka broker",
             "total": "the three together"}
    rows = [(f"ingest CPU per stored order, {names[group]} (µs)", f"{per_order[group]:.0f}", "",
             goals.get(group, "")) for group in names]
    rows.insert(2, ("", f"of which the bench database's backends: {per_order['postgres_bench_db']:.0f}",
                    "(the rest: the cluster's own processes and other people's sessions)", ""))
    rows.append(("ingest: the machine's busy CPU per stored order (µs; share of both cores busy)",
                 f"{machine['busy_us_per_order']:.0f}; {machine['busy_share']:.0%}",
                 f"outside the three: {machine['others_us_per_order']:.0f}", ""))
    return rows


def _rate(case: dict) -> str:
    return f"{case['rps']:,.0f}; {case['p50_ms']:.2f} / {case['p99_ms']:.2f}"


def plot(results: dict, out_dir: Path) -> list[Path]:
    """The ingest rate over time and the read latencies of a `make bench` run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = results["ingest"]["timeline"]
    # Offsets are committed a batch (hundreds of orders) at a time: a 2-second window smooths the steps.
    times, rates = [], []
    for t1, c1 in timeline:
        earlier = [(t0, c0) for t0, c0 in timeline if t1 - t0 >= 2.0]
        if earlier:
            t0, c0 = earlier[-1]
            times.append(t1)
            rates.append((c1 - c0) / (t1 - t0))
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(times, rates, color="#2563eb")
    axis.set(title="Ingest rate (committed orders per second)", xlabel="seconds since start",
             ylabel="orders/s")
    axis.grid(alpha=0.3)
    ingest_png = out_dir / "ingest.png"
    figure.tight_layout()
    figure.savefig(ingest_png, dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 4))
    for name, color in (("edge", "#7c3aed"), ("edge_cold", "#d97706"), ("cached", "#16a34a"),
                        ("cold", "#dc2626"), ("ceiling", "#6b7280")):
        latency = results["read"][name]["latency_ms"]
        axis.plot([float(p) for p in latency], list(latency.values()), marker="o", label=name, color=color)
    axis.set(title="GET /order/<id> latency by percentile", xlabel="percentile", ylabel="ms", yscale="log")
    axis.legend()
    axis.grid(alpha=0.3)
    latency_png = out_dir / "latency.png"
    figure.tight_layout()
    figure.savefig(latency_png, dpi=110)
    plt.close(figure)
    return [ingest_png, latency_png]


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    if README_START not in text:
        return
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    readme.write_text(f"{before}{README_START}\n{table}{README_END}{after}")
