"""What every notebook in ``notebooks/`` does after its introduction: run one experiment (quick mode
unless ``SPECOT_QUICK=0``) and display its figures, captions, notes and claims table."""

from __future__ import annotations

import os

from .core import CATEGORIES, Context, ExperimentResult
from .plotting import figure_png
from .report import claims_table
from .runner import run_experiment


def run_and_show(name: str, seed: int = 0) -> ExperimentResult:
    """Run experiment ``name`` and display it in the notebook; returns the result for further work."""
    from IPython.display import Image, Markdown, display

    quick = os.environ.get("SPECOT_QUICK", "1") != "0"
    result = run_experiment(name, Context(quick=quick, seed=seed, workers=1, progress=False))
    display(Markdown("## Figures"))
    for fig_name, fig in result.figures.items():
        display(Image(data=figure_png(fig)))
        display(Markdown(f"*{fig_name}*: {result.captions[fig_name]}"))
    display(Markdown("## Claims: the paper's number (or the exact value), ours, and whether it holds"))
    display(Markdown("Kinds: **reproduced** (our computation of the paper's setting vs its printed number or "
                     "trend), **theorem** (an exact identity or bound, checked where it is tight), **consistency** "
                     "(arithmetic on the paper's own numbers). *Fails if* says what result would have failed it."))
    for note in result.notes:
        display(Markdown(f"- {note}"))
    display(Markdown(claims_table(result.claims)))
    counts = ", ".join(f"{sum(c.holds for c in cs)}/{len(cs)} {cat}" for cat in CATEGORIES
                       if (cs := [c for c in result.claims if c.category == cat]))
    print(f"{name}: {counts} claims hold")
    return result
