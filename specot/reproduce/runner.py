"""Run experiments, save their figures, and write ``report.md`` (and ``report.json``)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
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
    dependency is absent; ``message`` names it), ``"error"`` (an exception, or a library module
    it needs is missing; ``message`` has the exception's last line) or ``"interrupted"``
    (``KeyboardInterrupt`` while it ran). ``resumed`` marks a result loaded from
    ``experiments/<name>.json`` by ``--resume``."""

    name: str
    status: str
    seconds: float
    result: ExperimentResult | None = None
    message: str = ""
    files: list[Path] = field(default_factory=list)
    resumed: bool = False  # loaded from a saved result (``--resume``) instead of run

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
              out: str | Path = "specot-out", *, resume: bool = False,
              log: Callable[[str], None] | None = None) -> list[ExperimentRun]:
    """Run the named experiments (all by default) and write, under ``out``:

    * ``<name>/<figure>.png|.svg`` for each figure;
    * ``experiments/<name>.json``: the experiment's result (status, wall time, figure files, claims,
      captions, notes, data) and the settings it was produced with, written atomically as soon as
      the experiment finishes (see :mod:`specot.reproduce.store`);
    * ``report.md`` and ``report.json`` for the experiments of this call, rewritten (atomically)
      after every experiment, so an interruption keeps the report of what finished.

    With ``resume=True`` an experiment whose saved ``"ok"`` result has the same settings (mode,
    seed, specot version, experiment source) and whose figure files are still there is loaded
    instead of run; a saved result with other settings is not reused (the experiment runs again,
    and ``log`` says why). Without ``resume`` every experiment runs and its saved result is
    overwritten (results of experiments not named here are left alone).

    An experiment that raises, or whose library modules are missing, is reported as an error (with
    its traceback on stderr; the others still run and the CLI exits 1); only an absent declared
    optional dependency (:class:`~specot.reproduce.core.OptionalMissing`) reports it as skipped,
    with the reason. ``KeyboardInterrupt`` writes the report (the interrupted experiment marked
    ``"interrupted"``) and propagates. ``log`` receives one progress line per experiment.
    """
    from .report import write_json, write_markdown
    from .store import experiment_settings, load_run, save_run, saved_names

    ctx = ctx or Context()
    names = validate_names(names)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: None)
    runs: list[ExperimentRun] = []
    start = time.perf_counter()

    def write_reports() -> None:  # after every experiment: a late error never loses finished work
        total = time.perf_counter() - start
        write_markdown(runs, ctx, out / "report.md", total)
        write_json(runs, ctx, out / "report.json", total)

    saved = set(saved_names(out)) & set(names)
    if saved and not resume:
        log(f"{out}: saved results of {len(saved)} of these experiments are overwritten "
            "(--resume reuses those with the same settings)")
    elif resume and not saved:
        log(f"{out}: no saved experiment results to resume; running all {len(names)}")
    n = len(names)
    for i, name in enumerate(names, 1):
        tag = f"[{i}/{n}] {name}"
        settings = experiment_settings(name, ctx)
        if resume:
            run, why = load_run(out, name, settings)
            if run is not None:
                runs.append(run)
                log(f"{tag}: resumed from {out / 'experiments' / (name + '.json')} "
                    f"({run.summary_line().split(': ', 1)[1]}; ran {run.seconds:.1f} s)")
                write_reports()
                continue
            if why != "no saved result":
                log(f"{tag}: saved result not reused ({why}); running it again")
        log(f"{tag}: running")
        t0 = time.perf_counter()
        try:
            run = _run_one(name, ctx, out, t0)
        except KeyboardInterrupt:
            runs.append(ExperimentRun(name, "interrupted", time.perf_counter() - t0,
                                      message="interrupted (KeyboardInterrupt); finished experiments "
                                              "are saved, run again with --resume"))
            write_reports()
            log(f"{tag}: interrupted after {time.perf_counter() - t0:.1f} s; "
                f"{sum(r.status == 'ok' for r in runs)} finished experiment(s) kept in {out}")
            raise
        runs.append(run)
        save_run(out, run, settings)  # after the figures: its presence marks the experiment finished
        log(f"{tag}: {run.summary_line().split(': ', 1)[1]} ({run.seconds:.1f} s)")
        write_reports()
    write_reports()
    return runs


def _run_one(name: str, ctx: Context, out: Path, t0: float) -> ExperimentRun:
    """Run experiment ``name`` and save its figures under ``out/name``; errors become the run's status."""
    missing = missing_pieces(name)
    if missing:
        return ExperimentRun(name, "error", 0.0, message=f"library modules missing: {', '.join(missing)}")
    try:
        result = experiment_function(name)(ctx)
        files = []
        for fig_name, fig in result.figures.items():
            files += save_figure(fig, out / name, fig_name)
    except OptionalMissing as exc:
        return ExperimentRun(name, "skipped", time.perf_counter() - t0, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - one experiment's failure must not stop the others
        traceback.print_exc()
        return ExperimentRun(name, "error", time.perf_counter() - t0, message=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0  # computing and writing the figures
    return ExperimentRun(name, "ok", seconds, result, files=files)


__all__ = ["TITLES", "ExperimentRun", "reproduce", "run_experiment"]
