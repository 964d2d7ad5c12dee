"""Inverse-CDF sampling from chosen rows of a fixed table (the simulator's hot path).

The cumulative sums of a table ``[N, V]`` are computed once; a draw for row ``i`` with uniform
``u`` returns the first token whose cumulative mass exceeds ``u * total_i``, found by a vectorised
binary search (``ceil(log2 V)`` gathers per draw) instead of a cumulative sum over ``V`` entries per
draw. This is the same index as ``ot_coupling``'s ``"iid"`` sampler, ``(cdf <= u * total).sum()``:
a token of zero mass repeats its predecessor's cumulative value and is never returned, and a draw
that rounds past the top is clamped to the row's last positive token.
"""

from __future__ import annotations

import numpy as np


class RowSampler:
    """Draw one token from chosen rows of a fixed row-stochastic table ``[N, V]``."""

    def __init__(self, table: np.ndarray):
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2:
            raise ValueError(f"table must be 2-D [N, V], got shape {table.shape}")
        N, V = table.shape
        cdf = np.cumsum(table, axis=1)
        if (cdf[:, -1] <= 0).any():
            raise ValueError("table has a row without mass")
        self._cdf = cdf.ravel()
        self._total = cdf[:, -1].copy()
        self._last = V - 1 - np.argmax(table[:, ::-1] > 0, axis=1)
        self._steps = int(np.ceil(np.log2(V))) if V > 1 else 0
        self.n_rows, self.V = N, V

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One token per entry of ``rows`` (row indices), using ``rows.size`` uniforms."""
        rows = np.asarray(rows, dtype=np.int64)
        target = rng.random(rows.shape) * self._total[rows]
        base = rows * self.V
        lo = np.zeros(rows.shape, dtype=np.int64)
        hi = np.full(rows.shape, self.V - 1, dtype=np.int64)
        for _ in range(self._steps):  # invariant: the answer lies in [lo, hi]
            mid = (lo + hi) >> 1
            right = self._cdf[base + mid] <= target
            lo = np.where(right, mid + 1, lo)
            hi = np.where(right, hi, mid)
        return np.minimum(lo, self._last[rows])
