"""The pieces of the reproduction pipeline: claims, experiment results, the run context, the registry.

An *experiment* is a pure function ``run(ctx: Context) -> ExperimentResult`` of the run mode
(quick or full) and the seed held by ``ctx``: it computes its numbers by calling the library
(``ot_coupling``, ``solvers``, ``markov``, ``gpu_backend``), draws its figures, and states each
checked claim of a paper as a :class:`Claim` (the paper's number next to ours). Nothing in a
claim's ``our_value`` is typed in; ``paper_value`` is the number printed in the paper (cited with
table/figure) or an independent computation of ours (named in the claim).

Every claim has a ``category`` (:data:`CATEGORIES`): ``"reproduced"`` (our independent computation
or simulation of the paper's setting against the paper's reported number, with a tolerance from
the paper's printed precision or our standard error), ``"theorem"`` (an exact identity or bound,
checked where it is tight or near-tight) or ``"consistency"`` (arithmetic on the paper's own
numbers, counted apart), and a ``fails_if`` sentence: the result that would have failed it.

An experiment that raises fails loudly (status ``"error"``); only an absent *declared optional
dependency* (:data:`OPTIONAL_DEPENDENCIES`, raised as :class:`OptionalMissing`) makes it
``"skipped"``, with the reason shown.

Experiments are looked up by name in :data:`EXPERIMENTS` (``name -> "module:function"``, imported
on use so that ``--only`` does not import every dependency).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.util import find_spec
from typing import Any

import numpy as np

#: experiment name -> "module:function"; order = order in report.md.
EXPERIMENTS: dict[str, str] = {
    "leviathan": "specot.reproduce.leviathan:run",
    "multidraft": "specot.reproduce.multidraft:run",
    "spectr": "specot.reproduce.spectr:run",
    "optimal": "specot.reproduce.optimal:run",
    "theory": "specot.reproduce.theory:run",
    "gumbel": "specot.reproduce.gumbel:run",
    "block": "specot.reproduce.block:run",
    "sequence": "specot.reproduce.sequence:run",
}

#: one-line titles of the experiments (report headings, ``--help``).
TITLES: dict[str, str] = {
    "leviathan": "Leviathan et al. 2023: expected tokens per iteration and walltime improvement",
    "multidraft": "Multi-draft optimum: i.i.d. vs without replacement, and Khisti et al.'s toy",
    "spectr": "SpecTr (Sun et al. 2023): K-SEQ vs RRS vs naive vs the optimum; block efficiency; speedup",
    "optimal": "The optimal verifier vs K-SEQ / RRS at k = 2, 4, 8, 16 on a realistic pair",
    "theory": "Yin et al. 2024: rejections = sum of TV, batch gains, quality-rejection Pareto front",
    "gumbel": "Gumbel coupling (Daliri et al.; GumbelSpec): acceptance vs 1-TV and multi-draft gains",
    "block": "Block verification (Sun et al. 2025): gain over token-by-token verification vs gamma",
    "sequence": "The sequence-level LP optimum vs BV, GBV, traversal, SpecTr and SpecInfer trees",
}

#: library modules each experiment needs (checked before it runs; a missing one is an error).
REQUIRES: dict[str, list[str]] = {
    "leviathan": ["markov.speedup"],
    "multidraft": ["solvers.closed_form", "ot_coupling.kseq", "ot_coupling.rrs", "ot_coupling.naive"],
    "spectr": ["solvers.closed_form", "ot_coupling.kseq", "ot_coupling.rrs", "ot_coupling.naive",
               "markov.builders", "markov.simulate", "markov.exact", "markov.speedup"],
    "optimal": ["solvers.optimal_verifier", "solvers.closed_form", "ot_coupling.kseq", "ot_coupling.rrs",
                "markov.builders"],
    "theory": ["markov.builders", "markov.theory", "markov.simulate", "solvers.pareto"],
    "gumbel": ["ot_coupling.gumbel", "solvers.closed_form", "ot_coupling.rrs", "markov.builders"],
    "block": ["ot_coupling.sequence", "ot_coupling.speculative", "markov.builders"],
    "sequence": ["solvers.sequence_lp", "ot_coupling.sequence"],
}


def missing_pieces(name: str) -> list[str]:
    """The modules of :data:`REQUIRES` that experiment ``name`` needs and this build lacks."""
    out = []
    for module in REQUIRES.get(name, []):
        try:
            found = find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(module)
    return out


class MissingPiece(RuntimeError):
    """A library piece an experiment needs is not available: a bug of this build, reported as an error."""


#: optional third-party packages (import name -> the pyproject extra that declares it); only their
#: absence may skip an experiment or a part of one.
OPTIONAL_DEPENDENCIES: dict[str, str] = {"torch": "torch", "transformers": "models", "distributed": "dask"}


class OptionalMissing(RuntimeError):
    """A declared optional dependency (:data:`OPTIONAL_DEPENDENCIES`) is not installed: the only
    reason an experiment is reported as skipped."""


def require_optional(package: str) -> None:
    """Raise :class:`OptionalMissing` (naming the extra) when optional ``package`` is not installed."""
    if package not in OPTIONAL_DEPENDENCIES:
        raise ValueError(f"package {package!r} is not a declared optional dependency")
    try:
        found = find_spec(package) is not None
    except (ModuleNotFoundError, ValueError):
        found = False
    if not found:
        raise OptionalMissing(f"optional dependency {package!r} is not installed "
                              f"(pip install 'specot[{OPTIONAL_DEPENDENCIES[package]}]')")


def require(module: str, *names: str):
    """Import ``module`` and return it (or its attributes ``names``); :class:`MissingPiece` if absent."""
    try:
        mod = import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingPiece(f"{module} (import failed: {exc})") from None
    if not names:
        return mod
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise MissingPiece(f"{module}.{missing[0]}")
    values = tuple(getattr(mod, n) for n in names)
    return values[0] if len(values) == 1 else values


def _fmt(value: Any) -> str:
    """Numbers with 4 significant digits (integers as is); anything else via ``str``."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


#: the kinds of claim: counted separately; the headline counts ``reproduced`` + ``theorem``.
CATEGORIES = ("reproduced", "theorem", "consistency")


@dataclass(frozen=True)
class Claim:
    """One checked statement of a paper.

    ``paper_value`` is the paper's number (or statement) as printed, or the exact value of the
    identity being checked; ``our_value`` is computed by the experiment; ``holds`` says whether our
    computation supports the statement (within the tolerance named in ``note``); ``note`` explains
    a difference and its cause. ``category`` is one of :data:`CATEGORIES`; ``fails_if`` states the
    result that would have failed the claim (a claim that cannot fail tests nothing).
    """

    paper: str
    statement: str
    paper_value: Any
    our_value: Any
    holds: bool
    note: str = ""
    category: str = ""
    fails_if: str = ""

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r} ({self.statement!r})")
        if not str(self.fails_if).strip():
            raise ValueError(f"fails_if must say what result would fail the claim ({self.statement!r})")
        object.__setattr__(self, "holds", bool(self.holds))

    @classmethod
    def close(cls, paper: str, statement: str, paper_value: float, our_value: float, *,
              atol: float = 0.0, rtol: float = 0.0, note: str = "", category: str = "", fails_if: str = ""
              ) -> Claim:
        """A numeric claim that holds when ``|ours - paper| <= atol + rtol |paper|`` (``fails_if``
        defaults to that inequality's negation)."""
        ours = float(our_value)
        bound = atol + rtol * abs(float(paper_value))
        ok = bool(abs(ours - float(paper_value)) <= bound)
        tol = " ".join(s for s in (f"atol {atol:g}" if atol else "", f"rtol {rtol:g}" if rtol else "") if s)
        text = f"tolerance {tol or 'exact'}" + (f"; {note}" if note else "")
        fails_if = fails_if or f"|ours - {_fmt(paper_value)}| > {bound:.3g}"
        return cls(paper, statement, paper_value, ours, ok, text, category, fails_if)

    @property
    def paper_text(self) -> str:
        return _fmt(self.paper_value)

    @property
    def our_text(self) -> str:
        return _fmt(self.our_value)

    def as_dict(self) -> dict:
        return {"paper": self.paper, "statement": self.statement, "category": self.category,
                "paper_value": self.paper_value, "our_value": self.our_value, "holds": self.holds,
                "fails_if": self.fails_if, "note": self.note}


@dataclass
class ExperimentResult:
    """What an experiment returns: matplotlib figures (name -> Figure), one caption per figure,
    the checked claims, free-form notes (e.g. which pair was used) and the numbers behind the
    figures (``data``, JSON-able)."""

    figures: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add_figure(self, name: str, fig, caption: str) -> None:
        self.figures[name] = fig
        self.captions[name] = caption


@dataclass
class Context:
    """The run mode shared by every experiment.

    ``quick`` selects the CI-sized run (every experiment in seconds), ``seed`` makes every random
    draw reproducible, ``workers`` / ``scheduler`` say where :meth:`map` runs its tasks (in this
    process for ``workers=1``, a process pool otherwise, or an existing dask.distributed cluster).
    """

    quick: bool = True
    seed: int = 0
    workers: int = 1
    scheduler: str | None = None
    progress: bool = True

    def size(self, quick, full):
        """``quick`` in quick mode, ``full`` otherwise."""
        return quick if self.quick else full

    def rng(self, tag: str) -> np.random.Generator:
        """A generator that depends only on (seed, tag): experiments stay reproducible in any order."""
        return np.random.default_rng([self.seed, zlib.crc32(tag.encode())])

    def seeds(self, tag: str, n: int) -> list[int]:
        """``n`` independent integer seeds for parallel tasks, a function of (seed, tag) only."""
        ss = np.random.SeedSequence([self.seed, zlib.crc32(tag.encode())])
        return [int(s.generate_state(1)[0]) for s in ss.spawn(n)]

    def map(self, fn: Callable, items: Iterable, desc: str = "") -> list:
        """``[fn(x) for x in items]`` in parallel (see :func:`specot.reproduce.parallel.parallel_map`)."""
        from .parallel import parallel_map

        return parallel_map(fn, list(items), workers=self.workers, scheduler=self.scheduler,
                            desc=desc, progress=self.progress)


def experiment_function(name: str) -> Callable[[Context], ExperimentResult]:
    """The ``run`` function of experiment ``name`` (``ValueError`` for an unknown name)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    module, func = EXPERIMENTS[name].split(":")
    return getattr(import_module(module), func)


def validate_names(names: Sequence[str] | None) -> list[str]:
    """The experiments to run, in registry order (all when ``names`` is empty or ``None``)."""
    if not names:
        return list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"--only: unknown experiment {unknown[0]!r}; known: {', '.join(EXPERIMENTS)}")
    return [n for n in EXPERIMENTS if n in set(names)]
