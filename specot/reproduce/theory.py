"""Yin, Chen, Huang, Wang, "A Theoretical Perspective for Speculative Decoding Algorithm"
(NeurIPS 2024, arXiv 2411.00841).

* Theorem 1 (their Fig. 2 left): with unlimited lookahead, ``E[N_rej] = sum_n E_{x<n ~ target}
  [TV(p_n, q_n)]`` on a Markov chain: simulated rejections converge to the exact sum.
* Theorem 3 / Fig. 2 middle-right, Fig. 3 right: batch speculative decoding with M drafts (RRS
  at a round start; docs/theory/markov.md): exact DP vs simulation, E[N_rej] vs M with a
  positive limit, and the single-step batch improvement for Bernoulli and uniform pairs.
* Theorems 4-5 / Fig. 4: the quality-rejection Pareto front is the line ``r + Loss = TV``.

The chain parameters of the paper are not published, so every chain here is a random one (seeded);
only the identities, not the paper's particular numbers (e.g. E[N_rej] = 16.41), can be matched.
"""

from __future__ import annotations

import numpy as np

from scipy.stats import norm

from .common import rrs_acceptance_reference, table_claim
from .core import Claim, Context, ExperimentResult, require
from .plotting import new_figure, style
from .style import band, legend_outside, method_style

MARKOV_DOC = "docs/theory/markov.md"
#: false-alarm level of every z test (two-sided; Bonferroni over the points of a claim).
FALSE_ALARM = 1e-6


def _zmax(n_tests: int = 1) -> float:
    return float(norm.isf(FALSE_ALARM / (2 * n_tests)))

PAPER = "Yin et al. 2024"
V, T = 7, 50


def _chain(seed: int):
    random_pair = require("markov.builders", "random_pair")
    return random_pair(V, horizon=T, tv_gap=None, seed=seed)


def _simulate(item) -> np.ndarray:
    """Task: (chain seed, selector, M, follow, n_runs, seed) -> rejections per run."""
    chain_seed, selector, M, follow, n_runs, seed = item
    simulate = require("markov.simulate", "simulate")
    target, draft = _chain(chain_seed)
    out = simulate(target, draft, selector, k=M, gamma=None, n_tokens=T, n_runs=n_runs, seed=seed, follow=follow)
    return out.rejections_per_run


def run(ctx: Context) -> ExperimentResult:
    require("markov.theory", "expected_rejections", "batch_expected_rejections", "batch_improvement")
    require("markov.simulate", "simulate")
    res = ExperimentResult()
    chain_seed = ctx.seeds("theory-chain", 1)[0]
    res.notes.append(f"Markov chain: non-stationary, V = {V} tokens, T = {T} positions, target and draft rows "
                     f"~ Dirichlet(1) independently (markov.builders.random_pair, seed {chain_seed})")
    _theorem1(ctx, res, chain_seed)
    _batch(ctx, res, chain_seed)
    _pareto(ctx, res)
    return res


def _theorem1(ctx: Context, res: ExperimentResult, chain_seed: int) -> None:
    th = require("markov.theory")
    target, draft = _chain(chain_seed)
    exact = th.expected_rejections(target, draft, T)
    calls = th.expected_calls_unlimited(target, draft, T)
    n_chunks, per = 4, ctx.size(250, 2500)
    runs = np.concatenate(ctx.map(_simulate, [(chain_seed, "speculative", 1, "tree", per, s)
                                              for s in ctx.seeds("theory-thm1", n_chunks)],
                                  desc="Thm 1 simulation"))
    n = np.arange(1, runs.size + 1)
    mean = np.cumsum(runs) / n
    sd = runs.std(ddof=1)
    fig, axes = new_figure(1, width=5.6, title=f"{PAPER} Theorem 1: rejections = sum of expected TV")
    ax = axes[0]
    col = method_style("speculative")["color"]
    ax.plot(n, mean, color=col, label="simulated mean (speculative decoding, unlimited lookahead)")
    band(ax, n, mean, 2 * sd / np.sqrt(n), col, label="+- 2 standard errors")
    ax.axhline(exact, color="black", linestyle="--", label=f"Theorem 1: sum_n E[TV] = {exact:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("number of simulated generations")
    ax.set_ylabel(f"mean rejections per {T}-token generation")
    ax.set_title(f"random non-stationary chain, V = {V}, T = {T}")
    legend_outside(fig, axes, ncols=1)
    res.add_figure("theorem1", fig,
                   "Running mean of the number of rejections of speculative decoding over simulated generations, "
                   "converging to the exact Theorem 1 value (Yin et al. Fig. 2 left, on our own random chain).")
    se = sd / np.sqrt(runs.size)
    z = abs(mean[-1] - exact) / se
    res.claims.append(Claim(
        f"{PAPER} Theorem 1 (Fig. 2 left)", "simulated E[N_rej] equals sum_n E_{x<n ~ target}[TV(p_n, q_n)] "
        f"({runs.size} runs; |z|)", f"{exact:.3f} (exact sum)", f"{mean[-1]:.3f} (|z| = {z:.2f})",
        bool(z <= _zmax()), f"holds if |z| <= {_zmax():.2f} (two-sided false alarm {FALSE_ALARM:g}); the paper's "
        "chain is not published, so its number cannot be matched, only the identity", category="theorem",
        fails_if=f"|z| > {_zmax():.2f}"))
    gap = calls - exact
    res.claims.append(Claim(MARKOV_DOC, "E[target calls] - E[N_rej] lies in [0, 1] (one call per rejection, plus "
                            "at most one final call)", "[0, 1]", gap, bool(0 <= gap <= 1), category="theorem",
                            fails_if="the difference outside [0, 1]"))
    res.data["theorem1"] = {"exact": exact, "simulated": mean[-1], "se": se, "calls": calls}


def _batch(ctx: Context, res: ExperimentResult, chain_seed: int) -> None:
    th = require("markov.theory")
    builders = require("markov.builders")
    target, draft = _chain(chain_seed)
    Ms = list(range(1, 9))
    dp = np.array([th.batch_expected_rejections(target, draft, T, M) for M in Ms])
    limit = th.batch_expected_rejections(target, draft, T, None)
    per = ctx.size(150, 2000)
    items = [(chain_seed, "rrs", M, follow, per, s) for follow in ("one", "tree") for M, s in
             zip(Ms, ctx.seeds(f"theory-batch-{follow}", len(Ms)))]
    sims = ctx.map(_simulate, items, desc="batch SD simulation")
    mc = {f: np.array([sims[i].mean() for i, it in enumerate(items) if it[3] == f]) for f in ("one", "tree")}
    mc_se = {f: np.array([sims[i].std(ddof=1) / np.sqrt(per) for i, it in enumerate(items) if it[3] == f])
             for f in ("one", "tree")}
    fig, axes = new_figure(2, title=f"{PAPER}: batch speculative decoding with M drafts")
    ax = axes[0]
    rrs_col, tree_col = method_style("rrs")["color"], method_style("specinfer")["color"]
    ax.plot(Ms, dp, color="black", linestyle="-", label="exact DP, batch SD (RRS at a round start)")
    ax.plot(Ms, mc["one"], "s", color=rrs_col, ms=4, label="simulated, batch SD (band +-2 SE)")
    band(ax, Ms, mc["one"], 2 * mc_se["one"], rrs_col)
    ax.plot(Ms, mc["tree"], "^", color="#6b3d9a", ms=4, label="simulated, tree: RRS at every depth (band +-2 SE)")
    band(ax, Ms, mc["tree"], 2 * mc_se["tree"], "#6b3d9a")
    ax.axhline(limit, color="black", linestyle=":", label=f"M -> infinity limit = {limit:.2f}")
    ax.set_xlabel("number of drafts M")
    ax.set_ylabel(f"expected rejections per {T} tokens")
    ax.set_title("E[N_rej] vs M (their Fig. 2 right)")
    ax = axes[1]
    Mb = np.arange(1, 11)
    a, b = 0.3, 0.6
    tb, db = builders.bernoulli_pair(b, a)
    bern = np.array([th.batch_improvement(tb.next_dist(), db.next_dist(), int(M)) for M in Mb])
    ax.plot(Mb, bern, marker="o", color="#1b9e77", label=f"Bernoulli: target Ber({b}), draft Ber({a})")
    uni = {}
    for Vu, col in zip((10, 50, 100), ("#d95f02", "#7570b3", "#e7298a")):
        tu, du = builders.uniform_pair(Vu, 1)
        uni[Vu] = np.array([th.batch_improvement(tu.next_dist(), du.next_dist(), int(M)) for M in Mb])
        ax.plot(Mb, uni[Vu], marker=".", linestyle="--", color=col, label=f"uniform: target on 1 token, draft on V = {Vu}")
    ax.set_xlabel("number of drafts M")
    ax.set_ylabel("single-step batch improvement TV - rho_M")
    ax.set_title("batch improvement (their Fig. 3 right)")
    legend_outside(fig, axes, ncols=2, extra_height=0.3)
    res.add_figure("batch", fig,
                   "Left: expected rejections of batch speculative decoding vs the number of drafts M on the random "
                   "chain: exact DP (docs/theory/markov.md) and simulations (+-2 SE bands). Right: "
                   "single-step batch improvement TV - rho_M for Bernoulli and uniform pairs.")
    z = np.abs(mc["one"] - dp) / mc_se["one"]
    zm = _zmax(len(Ms))
    res.claims.append(Claim(
        f"{PAPER} Theorem 3 (Fig. 2 middle)", "simulated batch-SD rejections equal the exact DP for every M "
        "in 1..8 (max |z|)", f"|z| <= {zm:.2f}", float(z.max()), bool(z.max() <= zm),
        f"{per} runs per M; two-sided false alarm {FALSE_ALARM:g} over the {len(Ms)} values (Bonferroni)",
        category="theorem", fails_if=f"any |z| > {zm:.2f}"))
    res.claims.append(Claim(
        f"{PAPER} (Fig. 2 right)", "E[N_rej] decreases with M and saturates at a positive limit (min decrease; "
        "limit)", "decreasing, limit > 0", f"{np.min(-np.diff(dp)):.4f}; limit {limit:.3f}",
        bool(np.all(np.diff(dp) <= 1e-12) and limit > 0 and dp[-1] >= limit - 1e-12), category="theorem",
        fails_if="an increase in M, a zero limit, or a value below the limit"))
    d_tree = mc["tree"][-1] - mc["one"][-1]
    z_tree = d_tree / np.hypot(mc_se["tree"][-1], mc_se["one"][-1])
    res.claims.append(Claim(
        MARKOV_DOC, "RRS at every depth (tree) rejects no more than batch SD that follows one draft (M = 8; "
        "difference of simulated means, one-sided z)", "tree <= one draft", f"{d_tree:.3f} (z = {z_tree:.2f})",
        bool(z_tree <= float(norm.isf(FALSE_ALARM))), category="theorem",
        fails_if=f"z > {float(norm.isf(FALSE_ALARM)):.2f} (tree significantly worse at false alarm {FALSE_ALARM:g})"))
    ref = [rrs_acceptance_reference(tb.next_dist(), db.next_dist(), int(M))
           - rrs_acceptance_reference(tb.next_dist(), db.next_dist(), 1) for M in Mb]
    res.claims.append(table_claim(
        f"{PAPER} Fig. 3 right", "batch improvement TV - rho_M (markov.theory) for target Ber(.6), draft Ber(.3), "
        "M = 1..10, vs the rejection probability of M-draft RRS computed independently (product of residual TVs)",
        ["M = 1..10"], ref, bern, atol=1e-12, digits=6, category="theorem",
        fails_if="any M where the two differ by more than 1e-12"))
    dec = all(uni[10][m] > uni[50][m] > uni[100][m] for m in range(1, len(Mb)))
    res.claims.append(Claim(
        f"{PAPER} Fig. 3 right (lower panel)", "in the paper's setting (target on 1 token, draft uniform on V) the "
        "batch improvement is smaller for a larger vocabulary (exact, M = 2..10; shown: M = 4, V = 10 / 50 / 100)",
        "decreasing in V", " / ".join(f"{uni[v][3]:.4f}" for v in (10, 50, 100)), bool(dec), category="reproduced",
        fails_if="at some M the improvement does not decrease from V = 10 to 50 to 100"))
    res.data["batch"] = {"M": Ms, "dp": dp, "mc_one": mc["one"], "mc_tree": mc["tree"], "limit": limit}


def _pareto(ctx: Context, res: ExperimentResult) -> None:
    pareto_front = require("solvers.pareto", "pareto_front")
    rng = ctx.rng("theory-pareto")
    fig, axes = new_figure(2, title=f"{PAPER} Theorems 4-5: the quality-rejection Pareto front")
    ax = axes[0]
    p, q = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(10))
    front = pareto_front(p, q, n_points=ctx.size(11, 41))
    tv = front.tv
    ax.fill_between([0, tv], [tv, 0], [0, 0], color="tab:red", alpha=0.12, label="unattainable (r + loss < TV)")
    ax.plot([0, tv], [tv, 0], color="black", linestyle="--", label="Theorem 5: r + loss = TV(p, q)")
    ax.plot(front.rejection, front.loss, "o", color="tab:blue", label="LP optimum at each rejection level")
    ax.set_xlabel("rejection probability r")
    ax.set_ylabel("quality loss TV(output law, target)")
    ax.set_title(f"one random pair, V = 10, TV = {tv:.3f}")
    gaps = [front.line_gap()]
    ax = axes[1]
    for conc in (0.2, 0.5, 1.0, 3.0):
        pp, qq = rng.dirichlet(np.full(20, conc)), rng.dirichlet(np.full(20, conc))
        f = pareto_front(pp, qq, n_points=ctx.size(9, 21))
        gaps.append(f.line_gap())
        ax.plot(f.rejection, f.loss, marker="o", ms=3, label=f"Dirichlet({conc:g}), TV = {f.tv:.2f}")
    ax.set_xlabel("rejection probability r")
    ax.set_ylabel("minimal quality loss")
    ax.set_title("fronts of pairs with different TV (V = 20)")
    legend_outside(fig, axes, ncols=3)
    res.add_figure("pareto", fig,
                   "Minimal quality loss at each rejection level computed by linear programming (solvers.pareto_front), "
                   "on the straight line r + loss = TV of Theorem 5; the shaded region is unattainable.")
    gap = float(max(gaps))
    res.claims.append(Claim(
        f"{PAPER} Theorem 5 (Fig. 4 left)", "the Pareto front is the straight line from (0, TV) to (TV, 0) "
        "(max distance of LP optima to the line, 5 pairs)", 0.0, gap, gap <= 1e-7, "LP tolerance 1e-7",
        category="theorem", fails_if="any LP optimum more than 1e-7 off the line"))
