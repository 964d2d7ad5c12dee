"""Saved experiment results: ``<out>/experiments/<name>.json``, written atomically as each
experiment finishes, and read back by ``specot reproduce --resume``.

A saved result holds everything the report needs (status, message, wall time, figure files,
captions, notes, claims and the numbers behind the figures) and the *settings* it was produced
with (:func:`experiment_settings`): experiment name, mode (quick/full), seed, specot version and a
hash of the experiment module's source. An experiment is a pure function of these (the number of
workers and the dask scheduler change where its tasks run, not their results), so a saved result
whose settings equal the current ones is the result a new run would give. Only ``"ok"`` results
are reused; a failed or skipped experiment runs again.

Every file is written to a temporary file in the same folder and moved into place with
:func:`os.replace` (atomic on POSIX and Windows), so an interruption leaves either the previous
file or the new one, never a partial JSON. The experiment's JSON is written after its figures:
its presence marks the experiment as finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.util import find_spec
from pathlib import Path

from specot.io import atomic_write_text, to_jsonable

from .core import EXPERIMENTS, Claim, Context, ExperimentResult

#: layout version of a saved result (a file with another one is not reused)
FORMAT = 1


def _source_hash(name: str) -> str | None:
    """First 16 hex digits of the SHA-256 of experiment ``name``'s module source (``None`` when it
    cannot be read): an edited experiment is not resumed from a result of the old code."""
    module = EXPERIMENTS.get(name, "").split(":")[0]
    try:
        spec = find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    if not origin or not os.path.isfile(origin):
        return None
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16]


def experiment_settings(name: str, ctx: Context) -> dict:
    """What a saved result of ``name`` must match to be reused: experiment, mode, seed, specot
    version, experiment source hash (workers / scheduler excluded: they do not change results)."""
    from specot import __version__

    return {"experiment": name, "mode": "quick" if ctx.quick else "full", "seed": int(ctx.seed),
            "specot_version": __version__, "source_sha256": _source_hash(name)}


def settings_hash(settings: dict) -> str:
    """SHA-256 (first 16 hex digits) of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def result_path(out: str | Path, name: str) -> Path:
    """``<out>/experiments/<name>.json``."""
    return Path(out) / "experiments" / f"{name}.json"


def saved_names(out: str | Path) -> list[str]:
    """Names of the experiments with a saved result under ``out`` (sorted)."""
    folder = Path(out) / "experiments"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def save_run(out: str | Path, run, settings: dict) -> Path:
    """Write experiment run ``run`` (an :class:`~specot.reproduce.runner.ExperimentRun`) to
    ``<out>/experiments/<name>.json`` atomically; returns the path."""
    out = Path(out)
    res = run.result
    record = {
        "format": FORMAT,
        "name": run.name,
        "status": run.status,
        "message": run.message,
        "seconds": run.seconds,
        "settings": settings,
        "settings_hash": settings_hash(settings),
        "files": [_rel(f, out) for f in run.files],
        "figures": list(res.figures) if res else [],
        "captions": res.captions if res else {},
        "notes": res.notes if res else [],
        "claims": [c.as_dict() for c in res.claims] if res else [],
        "data": res.data if res else {},
    }
    return atomic_write_text(result_path(out, run.name), json.dumps(to_jsonable(record), indent=1))


def _diff(saved: dict, settings: dict) -> str:
    keys = [k for k in settings if saved.get(k) != settings.get(k)]
    keys += [k for k in saved if k not in settings]
    return ", ".join(f"{k} {saved.get(k)!r} -> {settings.get(k)!r}" for k in keys)


def load_run(out: str | Path, name: str, settings: dict):
    """``(run, reason)``: the saved run of ``name`` when it can be reused (``reason == ""``), else
    ``(None, why not)`` -- no file, unreadable, another format, not ``"ok"``, other settings
    (named), or a figure file gone."""
    from .runner import ExperimentRun

    out = Path(out)
    path = result_path(out, name)
    if not path.exists():
        return None, "no saved result"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"saved result unreadable ({type(exc).__name__})"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None, "saved result has another format"
    if record.get("status") != "ok":
        return None, f"saved result has status {record.get('status')!r}"
    saved = record.get("settings") or {}
    if saved != json.loads(json.dumps(settings)):
        return None, f"settings differ: {_diff(saved, settings)}"
    files = [out / f for f in record.get("files", [])]
    gone = [f for f in files if not f.exists()]
    if gone:
        return None, f"figure file missing: {_rel(gone[0], out)}"
    try:
        claims = [Claim(**c) for c in record.get("claims", [])]
    except (TypeError, ValueError) as exc:
        return None, f"saved claims unreadable ({exc})"
    result = ExperimentResult(figures={f: None for f in record.get("figures", [])}, claims=claims,
                              captions=dict(record.get("captions", {})), notes=list(record.get("notes", [])),
                              data=record.get("data", {}))
    run = ExperimentRun(name, "ok", float(record.get("seconds", 0.0)), result, files=files, resumed=True)
    return run, ""
