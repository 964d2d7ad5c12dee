"""The ``m``-subsets of ``range(n)`` as one integer array: the enumeration behind every draft-set law.

The membership LP's set laws (:mod:`solvers.membership_lp`: i.i.d. and without-replacement
drafts), the sequence LP's sets of distinct draft paths (:mod:`solvers.sequence_lp`) and the exact
i.i.d. plan (:mod:`solvers.iid_plan`) all enumerate the draft sets of ``m`` tokens (or paths) out
of ``n`` as the rows of a ``[C(n, m), m]`` array: increasing rows, in lexicographic order, the
order of :func:`itertools.combinations`. The array is built by ``m - 1`` vectorised passes instead of
``C(n, m)`` Python tuples, and patterns of at most :data:`MAX_CACHED_ROWS` rows are cached (they
depend on the shape only). Imports nothing from :mod:`solvers`, so every solver module can use it.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

#: index patterns of at most this many subsets are cached per ``(n, m)`` (shape only)
MAX_CACHED_ROWS = 200_000


@lru_cache(maxsize=32)
def _range_combinations(n: int, m: int) -> np.ndarray:
    """``[C(n, m), m]``, lexicographic; column ``j + 1`` extends each row by every larger index."""
    combos = np.arange(n, dtype=np.int64)[:, None]
    for _ in range(1, m):
        last = combos[:, -1]
        reps = n - 1 - last
        base = np.repeat(combos, reps, axis=0)
        start = np.repeat(last + 1 - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
        nxt = np.arange(base.shape[0]) + start
        combos = np.concatenate([base, nxt[:, None]], axis=1)
    combos.setflags(write=False)
    return combos


def range_subsets(n: int, m: int) -> np.ndarray:
    """The ``m``-subsets of ``range(n)`` (``1 <= m``) as a read-only ``int64`` array ``[C(n, m), m]``.

    Rows are increasing and in lexicographic order, as ``itertools.combinations(range(n), m)``;
    cached when there are at most :data:`MAX_CACHED_ROWS` of them.
    """
    return (_range_combinations if comb(n, m) <= MAX_CACHED_ROWS else _range_combinations.__wrapped__)(n, m)


def subsets_of(items: np.ndarray, m: int) -> np.ndarray:
    """All ``m``-subsets of ``items`` as an ``[C(len(items), m), m]`` array, in the order of
    ``itertools.combinations(items, m)`` (the index pattern of :func:`range_subsets`)."""
    return items[range_subsets(items.size, m)]


def clear_cache() -> None:
    """Empty the cache of subset index patterns."""
    _range_combinations.cache_clear()
