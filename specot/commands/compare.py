"""``specot compare``: every verification algorithm's exact acceptance against the optimum of its
draft law, for one (p, q) pair or over random pairs (CSV + figures)."""

from __future__ import annotations

import argparse
import math
import os

from specot.io import dump_json, ensure_out_dir, parse_int_list, parse_name_list, parse_vector

#: largest V * V (float64 entries) that gumbel's exact acceptance may build for k >= 2 (2 GiB)
MAX_GUMBEL_PAIRS = 2**28


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="exact acceptance of each verifier vs the optimum of its draft law",
        description="Per draft law (iid, without_replacement, hub, greedy), each algorithm's exact "
                    "acceptance P(Y in drafts), the exact optimum for that law and their ratio. "
                    "Either one pair (--p/--q) or --random N pairs (writes a CSV and two figures to --out).",
    )
    parser.add_argument("--p", help="target distribution (comma list, .npy or .json)")
    parser.add_argument("--q", help="draft distribution (comma list, .npy or .json)")
    parser.add_argument("-k", "--k", default="1,2,4,8", help="comma list of draft counts (default 1,2,4,8)")
    parser.add_argument("--laws", default=None,
                        help="comma list of draft laws (default: iid,without_replacement,hub,greedy)")
    parser.add_argument("--random", type=int, metavar="N", default=None, help="compare over N random pairs")
    parser.add_argument("--vocab", type=int, default=8, help="vocabulary size of random pairs (default 8)")
    parser.add_argument("--concentration", type=float, default=1.0, help="Dirichlet concentration (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="specot-compare", help="output folder for --random (default ./specot-compare)")
    parser.add_argument("--resume", action="store_true",
                        help="--random: reuse the finished pairs in OUT/compare.jsonl (written pair by pair; "
                             "same options, N may differ) and run the rest; without it the file is started "
                             "afresh")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    parser.set_defaults(run=run)
    return parser


def _strict(records: list[dict]) -> list[dict]:
    """NaN -> None so that ``--json`` output is strict JSON."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            for r in records]


def _fmt(x: float) -> str:
    return "     nan" if not math.isfinite(x) else f"{x:.6f}"


def _check_size(V: int, ks: list[int], laws: list[str] | None) -> None:
    """Refuse, before any work, a case whose exact acceptance cannot fit: gumbel's exact acceptance
    for k >= 2 builds a V x V table (O(V^2) memory)."""
    if (laws is None or "without_replacement" in laws) and max(ks) >= 2 and V * V > MAX_GUMBEL_PAIRS:
        gib = V * V * 8 / 2**30
        raise ValueError(f"V={V} is too large for gumbel's exact acceptance at k >= 2 (a V x V table, "
                         f"{gib:,.0f} GiB); use V <= {int(MAX_GUMBEL_PAIRS ** 0.5)}, -k 1, or --laws "
                         "without without_replacement (e.g. --laws iid,hub,greedy)")


def _load_saved(path: str, options: dict) -> dict[int, list[dict]]:
    """The finished pairs in ``path`` (``case -> records``) for ``--resume``: ``ValueError`` naming the
    options that differ when the file holds a run with other options; a line cut by an interruption
    is dropped (that pair is computed again)."""
    import json

    with open(path) as fh:
        lines = fh.read().splitlines()
    if not lines:
        return {}
    try:
        saved = json.loads(lines[0])["options"]
        if not isinstance(saved, dict):
            raise TypeError
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"--resume: {path} is not a compare.jsonl (no options line); "
                         "use another --out") from None
    saved = {k: v for k, v in saved.items() if k != "random"}  # more or fewer pairs: the same draws
    if saved != options:
        diff = ", ".join(f"{k} {saved.get(k)!r} -> {options.get(k)!r}"
                         for k in sorted(set(saved) | set(options)) if saved.get(k) != options.get(k))
        raise ValueError(f"--resume: {path} holds a run with other options ({diff}); "
                         "use the same options or another --out")
    done: dict[int, list[dict]] = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
            done[int(row["case"])] = row["records"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):  # cut by an interruption
            continue
    return done


def _random_resumable(args, ks: list[int], laws) -> list[dict]:
    """:func:`specot.compare.compare_random`, one pair at a time: each finished pair's records are
    appended to ``OUT/compare.jsonl`` as it completes (the options in its first line), and
    ``--resume`` skips the pairs already there. The pairs are the same Dirichlet draws from ``--seed``
    (the generator is advanced past skipped pairs), so a resumed run equals an uninterrupted one, and
    a resumed run may ask for more (or fewer) pairs than the first. Without ``--resume`` the file is
    started afresh. Progress: a tqdm bar on stderr."""
    import json
    import sys

    import numpy as np
    from tqdm import tqdm

    from specot.compare import compare_selectors
    from specot.io import atomic_write_text

    path = os.path.join(args.out, "compare.jsonl")
    options = json.loads(json.dumps({"vocab": args.vocab, "k": ks, "laws": laws,
                                     "concentration": args.concentration, "seed": args.seed}))
    header = json.dumps({"options": {"random": args.random, **options}}) + "\n"
    done: dict[int, list[dict]] = {}
    if args.resume and os.path.exists(path):
        done = _load_saved(path, options)
        reused = sum(case < args.random for case in done)
        print(f"--resume: {reused} of {args.random} pairs loaded from {path}", file=sys.stderr)
    elif os.path.exists(path) and os.path.getsize(path) > 0:
        print(f"{path}: starting afresh (--resume would reuse its finished pairs)", file=sys.stderr)
    # the header and the finished pairs, rewritten atomically: a line cut by an interruption is gone
    # before new lines are appended
    atomic_write_text(path, header + "".join(json.dumps({"case": case, "records": _strict(rows)}) + "\n"
                                             for case, rows in sorted(done.items())))
    rng = np.random.default_rng(args.seed)
    records = []
    for case in tqdm(range(args.random), desc="random pairs", disable=args.json, file=sys.stderr):
        p = rng.dirichlet(np.full(args.vocab, args.concentration))
        q = rng.dirichlet(np.full(args.vocab, args.concentration))
        if case not in done:
            rows = [{"case": case, **r} for r in compare_selectors(p, q, ks, laws)]
            with open(path, "a") as fh:
                fh.write(json.dumps({"case": case, "records": _strict(rows)}) + "\n")
            done[case] = rows
        records += [{k: (math.nan if v is None and k in ("acceptance", "optimum", "ratio") else v)
                     for k, v in r.items()} for r in done[case]]
    return records


def run(args) -> int:
    from specot.compare import ALGORITHMS, compare_selectors, plot_comparison, write_csv

    ks = parse_int_list(args.k, "k")
    laws = None if args.laws is None else parse_name_list(args.laws, "laws", ALGORITHMS, "draft law")
    if args.random is not None:
        if args.p is not None or args.q is not None:
            raise ValueError("--random cannot be combined with --p/--q")
        if args.random < 1:
            raise ValueError(f"--random: n must be >= 1, got {args.random}")
        if args.vocab < 2:
            raise ValueError(f"--vocab: vocab must be >= 2, got {args.vocab}")
        if not args.concentration > 0:
            raise ValueError(f"--concentration must be > 0, got {args.concentration}")
        _check_size(args.vocab, ks, laws)
        ensure_out_dir(args.out)  # before the work: never lose a long run to a bad --out
        records = _random_resumable(args, ks, laws)
        csv_path = os.path.join(args.out, "compare.csv")
        write_csv(records, csv_path)
        paths = [csv_path] + plot_comparison(records, os.path.join(args.out, "compare"))
        if args.json:
            print(dump_json({"records": _strict(records), "files": paths}))
        else:
            print(f"{len(records)} records over {args.random} random pairs (V={args.vocab})")
            for path in paths:
                print(f"wrote {path}")
        return 0
    if args.resume:
        raise ValueError("--resume applies to --random runs only")
    if args.p is None or args.q is None:
        raise ValueError("give --p and --q, or --random N")
    p, q = parse_vector(args.p, "p"), parse_vector(args.q, "q")
    _check_size(p.size, ks, laws)
    records = compare_selectors(p, q, ks, laws)
    if args.json:
        print(dump_json(_strict(records)))
        return 0
    print(f"{'law':<20} {'algorithm':<12} {'k':>3} {'acceptance':>10} {'optimum':>9} {'ratio':>8}  note")
    for r in records:
        print(f"{r['law']:<20} {r['algorithm']:<12} {r['k']:>3} {_fmt(r['acceptance']):>10} "
              f"{_fmt(r['optimum']):>9} {_fmt(r['ratio']):>8}  {r['note']}")
    return 0
