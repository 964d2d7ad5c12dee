"""The flagship: the exact optimal k-draft verifier against K-SEQ and RRS at k = 2, 4, 8, 16.

The optimal verifier (docs/theory/optimal_verifier.md: the selection law r* = q clip(p/q, thB, thA)
followed by single-draft speculative sampling, registered as the ``"optimal"`` selector) reaches
the min-cut optimum ``alpha* = min_H [p(H) + 1 - q(H)^k]`` (docs/theory/membership_ot.md#the-prefix-cut-for-iid-drafts) at any vocabulary
size. Khisti et al. (ICLR 2025, Table 3) measured the optimum only 1-4
acceptance points above SpecTr (K-SEQ) and SpecInfer (RRS) on OPT-125M -> OPT-13B; we measure the
same gaps on a realistic pair (an n-gram target/draft fitted to real text).
"""

from __future__ import annotations

import numpy as np

from .common import acceptance_table, available, goodness_of_fit, mean_curves
from .core import Claim, Context, ExperimentResult, MissingPiece, require
from .pairs import bytes_pair_cached, model_pairs, ngram_description, ngram_pairs
from .plotting import new_figure, style

KS = [2, 4, 8, 16]
METHODS = ["optimal", "optimum", "kseq", "rrs", "rrs_wor", "naive"]
#: Khisti et al. Table 3 (Dolly, K = 2, 4, 8): optimum, SpecTr, SpecInfer acceptance.
KHISTI_DOLLY = {"optimum": [0.6384, 0.6731, 0.6962], "kseq": [0.6246, 0.6560, 0.6800],
                "rrs": [0.6202, 0.6489, 0.6722]}


def _sampled(item) -> tuple[int, int, np.ndarray]:
    """Task: (p, q, k, n, seed) -> (accepted count, n, output token counts) of the optimal verifier
    run on ``n`` draft tuples drawn from its draft law."""
    p, q, k, n, seed = item
    sel = require("ot_coupling.registry", "get_selector")("optimal")
    law = require("ot_coupling.draft_laws", "get_draft_law")(sel.draft_law)
    rng = np.random.default_rng(seed)
    P, Q = np.tile(p, (n, 1)), np.tile(q, (n, 1))
    drafts = law.sample_batch(Q, k, rng)
    tokens, accepted = sel.verify_batch(P, Q, drafts, rng)
    return int(np.sum(accepted)), n, np.bincount(tokens, minlength=p.size)


def run(ctx: Context) -> ExperimentResult:
    res = ExperimentResult()
    methods, missing = available(METHODS if not ctx.quick else [m for m in METHODS if m != "rrs_wor"])
    if "optimal" not in methods:
        raise MissingPiece("selector 'optimal' (solvers.optimal_verifier)")
    if missing:
        res.notes.append(f"selectors not available in this build, left out: {', '.join(missing)}")
    n = ctx.size(48, 1000)
    pairs = ngram_pairs(ctx.rng("optimal-ngram"), n)
    res.notes.append(f"realistic pair: {ngram_description()}; {n} contexts")
    tables = ctx.map(acceptance_table, [(p, q, KS, methods) for p, q in pairs], desc="optimal vs K-SEQ/RRS")
    means = mean_curves(tables, methods)
    res.data["ngram"] = {"k": KS, **means}
    methods = [m for m in methods if m != "optimum"]  # plotted: the verifier, which attains it

    fig, axes = new_figure(2, title="Optimal verifier vs K-SEQ / RRS on a real-text n-gram pair")
    width = 0.8 / len(methods)
    x = np.arange(len(KS))
    for i, m in enumerate(methods):
        axes[0].bar(x + (i - (len(methods) - 1) / 2) * width, means[m], width,
                    color=style(m).get("color"), label=style(m)["label"])
    axes[0].set_xticks(x, [str(k) for k in KS])
    axes[0].set_xlabel("number of drafts k")
    axes[0].set_ylabel(f"mean acceptance over {n} contexts")
    axes[0].set_ylim(0, 1.22)
    axes[0].set_yticks(np.linspace(0, 1, 6))
    axes[0].set_title("acceptance P(Y in drafts)")
    axes[0].legend(loc="upper center", ncols=2, fontsize=7)
    for m in methods:
        if m in ("optimal", "rrs_wor", "naive"):
            continue
        axes[1].plot(KS, 100 * (means["optimal"] - means[m]), **style(m))
    for m, label in (("kseq", "K-SEQ"), ("rrs", "SpecInfer")):
        gaps = 100 * (np.array(KHISTI_DOLLY["optimum"]) - np.array(KHISTI_DOLLY[m]))
        axes[1].plot([2, 4, 8], gaps, linestyle="", marker=style(m).get("marker"), mfc="none", ms=9,
                     color=style(m).get("color"), label=f"Khisti et al. Dolly, {label}")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(KS, [str(k) for k in KS])
    axes[1].set_xlabel("number of drafts k")
    axes[1].set_ylabel("optimum minus method (acceptance points, %)")
    axes[1].set_title("gap to the i.i.d. optimum")
    axes[1].legend(fontsize=7)
    res.add_figure("optimal_vs_kseq_rrs", fig,
                   "Mean exact acceptance of the optimal verifier, K-SEQ, RRS and naive verification at k = 2, 4, 8, "
                   "16 on the n-gram pair (left), and the gap of K-SEQ and RRS to the optimum in acceptance points, with Khisti et al.'s OPT-125M/13B Dolly gaps as open "
                   "markers (right).")

    err = max(float(np.max(np.abs(np.array(t["optimal"]) - np.array(t["optimum"])))) for t in tables)
    res.claims.append(Claim(
        "docs/theory/optimal_verifier.md (selection law + speculative sampling)",
        "the optimal verifier's exact acceptance equals the min-cut optimum at k = 2..16 (max abs error)",
        0.0, err, err <= 1e-9, f"{len(tables)} contexts x k in {KS}; tolerance 1e-9"))
    _sampling_claim(ctx, res, pairs)
    if ctx.quick:  # quick runs stay a pure function of the seed, whatever a machine has cached
        cached = "cached here" if bytes_pair_cached() else "trained once, about a minute on 2 cores"
        res.notes.append(f"byte-level model pair (gpu_backend.models 'bytes'): only in --full runs ({cached})")
    else:
        try:
            _real_pair(ctx, res, [m for m in methods if m != "rrs_wor"])
        except MissingPiece as exc:
            res.notes.append(f"real model pair left out: {exc}")

    for j, k in enumerate(KS[:3]):
        ours = [100 * (means["optimal"][j] - means[m][j]) for m in ("kseq", "rrs") if m in methods]
        paper = [100 * (KHISTI_DOLLY["optimum"][j] - KHISTI_DOLLY[m][j]) for m in ("kseq", "rrs")]
        res.claims.append(Claim(
            "Khisti et al. 2025 Table 3 (OPT-125M -> OPT-13B, Dolly)",
            f"the optimum is only a few acceptance points above K-SEQ / RRS (k = {k}; points)",
            " / ".join(f"{v:.2f}" for v in paper), " / ".join(f"{v:.2f}" for v in ours),
            bool(all(0 < o <= 3 * v for o, v in zip(ours, paper))),
            "holds if each gap is positive and within 3x the paper's; our pair is an n-gram pair, not OPT, "
            "so only the order of magnitude is comparable"))
    if {"kseq", "rrs"} <= set(methods):
        order_ok = bool(np.all(means["optimal"] >= means["kseq"] - 1e-12) and np.all(means["kseq"] > means["rrs"]))
        res.claims.append(Claim(
            "Khisti et al. 2025 Table 3", "mean acceptance ordering optimum >= K-SEQ > RRS at every k",
            "holds at K = 2, 4, 8", ", ".join(f"k={k}: {a:.3f}/{b:.3f}/{c:.3f}" for k, a, b, c in
                                              zip(KS, means["optimal"], means["kseq"], means["rrs"])), order_ok))
    return res


def _real_pair(ctx: Context, res: ExperimentResult, methods: list[str]) -> None:
    """The same comparison on next-token laws of two byte-level transformers (V = 256)."""
    n = ctx.size(16, 128)
    pairs, description = model_pairs("bytes", n, ctx.seeds("optimal-bytes", 1)[0] % 2**31)
    res.notes.append(f"real model pair: {description}; {n} decoding steps of a target sample")
    tables = ctx.map(acceptance_table, [(p, q, KS, methods + ["optimum"]) for p, q in pairs],
                     desc="optimal vs K-SEQ/RRS (bytes)")
    means = mean_curves(tables, methods)
    res.data["bytes"] = {"k": KS, **means}
    fig, axes = new_figure(1, width=5.8, title="Optimal verifier vs K-SEQ / RRS on byte-level transformers")
    ax = axes[0]
    for m in methods:
        ax.plot(KS, means[m], ms=5, **style(m))
    ax.set_xscale("log", base=2)
    ax.set_xticks(KS, [str(k) for k in KS])
    ax.set_xlabel("number of drafts k")
    ax.set_ylabel(f"mean acceptance over {n} decoding steps")
    ax.set_title("next-byte laws of two small transformers (V = 256)")
    ax.legend(loc="lower right")
    res.add_figure("optimal_bytes", fig,
                   "Mean exact acceptance of the optimal verifier, K-SEQ, RRS and naive verification on the next-byte "
                   "laws of two small transformers trained on CPython's docs, along a target sample.")
    err = max(float(np.max(np.abs(np.array(t["optimal"]) - np.array(t["optimum"])))) for t in tables)
    res.claims.append(Claim(
        "docs/theory/optimal_verifier.md", "on the byte-level transformer pair the optimal verifier attains the "
        "min-cut optimum (max abs error)", 0.0, err, err <= 1e-9, f"{n} steps x k in {KS}"))
    if {"kseq", "rrs"} <= set(methods):
        gaps = [100 * (means["optimal"][j] - means[m][j]) for j in range(3) for m in ("kseq", "rrs")]
        paper = [100 * (KHISTI_DOLLY["optimum"][j] - KHISTI_DOLLY[m][j]) for j in range(3) for m in ("kseq", "rrs")]
        res.claims.append(Claim(
            "Khisti et al. 2025 Table 3", "on real transformer laws the optimum is only a few points above K-SEQ / "
            "RRS (k = 2, 4, 8; points, K-SEQ / RRS per k)", " / ".join(f"{v:.2f}" for v in paper),
            " / ".join(f"{g:.2f}" for g in gaps), bool(all(0 < g <= 3 * v for g, v in zip(gaps, paper))),
            "holds if each gap is positive and within 3x the paper's. Our byte-level draft (d = 32, one "
            "layer) is far weaker relative to its target than OPT-125M to OPT-13B, and the gap to the optimum grows "
            "as draft and target disagree"))


def _sampling_claim(ctx: Context, res: ExperimentResult, pairs) -> None:
    """Run the optimal verifier itself (drafts sampled, coins flipped) on one context: the acceptance
    rate and every token's frequency must agree with the exact values within 6 standard errors."""
    k, n_tasks, per = 2, 4, ctx.size(500, 25000)
    sel = require("ot_coupling.registry", "get_selector")("optimal")
    exacts = [float(sel.acceptance(p, q, k)) for p, q in pairs[:16]]
    i = int(np.argmin(exacts))  # the hardest of the first contexts: acceptance well below 1
    p, q, exact = *pairs[i], exacts[i]
    out = ctx.map(_sampled, [(p, q, k, per, s) for s in ctx.seeds("optimal-sampling", n_tasks)],
                  desc="optimal verifier sampling")
    acc = sum(o[0] for o in out)
    n = sum(o[1] for o in out)
    counts = sum(o[2] for o in out)
    z_acc = abs(acc / n - exact) / np.sqrt(max(exact * (1 - exact), 1e-12) / n)
    pval = goodness_of_fit(counts, p)
    res.claims.append(Claim(
        "docs/theory/token_verifiers.md#verifiers-as-conditional-laws", f"sampled optimal verifier (k={k}, {n} draws): acceptance rate within "
        "5 SE of the exact value, and output tokens ~ target (chi-square p-value)", "|z| <= 5, p >= 1e-6",
        f"|z| = {z_acc:.2f}, p = {pval:.3g}", bool(z_acc <= 5 and pval >= 1e-6),
        f"empirical acceptance {acc / n:.4f} vs exact {exact:.4f}; false-alarm rate about 1e-6"))
