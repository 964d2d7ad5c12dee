"""Exact optimal k-draft plans: specot against the strongest peers, measured in one run.

Every method returns the optimal acceptance, a complete plan (a coupling of the draft tuple or
set with the target) AND a certificate (an upper bound on the acceptance: a cut or a dual
solution), on the same instance (p, q ~ Dirichlet(0.5), seeded as in bench_solvers.py):

* ``specot layout``: :func:`solvers.iid_plan.iid_layout_plan` (plan read off the min-score
  layout, no solver; certificate = the closed-form prefix cut);
* ``specot HiGHS``: :func:`solvers.membership_lp.solve_membership_ot` (LP over draft sets);
* ``POT emd``: ``ot.emd`` (network simplex) on the dense tuple x token transport problem with
  membership cost (the formulation a practitioner would write with POT); certificate: its dual
  potentials (``log=True``);
* ``OR-Tools max-flow``: ``SimpleMaxFlow`` over draft sets (source -> set -> member token ->
  sink) with capacities scaled to int64 (``2^40``), the flows read back and completed into the
  same :class:`solvers.membership_lp.MembershipPlan` as specot's (leftovers attached), whose
  acceptance is the value; certificate: the solver's source-side min cut, valued on the set law
  like specot's. Its time includes building the set law and the graph, solving, reading the
  flows and the cut and completing the plan; specot layout's time additionally includes
  validating ``p`` and ``q``.

The set law for OR-Tools comes from specot's ``draft_set_law`` and the tuple law for POT from a
dense product; their build time is included (each method starts from ``p``, ``q``, ``k``).
Times: min and median of ``--repeats`` interleaved repeats, wall clock and CPU time of the process
(``time.process_time``: all threads; robust on a shared machine), after one untimed
warm-up call per method (imports). ``specot layout, cold caches`` is the same call with its
shape-only caches emptied first (:func:`solvers.iid_plan.clear_caches`). Every value and
certificate is checked against the closed form ``optimal_acceptance`` (the largest deviation is
printed).

Usage: ``python benchmarks/bench_solver_peers.py [--repeats 15] [--out run.md]``; the output is one
dated run, pasted as a section of ``benchmarks/results/solver_peers.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

import numpy as np
from _shared import ortools_flows

SIZES = [(16, 3), (24, 3), (32, 2)]
LARGE = [(64, 4), (128, 3)]
SCALE = 2.0**40


def instance(V: int, seed: int = 0, concentration: float = 0.5):
    rng = np.random.default_rng(seed + 1000 * V)
    return rng.dirichlet(np.full(V, concentration)), rng.dirichlet(np.full(V, concentration))


def specot_layout(p, q, k):
    from solvers.iid_plan import iid_layout_plan

    res = iid_layout_plan(p, q, k)
    return res.value, res.certificate_value


def specot_highs(p, q, k):
    from solvers.membership_lp import solve_membership_ot

    res = solve_membership_ot(p, q, k, backend="highs")
    return res.value, res.certificate_value


def pot_emd(p, q, k):
    import ot

    V = p.size
    tuples = np.array(list(product(range(V), repeat=k)))
    a = np.prod(q[tuples], axis=1)
    member = np.zeros((V**k, V))
    for j in range(k):
        member[np.arange(V**k), tuples[:, j]] = 1.0
    plan, log = ot.emd(a, p, 1.0 - member, log=True)
    certificate = 1.0 - float(a @ log["u"] + p @ log["v"])       # dual bound on the acceptance
    return float((plan * member).sum()), certificate


def ortools_maxflow(p, q, k):
    from solvers.closed_form import cut_value
    from solvers.membership_lp import _PAD, _make_plan, draft_set_law

    sets, set_probs, _ = draft_set_law(p, q, k, "iid", 10**8)
    n, V = set_probs.size, p.size
    valid = sets != _PAD
    edge_set = np.repeat(np.arange(n), sets.shape[1])[valid.ravel()]
    edge_token = sets.ravel()[valid.ravel()]
    smf, flows = ortools_flows(p, set_probs, edge_set, edge_token, SCALE)   # the plan's membership flows
    # the same output as the other methods: the complete plan (flows + leftovers), its value
    plan = _make_plan(p, sets, set_probs, edge_set, edge_token, flows)
    side = np.asarray(smf.get_source_side_min_cut())            # certificate: the min cut
    cut = side[(side >= n) & (side < n + V)] - n
    return plan.acceptance(), cut_value(p, sets, set_probs, cut)


def specot_layout_cold(p, q, k):
    """``specot layout`` with its shape-only caches (subset patterns, composition tables) emptied first."""
    from solvers import iid_plan

    iid_plan.clear_caches()
    return specot_layout(p, q, k)


METHODS = {"specot layout": specot_layout, "specot layout, cold caches": specot_layout_cold,
           "specot HiGHS": specot_highs, "POT emd": pot_emd, "OR-Tools max-flow": ortools_maxflow}
SHORT = {"specot layout, cold caches": "layout cold", "specot HiGHS": "HiGHS", "POT emd": "POT",
         "OR-Tools max-flow": "OR-Tools"}


def _table(title: str, rows: list[str]) -> list[str]:
    return [f"**{title}**", "", "| (V, k) | " + " | ".join(f"{m} min / median" for m in METHODS)
            + " | time / specot layout time: median (min) | largest value or certificate error |",
            "|---|" + "---|" * (len(METHODS) + 2)] + rows + [""]


def _row(V: int, k: int, times: dict, err: float) -> str:
    med = {m: float(np.median(t)) for m, t in times.items()}
    best = {m: min(t) for m, t in times.items()}
    cells = [f"{1e3 * best[m]:.2f} / {1e3 * med[m]:.2f} ms" for m in times]
    ratios = ", ".join(f"{SHORT[m]} {med[m] / med['specot layout']:.1f}x "
                       f"({best[m] / best['specot layout']:.1f}x)" for m in METHODS if m != "specot layout")
    return f"| ({V}, {k}) | " + " | ".join(cells) + f" | {ratios} | {err:.1e} |"


def run(repeats: int) -> list[str]:
    from solvers.closed_form import optimal_acceptance

    wall_rows, cpu_rows = [], []
    for V, k in SIZES:
        p, q = instance(V)
        alpha = optimal_acceptance(p, q, k)
        wall = {m: [] for m in METHODS}
        cpu = {m: [] for m in METHODS}
        err = 0.0
        for fn in METHODS.values():                    # warm-up (imports), not timed
            fn(p, q, k)
        for _ in range(repeats):
            for name, fn in METHODS.items():           # interleaved: same load for every method
                t0, c0 = time.perf_counter(), time.process_time()
                value, certificate = fn(p, q, k)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                err = max(err, abs(value - alpha), abs(certificate - alpha))
        wall_rows.append(_row(V, k, wall, err))
        cpu_rows.append(_row(V, k, cpu, err))
        print(wall_rows[-1], "\n", cpu_rows[-1], flush=True)
    lines = _table("Wall clock", wall_rows) + _table("CPU time of this process (all threads)", cpu_rows)
    lines += ["| (V, k) | specot layout plan: wall (s) | CPU (s) | draft sets | value - closed form |",
              "|---|---|---|---|---|"]
    for V, k in LARGE:
        from solvers.iid_plan import iid_layout_plan

        p, q = instance(V)
        t0, c0 = time.perf_counter(), time.process_time()
        res = iid_layout_plan(p, q, k)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        lines.append(f"| ({V}, {k}) | {seconds:.2f} | {cpu:.2f} | {res.n_sets} | "
                     f"{res.value - optimal_acceptance(p, q, k):.1e} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = [f"# Exact optimal plans vs POT and OR-Tools ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"{args.repeats} interleaved repeats, load average {load:.1f} at start)", ""]
    lines = head + run(args.repeats)
    if hasattr(os, "getloadavg"):
        lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f}."]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
