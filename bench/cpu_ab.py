"""Ingest CPU per order, A against B, alternating; or one ingest run under py-spy.

    python -m bench.cpu_ab --base <git rev> [--orders 20000] [--rounds 2]
    python -m bench.cpu_ab --profile [--orders 50000]

The topic is seeded once; each run consumes all of it with a new consumer group into a new database,
with bench.run's measure_ingest (the same gunicorn, the same CPU figures as `make bench`). A is the
tree at `--base` (git archive into a temporary directory, same virtualenv), B the working tree.
`--profile` samples both workers with py-spy (a flame graph SVG and a table of the functions that
take the most samples, in bench/results/) - its own CPU and pauses make that run's figures
worthless, so it is never one of the measured runs.
"""

import argparse
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.report import RESULTS_DIR
from bench.run import Progress, Settings, measure_ingest, migrate, seed_topic
from config import Config
from harness import ROOT
from harness.kafka import create_topics, delete_topics
from harness.postgres import create_database, drop_database
from harness.service import Service, exit_through_finally_on_sigterm

PY_SPY = Path(sys.executable).with_name("py-spy")


def export(rev: str, into: Path) -> Path:
    """The tree at `rev`, as files (no checkout of this worktree is touched)."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def one_run(root: Path, topics, settings: Settings, work: Path, say: Progress,
            attach: Callable[[Service], Callable[[], None]] | None = None) -> dict:
    database = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_cpu_ab")
    try:
        migrate(database)
        group = dataclasses.replace(topics, group=f"cpu-ab-{uuid.uuid4().hex[:10]}")
        result = measure_ingest(database, group, settings, work, say, root=root, attach=attach)
    finally:
        drop_database(database)
    result.pop("timeline")
    return result


def py_spy(out_dir: Path) -> Callable[[Service], Callable[[], None]]:
    """Two recorders on the gunicorn master and its workers: a flame graph and raw stacks."""

    def attach(service: Service) -> Callable[[], None]:
        common = ["record", "--pid", str(service.process.pid), "--subprocesses", "--nonblocking",
                  "--rate", "100"]
        recorders = [
            subprocess.Popen([str(PY_SPY), *common, "-o", str(out_dir / "ingest_flame.svg")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([str(PY_SPY), *common, "--format", "raw", "-o",
                              str(out_dir / "ingest_flame.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]

        def detach() -> None:
            for recorder in recorders:
                recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for recorder in recorders:
                recorder.wait(timeout=60)

        return detach

    return attach


def top_table(raw: Path, limit: int = 25) -> str:
    """From py-spy's raw stacks: the functions with the most samples on the stack (total) and at
    its top (self), as a Markdown table. Idle threads are not sampled (no --idle)."""
    total, own = Counter(), Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.rsplit(":", 1)[0] for frame in stack.split(";")[1:]]  # first: the process
        if not frames:
            continue
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    rows = [f"| {frame} | {100 * total[frame] / samples:.1f}% | {100 * own[frame] / samples:.1f}% |"
            for frame, _ in own.most_common(limit)]
    return "\n".join([f"{samples:,} samples of the workers' busy threads; by self time.", "",
                      "| function (file) | total | self |", "| --- | ---: | ---: |", *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="git revision of A")
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    exit_through_finally_on_sigterm()
    if not args.profile and not args.base:
        parser.error("--base or --profile")
    say = Progress()
    settings = Settings(orders=args.orders)
    work = Path(tempfile.mkdtemp(prefix="order-cpu-ab-"))
    topics = create_topics(Config.KAFKA_BOOTSTRAP_SERVERS)
    try:
        seed_topic(settings, topics, work, say)
        if args.profile:
            one_run(ROOT, topics, settings, work, say, attach=py_spy(args.out))
            table = top_table(args.out / "ingest_flame.txt")
            (args.out / "ingest_profile.md").write_text(table)
            (args.out / "ingest_flame.txt").unlink()
            print(table)
            return
        trees = {"A": export(args.base, Path(tempfile.mkdtemp(prefix="order-cpu-a-", dir=work))), "B": ROOT}
        runs: dict[str, list[dict]] = {"A": [], "B": []}
        for _ in range(args.rounds):
            for name, root in trees.items():
                say(f"{name} ({args.base if name == 'A' else 'working tree'})")
                runs[name].append(one_run(root, topics, settings, work, say))
        print(json.dumps(runs, indent=1))
    finally:
        delete_topics(topics)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
