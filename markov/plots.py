"""Figures of the Markov-chain theory (matplotlib, Agg backend, PNG + SVG).

Each function takes an output directory, writes ``<name>.png`` and ``<name>.svg``, and returns
``{"paths": [...], "data": {...}}`` with the numbers it plotted:

* :func:`plot_rejections_vs_runs` -- Yin et al. Fig. 2 left: running mean of simulated rejections
  converging to Theorem 1;
* :func:`plot_batch_rejections` -- Fig. 2 right: E[N_rej] vs the number of drafts M (exact DP,
  simulation, limit);
* :func:`plot_pareto` -- Fig. 4: the Pareto line, LP optima and simulated over-acceptance points;
* :func:`plot_speedup` -- Leviathan et al.: speedup vs alpha, gamma and the cost ratio c.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ot_coupling.validation import as_generator

from . import speedup as sp
from . import tradeoff as tr
from .builders import random_pair
from .simulate import simulate
from .theory import batch_expected_rejections, expected_rejections


def _save(fig, outdir, name: str) -> list[str]:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = out / f"{name}.{ext}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(str(path))
    plt.close(fig)
    return paths


def plot_rejections_vs_runs(outdir, vocab_size: int = 7, n_tokens: int = 50, n_runs: int = 2000,
                            seed: int = 0) -> dict:
    """Running mean of rejections (speculative decoding, unlimited lookahead) vs Theorem 1."""
    target, draft = random_pair(vocab_size, tv_gap=None, horizon=n_tokens, seed=seed)
    exact = expected_rejections(target, draft, n_tokens)
    res = simulate(target, draft, "speculative", gamma=None, n_tokens=n_tokens, n_runs=n_runs, seed=seed + 1)
    runs = res.rejections_per_run
    n = np.arange(1, runs.size + 1)
    mean = np.cumsum(runs) / n
    band = 2 * runs.std(ddof=1) / np.sqrt(n)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, mean, label="simulated running mean")
    ax.fill_between(n, mean - band, mean + band, alpha=0.2, label="+- 2 standard errors")
    ax.axhline(exact, color="k", linestyle="--", label=f"Theorem 1: {exact:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("number of runs")
    ax.set_ylabel(f"mean rejections per {n_tokens} tokens")
    ax.set_title(f"Yin et al. Thm 1 on a random chain (V={vocab_size}, T={n_tokens})")
    ax.legend()
    return {"paths": _save(fig, outdir, "markov_rejections_vs_runs"),
            "data": {"exact": exact, "simulated": float(mean[-1]), "se": res.rejections_se, "n_runs": n_runs}}


def plot_batch_rejections(outdir, vocab_size: int = 7, n_tokens: int = 50, Ms=range(1, 9), n_runs: int = 1000,
                          seed: int = 0) -> dict:
    """E[N_rej] of batch speculative decoding (Algorithm B) vs M: exact DP, simulation, limit."""
    target, draft = random_pair(vocab_size, tv_gap=None, horizon=n_tokens, seed=seed)
    Ms = list(Ms)
    exact = [batch_expected_rejections(target, draft, n_tokens, M) for M in Ms]
    limit = batch_expected_rejections(target, draft, n_tokens, None)
    sims = [simulate(target, draft, "rrs", k=M, gamma=None, n_tokens=n_tokens, n_runs=n_runs, seed=seed + M,
                     follow="one") for M in Ms]
    mean = [s.rejections for s in sims]
    se = [s.rejections_se for s in sims]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(Ms, exact, "o-", color="k", label="exact DP")
    ax.errorbar(Ms, mean, yerr=2 * np.array(se), fmt="s", capsize=3, label="simulated (+- 2 SE)")
    ax.axhline(limit, color="tab:red", linestyle=":", label=f"M -> infinity: {limit:.3f}")
    ax.set_xlabel("number of drafts M")
    ax.set_ylabel(f"expected rejections per {n_tokens} tokens")
    ax.set_title("Batch speculative decoding (Yin et al. Thm 3)")
    ax.legend()
    return {"paths": _save(fig, outdir, "markov_batch_rejections"),
            "data": {"M": Ms, "exact": exact, "simulated": mean, "se": se, "limit": limit}}


def plot_pareto(outdir, vocab_size: int = 10, eps=(0.0, 0.02, 0.05, 0.1, 0.2, 0.5), n_samples: int = 200_000,
                seed: int = 0) -> dict:
    """Theorem 5's line, the LP front (:func:`solvers.pareto_front`) and simulated over-acceptance
    rules ``b_eps`` with the optimal resampling law (empirical rejection rate and TV loss)."""
    from solvers.pareto import pareto_front

    rng = as_generator(seed)
    p, q = rng.dirichlet(np.ones(vocab_size)), rng.dirichlet(np.ones(vocab_size))
    front = pareto_front(p, q, n_points=11)
    sim_r, sim_loss = [], []
    for e in eps:
        b = tr.over_acceptance(p, q, e)
        x = rng.choice(vocab_size, size=n_samples, p=q)
        acc = rng.random(n_samples) < b[x]
        y = np.where(acc, x, rng.choice(vocab_size, size=n_samples, p=tr.optimal_resampling(p, q, b)))
        emp = np.bincount(y, minlength=vocab_size) / n_samples
        sim_r.append(float(1 - acc.mean()))
        sim_loss.append(float(0.5 * np.abs(emp - p).sum()))
    fig, ax = plt.subplots(figsize=(6, 4))
    tv = front.tv
    ax.fill_between([0, tv], [tv, 0], 0, color="tab:red", alpha=0.1, label="unattainable")
    ax.plot([0, tv], [tv, 0], "k--", label="Theorem 5: r + loss = TV")
    ax.plot(front.rejection, front.loss, "o", label="LP optimum")
    ax.plot(sim_r, sim_loss, "x", markersize=9, label="simulated b_eps with P*")
    ax.set_xlabel("rejection probability r")
    ax.set_ylabel("quality loss TV(output, target)")
    ax.set_title(f"Quality vs rejections (V={vocab_size}, TV={tv:.3f})")
    ax.legend()
    return {"paths": _save(fig, outdir, "markov_pareto"),
            "data": {"tv": tv, "lp_rejection": front.rejection, "lp_loss": front.loss, "line_gap": front.line_gap(),
                     "eps": list(eps), "sim_rejection": sim_r, "sim_loss": sim_loss}}


def plot_speedup(outdir, alphas=None, gammas=(1, 2, 4, 8), cs=(0.0, 0.05, 0.1, 0.2)) -> dict:
    """Leviathan et al. Thm 3.8 speedup vs alpha (several gamma, c = 0.05), vs gamma (several alpha,
    c = 0.05) and the optimal speedup vs alpha for several c (``alphas`` default: 0.05..0.95)."""
    alphas = np.linspace(0.05, 0.95, 19) if alphas is None else np.asarray(alphas)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    by_gamma = {g: sp.walltime_improvement(alphas, g, 0.05) for g in gammas}
    for g, s in by_gamma.items():
        axes[0].plot(alphas, s, label=f"gamma={g}")
    axes[0].set_xlabel("acceptance rate alpha")
    axes[0].set_ylabel("walltime improvement")
    axes[0].set_title("speedup vs alpha (c = 0.05)")
    gr = np.arange(1, 21)
    by_alpha = {a: sp.walltime_improvement(a, gr, 0.05) for a in (0.6, 0.8, 0.9)}
    for a, s in by_alpha.items():
        axes[1].plot(gr, s, marker=".", label=f"alpha={a}")
    axes[1].set_xlabel("draft length gamma")
    axes[1].set_ylabel("walltime improvement")
    axes[1].set_title("speedup vs gamma (c = 0.05)")
    best = {c: [sp.optimal_gamma(a, c) for a in alphas] for c in cs}
    for c, vals in best.items():
        axes[2].plot(alphas, [v[1] for v in vals], label=f"c={c}")
    axes[2].set_xlabel("acceptance rate alpha")
    axes[2].set_ylabel("speedup at the optimal gamma")
    axes[2].set_title("optimal speedup vs alpha and c")
    for ax in axes:
        ax.legend()
    fig.suptitle("Leviathan et al. speedup model")
    return {"paths": _save(fig, outdir, "markov_speedup"),
            "data": {"alpha": alphas, "by_gamma": by_gamma, "by_alpha": by_alpha,
                     "optimal": {c: [v[0] for v in vals] for c, vals in best.items()}}}
