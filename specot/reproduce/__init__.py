"""``specot reproduce``: the papers' figures and claims, regenerated from the library and checked.

A registry of experiments (:data:`EXPERIMENTS`, name -> ``run(ctx) -> ExperimentResult``), each a
pure function of the run mode and seed held by a :class:`Context`; a :class:`Claim` per checked
statement (paper's number or the exact value, ours, whether it holds, its category -- reproduced,
theorem or consistency -- and the result that would have failed it); :func:`reproduce` runs them
and writes one PNG + SVG per figure, ``experiments/<name>.json`` as each experiment finishes (atomic;
``--resume`` reuses those produced with the same settings, see :mod:`specot.reproduce.store`),
``report.md`` and ``report.json``. The notebooks in
``notebooks/`` call the same functions; every figure takes its colours and line styles from
:mod:`specot.reproduce.style`.
"""

from .core import (
    CATEGORIES,
    EXPERIMENTS,
    TITLES,
    Claim,
    Context,
    ExperimentResult,
    MissingPiece,
    OptionalMissing,
)
from .runner import ExperimentRun, reproduce, run_experiment

__all__ = ["CATEGORIES", "EXPERIMENTS", "TITLES", "Claim", "Context", "ExperimentResult", "ExperimentRun",
           "MissingPiece", "OptionalMissing", "reproduce", "run_experiment"]
