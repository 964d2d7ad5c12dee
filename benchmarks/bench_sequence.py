"""Benchmark: share of the achievable gain ``(E|Y| - 1) / (LP* - 1)`` of every sequence verifier.

Random model pairs over ``V`` tokens, grid ``(V, L, k)``; for every instance the exact ``E|Y|`` of
every registered numpy sequence verifier (coins and drafts integrated out by enumeration) and the
reference value ``LP*``: the exact sequence-level optimum from ``solvers.sequence_optimum`` when it
is importable, else the upper bound ``1 + sum_t alpha_t`` (then shares are lower bounds of the true
shares; the ranking between verifiers is unaffected since the denominator is common).

Pair families (``kind``):

* ``mix``   -- first-order Markov chains: target rows ``Dirichlet(1)``, draft rows
  ``0.5 Dirichlet(1) + 0.5 target`` (the setting of the issue);
* ``peaky`` -- the same with ``Dirichlet(0.3)`` rows;
* ``far``   -- draft rows ``0.2 target + 0.8 Dirichlet(1)``;
* ``tree``  -- no Markov structure: every prefix has its own independent rows (``mix`` rule).

Usage::

    python benchmarks/bench_sequence.py                 # report seeds 100-119, all kinds
    python benchmarks/bench_sequence.py --seeds 0-9     # the design seeds
    python benchmarks/bench_sequence.py --kinds mix --grid 3,2,2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ot_coupling.sequence import get_sequence_verifier

GRID = ((3, 2, 2), (3, 3, 2), (4, 2, 3), (4, 3, 2), (3, 2, 3))
KINDS = ("mix", "peaky", "far", "tree")
VERIFIERS = ("bv", "spectr", "traversal", "gbv", "blend")


def random_pair(V: int, seed: int, kind: str = "mix"):
    """``(target, draft)`` conditional models ``prefix tuple -> length-V vector`` (see module doc)."""
    rng = np.random.default_rng([seed, V, KINDS.index(kind)])
    conc, lam = {"mix": (1.0, 0.5), "peaky": (0.3, 0.5), "far": (1.0, 0.8), "tree": (1.0, 0.5)}[kind]

    def rows(n):
        P = rng.dirichlet(np.full(V, conc), size=n)
        Q = (1 - lam) * P + lam * rng.dirichlet(np.full(V, conc), size=n)
        return P, Q / Q.sum(axis=1, keepdims=True)

    if kind != "tree":
        P, Q = rows(V + 1)  # row V: the first token (fixed context)
        return (lambda u: P[u[-1] if u else V]), (lambda u: Q[u[-1] if u else V])
    table: dict[tuple, tuple] = {}

    def pair(u):
        if u not in table:
            P, Q = rows(1)
            table[u] = (P[0], Q[0])
        return table[u]

    return (lambda u: pair(tuple(u))[0]), (lambda u: pair(tuple(u))[1])


def _level_law(model, t: int, V: int) -> np.ndarray:
    from itertools import product
    out = np.empty(V ** t)
    for i, s in enumerate(product(range(V), repeat=t)):
        out[i] = np.prod([model(s[:j])[s[j]] for j in range(t)])
    return out


def upper_bound(target, draft, k: int, L: int, V: int) -> float:
    """``1 + sum_t alpha_t``: ``alpha_t`` is the optimal acceptance of the depth-``t`` prefix law
    of the target against ``k`` i.i.d. depth-``t`` draft prefixes (prefix-cut closed form)."""
    from solvers.closed_form import optimal_cut
    return 1.0 + sum(optimal_cut(_level_law(target, t, V), _level_law(draft, t, V), k).value
                     for t in range(1, L + 1))


def reference(target, draft, k: int, L: int, V: int, ref: str = "lp") -> tuple[float, str]:
    """``(LP*, "lp")`` from :func:`solvers.sequence_optimum` if importable (and ``ref == "lp"``),
    else ``(UB, "ub")``."""
    if ref == "ub":
        return upper_bound(target, draft, k, L, V), "ub"
    try:
        from solvers import sequence_optimum
    except ImportError:
        return upper_bound(target, draft, k, L, V), "ub"
    res = sequence_optimum(target, draft, k=k, L=L)
    return (float(res.value), "lp") if res.success else (upper_bound(target, draft, k, L, V), "ub")


def run(seeds, kinds=KINDS, grid=GRID, verifiers=VERIFIERS, quiet=False, ref="lp"):
    """Rows ``{V, L, k, kind, seed, ref, ref_kind, <verifier>: E|Y|}``."""
    vs = {n: get_sequence_verifier(n) for n in verifiers}
    rows = []
    for kind in kinds:
        for V, L, k in grid:
            for seed in seeds:
                target, draft = random_pair(V, seed, kind)
                ref_value, ref_kind = reference(target, draft, k, L, V, ref)
                row = {"V": V, "L": L, "k": k, "kind": kind, "seed": seed, "ref": ref_value, "ref_kind": ref_kind}
                for n, v in vs.items():
                    row[n] = v.expected_length(target, draft, k, L)
                rows.append(row)
                if not quiet:
                    print(" ", kind, V, L, k, seed, " ".join(f"{n}={row[n]:.4f}" for n in vs),
                          f"{ref_kind}={ref_value:.4f}", flush=True)
    return rows


def table(rows, verifiers=VERIFIERS) -> str:
    """Mean share of the gain per (kind, V, L, k) and overall, plus wins of the last verifier."""
    def share(r, n):
        return (r[n] - 1.0) / (r["ref"] - 1.0) if r["ref"] > 1.0 + 1e-12 else 1.0

    head = "| kind | V L k | n | ref | " + " | ".join(verifiers) + " | new > best other |"
    lines = [head, "|" + "---|" * (len(verifiers) + 5)]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["V"], r["L"], r["k"]), []).append(r)
    groups[("all", "", "", "")] = rows
    new, others = verifiers[-1], [v for v in verifiers if v in ("gbv", "traversal", "spectr")]
    for (kind, V, L, k), rs in groups.items():
        means = [np.mean([share(r, n) for r in rs]) for n in verifiers]
        wins = sum(r[new] > max(r[o] for o in others) + 1e-12 for r in rs)
        refk = "/".join(sorted({r["ref_kind"] for r in rs}))
        lines.append(f"| {kind} | {V} {L} {k} | {len(rs)} | {refk} | " + " | ".join(f"{m:.4f}" for m in means)
                     + f" | {wins}/{len(rs)} |")
    return "\n".join(lines)


def _seeds(text: str):
    a, _, b = text.partition("-")
    return range(int(a), int(b or a) + 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="100-119", help="seed range, e.g. 100-119 (report) or 0-9 (design)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--grid", default=None, help="V,L,k[;V,L,k...]")
    ap.add_argument("--ref", choices=["lp", "ub"], default="lp",
                    help="reference: the exact LP optimum (default) or the upper bound (fast)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--save", help="write the rows as JSON to this file")
    ap.add_argument("--load", nargs="+", help="print the table of saved JSON rows and exit")
    args = ap.parse_args(argv)
    if args.load:
        import json
        rows = [r for f in args.load for r in json.load(open(f))]
        print(table(rows))
        return
    grid = GRID if args.grid is None else tuple(tuple(int(x) for x in g.split(",")) for g in args.grid.split(";"))
    t0 = time.perf_counter()
    rows = run(_seeds(args.seeds), args.kinds.split(","), grid, quiet=args.quiet, ref=args.ref)
    if args.save:
        import json
        with open(args.save, "w") as fh:
            json.dump(rows, fh)
    print(table(rows))
    print(f"({len(rows)} instances, {time.perf_counter() - t0:.0f} s on a shared 2-core machine; "
          "share = (E|Y| - 1) / (ref - 1), ref = LP* (lp) or the upper bound 1 + sum_t alpha_t (ub))")


if __name__ == "__main__":
    main()
