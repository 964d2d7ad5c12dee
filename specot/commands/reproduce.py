"""``specot reproduce``: regenerate the papers' figures and check their claims (quick by default)."""

from __future__ import annotations

import argparse
import os
import sys

from specot.io import dump_json, ensure_out_dir


def add_parser(subparsers) -> argparse.ArgumentParser:
    from specot.reproduce.core import EXPERIMENTS, TITLES

    parser = subparsers.add_parser(
        "reproduce",
        help="regenerate the papers' figures and check their claims (writes PNG/SVG + report.md)",
        description="Run the reproduction experiments (quick by default; --full for paper scale) and write "
                    "one PNG + SVG per figure and report.md (paper's number vs ours for every claim). "
                    "Experiments: " + "; ".join(f"{n}: {t}" for n, t in TITLES.items()),
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=None,
                        help=f"run only these experiments ({', '.join(EXPERIMENTS)})")
    parser.add_argument("--full", action="store_true", help="paper-scale sweeps (slow) instead of quick mode")
    parser.add_argument("--out", default="specot-out", help="output folder (default ./specot-out)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="parallel worker processes for sweeps (default min(4, CPUs))")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run sweeps on an existing dask.distributed cluster at ADDRESS")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the results saved in OUT/experiments/<name>.json by an earlier "
                             "(possibly interrupted) run with the same mode, seed and code; run only the "
                             "others. Without it every named experiment runs and its saved result is "
                             "overwritten")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--check", nargs="?", const="benchmarks/results/reproduce/report.json", metavar="REPORT",
                        help="compare this run with a committed report.json (default "
                             "benchmarks/results/reproduce/report.json) and print the claims that moved; "
                             "exit 1 if any did")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from specot.reproduce import Context, reproduce
    from specot.reproduce.core import validate_names
    from specot.reproduce.report import summary

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    names = validate_names(args.only)
    ensure_out_dir(args.out)  # before any experiment: a bad --out must not cost a finished run
    committed = None
    if args.check:
        from specot.reproduce.check import load_report

        if os.path.realpath(args.check) == os.path.realpath(os.path.join(args.out, "report.json")):
            raise ValueError(f"--check {args.check} is the report this run rewrites (--out {args.out}); "
                             "copy it elsewhere or use another --out")
        committed = load_report(args.check)  # before any experiment: a missing report must not cost a run
    if args.scheduler:
        from specot.reproduce.parallel import connect

        connect(args.scheduler, timeout=3.0).close()  # fail fast, before any experiment runs
    ctx = Context(quick=not args.full, seed=args.seed, workers=args.workers, scheduler=args.scheduler,
                  progress=sys.stderr.isatty())
    runs = reproduce(names, ctx, args.out, resume=args.resume,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    total = sum(r.seconds for r in runs)
    if args.json:
        print(dump_json(summary(runs, ctx, total)))
    else:
        from specot.reproduce.report import headline

        for r in runs:
            print(f"{r.summary_line()}  [{r.seconds:.1f} s{', resumed' if r.resumed else ''}]")
        print(headline(runs))
        print(f"report: {os.path.join(args.out, 'report.md')}")
    moved = False
    if args.check:
        from specot.reproduce.check import compare_reports

        lines = compare_reports(committed, summary(runs, ctx, total))
        moved = bool(lines)
        print(f"--check against {args.check}: " + (f"{len(lines)} change(s)" if lines else "nothing moved"),
              file=sys.stderr if args.json else sys.stdout)
        for line in lines:
            print("  " + line, file=sys.stderr if args.json else sys.stdout)
    return 1 if moved or any(r.status == "error" for r in runs) else 0
