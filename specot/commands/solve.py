"""``specot solve``: the optimal multi-draft acceptance of ``(p, q, k)``, its minimising set and the
exact LP on each backend (value, certificate, time)."""

from __future__ import annotations

import argparse
import time

from specot.io import dump_json, parse_vector

DRAFT_CHOICES = ("iid", "without_replacement", "greedy", "hub")
BACKEND_CHOICES = ("auto", "layout", "flow", "highs", "cvxpy", "maxflow", "all", "none")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "solve",
        help="optimal acceptance alpha* of k drafts (closed form + exact LP with certificate)",
        description="Compute alpha* = min_H p(H) + 1 - Q(all drafts in H) by the closed form (prefix scan "
                    "in ascending p/q), the minimising set H, and the exact membership-cost LP on the "
                    "chosen backends. p = target, q = draft; vectors as comma lists or .npy/.json files.",
    )
    parser.add_argument("--p", required=True, help="target distribution: 0.5,0.3,0.2 or a .npy/.json file")
    parser.add_argument("--q", required=True, help="draft distribution (same formats as --p)")
    parser.add_argument("-k", "--k", type=int, default=2, help="number of drafts (default 2)")
    parser.add_argument("--drafts", choices=DRAFT_CHOICES, default="iid", help="draft law (default iid)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="exact plan backend(s) besides the closed form (default auto: the layout plan "
                             "for iid drafts, the exact float max-flow otherwise; all: every backend; none: closed form only)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)
    return parser


def lp_work(q, k: int, drafts: str, limit: int) -> int:
    """Size estimate of building the exact LP, stopped as soon as it passes ``limit``: the number of
    draft sets plus, for i.i.d. drafts, the compositions of ``k`` that give each set's probability
    (``sum_m C(n, m) C(k-1, m-1)``, ``n`` = tokens with ``q > 0``), each costing ``O(k)`` big-integer
    work (weighted ``k / 8``)."""
    from math import comb

    from solvers.membership_lp import count_draft_sets

    if drafts != "iid":
        return count_draft_sets(q, k, drafts)
    n = int((q > 0).sum())
    work = 0
    for m in range(1, min(k, n) + 1):
        work += comb(n, m) * (1 + comb(k - 1, m - 1) * max(1, k // 8))
        if work > limit:
            break
    return work


def _solve_all(p, q, k: int, drafts: str, backend: str) -> dict:
    from ot_coupling.validation import tv_distance, validate_k, validate_pair
    from solvers.closed_form import optimal_cut
    from solvers.membership_lp import BACKENDS, MAX_SETS, solve_membership_ot

    p, q = validate_pair(p, q)
    k = validate_k(k)
    if backend == "layout" and drafts != "iid":
        raise ValueError(f"--backend layout needs --drafts iid, got {drafts}")
    every = tuple(b for b in BACKENDS if b != "auto" and (b != "layout" or drafts == "iid"))
    names = every if backend == "all" else () if backend == "none" else (backend,)
    if names and lp_work(q, k, drafts, MAX_SETS) > MAX_SETS:
        raise ValueError(f"the exact LP is too large for V={p.size}, k={k} (its draft sets and the "
                         f"compositions of k exceed {MAX_SETS:,}); --backend none gives the closed form")
    t0 = time.perf_counter()
    cut = optimal_cut(p, q, k, drafts)
    seconds = time.perf_counter() - t0
    out = {"V": p.size, "k": k, "drafts": drafts, "optimum": cut.value, "cut": cut.cut,
           "p_of_cut": cut.target_mass, "drafts_inside_cut": cut.inside_mass,
           "closed_form_seconds": seconds, "one_minus_tv": 1.0 - tv_distance(p, q), "backends": []}
    for name in names:
        res = solve_membership_ot(p, q, k, draft_law=drafts, backend=name)
        out["backends"].append({"backend": res.backend, "value": res.value,
                                "certificate_value": res.certificate_value, "cut": res.cut,
                                "success": res.success, "status": res.status,
                                "message": res.message, "n_sets": res.n_sets, "n_variables": res.n_variables,
                                "n_constraints": res.n_constraints, "solve_seconds": res.solve_seconds,
                                "build_seconds": res.build_seconds})
    return out


def _fmt_set(ids) -> str:
    ids = list(ids)
    shown = ", ".join(str(int(i)) for i in ids[:20])
    return "{" + shown + (f", ... ({len(ids)} tokens)" if len(ids) > 20 else "") + "}"


def run(args) -> int:
    p = parse_vector(args.p, "p")
    q = parse_vector(args.q, "q")
    out = _solve_all(p, q, args.k, args.drafts, args.backend)
    if args.json:
        print(dump_json(out))
        return 0
    print(f"V={out['V']}  k={out['k']}  drafts={out['drafts']}")
    seconds = out["closed_form_seconds"]
    print(f"optimal acceptance alpha* = {out['optimum']:.10f}   (closed form, {seconds:.2g} s)")
    print(f"minimising set H = {_fmt_set(out['cut'])}   p(H) = {out['p_of_cut']:.6f}, "
          f"P(all drafts in H) = {out['drafts_inside_cut']:.6f}")
    print(f"1 - TV(p, q)     = {out['one_minus_tv']:.10f}   (k = 1 reference)")
    if out["backends"]:
        print(f"{'backend':<22}{'value':>15}{'certificate':>15}{'sets':>9}{'variables':>11}{'seconds':>10}")
        for b in out["backends"]:
            print(f"{b['backend']:<22}{b['value']:>15.10f}{b['certificate_value']:>15.10f}"
                  f"{b['n_sets']:>9}{b['n_variables']:>11}{b['solve_seconds']:>10.3g}")
    return 0
