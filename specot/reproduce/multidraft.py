"""Multi-draft optimum: i.i.d. vs without-replacement drafts, and Khisti et al.'s toy.

* Hu et al., "Towards Optimal Multi-draft Speculative Decoding" (ICLR 2025, arXiv 2502.18779):
  the optimal acceptance for a fixed draft law is a min-cut / subset-selection value,
  ``alpha* = min_H [p(H) + 1 - Q(S(X) subset of H)]`` (docs/theory/membership_ot.md#optimal-acceptance-by-min-cut), and
  drafting without replacement beats drafting with replacement.
* Khisti et al., "Multi-Draft Speculative Sampling: Canonical Architectures and Theoretical
  Limits" (ICLR 2025, arXiv 2410.18234), Fig. 2: p uniform on 3 tokens, q = [1/3, q2, 2/3 - q2],
  K = 2; acceptance one iff p(S) >= q(S)^2 for every S (docs/theory/membership_ot.md#iid-drafts).
* The exact worked examples A, B, C of docs/theory/membership_ot.md#worked-examples and its random-toy means.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.optimize import brentq

from .common import acceptance, acceptance_table, available, mean_curves, table_claim
from .core import Claim, Context, ExperimentResult, require
from .pairs import dirichlet_pairs
from .plotting import new_figure, style

NOTES = "docs/theory/membership_ot.md"
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
    methods, missing = available(TOY_METHODS)
    if missing:
        res.notes.append(f"selectors not available in this build, left out: {', '.join(missing)}")
    _khisti_toy(ctx, res, methods)
    _optimum_vs_k(ctx, res, [m for m in K_METHODS if m in methods])
    _worked_examples(res, methods)
    _random_toys(ctx, res, methods)
    return res


# ---------------------------------------------------------------------------------- Khisti toy
def _khisti_toy(ctx: Context, res: ExperimentResult, methods: list[str]) -> None:
    n = ctx.size(49, 401)
    fig, axes = new_figure(2, title="Khisti et al. toy: p uniform on 3 tokens, K = 2 drafts")
    for ax, q1 in zip(axes, (1 / 3, 1 / 6)):
        grid = np.linspace(0.0, 1.0 - q1, n)
        rows = ctx.map(_toy_row, [(q1, q2, methods) for q2 in grid], desc=f"khisti toy q1={q1:.3f}")
        perfect = np.array([_perfect(np.full(3, 1 / 3), _toy_q(q1, g)) for g in grid])
        if perfect.any():
            lo, hi = grid[perfect].min(), grid[perfect].max()
            ax.axvspan(lo, hi, color="tab:green", alpha=0.12, label="p(S) >= q(S)^2 for all S")
        for m in methods:
            ax.plot(grid, [r[m] for r in rows], markevery=max(n // 8, 1), ms=4, **style(m))
        ax.set_xlabel("draft mass on token 2, q2")
        ax.set_ylabel("acceptance P(Y in drafts)")
        ax.set_title(f"q = [{q1:.3g}, q2, {1 - q1:.3g} - q2]")
        ax.set_ylim(0.45, 1.02)
        if q1 == 1 / 3:
            opt = np.array([r["optimum"] for r in rows])
            mism = int(np.sum((opt >= 1 - 1e-9) != perfect))
            res.claims.append(Claim(
                "Khisti et al. 2025 (arXiv 2410.18234), two identical drafts",
                "acceptance one iff p(S) >= q(S)^2 for every S (grid points where the min-cut optimum "
                "= 1 disagree with the condition)", 0, mism, mism == 0,
                f"{n} values of q2; condition as derived in {NOTES}#iid-drafts"))
            res.data["khisti_toy"] = {"q2": grid, **{m: [r[m] for r in rows] for m in methods}}
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.set_figheight(fig.get_figheight() + 0.6)
    res.add_figure("khisti_toy", fig,
                   "Exact acceptance with K = 2 drafts on Khisti et al.'s toy (their Fig. 2) as the draft's mass "
                   "on token 2 varies; the green band is where the i.i.d. optimum is predicted to be 1.")
    _toy_edges(res)
    _toy_sweep_claims(res, methods)


def _toy_edges(res: ExperimentResult) -> None:
    """The ends of the interval where the i.i.d. optimum is exactly 1, found by root-finding on the
    solver's value."""
    p = np.full(3, 1 / 3)
    gap = lambda q2: acceptance("optimum", p, _toy_q(1 / 3, q2), 2) - (1 - 1e-10)
    lo = brentq(gap, 0.0, 0.2, xtol=1e-9)
    hi = brentq(gap, 0.4, 0.6, xtol=1e-9)
    res.claims.append(table_claim(
        f"Khisti et al. toy ({NOTES}#worked-examples)", "optimum (i.i.d., K=2) equals 1 exactly for q2 in [lo, hi]",
        ["lo", "hi"], [0.1835, 0.4832], [lo, hi], atol=6e-5))


def _toy_sweep_claims(res: ExperimentResult, methods: list[str]) -> None:
    # docs/theory/membership_ot.md#worked-examples example C: (q2, OPT, K-SEQ, RRS-wr), 4 decimals
    table = [(0.0, .6667, .6667, .6667), (0.1, .8567, .8102, .7900), (0.2, 1.0, .9224, .8933),
             (1 / 3, 1.0, 1.0, 1.0), (0.5, .9722, .8889, .8611), (0.6, .7956, .7656, .7511)]
    if not {"optimum", "kseq", "rrs"} <= set(methods):
        return
    paper, ours = [], []
    for q2, *vals in table:
        r = _toy_row((1 / 3, q2, ["optimum", "kseq", "rrs"]))
        paper += vals
        ours += [r["optimum"], r["kseq"], r["rrs"]]
    res.claims.append(table_claim(
        f"Khisti et al. Fig. 2 toy, values of {NOTES}#worked-examples",
        "OPT / K-SEQ / RRS at q2 = 0, .1, .2, 1/3, .5, .6 (K = 2)",
        ["OPT, K-SEQ, RRS x 6 values of q2"], paper, ours, atol=5.1e-5))


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
            ax.plot(ks, means[m], ms=4, **style(m))
        ax.set_xlabel("number of drafts k")
        ax.set_ylabel("mean acceptance P(Y in drafts)")
        ax.set_title(f"p, q ~ Dirichlet({conc:g})")
        summary[conc] = (tables, means)
        res.data[f"vs_k_dirichlet_{conc:g}"] = {"k": ks, **means}
    axes[1].legend(loc="lower right")
    res.add_figure("optimum_vs_k", fig,
                   "Mean exact acceptance vs k: the optimum for i.i.d. drafts and for drafts without replacement "
                   "(min-cut closed forms), and the verifiers that reach neither.")
    tables = summary[1.0][0] + summary[0.3][0]
    if "optimum (wor)" in methods:
        diff = min(np.nanmin(np.array(t["optimum (wor)"]) - np.array(t["optimum"])) for t in tables)
        res.claims.append(Claim(
            "Hu et al. 2025 (arXiv 2502.18779), abstract",
            "drafting without replacement beats drafting with replacement (min over instances and k of "
            "OPT-wor - OPT-wr)", ">= 0", diff, diff >= -1e-9, f"{len(tables)} pairs x k = 1..{ks[-1]}"))
    opt = np.array([t["optimum"] for t in tables])
    mono = float(np.min(np.diff(opt, axis=1)))
    res.claims.append(Claim(f"{NOTES}#the-prefix-cut-for-iid-drafts", "the i.i.d. optimum is non-decreasing in k "
                            "(min over instances of alpha*_{k+1} - alpha*_k)", ">= 0", mono, mono >= -1e-12))
    for m in ("rrs", "kseq", "rrs_wor"):
        if m not in methods:
            continue
        ref = "optimum (wor)" if m == "rrs_wor" else "optimum"
        if ref not in methods:
            continue
        gaps = np.array([np.array(t[ref]) - np.array(t[m]) for t in tables])[:, 1:]
        res.claims.append(Claim(
            "Hu et al. 2025, abstract",
            f"existing verifiers do not reach the bound: {m} below the optimum for its draft law "
            f"(mean gap at k >= 2)", "> 0", float(np.nanmean(gaps)),
            bool(np.nanmin(gaps) >= -1e-9 and np.nanmean(gaps) > 0),
            "also checks that it is never above the optimum (min gap >= -1e-9)"))


# ---------------------------------------------------------------------------------- fixtures
def _worked_examples(res: ExperimentResult, methods: list[str]) -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    q = np.array([0.2, 0.2, 0.3, 0.3])
    cols = [m for m in ("optimum", "kseq", "rrs", "naive", "optimum (wor)", "rrs_wor") if m in methods]
    paper_rows = {2: {"optimum": .84, "kseq": .785330, "rrs": .76, "naive": .39, "optimum (wor)": .921429,
                      "rrs_wor": .814286, "rho": 1.463325},
                  3: {"optimum": .984, "kseq": .858519, "rrs": .828, "naive": .5218, "optimum (wor)": 1.0,
                      "rrs_wor": .905714, "rho": 1.792593}}
    for k, row in paper_rows.items():
        labels, paper, ours = list(cols), [row[m] for m in cols], [acceptance(m, p, q, k) for m in cols]
        if "kseq" in methods:
            kseq_rho = require("ot_coupling.kseq", "kseq_rho")
            labels, paper, ours = labels + ["rho*"], paper + [row["rho"]], ours + [float(kseq_rho(p, q, k))]
        res.claims.append(table_claim(
            f"{NOTES}#worked-examples example A (exact, 6 decimals)", f"p=[.5,.3,.15,.05], q=[.2,.2,.3,.3], k={k}",
            labels, paper, ours, atol=5.1e-7, digits=6))
    if "spechub" in methods:
        res.claims.append(table_claim(
            f"{NOTES}#worked-examples example A (SpecHub, k=2)", "SpecHub's acceptance equals the optimum of its own draft law",
            ["spechub", "optimum of its hub-pair law"], [.771429, .771429],
            [acceptance("spechub", p, q, 2), _own_optimum("spechub", p, q, 2)], atol=5.1e-7, digits=6))
    pc, qc = np.full(3, 1 / 3), _toy_q(1 / 3, 0.2)
    cols_c = [m for m in ("optimum", "kseq", "rrs", "optimum (wor)", "rrs_wor", "spechub") if m in methods]
    paper_c = {"optimum": 1.0, "kseq": .922385, "rrs": .893333, "optimum (wor)": 1.0, "rrs_wor": .916667,
               "spechub": 1.0}
    res.claims.append(table_claim(
        f"Khisti et al. toy ({NOTES}#worked-examples example C)", "p uniform, q = [1/3, 0.2, 2/3 - 0.2], k = 2", cols_c,
        [paper_c[m] for m in cols_c], [acceptance(m, pc, qc, 2) for m in cols_c], atol=5.1e-7, digits=6))
    pb, qb = np.array([0.5, 0.5]), np.array([0.7, 0.3])
    cols_b = [m for m in ("optimum", "kseq", "rrs", "naive") if m in methods]
    paper_b = {"optimum": 1.0, "kseq": .896510, "rrs": .86, "naive": .71}
    res.claims.append(table_claim(
        f"Khisti et al. 2025 perfect-acceptance example ({NOTES}#worked-examples example B)",
        "p=[.5,.5], q=[.7,.3], k=2 (and 1-TV = 0.8 at k=1)", cols_b + ["k=1 optimum"],
        [paper_b[m] for m in cols_b] + [0.8],
        [acceptance(m, pb, qb, 2) for m in cols_b] + [acceptance("optimum", pb, qb, 1)], atol=5.1e-7, digits=6))


def _own_optimum(method: str, p: np.ndarray, q: np.ndarray, k: int) -> float:
    """The min-cut optimum for the draft law of ``method`` (e.g. SpecHub's hub pairs)."""
    get_selector = require("ot_coupling.registry", "get_selector")
    optimal_acceptance = require("solvers.closed_form", "optimal_acceptance")
    return float(optimal_acceptance(p, q, k, drafts=get_selector(method).draft_law))


def _random_toys(ctx: Context, res: ExperimentResult, methods: list[str]) -> None:
    """Mean acceptance over 200 random toys (V in 3..6, k = 2): the table of docs/theory/membership_ot.md#random-toy-instances, redrawn
    with our own seed, so agreement is up to sampling error."""
    paper = {"naive": .3751, "rrs": .6525, "kseq": .6692, "optimum": .7092, "rrs_wor": .7284,
             "optimum (wor)": .7964}
    cols = [m for m in paper if m in methods]
    n = 200
    pairs = dirichlet_pairs(ctx.rng("multidraft-toys"), n, (3, 6), 1.0)
    tables = ctx.map(acceptance_table, [(p, q, [2], cols) for p, q in pairs], desc="random toys (3.8)")
    vals = np.array([[t[m][0] for m in cols] for t in tables])
    means = vals.mean(axis=0)
    se = vals.std(axis=0, ddof=1) / np.sqrt(n)
    z = float(np.max(np.abs(means - np.array([paper[m] for m in cols])) / (np.sqrt(2) * se)))
    res.claims.append(Claim(
        f"{NOTES}#random-toy-instances (200 random toys, V in 3..6, k=2)", "mean acceptance of " + " / ".join(cols),
        " / ".join(f"{paper[m]:.4f}" for m in cols), " / ".join(f"{v:.4f}" for v in means), bool(z <= 4),
        f"max |z| = {z:.2f} (holds if <= 4): our 200 instances are a fresh draw, so each mean is compared within "
        "the standard error of a difference of two sample means"))
    order_ok = bool(np.all(np.diff(means) > 0))
    res.claims.append(Claim(f"{NOTES}#random-toy-instances", "ordering naive < RRS < K-SEQ < OPT-wr < RRS-wor < OPT-wor "
                            "(the draft law matters more than the verifier)", "increasing",
                            " < ".join(f"{v:.3f}" for v in means), order_ok))
