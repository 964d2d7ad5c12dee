r"""The optimal selection law of ``k`` i.i.d. drafts by prefix scans: one kernel, any array-API backend.

``r* = q clip(p/q, theta_B, theta_A)`` with ``H`` the first minimising prefix of
``p(H) + 1 - q(H)^k`` in ascending ``p/q`` (stable), ``theta_A`` solving
``sum_{y not in H} min(p_y, theta_A q_y) = 1 - q(H)^k`` and ``theta_B`` solving
``sum_{y in H} max(p_y, theta_B q_y) = q(H)^k`` (docs/theory/optimal_verifier.md; Khisti et al.,
ICLR 2025, arXiv 2410.18234). Both equations are piecewise linear and monotone, solved exactly at
their breakpoints by prefix and suffix sums of the sorted masses (suffix sums keep the tiny masses
of the high-ratio tail exact); ``O(V log V)`` per row, vectorised over ``[B, V]``. Used by
:mod:`solvers.selection_law` (numpy) and :mod:`gpu_backend.optimal` (torch), which held copies
before issue 12.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._array import array_namespace, device, one_minus_power, stable_sort_rows, take_at, take_rows


class SelectionScan(NamedTuple):
    """:func:`selection_scan`'s result. ``[B, V]`` arrays in the ascending-ratio order ``order``
    (``q = 0`` last): ``ps``, ``qs``, ``ratio`` (``r*/q``, 0 where ``q = 0``), ``r`` (``r*``; ``None`` when not asked for);
    ``[B]``: ``cut`` (size ``j`` of ``H``: ``in_cut = arange(V) < cut``), ``alpha``
    (``p(H) + 1 - q(H)^k``), ``theta_a`` (``inf`` if no cap binds), ``theta_b`` (0 if ``H`` is
    empty), ``q_cut`` (``q(H)``)."""

    order: Any
    cut: Any
    alpha: Any
    ps: Any
    qs: Any
    ratio: Any
    r: Any
    theta_a: Any
    theta_b: Any
    q_cut: Any


def _prefix_sums(xp, x):
    """``out[:, j] = sum(x[:, :j])`` for ``j = 0..V`` (``cumulative_sum(..., include_initial=True)``;
    numpy: ``cumsum`` into a preallocated buffer, 3x faster than numpy's own ``include_initial``)."""
    if xp is np:
        out = np.empty((x.shape[0], x.shape[1] + 1), dtype=x.dtype)
        out[:, 0] = 0.0
        np.cumsum(x, axis=1, out=out[:, 1:])
        return out
    return xp.cumulative_sum(x, axis=1, include_initial=True)


def _suffix_sums(xp, x):
    """``out[:, j] = sum(x[:, j:])`` for ``j = 0..V`` (summed from the tail: tiny tails stay exact)."""
    if xp is np:
        V = x.shape[1]
        out = np.empty((x.shape[0], V + 1), dtype=x.dtype)
        out[:, V] = 0.0
        np.cumsum(x[:, ::-1], axis=1, out=out[:, V - 1::-1] if V else out[:, :0])
        return out
    return xp.flip(xp.cumulative_sum(xp.flip(x, axis=1), axis=1, include_initial=True), axis=1)


def selection_scan(P, Q, k: int, *, marginal: bool = True) -> SelectionScan:
    """The optimal selection law ``r* = q clip(p/q, theta_B, theta_A)`` of ``[B, V]`` rows
    (validated distributions), its cut and thresholds, in ascending-ratio order (module docstring).

    The prefix values ``p(H_j) + 1 - q(H_j)^k`` are those of :func:`solvers.closed_form.optimal_cut`
    (``"iid"``): same sums in the same order, so ``alpha`` and the cut are identical to it.
    ``marginal=False`` skips ``r`` (the importance rule needs only the ratios).
    """
    xp = array_namespace(P, Q)
    V = P.shape[1]
    finite_all = Q > 0
    if xp is np:                                  # p/q where q > 0, else inf: one pass
        key = np.divide(P, Q, out=np.full(P.shape, math.inf), where=finite_all)
    else:
        key = xp.where(finite_all, P / xp.where(finite_all, Q, 1.0), math.inf)
    order, ks = stable_sort_rows(xp, key)
    ps, qs = take_rows(xp, P, order), take_rows(xp, Q, order)
    finite = qs > 0
    pis_f = xp.where(finite, ks, 0.0)                                   # sorted p/q (0 where q = 0)
    Pc = _prefix_sums(xp, ps)                                           # p(first j tokens)
    Qc = xp.minimum(_prefix_sums(xp, qs), 1.0)
    Ps = _suffix_sums(xp, ps)                                           # p(tokens j..V-1)
    Qs = xp.minimum(_suffix_sums(xp, qs), 1.0)
    cover = one_minus_power(xp, Qs, k)                                  # 1 - q(H_j)^k, exact for tiny tails
    vals = Pc + cover
    j = xp.argmin(vals, axis=1)                                         # first minimiser
    alpha = take_at(xp, vals, j)
    idx = xp.arange(V, device=device(P))[None, :]
    in_h = idx < j[:, None]

    # theta_A: F(th) = sum_{i >= j, q_i > 0} min(p_i, th q_i) = 1 - q(H)^k; F piecewise linear,
    # increasing; its value at the breakpoint th = pis_i is (Ps_j - Ps_{i+1}) + pis_i Qs_{i+1}
    target_a = take_at(xp, cover, j)
    Ps_j = take_at(xp, Ps, j)
    # (q = 0 tokens, ratio inf, count as reached; tokens of H never). Only the columns from the
    # smallest cut of the batch on can reach it, only those below the largest cut are in some H.
    lo, hi = min(int(xp.min(j)), V - 1), int(xp.max(j))
    f_at = (Ps_j[:, None] - Ps[:, lo + 1:]) + pis_f[:, lo:] * Qs[:, lo + 1:]
    reached = ((f_at >= target_a[:, None]) | ~finite[:, lo:]) & ~in_h[:, lo:]
    ia = lo + xp.argmax(xp.astype(reached, xp.int8), axis=1)           # first breakpoint reaching it
    denom = take_at(xp, Qs, ia)
    ok = xp.any(reached, axis=1) & take_at(xp, finite, ia) & (denom > 0)   # else no cap binds (round-off)
    th_a = xp.where(ok, (target_a - (Ps_j - take_at(xp, Ps, ia))) / xp.where(ok, denom, 1.0), math.inf)

    # theta_B: G(th) = sum_{i < j} max(p_i, th q_i) = q(H)^k, G piecewise linear increasing
    q_cut = take_at(xp, Qc, j)
    target_b = q_cut ** k
    Pc_j = take_at(xp, Pc, j)
    g_at = pis_f[:, :hi] * Qc[:, 1:hi + 1] + (Pc_j[:, None] - Pc[:, 1:hi + 1])
    ib = xp.sum(xp.astype((g_at <= target_b[:, None]) & in_h[:, :hi], xp.int64), axis=1) - 1
    ib = xp.where(ib > 0, ib, 0) + 1                                    # last breakpoint not above it
    Qc_b = take_at(xp, Qc, ib)
    th_b = xp.where(j > 0, (target_b - Pc_j + take_at(xp, Pc, ib)) / xp.where(Qc_b > 0, Qc_b, 1.0), 0.0)

    ratio = xp.where(finite, xp.where(in_h, xp.maximum(pis_f, th_b[:, None]),
                                      xp.minimum(pis_f, th_a[:, None])), 0.0)
    r = None
    if marginal:
        r = xp.where(finite, xp.where(in_h, xp.maximum(ps, th_b[:, None] * qs),
                                      xp.minimum(ps, th_a[:, None] * xp.where(finite, qs, 1.0))), 0.0)
    return SelectionScan(order, j, alpha, ps, qs, ratio, r, th_a, th_b, q_cut)

