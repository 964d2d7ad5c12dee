"""Input validation shared by every part of specot.

Every public function that takes a distribution, a draft count or a random source goes through
these helpers, so that bad input fails early with a :class:`ValueError` that names the argument.
"""

from __future__ import annotations

from typing import Union

import numpy as np

#: Absolute tolerance on ``|sum(x) - 1|`` accepted by :func:`validate_distribution`.
SUM_TOL = 1e-9
#: Looser sum tolerances for inputs given in reduced precision (the same as the torch backend's):
#: the entries of a float32 / float16 vector are rounded to 24 / 11 mantissa bits.
REDUCED_SUM_TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float16): 1e-2}

SeedLike = Union[None, int, np.random.Generator]


def validate_distribution(x, name: str = "p", *, atol: float = SUM_TOL) -> np.ndarray:
    """Check that ``x`` is a probability vector and return it as float64, renormalised.

    Requirements: real (complex input is refused, not truncated), one-dimensional, non-empty,
    finite (no NaN/inf), non-negative, and ``|sum(x) - 1| <= atol`` (for a float32 / float16 array
    the looser :data:`REDUCED_SUM_TOL` of its dtype). Exact zeros are allowed; positive masses are
    kept however small (no flush to zero, docs/numerics.md). The returned float64 copy is divided
    by its sum so that downstream code sees a sum of 1 to machine precision.

    Raises
    ------
    ValueError
        naming ``name`` and what is wrong.
    """
    raw_dtype = getattr(x, "dtype", None)
    if np.iscomplexobj(x):
        raise ValueError(f"{name} must be real, got a complex array")
    try:
        arr = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric vector ({exc})") from None
    try:
        atol = max(atol, REDUCED_SUM_TOL.get(np.dtype(raw_dtype), atol)) if raw_dtype is not None else atol
    except TypeError:                       # a dtype numpy does not know (e.g. a torch dtype)
        pass
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains inf at index {int(np.flatnonzero(~np.isfinite(arr))[0])}")
    if (arr < 0).any():
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{name} has negative mass {arr[i]:.3g} at index {i}")
    total = float(arr.sum())
    if abs(total - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1 within {atol:g}, sums to {total:.12g}")
    return arr / total


def validate_pair(p, q, p_name: str = "p", q_name: str = "q") -> tuple[np.ndarray, np.ndarray]:
    """Validate a target/draft pair: both distributions and the same length."""
    p_arr = validate_distribution(p, p_name)
    q_arr = validate_distribution(q, q_name)
    if p_arr.shape != q_arr.shape:
        raise ValueError(
            f"{p_name} and {q_name} must have the same length, got {p_arr.size} and {q_arr.size}"
        )
    return p_arr, q_arr


def validate_k(k, name: str = "k") -> int:
    """Check that the number of drafts ``k`` is an integer >= 1 and return it as ``int``."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        if isinstance(k, (float, np.floating)) and float(k).is_integer():
            k = int(k)
        else:
            raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)


def validate_drafts(drafts, vocab_size: int, name: str = "drafts") -> np.ndarray:
    """Check a draft tuple: 1-D integer token ids in ``[0, vocab_size)``, at least one."""
    arr = np.asarray(drafts)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of token ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if (arr < 0).any() or (arr >= vocab_size).any():
        raise ValueError(f"{name} holds token ids outside [0, {vocab_size})")
    return arr.astype(np.int64)


def as_generator(rng: SeedLike) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from a Generator, an int seed or ``None``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def tv_distance(p, q) -> float:
    """Total-variation distance ``TV(p, q) = 1/2 sum_x |p(x) - q(x)| = 1 - sum_x min(p, q)``.

    ``1 - TV`` is the acceptance of single-draft speculative sampling (Leviathan et al. 2023,
    Chen et al. 2023), i.e. the optimum of the membership-cost transport with k = 1.
    """
    p_arr, q_arr = validate_pair(p, q)
    return float(0.5 * np.abs(p_arr - q_arr).sum())


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one index from an (unnormalised, non-negative) weight vector by inverse CDF.

    Uses the largest index with positive weight as the fallback for round-off at the top of the
    CDF, so that an index of zero weight is never returned.
    """
    w = np.asarray(probs, dtype=np.float64)
    total = w.sum()
    if not total > 0:
        raise ValueError("cannot sample from a zero-mass vector")
    cdf = np.cumsum(w)
    u = rng.random() * cdf[-1]
    i = int(np.searchsorted(cdf, u, side="right"))
    positive = np.flatnonzero(w > 0)
    if i >= w.size or w[i] <= 0:
        # u landed on the right end of the CDF (or a flat step): take the next positive index.
        later = positive[positive >= min(i, w.size - 1)]
        i = int(later[0]) if later.size else int(positive[-1])
    return i
