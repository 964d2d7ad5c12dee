"""SpecTr: Sun, Suresh, Ro, Beirami, Jain, Yu, "SpecTr: Fast Speculative Decoding via Optimal
Transport" (NeurIPS 2023, arXiv 2310.15141; docs/theory/token_verifiers.md#k-seq).

* Acceptance vs k of K-SEQ (k-sequential selection with rho*), RRS (SpecInfer), naive verification
  and the exact optimum ``alpha* = min_H [p(H) + 1 - q(H)^k]`` (docs/theory/membership_ot.md#the-prefix-cut-for-iid-drafts).
* The (1 - 1/e) guarantee: ``alpha_KSEQ >= (1 - 1/e) alpha*`` (abstract).
* Block efficiency (tokens per target call) of k draft sequences of L tokens (the SpecTr tree,
  docs/theory/token_verifiers.md#trees-of-drafts) on a Markov model and on a real-text n-gram pair.
* The wall-clock model behind "2.13x, 1.37x over speculative decoding" (abstract) with SpecTr's
  K = 8, L = 8 and block efficiencies 4.0 vs 2.9 (as quoted by secondary sources).
"""

from __future__ import annotations

import itertools

import numpy as np

from .common import acceptance_table, available, mean_curves
from .core import Claim, Context, ExperimentResult, MissingPiece, require
from .pairs import NGRAM, dirichlet_pairs, ngram_description, ngram_pairs
from .plotting import new_figure, style

PAPER = "SpecTr (Sun et al. 2023)"
METHODS = ["optimum", "kseq", "rrs", "naive"]
#: smallest K-SEQ / optimum ratios found in random searches (docs/theory/token_verifiers.md#approximation-guarantee), k -> ratio
NOTES_MIN_RATIO = {2: 0.8895, 3: 0.8665, 4: 0.8601, 8: 0.8479, 16: 0.8460}


def run(ctx: Context) -> ExperimentResult:
    res = ExperimentResult()
    methods, missing = available(METHODS)
    if not {"optimum", "kseq"} <= set(methods):
        raise MissingPiece("selector 'kseq' and solvers.optimal_acceptance")
    if missing:
        res.notes.append(f"selectors not available in this build, left out: {', '.join(missing)}")
    tables = _acceptance(ctx, res, methods)
    _ratio(ctx, res, tables, methods)
    _block_efficiency(ctx, res)
    _speedup_model(res)
    return res


# ----------------------------------------------------------------------------------- acceptance
def _acceptance(ctx: Context, res: ExperimentResult, methods: list[str]) -> dict:
    ks = [1, 2, 3, 4, 6, 8, 12, 16] if not ctx.quick else [1, 2, 4, 8, 16]
    n = ctx.size(24, 400)
    sets = {"random Dirichlet(0.5) pairs, V = 50": dirichlet_pairs(ctx.rng("spectr-dir"), n, 50, 0.5),
            "n-gram real-text pair": ngram_pairs(ctx.rng("spectr-ngram"), n)}
    res.notes.append(f"n-gram pair: {ngram_description()}")
    fig, axes = new_figure(2, title=f"{PAPER}: acceptance vs number of drafts")
    out = {}
    for ax, (label, pairs) in zip(axes, sets.items()):
        tables = ctx.map(acceptance_table, [(p, q, ks, methods) for p, q in pairs], desc=f"acceptance ({label})")
        means = mean_curves(tables, methods)
        for m in methods:
            ax.plot(ks, means[m], ms=4, **style(m))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("number of drafts k (i.i.d. from the draft)")
        ax.set_ylabel(f"mean acceptance over {n} pairs")
        ax.set_title(label)
        out[label] = (ks, tables)
        res.data[f"acceptance: {label}"] = {"k": ks, **means}
    axes[0].legend(loc="lower right")
    res.add_figure("acceptance_vs_k", fig,
                   "Mean exact acceptance P(Y in drafts) of K-SEQ, RRS (SpecInfer) and naive verification against the "
                   "exact optimum for i.i.d. drafts, on random pairs (left) and on next-token pairs of a real-text "
                   "n-gram target/draft (right).")
    return out


def _ratio(ctx: Context, res: ExperimentResult, sets: dict, methods: list[str]) -> None:
    fig, axes = new_figure(1, width=5.8, title=f"{PAPER}: K-SEQ and RRS relative to the optimum")
    ax = axes[0]
    e = 1 - 1 / np.e
    worst = {}
    for (label, (ks, tables)), ls in zip(sets.items(), ("-", "--")):
        opt = np.array([t["optimum"] for t in tables])
        for m in ("kseq", "rrs"):
            if m not in methods:
                continue
            ratio = np.array([t[m] for t in tables]) / opt
            st = style(m)
            ax.plot(ks, ratio.min(axis=0), linestyle=ls, marker=st["marker"], color=st["color"],
                    label=f"{st['label']}, min, {label.split(',')[0]}")
            if m == "kseq":
                for k, r in zip(ks, ratio.min(axis=0)):
                    worst[k] = min(worst.get(k, 1.0), float(r))
    kk = np.arange(1, 17)
    ax.plot(kk, 1 - (1 - 1 / kk) ** kk, color="tab:red", linestyle=":", label="1 - (1 - 1/k)^k")
    ax.axhline(e, color="tab:red", label="1 - 1/e (SpecTr guarantee for K-SEQ)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sets[next(iter(sets))][0], [str(k) for k in sets[next(iter(sets))][0]])
    ax.set_ylim(0.55, 1.02)
    ax.set_xlabel("number of drafts k")
    ax.set_ylabel("acceptance / optimal acceptance (worst pair)")
    ax.set_title("worst-case ratio to the optimum over the sampled pairs")
    ax.legend(loc="lower left", fontsize=7)
    res.add_figure("ratio_to_optimum", fig,
                   "Smallest ratio of K-SEQ's (and RRS's) acceptance to the exact optimum over the sampled pairs, "
                   "against SpecTr's (1 - 1/e) guarantee.")
    low = min(worst.values())
    res.claims.append(Claim(f"{PAPER}, abstract", "K-SEQ is (1 - 1/e)-optimal: min over pairs and k of "
                            "alpha_KSEQ / alpha*", f">= {e:.4f}", low, bool(low >= e - 1e-12)))
    common = [k for k in worst if k in NOTES_MIN_RATIO]
    res.claims.append(Claim(
        "docs/theory/token_verifiers.md#approximation-guarantee (random search, 4000+ instances per k)",
        "in practice the ratio stays far above 1 - 1/e (worst ratio at k = " + ", ".join(map(str, common))
        + "; a ratio below 0.8 would flag a bug)",
        " / ".join(f"{NOTES_MIN_RATIO[k]:.4f}" for k in common), " / ".join(f"{worst[k]:.4f}" for k in common),
        bool(all(worst[k] >= 0.8 for k in common)),
        "both are minima over random instances (ours: the pairs of this run), so ours may fall slightly below "
        "the notes' minimum"))


# ----------------------------------------------------------------------------------- block efficiency
def _markov_pair(seed: int):
    random_pair = require("markov.builders", "random_pair")
    return random_pair(16, tv_gap=0.4, seed=seed)


def _block_task(item) -> tuple[float, float]:
    """Task: (pair kind, selector, k, L, n_tokens, n_runs, seed) -> (block efficiency, its SE)."""
    kind, selector, k, L, n_tokens, n_runs, seed = item
    simulate = require("markov.simulate", "simulate")
    if kind == "markov":
        target, draft = _markov_pair(seed[0])
    else:
        from .pairs import _ngram_models

        target, draft, _, _ = _ngram_models(NGRAM["target_order"], NGRAM["draft_order"], NGRAM["vocab_size"])
    out = simulate(target, draft, selector, k=k, gamma=L, n_tokens=n_tokens, n_runs=n_runs, seed=seed[1])
    return float(out.block_efficiency), float(out.block_efficiency_se)


def _block_efficiency(ctx: Context, res: ExperimentResult) -> None:
    require("markov.simulate", "simulate")
    exact = require("markov.exact", "expected_block_efficiency")
    chain_seed = ctx.seeds("spectr-chain", 1)[0]
    n_tokens = 64
    fig, axes = new_figure(2, title=f"{PAPER}: block efficiency of k drafts x L tokens")
    grids = {}
    for ax, kind in zip(axes, ("markov", "ngram")):
        ks = [1, 2, 4, 8] if kind == "markov" or not ctx.quick else [1, 8]
        Ls = ctx.size([1, 2, 4, 8] if kind == "markov" else [2, 4, 8], [1, 2, 3, 4, 5, 6, 7, 8])
        runs = ctx.size(150, 2000) if kind == "markov" else ctx.size(80, 1000)
        items = [(kind, "speculative" if k == 1 else "kseq", k, L, n_tokens, runs, (chain_seed, s))
                 for (k, L), s in zip(itertools.product(ks, Ls), ctx.seeds(f"spectr-be-{kind}", len(ks) * len(Ls)))]
        vals = ctx.map(_block_task, items, desc=f"block efficiency ({kind})")
        be = np.array([v[0] for v in vals]).reshape(len(ks), len(Ls))
        se = np.array([v[1] for v in vals]).reshape(len(ks), len(Ls))
        grids[kind] = (ks, Ls, be, se)
        colors = {1: "tab:green", 2: "tab:orange", 4: "tab:purple", 8: "tab:blue"}
        for i, k in enumerate(ks):
            ax.errorbar(Ls, be[i], yerr=2 * se[i], marker="o", ms=4, capsize=2, color=colors[k],
                        label=("speculative sampling, k = 1" if k == 1 else f"K-SEQ, k = {k}") + " (simulated)")
        if kind == "markov":
            target, draft = _markov_pair(chain_seed)
            for i, k in enumerate(ks):
                ex = [exact(target, draft, "speculative" if k == 1 else "rrs", k=k, gamma=L, n_tokens=n_tokens
                            ).block_efficiency for L in Ls]
                ax.plot(Ls, ex, linestyle=":", color=colors[k], label=f"{'SD' if k == 1 else 'RRS'}, k = {k} (exact DP)")
                if k == 1:
                    z = np.max(np.abs(be[0] - np.array(ex)) / se[0])
                    res.claims.append(Claim(
                        "markov.exact vs markov.simulate", "simulated block efficiency of speculative sampling "
                        "equals the exact DP (max |z| over L)", "|z| <= 5", float(z), bool(z <= 5)))
            ax.set_title("random Markov pair (V = 16, TV = 0.4 per context)")
        else:
            ax.set_title("n-gram real-text pair (order 3 vs order 2, V = 48)")
        ax.set_xlabel("draft length L (tokens per draft sequence)")
        ax.set_ylabel("block efficiency (tokens per target call)")
        ax.legend(loc="upper left", fontsize=7)
    res.add_figure("block_efficiency", fig,
                   f"Block efficiency (tokens per target call, {n_tokens}-token generations) of the SpecTr tree with k "
                   "i.i.d. draft sequences of L tokens verified by K-SEQ at every depth (simulated, +-2 SE), on a "
                   "random Markov pair with exact RRS/SD values (left) and on the n-gram real-text pair (right; the "
                   "byte-level model pair is not used in quick mode).")
    ks, Ls, be, se = grids["ngram"]
    if 8 in Ls:
        i, j = ks.index(8), Ls.index(8)
        ratio = be[i, j] / be[0, j]
        ratio_se = ratio * np.hypot(se[i, j] / be[i, j], se[0, j] / be[0, j])
        res.claims.append(Claim(
            f"{PAPER} (K = 8, L = 8; quoted by secondary sources)",
            "block efficiency of K-SEQ with 8 drafts over single-draft SD (n-gram pair, L = 8)",
            f"4.0 / 2.9 = {4.0 / 2.9:.3f}", f"{be[i, j]:.2f} / {be[0, j]:.2f} = {ratio:.3f} +- {ratio_se:.3f}",
            bool(ratio > 1), "holds if > 1 (K-SEQ's gain); the magnitude depends on the pair: PaLM-2 "
            "Gecko -> Bison in the paper, an n-gram pair here"))
        res.data["block_efficiency"] = {kind: {"k": g[0], "L": g[1], "be": g[2], "se": g[3]}
                                        for kind, g in grids.items()}


# ----------------------------------------------------------------------------------- speedup model
def _speedup_model(res: ExperimentResult) -> None:
    """WS = BE / (L c + t_verify) (docs/theory/markov.md#many-drafts-and-the-roofline; Leviathan Thm 3.8 with k drafts): which draft/target
    cost ratio c (and verification cost t_verify, in target calls) make SpecTr's numbers consistent?"""
    CostModel = require("markov.speedup", "CostModel")
    L, K, be_spectr, be_sd, ws, over = 8, 8, 4.0, 2.9, 2.13, 1.37
    ws_sd = ws / over

    def implied_c(be, speedup):
        return (be / speedup - 1.0) / L  # solves CostModel(c).speedup(be, L) = speedup for capacity = inf

    c_sd, c_tr = implied_c(be_sd, ws_sd), implied_c(be_spectr, ws)
    for c, be, target in ((c_sd, be_sd, ws_sd), (c_tr, be_spectr, ws)):
        assert abs(CostModel(c=c).speedup(be, L, 1) - target) < 1e-9  # the inversion is the library's model
    # rounding intervals of the printed numbers (4.0, 2.9 to 0.05; 2.13, 1.37 to 0.005)
    corners = []
    for b1, b0, w, o in itertools.product((3.95, 4.05), (2.85, 2.95), (2.125, 2.135), (1.365, 1.375)):
        c = (b0 / (w / o) - 1) / L
        corners.append(b1 / w - L * c)  # verification cost of the K x L tree in target calls
    t_verify = be_spectr / ws - L * c_sd
    cs = np.linspace(0, 0.3, 301)
    fig, axes = new_figure(1, width=5.8, title=f"{PAPER}: what cost ratio explains 2.13x and 1.37x?")
    ax = axes[0]
    ax.plot(cs, [CostModel(c=c).speedup(be_spectr, L, K) for c in cs], color=style("kseq")["color"],
            label=f"SpecTr, K = {K}, L = {L}, block efficiency {be_spectr}")
    ax.plot(cs, [CostModel(c=c).speedup(be_sd, L, 1) for c in cs], color=style("speculative")["color"],
            label=f"speculative decoding, L = {L}, block efficiency {be_sd}")
    ax.axhline(ws, color=style("kseq")["color"], linestyle=":", label=f"reported {ws}x")
    ax.axhline(ws_sd, color=style("speculative")["color"], linestyle=":", label=f"implied {ws}/{over} = {ws_sd:.3f}x")
    for c in (c_tr, c_sd):
        ax.axvline(c, color="0.5", linewidth=0.8)
    ax.set_xlabel("draft/target cost ratio c (per draft step)")
    ax.set_ylabel("wall-clock speedup over autoregressive (x)")
    ax.set_title("WS = block efficiency / (L c + 1) (memory-bound verification)")
    ax.legend(loc="upper right", fontsize=7)
    res.add_figure("speedup_model", fig,
                   "The memory-bound wall-clock model WS = BE / (L c + 1) for SpecTr's reported block efficiencies; "
                   "the vertical lines are the cost ratios c at which each curve meets the reported speedup.")
    res.claims.append(Claim.close(f"{PAPER}, abstract", "1.37x over speculative decoding = ratio of block "
                                  "efficiencies 4.0 / 2.9 at equal step cost", over, be_spectr / be_sd, atol=0.01,
                                  note="4.0 and 2.9 are rounded to 0.05"))
    res.claims.append(Claim(
        f"{PAPER}, abstract", "2.13x and 2.13/1.37x imply the same draft/target cost ratio c "
        "(c from SpecTr / c from SD)", "one c", f"{c_tr:.4f} / {c_sd:.4f}", bool(abs(c_tr - c_sd) <= 0.005),
        "memory-bound model: verifying the 8 x 8 tree costs one target call"))
    res.claims.append(Claim(
        f"{PAPER} (implied)", "with c fixed by SD, verifying the K x L = 64-node tree costs one target call "
        "(implied cost in target calls; range over the rounding of the printed numbers)", 1.0,
        f"{t_verify:.3f} [{min(corners):.3f}, {max(corners):.3f}]", bool(min(corners) <= 1.0 <= max(corners))))
    res.data["speedup_model"] = {"c_spectr": c_tr, "c_sd": c_sd, "t_verify": t_verify}
