"""``specot reproduce``: the papers' figures and claims, regenerated from the library and checked.

A registry of experiments (:data:`EXPERIMENTS`, name -> ``run(ctx) -> ExperimentResult``), each a
pure function of the run mode and seed held by a :class:`Context`; a :class:`Claim` per checked
statement (paper's number, ours, whether it holds); :func:`reproduce` runs them and writes one PNG
+ SVG per figure and ``report.md``. The notebooks in ``notebooks/`` call the same functions.
"""

from .core import EXPERIMENTS, TITLES, Claim, Context, ExperimentResult, MissingPiece
from .runner import ExperimentRun, reproduce, run_experiment

__all__ = ["EXPERIMENTS", "TITLES", "Claim", "Context", "ExperimentResult", "ExperimentRun", "MissingPiece",
           "reproduce", "run_experiment"]
