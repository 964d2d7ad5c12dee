"""Benchmark of the exact solvers (one run, ratios against baselines measured in the same run).

(a) our membership LP over draft sets vs the naive dense cvxpy model of the full ``V^k x V``
    transport LP with equality constraints on both marginals (given a time limit);
(b) HiGHS through highspy directly vs scipy's ``linprog(method="highs")`` on the same LP;
(c) the largest (V, k) whose exact plan is solved within 60 s (iid and without replacement);
(d) the closed forms at V = 131072, k = 8 (i.i.d. target: < 0.2 s; without replacement; greedy),
    and the closed form vs the LP on the same instance.

Usage: ``python benchmarks/bench_solvers.py [--quick] [--out benchmarks/results/solvers.md]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import time
from itertools import product
from pathlib import Path

import numpy as np

DATE = "2026-11-23"
MACHINE = "2-core CPU, shared with other jobs during measurement"


def instance(V: int, seed: int = 0, concentration: float = 0.5):
    rng = np.random.default_rng(seed + 1000 * V)
    return rng.dirichlet(np.full(V, concentration)), rng.dirichlet(np.full(V, concentration))


# ----------------------------------------------------------------------------- workers
def naive_dense_cvxpy(V: int, k: int) -> dict:
    """What a researcher would write: the full plan pi[x_1..x_k, y] with both marginals as equalities."""
    import cvxpy as cp

    p, q = instance(V)
    t0 = time.perf_counter()
    tuples = np.array(list(product(range(V), repeat=k)))
    probs = np.prod(q[tuples], axis=1)
    member = np.zeros((V**k, V))
    for j in range(k):
        member[np.arange(V**k), tuples[:, j]] = 1.0
    pi = cp.Variable((V**k, V), nonneg=True)
    problem = cp.Problem(cp.Maximize(cp.sum(cp.multiply(member, pi))),
                         [cp.sum(pi, axis=1) == probs, cp.sum(pi, axis=0) == p])
    problem.solve()
    return {"value": float(problem.value), "seconds": time.perf_counter() - t0, "variables": V ** (k + 1)}


def ours(V: int, k: int, drafts: str = "iid", highs_api: str = "auto") -> dict:
    from solvers.membership_lp import solve_membership_ot

    p, q = instance(V)
    t0 = time.perf_counter()
    res = solve_membership_ot(p, q, k, draft_law=drafts, highs_api=highs_api, max_sets=10**7)
    return {"value": res.value, "seconds": time.perf_counter() - t0, "solve_seconds": res.solve_seconds,
            "variables": res.n_variables, "sets": res.n_sets, "gap": res.tolerance}


def _child(fn, args, queue):
    try:
        queue.put(fn(*args))
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the table, the run goes on
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def with_limit(fn, args, limit: float) -> dict:
    """Run ``fn(*args)`` in a fresh process; ``{"timeout": limit}`` if it runs longer than ``limit`` s."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return {"timeout": limit}
    return queue.get() if not queue.empty() else {"error": f"exit code {proc.exitcode}"}


def _fmt(r: dict, key: str = "seconds") -> str:
    if "timeout" in r:
        return f"> {r['timeout']:.0f} (limit)"
    if "error" in r:
        return "error: " + r["error"][:60]
    return f"{r[key]:.3f}"


# ----------------------------------------------------------------------------- sections
def section_naive(quick: bool) -> list[str]:
    sizes = [(4, 2), (6, 2), (8, 2), (5, 3), (6, 3)] if quick else \
        [(4, 2), (8, 2), (16, 2), (32, 2), (8, 3), (12, 3), (16, 3), (20, 3), (8, 4), (12, 4), (16, 4)]
    limit = 20.0 if quick else 60.0
    note = (f"Naive: cvxpy (default solver) on pi[V^k, V] >= 0 with both marginals as equalities; "
            f"time limit {limit:.0f} s, build + canonicalisation + solve. Ours: `solve_membership_ot` "
            "(draft sets, membership edges only, HiGHS via linprog), build + solve + plan + certificate.")
    lines = ["## (a) Exact membership LP vs the naive dense cvxpy model", "", note, "",
             "| V | k | naive vars | naive s | our vars | our s | ratio naive/ours | abs value diff |",
             "|---|---|---|---|---|---|---|---|"]
    for V, k in sizes:
        mine = ours(V, k)
        naive = with_limit(naive_dense_cvxpy, (V, k), limit)
        if "seconds" in naive:
            ratio = f"{naive['seconds'] / mine['seconds']:.0f}x"
        else:
            ratio = f"> {naive['timeout'] / mine['seconds']:.0f}x" if "timeout" in naive else "-"
        diff = f"{abs(naive['value'] - mine['value']):.1e}" if "value" in naive else "-"
        lines.append(f"| {V} | {k} | {V ** (k + 1):,} | {_fmt(naive)} | {mine['variables']:,} | "
                     f"{mine['seconds']:.3f} | {ratio} | {diff} |")
        print(lines[-1], flush=True)
    return lines


def section_highs(quick: bool) -> list[str]:
    sizes = [(16, 2), (32, 3), (24, 4)]
    if not quick:
        sizes += [(32, 2), (48, 3), (64, 3), (32, 4)]
    lines = ["", "## (b) HiGHS: highspy 1.16 (IPM + crossover) vs scipy linprog (HiGHS 1.12)", "",
             "Solve time only (same CSC arrays, same tolerances 1e-10).", "",
             "| V | k | variables | linprog s | highspy s | ratio highspy/linprog |", "|---|---|---|---|---|---|"]
    for V, k in sizes:
        a = with_limit(ours, (V, k, "iid", "linprog"), 300)
        b = with_limit(ours, (V, k, "iid", "highspy"), 300)
        both = "solve_seconds" in a and "solve_seconds" in b
        ratio = f"{b['solve_seconds'] / a['solve_seconds']:.2f}" if both else "-"
        lines.append(f"| {V} | {k} | {a.get('variables', '-'):,} | {_fmt(a, 'solve_seconds')} | "
                     f"{_fmt(b, 'solve_seconds')} | {ratio} |")
        print(lines[-1], flush=True)
    return lines


def section_ladder(quick: bool) -> list[str]:
    ladder = [("iid", 64, 3)]
    if not quick:
        ladder += [("iid", 96, 3), ("iid", 128, 3), ("iid", 32, 4), ("iid", 48, 4), ("iid", 56, 4), ("iid", 64, 4),
                   ("without_replacement", 64, 3), ("without_replacement", 48, 4)]
    limit = 90.0
    lines = ["", "## (c) Largest exact plans (build + solve + plan + certificate)", "",
             f"Time limit {limit:.0f} s per instance; Dirichlet(0.5) pairs.", "",
             "| drafts | V | k | sets | variables | seconds | value - certificate |", "|---|---|---|---|---|---|---|"]
    for drafts, V, k in ladder:
        r = with_limit(ours, (V, k, drafts), limit)
        gap = f"{abs(r['gap']):.1e}" if "gap" in r else "-"
        row = f"| {drafts} | {V} | {k} | {r.get('sets', '-')} | {r.get('variables', '-')} | {_fmt(r)} | {gap} |"
        lines.append(row)
        print(lines[-1], flush=True)
    return lines


def section_closed_form(quick: bool) -> list[str]:
    from solvers.closed_form import optimal_cut

    V, k = 131072, 8
    p, q = instance(V)
    lines = ["", f"## (d) Closed forms at V = {V}, k = {k}", "",
             "| drafts | value | seconds | note |", "|---|---|---|---|"]
    for drafts, reps in [("iid", 7), ("greedy", 3), ("without_replacement", 1)]:
        if drafts == "without_replacement" and quick:
            V2 = 16384
            p2, q2 = instance(V2)
            t0 = time.perf_counter()
            res = optimal_cut(p2, q2, k, drafts)
            sec = time.perf_counter() - t0
            note = f"error estimate {res.error_estimate:.1e}"
            lines.append(f"| {drafts} (V={V2}) | {res.value:.10f} | {sec:.3f} | {note} |")
            print(lines[-1], flush=True)
            continue
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            res = optimal_cut(p, q, k, drafts)
            times.append(time.perf_counter() - t0)
        note = f"median of {reps}" + (f", error estimate {res.error_estimate:.1e}" if res.error_estimate else "")
        lines.append(f"| {drafts} | {res.value:.10f} | {np.median(times):.3f} | {note} |")
        print(lines[-1], flush=True)
    # closed form vs LP on one LP-sized instance
    V, k = 64, 3
    p, q = instance(V)
    t0 = time.perf_counter()
    for _ in range(20):
        cf = optimal_cut(p, q, k)
    t_cf = (time.perf_counter() - t0) / 20
    lp = ours(V, k)
    lines += ["", (f"Closed form vs LP at V={V}, k={k} (iid): closed form {t_cf * 1e3:.2f} ms, "
                   f"LP {lp['seconds']:.2f} s (ratio {lp['seconds'] / t_cf:.0f}x), "
                   f"|difference| {abs(cf.value - lp['value']):.1e}.")]
    print(lines[-1], flush=True)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (about a minute)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "solvers.md"))
    args = parser.parse_args(argv)
    import cvxpy
    import highspy
    import scipy

    mode = " --quick" if args.quick else ""
    about = (f"Date {DATE}; machine: {MACHINE}; Python {platform.python_version()}, numpy {np.__version__}, "
             f"scipy {scipy.__version__} (HiGHS 1.12 inside), highspy {highspy.Highs().version()}, "
             f"cvxpy {cvxpy.__version__}. Produced by `python benchmarks/bench_solvers.py{mode}`.")
    header = ["# Exact solvers: benchmark results", "", about, ""]
    lines = header + section_naive(args.quick) + section_highs(args.quick) + section_ladder(args.quick) \
        + section_closed_form(args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
