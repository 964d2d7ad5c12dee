"""Multi-draft optimum: i.i.d. vs without-replacement drafts, and Khisti et al.'s toy.

* Hu et al., "Towards Optimal Multi-draft Speculative Decoding" (ICLR 2025, arXiv 2502.18779):
  the optimal acceptance for a fixed draft law is a min-cut / subset-selection value,
  ``alpha* = min_H [p(H) + 1 - Q(S(X) subset of H)]`` (docs/theory/membership_ot.md), and
  drafting without replacement beats drafting with replacement.
* Khisti et al., "Multi-Draft Speculative Sampling: Canonical Architectures and Theoretical
  Limits" (ICLR 2025, arXiv 2410.18234): p uniform on 3 tokens, q = [1/3, q2, 2/3 - q2], K = 2
  (their toy); acceptance one iff p(S) >= q(S)^2 for every S.
* Three small worked examples (A: p = [.5,.3,.15,.05], q = [.2,.2,.3,.3]; B: p = [.5,.5],
  q = [.7,.3]; C: Khisti's toy at q2 = 0.2), each checked against an *independent* computation:
  the min-cut closed form against the LP over draft sets solved by HiGHS, the RRS and naive
  selectors against their textbook formulas.

Every claim here is a theorem check; none compares with a number printed in a paper.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.optimize import brentq

from .common import (
    MAX_K,
    acceptance,
    acceptance_table,
    lp_optimum_reference,
    mean_curves,
    naive_acceptance_reference,
    rrs_acceptance_reference,
    table_claim,
)
from .core import Claim, Context, ExperimentResult, require
from .pairs import dirichlet_pairs
from .plotting import new_figure, style
from .style import legend_outside, mark_truncated

MEMBERSHIP = "docs/theory/membership_ot.md"
TOY_METHODS = ["optimum", "optimum (wor)", "spechub", "rrs_wor", "kseq", "rrs", "naive"]
K_METHODS = ["optimum (wor)", "optimum", "rrs_wor", "kseq", "rrs", "naive"]


def _toy_q(q1: float, q2: float) -> np.ndarray:
    return np.array([q1, q2, max(1.0 - q1 - q2, 0.0)])


def _perfect(p: np.ndarray, q: np.ndarray) -> bool:
    """Khisti et al.'s condition for acceptance one with two i.i.d. drafts: p(S) >= q(S)^2 for all S."""
    V = p.size
    return all(p[list(S)].sum() >= q[list(S)].sum() ** 2 - 1e-12
               for r in range(1, V) for S in combinations(range(V), r))


def _toy_row(item) -> dict[str, float]:
    q1, q2, methods = item
    p = np.full(3, 1.0 / 3.0)
    q = _toy_q(q1, q2)
    return {m: acceptance_table((p, q, [2], [m]))[m][0] for m in methods}


def run(ctx: Context) -> ExperimentResult:
    require("solvers.closed_form", "optimal_acceptance")
    res = ExperimentResult()
    _khisti_toy(ctx, res, TOY_METHODS)
    _optimum_vs_k(ctx, res, K_METHODS)
    _worked_examples(res)
    return res


# ---------------------------------------------------------------------------------- Khisti toy
def _khisti_toy(ctx: Context, res: ExperimentResult, methods: list[str]) -> None:
    n = ctx.size(49, 401)
    fig, axes = new_figure(2, title="Khisti et al. toy: p uniform on 3 tokens, K = 2 drafts")
    for ax, q1 in zip(axes, (1 / 3, 1 / 6)):
        grid = np.linspace(0.0, 1.0 - q1, n)
        rows = ctx.map(_toy_row, [(q1, q2, methods) for q2 in grid], desc=f"khisti toy q1={q1:.3f}")
        perfect = np.array([_perfect(np.full(3, 1 / 3), _toy_q(q1, g)) for g in grid])
        if perfect.any():  # the exact ends for q1 = 1/3 (see _toy_edges), the grid's otherwise
            edge = 1 - np.sqrt(2 / 3)
            lo, hi = (edge, 2 / 3 - edge) if q1 == 1 / 3 else (grid[perfect].min(), grid[perfect].max())
            ax.axvspan(lo, hi, color="tab:green", alpha=0.12, label="p(S) >= q(S)^2 for all S")
        for m in methods:
            ax.plot(grid, [r[m] for r in rows], markevery=max(n // 8, 1), ms=4, **style(m))
        ax.set_xlabel("draft mass on token 2, q2")
        ax.set_ylabel("acceptance P(Y in drafts)")
        ax.set_title(f"q = [{q1:.3g}, q2, {1 - q1:.3g} - q2]")
        lows = [min(r[m] for r in rows) for m in methods]
        ax.set_ylim(min(lows) - 0.03, 1.02)
        if q1 == 1 / 3:
            opt = np.array([r["optimum"] for r in rows])
            mism = int(np.sum((opt >= 1 - 1e-9) != perfect))
            res.claims.append(Claim(
                "Khisti et al. 2025 (arXiv 2410.18234), two identical drafts",
                "acceptance one iff p(S) >= q(S)^2 for every S (grid points where the min-cut optimum "
                "= 1 disagree with the condition)", 0, mism, mism == 0,
                f"{n} values of q2, the grid crossing both ends of the interval; condition in {MEMBERSHIP}",
                category="theorem", fails_if="any grid point where the optimum's '= 1' and the condition disagree"))
            res.data["khisti_toy"] = {"q2": grid, **{m: [r[m] for r in rows] for m in methods}}
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.set_figheight(fig.get_figheight() + 0.6)
    res.add_figure("khisti_toy", fig,
                   "Exact acceptance with K = 2 drafts on Khisti et al.'s toy (their Fig. 2) as the draft's mass "
                   "on token 2 varies; the green band is where the i.i.d. optimum is predicted to be 1.")
    _toy_edges(res)


def _toy_edges(res: ExperimentResult) -> None:
    """The ends of the interval where the i.i.d. optimum is exactly 1, found by root-finding on the
    solver's value, against the ends implied by Khisti et al.'s condition: with p uniform on 3
    tokens the binding sets are pairs, (q_i + q_j)^2 <= 2/3, i.e. every q_l >= 1 - sqrt(2/3), so
    q2 in [1 - sqrt(2/3), 2/3 - (1 - sqrt(2/3))]."""
    p = np.full(3, 1 / 3)
    gap = lambda q2: acceptance("optimum", p, _toy_q(1 / 3, q2), 2) - (1 - 1e-13)
    lo = brentq(gap, 0.0, 0.2, xtol=1e-12)
    hi = brentq(gap, 0.4, 0.6, xtol=1e-12)
    edge = 1 - np.sqrt(2 / 3)
    res.claims.append(table_claim(
        "Khisti et al. 2025, condition p(S) >= q(S)^2", "the i.i.d. optimum (K = 2) on the toy equals 1 exactly for q2 in "
        "[1 - sqrt(2/3), 2/3 - (1 - sqrt(2/3))]: interval ends by root-finding on the min-cut value",
        ["lo", "hi"], [edge, 2 / 3 - edge], [lo, hi], atol=1e-9, digits=9, category="theorem",
        fails_if="an end off by more than 1e-9 (the optimum reaches 1 on another interval)"))


# ---------------------------------------------------------------------------------- vs k
def _optimum_vs_k(ctx: Context, res: ExperimentResult, methods: list[str]) -> None:
    ks = list(range(1, ctx.size(9, 17)))
    n, V = ctx.size(16, 200), ctx.size(24, 64)
    fig, axes = new_figure(2, title=f"Acceptance vs number of drafts (mean over {n} random pairs, V = {V})")
    summary = {}
    for ax, conc in zip(axes, (1.0, 0.3)):
        pairs = dirichlet_pairs(ctx.rng(f"multidraft-k-{conc}"), n, V, conc)
        tables = ctx.map(acceptance_table, [(p, q, ks, methods) for p, q in pairs],
                         desc=f"optimum vs k (Dirichlet {conc})")
        means = mean_curves(tables, methods)
        for m in methods:
            st = style(m)
            vals = np.array([t[m] for t in tables], dtype=float)
            ax.plot(ks, means[m], ms=4, **st)
            if m in MAX_K:
                mark_truncated(ax, ks, means[m], f"exact only to k = {MAX_K[m]}", st["color"])
        ax.set_xlabel("number of drafts k")
        ax.set_ylabel("mean acceptance P(Y in drafts)")
        ax.set_title(f"p, q ~ Dirichlet({conc:g})")
        summary[conc] = (tables, means)
        res.data[f"vs_k_dirichlet_{conc:g}"] = {"k": ks, **means}
    legend_outside(fig, axes, ncols=3)
    res.add_figure("optimum_vs_k", fig,
                   "Mean exact acceptance vs k over the same random pairs for every method (exact values, no "
                   "sampling noise between methods): the optimum for i.i.d. drafts and for drafts without replacement (min-cut closed forms), and the "
                   "verifiers that reach neither. RRS without replacement is computed exactly up to k = "
                   f"{MAX_K['rrs_wor']} only (ring: where the series stops).")
    tables = summary[1.0][0] + summary[0.3][0]
    diff = min(np.nanmin(np.array(t["optimum (wor)"]) - np.array(t["optimum"])) for t in tables)
    at1 = max(abs(t["optimum (wor)"][0] - t["optimum"][0]) for t in tables)
    res.claims.append(Claim(
        "Hu et al. 2025 (arXiv 2502.18779), abstract",
        "drafting without replacement is never worse than drafting with replacement (min over instances and k of "
        "OPT-wor - OPT-wr), with equality at k = 1 (max |difference|)", ">= 0; 0 at k = 1",
        f"{diff:.3g}; {at1:.1e}", diff >= -1e-9 and at1 <= 1e-12, f"{len(tables)} pairs x k = 1..{ks[-1]}",
        category="theorem", fails_if="OPT-wor below OPT-wr by more than 1e-9 anywhere, or unequal at k = 1"))
    opt = np.array([t["optimum"] for t in tables])
    mono = float(np.min(np.diff(opt, axis=1)))
    res.claims.append(Claim(MEMBERSHIP, "the i.i.d. optimum is non-decreasing in k "
                            "(min over instances of alpha*_{k+1} - alpha*_k)", ">= 0", mono, mono >= -1e-12,
                            category="theorem", fails_if="any decrease below -1e-12"))
    for m in ("rrs", "kseq", "naive", "rrs_wor"):
        ref = "optimum (wor)" if m == "rrs_wor" else "optimum"
        gaps = np.array([np.array(t[ref]) - np.array(t[m]) for t in tables])
        k1 = float(np.max(np.abs(gaps[:, 0]))) if m != "naive" else 0.0
        res.claims.append(Claim(
            "Hu et al. 2025 (optimum for a draft law)",
            f"{m} never exceeds the optimum of its draft law (min gap over instances and k)"
            + ("" if m == "naive" else "; it attains it at k = 1, where both equal 1 - TV (max |gap|)"),
            ">= 0" + ("" if m == "naive" else "; 0 at k = 1"), f"{np.nanmin(gaps):.3g}" + (
                "" if m == "naive" else f"; {k1:.1e}"),
            bool(np.nanmin(gaps) >= -1e-9 and k1 <= 1e-12), category="theorem",
            fails_if="the method above the optimum by more than 1e-9" + ("" if m == "naive" else
                                                                          ", or unequal to it at k = 1")))


# ---------------------------------------------------------------------------------- fixtures
EXAMPLES = {"A": (np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])),
            "B": (np.array([0.5, 0.5]), np.array([0.7, 0.3])),
            "C": (np.full(3, 1 / 3), np.array([1 / 3, 0.2, 2 / 3 - 0.2]))}


def _worked_examples(res: ExperimentResult) -> None:
    """Worked examples A (k = 2, 3), B, C (k = 2): each selector and closed form against an
    independent computation."""
    for name, (p, q) in EXAMPLES.items():
        for k in ((2, 3) if name == "A" else (2,)):
            labels = ["OPT-wr", "OPT-wor", "RRS", "naive"]
            ref = [lp_optimum_reference(p, q, k, "iid"), lp_optimum_reference(p, q, k, "without_replacement"),
                   rrs_acceptance_reference(p, q, k), naive_acceptance_reference(p, q, k)]
            ours = [acceptance(m, p, q, k) for m in ("optimum", "optimum (wor)", "rrs", "naive")]
            res.claims.append(table_claim(
                f"{MEMBERSHIP}; Miao et al. 2024 (SpecInfer)",
                f"example {name}: p = {np.round(p, 3).tolist()}, q = {np.round(q, 3).tolist()}, k = {k}: min-cut "
                "optima, RRS and naive selectors vs independent references (LP over draft sets by HiGHS; "
                "1 - prod TV(residual_i, q); sum p (1 - (1-q)^k))", labels, ref, ours, atol=1e-7, digits=6,
                category="theorem", fails_if="any value off its reference by more than 1e-7 (the LP's tolerance)"))
    p, q = EXAMPLES["B"]
    res.claims.append(Claim(
        "Khisti et al. 2025, condition p(S) >= q(S)^2", "example B is near the boundary of perfect acceptance "
        "(p({0}) = 0.5 vs q({0})^2 = 0.49): the K = 2 optimum equals 1, and for q = [0.71, 0.29] "
        "(q({0})^2 = 0.5041 > 0.5) it falls below 1",
        "1; < 1", f"{acceptance('optimum', p, q, 2):.12f}; {acceptance('optimum', p, np.array([.71, .29]), 2):.6f}",
        abs(acceptance("optimum", p, q, 2) - 1) <= 1e-12 and acceptance("optimum", p, np.array([.71, .29]), 2) < 1 - 1e-6,
        category="theorem", fails_if="the optimum below 1 at q = [.7, .3] or equal to 1 at q = [.71, .29]"))
    p, q = EXAMPLES["A"]
    res.claims.append(table_claim(
        MEMBERSHIP, "SpecHub's acceptance equals the optimum of its own draft law (example A, k = 2; the "
        "optimum by the LP over SpecHub's draft sets)", ["spechub", "LP optimum of its hub-pair law"],
        [lp_optimum_reference(p, q, 2, _draft_law("spechub"))], [acceptance("spechub", p, q, 2)], atol=1e-7,
        digits=6, category="theorem", fails_if="|SpecHub - LP optimum of its law| > 1e-7"))


def _draft_law(method: str) -> str:
    get_selector = require("ot_coupling.registry", "get_selector")
    return get_selector(method).draft_law


