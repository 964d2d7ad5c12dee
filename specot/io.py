"""Reading distributions from the command line and writing machine-readable output (atomically
where a partial file would be mistaken for a finished one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ot_coupling.files import atomic_write_text  # noqa: F401  (the writer of every layer)


def parse_vector(text: str, name: str) -> np.ndarray:
    """A vector from ``"0.5,0.3,0.2"``, a ``.npy`` file or a ``.json`` file (a list of numbers).

    Only the format is checked here; callers validate the distribution (so the error names ``name``).
    """
    path = Path(text)
    if text.endswith((".npy", ".json")):
        if not path.exists():
            raise FileNotFoundError(f"--{name}: no such file {text}")
        if not path.is_file():
            raise ValueError(f"--{name}: {text} is not a file")
    if text.endswith(".npy"):
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"--{name}: {text} is not a readable .npy array ({_first_line(exc)})") from None
        return _real_vector(raw, name)
    if text.endswith(".json"):
        try:
            raw = np.asarray(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"--{name}: {text} is not a JSON list of numbers ({_first_line(exc)})") from None
        return _real_vector(raw, name)
    try:
        values = [float(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ValueError(f"--{name} must be a comma list of numbers or a .npy/.json file, got {text!r}") from None
    if not values:
        raise ValueError(f"--{name} is empty; give a comma list of numbers or a .npy/.json file")
    return np.array(values, dtype=np.float64)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _real_vector(raw: np.ndarray, name: str) -> np.ndarray:
    """float64 copy of a real numeric array; complex, object, string or boolean arrays are refused
    (numpy would drop an imaginary part with only a warning)."""
    if np.iscomplexobj(raw):
        raise ValueError(f"--{name} must be real, got a complex array (dtype {raw.dtype})")
    if raw.dtype.kind not in "fiu":
        raise ValueError(f"--{name} must hold real numbers, got dtype {raw.dtype}")
    return np.asarray(raw, dtype=np.float64)


def parse_int_list(text: str, name: str, low: int = 1) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``: a non-empty comma list of integers ``>= low`` (duplicates
    dropped, order kept), else ValueError naming ``--name``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ValueError(f"--{name} must be a comma list of integers, got {text!r}") from None
    if not values:
        raise ValueError(f"--{name} is empty; give a comma list of integers >= {low}")
    bad = [v for v in values if v < low]
    if bad:
        raise ValueError(f"--{name} must be >= {low} (every value), got {bad[0]}")
    return list(dict.fromkeys(values))


def parse_name_list(text: str, name: str, known=None, kind: str = "name") -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: non-empty, duplicates dropped; with ``known``, every name must be
    in it (ValueError listing the known names)."""
    values = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not values:
        raise ValueError(f"--{name} is empty; give a comma list of names")
    if known is not None:
        known = list(known)
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(f"--{name}: unknown {kind} {unknown[0]!r}; known: {', '.join(known)}")
    return values


def ensure_out_dir(path, name: str = "out", *, create: bool = True) -> Path:
    """Check that ``path`` can be (or is) a writable directory before any work starts: not an
    existing file, no file among its parents, writable. Creates it when ``create``. Raises
    ValueError naming ``--name``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--{name} {path} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--{name} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--{name} {path}: {parent} is not writable")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"--{name} {path}: cannot create it ({exc.strerror or exc})") from None
    return out


def to_jsonable(obj):
    """Recursively convert numpy scalars/arrays (and sets) into JSON-serialisable Python objects."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def dump_json(obj) -> str:
    return json.dumps(to_jsonable(obj), indent=2)
