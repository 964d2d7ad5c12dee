"""Run experiments, save their figures, and write ``report.md`` (and ``report.json``)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .core import (
    CATEGORIES,
    TITLES,
    Context,
    ExperimentResult,
    OptionalMissing,
    experiment_function,
    missing_pieces,
    validate_names,
)
from .plotting import save_figure


@dataclass
class ExperimentRun:
    """One experiment's outcome: ``status`` is ``"ok"``, ``"skipped"`` (a declared optional
    dependency is absent; ``message`` names it) or ``"error"`` (an exception, or a library module
    it needs is missing; ``message`` has the exception's last line)."""

    name: str
    status: str
    seconds: float
    result: ExperimentResult | None = None
    message: str = ""
    files: list[Path] = field(default_factory=list)

    @property
    def n_claims(self) -> int:
        return len(self.result.claims) if self.result else 0

    @property
    def n_hold(self) -> int:
        return sum(c.holds for c in self.result.claims) if self.result else 0

    def counts(self) -> dict[str, tuple[int, int]]:
        """``category -> (claims holding, claims)`` for the categories present."""
        out = {}
        for cat in CATEGORIES:
            cs = [c for c in (self.result.claims if self.result else []) if c.category == cat]
            if cs:
                out[cat] = (sum(c.holds for c in cs), len(cs))
        return out

    def summary_line(self) -> str:
        """``"leviathan: 6/6 reproduced, 2/2 theorem, 1/3 consistency"`` (status word only when not ok)."""
        if self.status != "ok":
            return f"{self.name}: {self.status.upper()}: {self.message}"
        parts = [f"{h}/{n} {cat}" for cat, (h, n) in self.counts().items()]
        fails = self.n_claims - self.n_hold
        return f"{self.name}: " + (", ".join(parts) or "no claims") + (f" ({fails} FAILING)" if fails else "")


def run_experiment(name: str, ctx: Context | None = None) -> ExperimentResult:
    """Run one experiment (by registry name) and return its result; nothing is written."""
    return experiment_function(name)(ctx or Context())


def reproduce(names: list[str] | None = None, ctx: Context | None = None,
              out: str | Path = "specot-out") -> list[ExperimentRun]:
    """Run the named experiments (all by default), write ``<out>/<name>/<figure>.png|.svg``,
    ``<out>/report.md`` and ``<out>/report.json`` (rewritten after every finished experiment, so
    an interruption keeps what finished); return the runs.

    An experiment that raises, or whose library modules are missing, is reported as an error (with
    its traceback on stderr; the others still run and the CLI exits 1); only an absent declared
    optional dependency (:class:`~specot.reproduce.core.OptionalMissing`) reports it as skipped,
    with the reason.
    """
    ctx = ctx or Context()
    names = validate_names(names)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[ExperimentRun] = []
    start = time.perf_counter()
    from .report import write_json, write_markdown

    def write_reports() -> None:  # after every experiment: a late error never loses finished work
        total = time.perf_counter() - start
        write_markdown(runs, ctx, out / "report.md", total)
        write_json(runs, ctx, out / "report.json", total)

    for name in names:
        t0 = time.perf_counter()
        missing = missing_pieces(name)
        if missing:
            runs.append(ExperimentRun(name, "error", 0.0, message=f"library modules missing: {', '.join(missing)}"))
            continue
        try:
            result = experiment_function(name)(ctx)
        except OptionalMissing as exc:
            runs.append(ExperimentRun(name, "skipped", time.perf_counter() - t0, message=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one experiment's failure must not stop the others
            traceback.print_exc()
            runs.append(ExperimentRun(name, "error", time.perf_counter() - t0,
                                      message=f"{type(exc).__name__}: {exc}"))
            continue
        files = []
        for fig_name, fig in result.figures.items():
            files += save_figure(fig, out / name, fig_name)
        seconds = time.perf_counter() - t0  # computing and writing the figures
        runs.append(ExperimentRun(name, "ok", seconds, result, files=files))
        write_reports()
    write_reports()
    return runs


__all__ = ["TITLES", "ExperimentRun", "reproduce", "run_experiment"]
