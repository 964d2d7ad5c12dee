"""The one style table of the project's figures: a colour (and marker) per method, a line style per
number of drafts k, and the helpers every figure uses for legends, confidence bands and truncated
series.

Rules (issue 14): a method has the same colour in every figure; a curve for k drafts has the same
line style in every figure (when the figure distinguishes k); legends sit outside the data; every
simulated curve carries a confidence band; a series that stops early is marked where it stops.
New verifiers (e.g. sequence-level selection rules) take a colour from :data:`EXTRA_COLOURS` via
:func:`method_style`, in a stable order, or register one with :func:`register_method`.
"""

from __future__ import annotations

#: method -> colour, marker, label. Exact optima are black/grey; verifiers have tab10/tab20 colours.
METHODS: dict[str, dict] = {
    "optimum": {"color": "black", "marker": "*", "label": "optimum, i.i.d. drafts (min-cut)"},
    "optimum (wor)": {"color": "0.45", "marker": "P", "label": "optimum, drafts w/o replacement"},
    "speculative": {"color": "#2ca02c", "marker": "d", "label": "speculative sampling (k = 1)"},
    "naive": {"color": "#c7a22a", "marker": "x", "label": "naive (sample p, accept if drafted)"},
    "kseq": {"color": "#1f77b4", "marker": "o", "label": "K-SEQ (SpecTr)"},
    "rrs": {"color": "#ff7f0e", "marker": "s", "label": "RRS / SpecInfer (i.i.d.)"},
    "rrs_wor": {"color": "#d62728", "marker": "v", "label": "RRS w/o replacement"},
    "spechub": {"color": "#8c564b", "marker": "h", "label": "SpecHub"},
    "greedy": {"color": "#bcbd22", "marker": "<", "label": "greedy drafts"},
    "gumbel": {"color": "#9467bd", "marker": "^", "label": "shared-Gumbel coupling"},
    "optimal": {"color": "#17becf", "marker": "*", "label": "optimal verifier"},
    "optimal_lp": {"color": "#0b6e78", "marker": "X", "label": "optimal plan (LP)"},
    "bv": {"color": "#e377c2", "marker": "D", "label": "block verification"},
    "gbv": {"color": "#a0307a", "marker": "p", "label": "greedy multi-path block verification"},
    "traversal": {"color": "#ff9896", "marker": ">", "label": "traversal verification"},
    "spectr": {"color": "#1f77b4", "marker": "o", "label": "SpecTr tree (K-SEQ at every depth)"},
    "specinfer": {"color": "#ff7f0e", "marker": "s", "label": "SpecInfer tree (RRS at every depth)"},
}

#: colours left for methods not in :data:`METHODS` (new sequence rules), handed out in order.
EXTRA_COLOURS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1"]
_EXTRA: dict[str, dict] = {}

#: number of drafts k -> line style (the same k looks the same in every figure).
K_LINESTYLES: dict[int, object] = {1: "-", 2: "--", 3: (0, (5, 1, 1, 1)), 4: "-.", 6: (0, (3, 1, 1, 1, 1, 1)),
                                   8: ":", 12: (0, (1, 1)), 16: (0, (8, 2))}

#: the reference lines (bounds, paper values) of every figure.
REFERENCE = {"color": "black", "linewidth": 0.9}
PAPER_MARKER = {"marker": "*", "color": "black", "ms": 11, "linestyle": "", "zorder": 5}
BAND_ALPHA = 0.18


def register_method(name: str, color: str, marker: str = "o", label: str | None = None) -> None:
    """Add a method to the table (``ValueError`` if ``name`` is taken by another colour)."""
    if name in METHODS and METHODS[name]["color"] != color:
        raise ValueError(f"method {name!r} already has colour {METHODS[name]['color']}")
    METHODS[name] = {"color": color, "marker": marker, "label": label or name}


def method_style(method: str) -> dict:
    """``color``, ``marker`` and ``label`` of ``method`` (a new one gets the next extra colour)."""
    if method in METHODS:
        return dict(METHODS[method])
    if method not in _EXTRA:
        _EXTRA[method] = {"color": EXTRA_COLOURS[len(_EXTRA) % len(EXTRA_COLOURS)], "marker": "o", "label": method}
    return dict(_EXTRA[method])


def k_linestyle(k: int | None) -> object:
    """The line style of a curve for ``k`` drafts (solid when ``k`` is ``None``)."""
    if k is None:
        return "-"
    return K_LINESTYLES.get(int(k), (0, (2, 1, 6, 1)))


def line(method: str, k: int | None = None, **extra) -> dict:
    """Plot keywords of ``method`` (at ``k`` drafts when the figure distinguishes k)."""
    st = method_style(method)
    out = {"color": st["color"], "marker": st["marker"], "linestyle": k_linestyle(k), "label": st["label"]}
    if k is not None:
        out["label"] = f"{st['label']}, k = {k}"
    out.update(extra)
    return out


def band(ax, x, mean, half_width, color, label: str | None = None) -> None:
    """A confidence band ``mean +- half_width`` (shaded, the colour of its curve)."""
    import numpy as np

    mean, half_width = np.asarray(mean, float), np.asarray(half_width, float)
    ax.fill_between(x, mean - half_width, mean + half_width, color=color, alpha=BAND_ALPHA, linewidth=0,
                    label=label)


def mark_truncated(ax, x, y, text: str, color: str) -> None:
    """Mark the last finite point of a series that stops early (a hollow ring and a note)."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y)
    if not ok.any() or ok.all():
        return
    i = int(np.flatnonzero(ok)[-1])
    ax.plot([x[i]], [y[i]], marker="o", ms=11, mfc="none", mec=color, mew=1.3, linestyle="")
    ax.annotate(text, (x[i], y[i]), xytext=(14, -34), textcoords="offset points", fontsize=7, color=color,
                arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.8},
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})


def legend_outside(fig, axes, *, ncols: int = 3, extra_height: float = 0.25) -> None:
    """One legend for the figure, below the axes (never over the data); duplicates dropped."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_") and lab not in seen:
                seen[lab] = h
    if not seen:
        return
    rows = -(-len(seen) // ncols)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, fontsize=7.5,
               frameon=False)
    fig.set_figheight(fig.get_figheight() + extra_height * rows)


def legend_below(ax, *, ncols: int = 2) -> None:
    """A legend for one axes, under it (outside the data)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=ncols, fontsize=7.5, frameon=False)
