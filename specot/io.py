"""Reading distributions from the command line and writing machine-readable output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def parse_vector(text: str, name: str) -> np.ndarray:
    """A vector from ``"0.5,0.3,0.2"``, a ``.npy`` file or a ``.json`` file (a list of numbers).

    Only the format is checked here; callers validate the distribution (so the error names ``name``).
    """
    path = Path(text)
    if text.endswith(".npy"):
        if not path.exists():
            raise FileNotFoundError(f"--{name}: no such file {text}")
        return np.asarray(np.load(path), dtype=np.float64)
    if text.endswith(".json"):
        if not path.exists():
            raise FileNotFoundError(f"--{name}: no such file {text}")
        try:
            return np.asarray(json.loads(path.read_text()), dtype=np.float64)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"--{name}: {text} is not a JSON list of numbers ({exc})") from None
    try:
        return np.array([float(v) for v in text.split(",") if v.strip() != ""], dtype=np.float64)
    except ValueError:
        raise ValueError(f"--{name} must be a comma list of numbers or a .npy/.json file, got {text!r}") from None


def parse_int_list(text: str, name: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]`` with a clear error."""
    try:
        return [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ValueError(f"--{name} must be a comma list of integers, got {text!r}") from None


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
