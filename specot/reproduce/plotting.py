"""Figure helpers: object-oriented matplotlib (no pyplot state, works under any backend), one
style for every figure (:mod:`specot.reproduce.style`), and saving as PNG + SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from .style import METHODS, legend_outside, line, method_style  # noqa: F401 - the one style table

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 110,
    "savefig.dpi": 130,
    "svg.hashsalt": "specot",  # deterministic SVG ids
}


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.2, height: float = 3.8,
               title: str | None = None, **subplot_kw):
    """A :class:`~matplotlib.figure.Figure` with ``nrows x ncols`` axes (flattened list) in the
    shared style."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw).ravel().tolist()
        if title:
            fig.suptitle(title, fontsize=12)
    return fig, axes


def style(method: str, k: int | None = None) -> dict:
    """Plot keyword arguments (colour, marker, line style, label) of a method from
    :mod:`specot.reproduce.style` (line style by ``k`` when given)."""
    return line(method, k)


def save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` under ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(_RC):
        for ext in ("png", "svg"):
            path = out_dir / f"{name}.{ext}"
            fig.savefig(path, metadata={"Date": None} if ext == "svg" else None)
            paths.append(path)
    return paths


def figure_png(fig) -> bytes:
    """The figure rendered as PNG bytes (for ``IPython.display.Image`` in the notebooks)."""
    from io import BytesIO

    buf = BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="png")
    return buf.getvalue()
