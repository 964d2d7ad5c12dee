"""The report writer: ``report.md`` (claims tables, figure captions, timings) and ``report.json``,
each written atomically (temporary file + :func:`os.replace`)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from specot.io import atomic_write_text, to_jsonable

from .core import CATEGORIES, TITLES, Claim, Context
from .runner import ExperimentRun


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CLAIMS_HEADER = "| Source | Claim | Kind | Paper / exact | Ours | Holds | Fails if | Note |"


def claims_table(claims: list[Claim]) -> str:
    """A markdown table: source | claim | category | paper's value | ours | holds | fails if | note."""
    rows = [CLAIMS_HEADER, "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        rows.append("| " + " | ".join(_cell(x) for x in (
            c.paper, c.statement, c.category, c.paper_text, c.our_text, "yes" if c.holds else "**no**",
            c.fails_if, c.note)) + " |")
    return "\n".join(rows)


def category_counts(runs: list[ExperimentRun]) -> dict[str, tuple[int, int]]:
    """``category -> (holding, total)`` over all runs (every category, zeros included)."""
    out = {cat: [0, 0] for cat in CATEGORIES}
    for r in runs:
        for cat, (h, n) in r.counts().items():
            out[cat][0] += h
            out[cat][1] += n
    return {cat: (h, n) for cat, (h, n) in out.items()}


def headline(runs: list[ExperimentRun]) -> str:
    """``"41/42 claims hold (30/31 reproduced, 11/11 theorem); consistency checks: 5/7"``."""
    cnt = category_counts(runs)
    h = cnt["reproduced"][0] + cnt["theorem"][0]
    n = cnt["reproduced"][1] + cnt["theorem"][1]
    return (f"{h}/{n} claims hold ({cnt['reproduced'][0]}/{cnt['reproduced'][1]} reproduced, "
            f"{cnt['theorem'][0]}/{cnt['theorem'][1]} theorem); consistency checks on the papers' own "
            f"numbers: {cnt['consistency'][0]}/{cnt['consistency'][1]}")


def experiment_markdown(run: ExperimentRun, out_dir: Path | None = None) -> str:
    """The report section of one experiment (heading, timing, figures with captions, claims)."""
    lines = [f"## {run.name}: {TITLES.get(run.name, run.name)}", ""]
    if run.status != "ok":
        lines += [f"**{run.status}** after {run.seconds:.1f} s: {run.message}", ""]
        return "\n".join(lines)
    res = run.result
    counts = ", ".join(f"{h}/{n} {cat}" for cat, (h, n) in run.counts().items()) or "no claims"
    when = " (in an earlier run; loaded by --resume)" if run.resumed else ""
    lines += [f"Wall time {run.seconds:.1f} s{when}; claims holding: {counts}.", ""]
    for note in res.notes:
        lines += [f"- {note}"]
    if res.notes:
        lines.append("")
    for fig_name in res.figures:
        rel = f"{run.name}/{fig_name}.png"
        lines += [f"![{fig_name}]({rel})", "", f"*Figure `{run.name}/{fig_name}`.* {res.captions.get(fig_name, '')}",
                  ""]
    main = [c for c in res.claims if c.category != "consistency"]
    cons = [c for c in res.claims if c.category == "consistency"]
    if main:
        lines += [claims_table(main), ""]
    if cons:
        lines += ["Consistency checks (arithmetic on the paper's own printed numbers; not counted as "
                  "reproductions):", "", claims_table(cons), ""]
    return "\n".join(lines)


def write_markdown(runs: list[ExperimentRun], ctx: Context, path: Path, total_seconds: float) -> None:
    mode = "quick" if ctx.quick else "full"
    lines = [
        "# specot reproduce: the papers' figures and claims, regenerated and checked",
        "",
        (f"Mode **{mode}**, seed {ctx.seed}, workers {ctx.workers}"
         + (f", dask scheduler {ctx.scheduler}" if ctx.scheduler else "")
         + f"; Python {platform.python_version()} on {platform.machine()}."),
        f"Total wall time {total_seconds:.1f} s. **{headline(runs)}**.",
        "",
        ("Kinds of claim: **reproduced** = our independent computation or simulation of the paper's setting "
         "against the number printed in the paper (table/figure cited), with a tolerance from the paper's printed "
         "precision or our standard error; **theorem** = an exact identity or bound of the paper, checked on "
         "instances where it is tight or near-tight; **consistency** = arithmetic on the paper's own printed "
         "numbers (listed apart, not counted in the headline). 'Fails if' states the result that would have "
         "failed each claim; a claim that does not hold is explained in its note."),
        "",
        "| Experiment | Status | Wall time (s) | Reproduced | Theorem | Consistency |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r.status == "ok":
            c = r.counts()
            cells = [f"{c[k][0]}/{c[k][1]}" if k in c else "-" for k in CATEGORIES]
            status = "ok (resumed)" if r.resumed else "ok"
            lines.append(f"| [{r.name}](#{r.name}) | {status} | {r.seconds:.1f} | "
                         + " | ".join(cells) + " |")
        else:
            lines.append(f"| {r.name} | **{r.status}**: {_cell(r.message)} | {r.seconds:.1f} | - | - | - |")
    lines.append("")
    for r in runs:
        lines.append(f'<a id="{r.name}"></a>')
        lines.append(experiment_markdown(r))
    atomic_write_text(path, "\n".join(lines))


def write_json(runs: list[ExperimentRun], ctx: Context, path: Path, total_seconds: float) -> None:
    report = summary(runs, ctx, total_seconds, root=path.parent)
    atomic_write_text(path, json.dumps(to_jsonable(report), indent=2))


def _rel(f: Path, root: Path | None) -> str:
    try:
        return str(Path(f).relative_to(root)) if root is not None else str(f)
    except ValueError:
        return str(f)


def summary(runs: list[ExperimentRun], ctx: Context, total_seconds: float, root: Path | None = None) -> dict:
    """Everything in report.md as a JSON-able dict (what ``specot reproduce --json`` prints); figure
    paths relative to ``root`` when given (the report's folder)."""
    return {
        "mode": "quick" if ctx.quick else "full",
        "seed": ctx.seed,
        "seconds": total_seconds,
        "claims": sum(r.n_claims for r in runs),
        "claims_holding": sum(r.n_hold for r in runs),
        "categories": {cat: {"holding": h, "claims": n} for cat, (h, n) in category_counts(runs).items()},
        "headline": headline(runs),
        "experiments": [
            {
                "name": r.name,
                "status": r.status,
                "counts": {cat: {"holding": h, "claims": n} for cat, (h, n) in r.counts().items()},
                "message": r.message,
                "seconds": r.seconds,
                "resumed": r.resumed,
                "files": [_rel(f, root) for f in r.files],
                "captions": r.result.captions if r.result else {},
                "notes": r.result.notes if r.result else [],
                "claims": [c.as_dict() for c in r.result.claims] if r.result else [],
                "data": r.result.data if r.result else {},
            }
            for r in runs
        ],
    }
