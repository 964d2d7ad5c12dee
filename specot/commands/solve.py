"""``specot solve``: the optimal multi-draft acceptance of ``(p, q, k)``, its minimising set and the
exact LP on each backend (value, certificate, time)."""

from __future__ import annotations

import argparse
import time

from specot.io import dump_json, parse_vector

DRAFT_CHOICES = ("iid", "without_replacement", "greedy", "hub")
BACKEND_CHOICES = ("highs", "cvxpy", "maxflow", "all", "none")


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
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="highs",
                        help="LP backend(s) besides the closed form (default highs; none: closed form only)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)
    return parser


def _solve_all(p, q, k: int, drafts: str, backend: str) -> dict:
    from ot_coupling.validation import tv_distance, validate_k, validate_pair
    from solvers.closed_form import optimal_cut
    from solvers.membership_lp import BACKENDS, MAX_SETS, count_draft_sets, solve_membership_ot

    p, q = validate_pair(p, q)
    k = validate_k(k)
    t0 = time.perf_counter()
    cut = optimal_cut(p, q, k, drafts)
    seconds = time.perf_counter() - t0
    out = {"V": p.size, "k": k, "drafts": drafts, "optimum": cut.value, "cut": cut.cut,
           "p_of_cut": cut.target_mass, "drafts_inside_cut": cut.inside_mass,
           "closed_form_seconds": seconds, "one_minus_tv": 1.0 - tv_distance(p, q), "backends": []}
    names = BACKENDS if backend == "all" else () if backend == "none" else (backend,)
    if names and count_draft_sets(q, k, drafts) > MAX_SETS:
        raise ValueError(f"the exact LP is too large for V={p.size}, k={k} (about "
                         f"{count_draft_sets(q, k, drafts):,} draft sets); use --backend none for the closed form")
    for name in names:
        res = solve_membership_ot(p, q, k, drafts=drafts, backend=name)
        out["backends"].append({"backend": res.backend, "value": res.value,
                                "certificate_value": res.certificate_value, "cut": res.cut,
                                "status": res.status, "n_sets": res.n_sets, "n_variables": res.n_variables,
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
