"""The report writer: ``report.md`` (claims tables, figure captions, timings) and ``report.json``."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from specot.io import to_jsonable

from .core import TITLES, Claim, Context
from .runner import ExperimentRun


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_table(claims: list[Claim]) -> str:
    """A markdown table: paper | claim | paper's value | ours | holds | note."""
    rows = ["| Paper | Claim | Paper | Ours | Holds | Note |", "|---|---|---|---|---|---|"]
    for c in claims:
        rows.append("| " + " | ".join(_cell(x) for x in (
            c.paper, c.statement, c.paper_text, c.our_text, "yes" if c.holds else "**no**", c.note)) + " |")
    return "\n".join(rows)


def experiment_markdown(run: ExperimentRun, out_dir: Path | None = None) -> str:
    """The report section of one experiment (heading, timing, figures with captions, claims)."""
    lines = [f"## {run.name}: {TITLES.get(run.name, run.name)}", ""]
    if run.status != "ok":
        lines += [f"**{run.status}** after {run.seconds:.1f} s: {run.message}", ""]
        return "\n".join(lines)
    res = run.result
    lines += [f"Wall time {run.seconds:.1f} s; {run.n_hold}/{run.n_claims} claims hold.", ""]
    for note in res.notes:
        lines += [f"- {note}"]
    if res.notes:
        lines.append("")
    for fig_name in res.figures:
        rel = f"{run.name}/{fig_name}.png"
        lines += [f"![{fig_name}]({rel})", "", f"*Figure `{run.name}/{fig_name}`.* {res.captions.get(fig_name, '')}",
                  ""]
    if res.claims:
        lines += [claims_table(res.claims), ""]
    return "\n".join(lines)


def write_markdown(runs: list[ExperimentRun], ctx: Context, path: Path, total_seconds: float) -> None:
    n_claims = sum(r.n_claims for r in runs)
    n_hold = sum(r.n_hold for r in runs)
    mode = "quick" if ctx.quick else "full"
    lines = [
        "# specot reproduce: the papers' figures and claims, regenerated and checked",
        "",
        (f"Mode **{mode}**, seed {ctx.seed}, workers {ctx.workers}"
         + (f", dask scheduler {ctx.scheduler}" if ctx.scheduler else "")
         + f"; Python {platform.python_version()} on {platform.machine()}."),
        (f"Total wall time {total_seconds:.1f} s. **{n_hold}/{n_claims} claims hold**; a claim that does not "
         "hold is explained in its note (usually: the paper's number comes from a real LLM pair we do not have, "
         "or the research notes mark it as unconfirmed)."),
        ("Every 'Ours' number is computed by this run; 'Paper' numbers are cited from the source in the first "
         "column."),
        "",
        "| Experiment | Status | Wall time (s) | Claims holding |",
        "|---|---|---|---|",
    ]
    for r in runs:
        if r.status == "ok":
            lines.append(f"| [{r.name}](#{r.name}) | ok | {r.seconds:.1f} | {r.n_hold}/{r.n_claims} |")
        else:
            lines.append(f"| {r.name} | {r.status}: {_cell(r.message)} | {r.seconds:.1f} | - |")
    lines.append("")
    for r in runs:
        lines.append(f'<a id="{r.name}"></a>')
        lines.append(experiment_markdown(r))
    path.write_text("\n".join(lines))


def write_json(runs: list[ExperimentRun], ctx: Context, path: Path, total_seconds: float) -> None:
    path.write_text(json.dumps(to_jsonable(summary(runs, ctx, total_seconds)), indent=2))


def summary(runs: list[ExperimentRun], ctx: Context, total_seconds: float) -> dict:
    """Everything in report.md as a JSON-able dict (what ``specot reproduce --json`` prints)."""
    return {
        "mode": "quick" if ctx.quick else "full",
        "seed": ctx.seed,
        "seconds": total_seconds,
        "claims": sum(r.n_claims for r in runs),
        "claims_holding": sum(r.n_hold for r in runs),
        "experiments": [
            {
                "name": r.name,
                "status": r.status,
                "message": r.message,
                "seconds": r.seconds,
                "files": [str(f) for f in r.files],
                "captions": r.result.captions if r.result else {},
                "notes": r.result.notes if r.result else [],
                "claims": [c.as_dict() for c in r.result.claims] if r.result else [],
                "data": r.result.data if r.result else {},
            }
            for r in runs
        ],
    }
