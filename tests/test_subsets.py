"""``solvers.subsets``: the one enumeration of draft sets (the ``m``-subsets of ``range(n)``) shared by
the membership LP, the sequence LP and the exact i.i.d. plan, row for row the order of
:func:`itertools.combinations`, cached or not."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest

from solvers import subsets
from solvers.subsets import range_subsets, subsets_of


@pytest.mark.parametrize("n", range(0, 9))
def test_range_subsets_is_itertools_order(n):
    for m in range(1, n + 2):
        got = range_subsets(n, m)
        assert got.dtype == np.int64 and got.shape == (comb(n, m), m) and not got.flags.writeable
        assert got.tolist() == [list(c) for c in combinations(range(n), m)]


def test_subsets_of_items_matches_itertools():
    items = np.array([2, 3, 5, 7, 11, 13])
    for m in range(1, 7):
        assert subsets_of(items, m).tolist() == [list(c) for c in combinations(items.tolist(), m)]


def test_uncached_patterns_are_the_same(monkeypatch):
    """Above ``MAX_CACHED_ROWS`` the pattern is built afresh (not kept), with the same rows."""
    subsets.clear_cache()
    cached = range_subsets(12, 5)
    assert subsets._range_combinations.cache_info().currsize == 1
    monkeypatch.setattr(subsets, "MAX_CACHED_ROWS", 10)
    fresh = range_subsets(12, 5)
    assert fresh is not cached and np.array_equal(fresh, cached)
    assert subsets._range_combinations.cache_info().currsize == 1
    subsets.clear_cache()
    assert subsets._range_combinations.cache_info().currsize == 0
