"""Exact acceptance of every verification algorithm against the optimum of its own draft law.

:func:`compare_selectors` is the computation behind ``specot compare`` and the reproduce pipeline:
for each draft law and each ``k`` it lists each algorithm's exact acceptance (no sampling), the
exact optimum of membership-cost transport for that law (``solvers.optimal_acceptance``, the
min-cut formula of docs/theory/membership_ot.md#optimal-acceptance-by-min-cut) and their ratio. :func:`compare_random` does it over
random Dirichlet pairs; :func:`plot_comparison` draws the two summary figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from ot_coupling.registry import get_selector
from ot_coupling.validation import validate_k, validate_pair

#: draft law -> [(algorithm label, registry name, constructor kwargs, allowed k or None)]
ALGORITHMS: dict[str, list[tuple[str, str, dict, tuple | None]]] = {
    "iid": [("speculative", "speculative", {}, (1,)), ("naive", "naive", {}, None),
            ("kseq", "kseq", {}, None), ("rrs", "rrs", {}, None), ("optimal", "optimal", {}, None)],
    "without_replacement": [("naive_wor", "naive", {"drafts": "without_replacement"}, None),
                            ("rrs_wor", "rrs_wor", {}, None), ("gumbel", "gumbel", {}, None)],
    "hub": [("spechub", "spechub", {}, (2,))],
    "greedy": [("greedy", "greedy", {}, None)],
}

RECORD_FIELDS = ("law", "algorithm", "k", "acceptance", "optimum", "ratio", "note")


def _optimum(p, q, k: int, law: str) -> tuple[float, str]:
    try:
        from solvers import optimal_acceptance
    except ImportError as exc:  # solvers not installed / not built yet
        return math.nan, f"optimum unavailable ({exc})"
    try:
        return float(optimal_acceptance(p, q, k, draft_law=law)), ""
    except (ValueError, NotImplementedError) as exc:
        return math.nan, str(exc)


def _selector(name: str, kwargs: dict):
    try:
        return get_selector(name, **kwargs), ""
    except ImportError as exc:
        return None, f"{name} unavailable ({exc})"


def compare_selectors(p, q, ks: Iterable[int], laws: Sequence[str] | None = None) -> list[dict]:
    """Records ``{law, algorithm, k, acceptance, optimum, ratio, note}`` for every algorithm of every
    draft law in ``laws`` (default: all of :data:`ALGORITHMS`) and every ``k`` it supports.

    Acceptances are exact; an algorithm that cannot run a case (``k`` above the support, a missing
    optional selector, an exact method over budget) gets ``nan`` and the reason in ``note``. An exact
    method's cost grows with ``k`` (RRS-wor enumerates rejection histories, a superset at larger k),
    so once it refuses at some ``k`` it is not retried at larger ``k``.
    """
    p, q = validate_pair(p, q)
    ks = sorted(validate_k(k) for k in ks)
    laws = list(ALGORITHMS) if laws is None else list(laws)
    for law in laws:
        if law not in ALGORITHMS:
            raise ValueError(f"unknown draft law {law!r}; known: {', '.join(ALGORITHMS)}")
    records = []
    refused: dict[str, str] = {}  # algorithm label -> why it refused at a smaller k
    for law in laws:
        for k in ks:
            algos = [a for a in ALGORITHMS[law] if a[3] is None or k in a[3]]
            if not algos:
                continue
            optimum, opt_note = _optimum(p, q, k, law)
            for label, name, kwargs, _ in algos:
                sel, note = _selector(name, kwargs)
                acc = math.nan
                if label in refused:
                    note = refused[label]
                elif sel is not None:
                    try:
                        acc = float(sel.acceptance(p, q, k))
                    except ValueError as exc:
                        note = str(exc)
                        if "budget" in note or "histories" in note:
                            refused[label] = f"not run: refused at k={k} ({note})"
                ratio = acc / optimum if optimum > 0 else math.nan
                records.append({"law": law, "algorithm": label, "k": k, "acceptance": acc,
                                "optimum": optimum, "ratio": ratio, "note": note or opt_note})
    return records


def compare_random(n: int, vocab: int, ks: Iterable[int], concentration: float = 1.0, seed: int = 0,
                   laws: Sequence[str] | None = None, progress: bool = False) -> list[dict]:
    """:func:`compare_selectors` over ``n`` random Dirichlet(``concentration``) pairs of size
    ``vocab`` (deterministic given ``seed``); each record also carries its ``case`` index.
    ``progress=True`` shows a tqdm bar on stderr."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if vocab < 2:
        raise ValueError(f"vocab must be >= 2, got {vocab}")
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration}")
    rng = np.random.default_rng(seed)
    ks = list(ks)
    records = []
    from tqdm import tqdm

    for case in tqdm(range(n), desc="random pairs", disable=not progress):
        p = rng.dirichlet(np.full(vocab, concentration))
        q = rng.dirichlet(np.full(vocab, concentration))
        records += [{"case": case, **r} for r in compare_selectors(p, q, ks, laws)]
    return records


def _mean_curve(rows: list[dict], field: str) -> list[tuple[int, float]]:
    """``(k, mean of field over finite values)`` for every k with at least one finite value."""
    curve = []
    for k in sorted({r["k"] for r in rows}):
        vals = [r[field] for r in rows if r["k"] == k and math.isfinite(r[field])]
        if vals:
            curve.append((k, float(np.mean(vals))))
    return curve


def plot_comparison(records: list[dict], out_prefix: str) -> list[str]:
    """Write ``<out_prefix>_acceptance.{png,svg}`` (one panel per draft law: mean acceptance vs k
    per algorithm, dashed: mean optimum of the law) and ``<out_prefix>_ratio.{png,svg}`` (one histogram
    panel per algorithm of acceptance / optimum, with its median and the 1 - 1/e line). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from specot.reproduce.style import legend_outside, line, method_style

    paths = []
    laws = list(dict.fromkeys(r["law"] for r in records))
    ncols = min(2, len(laws))
    nrows = -(-len(laws) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4 * nrows), squeeze=False, layout="constrained")
    for ax, law in zip(axes.ravel(), laws):
        rows = [r for r in records if r["law"] == law]
        opt = _mean_curve(rows, "optimum")
        if opt:
            ax.plot(*zip(*opt), "k--", marker="x", label="optimum of the draft law", zorder=5)
        for algo in dict.fromkeys(r["algorithm"] for r in rows):
            pts = _mean_curve([r for r in rows if r["algorithm"] == algo], "acceptance")
            if pts:
                ax.plot(*zip(*pts), **line(algo))
        ks = sorted({r["k"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("number of drafts k")
        ax.set_ylabel("mean acceptance P(Y in drafts)")
        ax.set_title(f"draft law: {law}")
    for ax in axes.ravel()[len(laws):]:
        ax.set_visible(False)
    fig.suptitle("Exact acceptance vs k (dashed: optimum of the draft law)")
    legend_outside(fig, axes.ravel()[:len(laws)], ncols=4)
    for ext in ("png", "svg"):
        fig.savefig(f"{out_prefix}_acceptance.{ext}")
        paths.append(f"{out_prefix}_acceptance.{ext}")
    plt.close(fig)

    # ratio to the optimum: one panel per algorithm (small multiples, shared axes), not overlaid
    algos = list(dict.fromkeys(r["algorithm"] for r in records))
    data = [[r["ratio"] for r in records if r["algorithm"] == a and np.isfinite(r["ratio"])] for a in algos]
    kept = [(a, d) for a, d in zip(algos, data) if d]
    ncols = min(4, max(len(kept), 1))
    nrows = max(-(-len(kept) // ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows + 0.8), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    for ax, (algo, d) in zip(axes.ravel(), kept):
        ax.hist(np.clip(d, 0.0, 1.0), bins=30, range=(0.0, 1.0), color=method_style(algo)["color"])
        ax.axvline(1 - 1 / math.e, color="k", linestyle=":", linewidth=1)
        ax.axvline(float(np.median(d)), color="k", linewidth=1)
        ax.set_title(f"{method_style(algo)['label']}\nn = {len(d)}, median {np.median(d):.3f}", fontsize=8)
        ax.tick_params(labelbottom=True)
    for ax in axes.ravel()[len(kept):]:
        ax.set_visible(False)
    for ax in axes.ravel()[:len(kept)]:
        ax.set_xlabel("acceptance / optimum of its law", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("count (cases x k)")
    fig.suptitle("Ratio to the optimum per algorithm (solid: median; dotted: 1 - 1/e)")
    for ext in ("png", "svg"):
        fig.savefig(f"{out_prefix}_ratio.{ext}")
        paths.append(f"{out_prefix}_ratio.{ext}")
    plt.close(fig)
    return paths


def write_csv(records: list[dict], path: str) -> None:
    """Write records as CSV (columns: ``case`` if present, then :data:`RECORD_FIELDS`), atomically
    (a temporary file moved into place: an interruption leaves the old file or the new one)."""
    import csv
    import io

    from specot.io import atomic_write_text

    fields = (["case"] if records and "case" in records[0] else []) + list(RECORD_FIELDS)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in records:
        writer.writerow({f: r.get(f) for f in fields})
    atomic_write_text(path, buf.getvalue())
