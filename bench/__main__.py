"""python -m bench [--smoke] [--orders N] [--duration S] [--out DIR]"""

import argparse
from pathlib import Path

from bench.report import results_dir, write_all
from bench.run import Settings, run
from harness.service import exit_through_finally_on_sigterm

# --smoke: a tiny run that exercises every step (tests/test_bench_smoke.py).
SMOKE = {"orders": 2000, "read_ids": 200, "duration_s": 1, "connections": 8, "store_batch": 100,
         "read_rounds": 1}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--read-ids", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per read case")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path,
                        help="where the results go (default bench/results, a new temporary directory for "
                             "--smoke); README's table is updated only from bench/results")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny run ({SMOKE['orders']:,} orders, {SMOKE['duration_s']} s of load per "
                             "case) that exercises every step")
    args = parser.parse_args()
    exit_through_finally_on_sigterm()
    out_dir = results_dir(args.out, args.smoke)
    settings = Settings(orders=args.orders, read_ids=args.read_ids, duration_s=args.duration,
                        connections=args.connections, out_dir=out_dir)
    if args.smoke:
        settings = Settings(**SMOKE, out_dir=out_dir, smoke=True)
    results = run(settings)
    for path in write_all(results, settings.out_dir, settings.smoke):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
