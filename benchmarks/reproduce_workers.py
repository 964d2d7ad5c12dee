"""Wall time of ``specot reproduce`` (quick mode) per experiment, serial vs a process pool.

Baseline: the same experiments with ``workers=1`` (in-process), measured in the same run.
Usage: ``python benchmarks/reproduce_workers.py [--only NAME ...] [--workers N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from specot.reproduce import Context, reproduce
from specot.reproduce.core import EXPERIMENTS


def timed(names: list[str], workers: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        runs = reproduce(names, Context(quick=True, workers=workers, progress=False), out)
        return time.perf_counter() - t0, {r.name: r.seconds for r in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(EXPERIMENTS))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base_total, base = timed(args.only, 1)
    par_total, par = timed(args.only, args.workers)
    print(f"{'experiment':<12}{'workers=1 (s)':>15}{f'workers={args.workers} (s)':>15}{'ratio':>8}")
    for name in base:
        print(f"{name:<12}{base[name]:>15.1f}{par[name]:>15.1f}{base[name] / par[name]:>8.2f}")
    print(f"{'total':<12}{base_total:>15.1f}{par_total:>15.1f}{base_total / par_total:>8.2f}")


if __name__ == "__main__":
    main()
