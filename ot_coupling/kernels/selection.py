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

from ._array import (array_namespace, device, is_torch_namespace, one_minus_power, scratch, stable_sort_rows,
                     take_at, take_rows)


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


def _prefix_sums(xp, x, slot=None):
    """``out[:, j] = sum(x[:, :j])`` for ``j = 0..V`` (``cumulative_sum(..., include_initial=True)``;
    numpy: ``cumsum`` into a preallocated buffer, 3x faster than numpy's own ``include_initial``, the
    :func:`~ot_coupling.kernels._array.scratch` buffer ``slot`` when given)."""
    if xp is np:
        shape = (x.shape[0], x.shape[1] + 1)
        out = _buffer(slot, shape, x.dtype)
        out[:, 0] = 0.0
        np.cumsum(x, axis=1, out=out[:, 1:])
        return out
    return xp.cumulative_sum(x, axis=1, include_initial=True)


def _suffix_sums(xp, x, slot=None):
    """``out[:, j] = sum(x[:, j:])`` for ``j = 0..V`` (summed from the tail: tiny tails stay exact)."""
    if xp is np:
        V = x.shape[1]
        out = _buffer(slot, (x.shape[0], V + 1), x.dtype)
        out[:, V] = 0.0
        np.cumsum(x[:, ::-1], axis=1, out=out[:, V - 1::-1] if V else out[:, :0])
        return out
    return xp.flip(xp.cumulative_sum(xp.flip(x, axis=1), axis=1, include_initial=True), axis=1)


def _buffer(slot, shape, dtype):
    """numpy: the scratch buffer ``slot`` (``None``: a new array)."""
    out = None if slot is None else scratch(np, slot, shape, dtype)
    return np.empty(shape, dtype=dtype) if out is None else out


def _op(xp, name: str, a, b, slot: str, dtype=None):
    """``xp.<name>(a, b)`` (an elementwise array-API function of ``[B, n]`` or ``[B, 1]`` arrays or a
    scalar ``b``); numpy: into the scratch buffer ``slot``, which ``a`` may be (exactly), ``b`` not."""
    if xp is not np:
        return getattr(xp, name)(a, b)
    if type(b) is float:
        shape, dtype = a.shape, dtype or a.dtype
    else:
        shape, dtype = max(a.shape, b.shape), dtype or np.result_type(a, b)
    out = scratch(np, slot, shape, dtype)
    return getattr(np, name)(a, b, out=out)


def _at_most_one(xp, x):
    """``minimum(x, 1)`` (numpy: in place; ``x`` is a fresh sum)."""
    return np.minimum(x, 1.0, out=x) if xp is np else xp.minimum(x, 1.0)


def _ratio_key(xp, P, Q):
    """``(key, all_positive)``: ``key = p/q`` where ``q > 0``, else ``inf`` (numpy: float64, in the
    scratch buffer ``"key"``, one division), and whether every ``q > 0`` (then no masking; off the
    host always ``False``: the answer would cost a device sync before the sort)."""
    positive = _op(xp, "greater", Q, 0.0, "finite", bool)
    on_host = xp is np or (is_torch_namespace(xp) and Q.device.type == "cpu")
    all_positive = on_host and bool(xp.all(positive))
    if xp is np:
        key = scratch(np, "key", P.shape, np.float64)
        if key is None:
            key = np.empty(P.shape)
        with np.errstate(over="ignore"):          # p/q beyond the float range is inf: sorted last
            if all_positive:
                return np.divide(P, Q, out=key), True
            key.fill(math.inf)
            return np.divide(P, Q, out=key, where=positive), False
    return xp.where(positive, P / xp.where(positive, Q, 1.0), math.inf), all_positive


def _count_true(xp, mask):
    """``count_nonzero(mask, axis=1)`` (numpy, one row: the vectorised count of the whole array;
    with ``axis`` numpy counts by a sum over a copy)."""
    if xp is np and mask.shape[0] == 1:
        return np.full(1, np.count_nonzero(mask), dtype=np.int64)
    return xp.count_nonzero(mask, axis=1)


def _clip_split(xp, x, j0: int, low, high):
    """``concat([maximum(x[:, :j0], low), minimum(x[:, j0:], high)], axis=1)`` for ``[B, 1]``
    ``low, high`` (numpy: both halves written into one new array)."""
    if xp is np:
        out = np.empty(x.shape, dtype=np.result_type(x, low, high))
        np.maximum(x[:, :j0], low, out=out[:, :j0])
        np.minimum(x[:, j0:], high, out=out[:, j0:])
        return out
    return xp.concat([xp.maximum(x[:, :j0], low), xp.minimum(x[:, j0:], high)], axis=1)


def selection_scan(P, Q, k: int, *, marginal: bool = True) -> SelectionScan:
    """The optimal selection law ``r* = q clip(p/q, theta_B, theta_A)`` of ``[B, V]`` rows
    (validated distributions), its cut and thresholds, in ascending-ratio order (module docstring).

    The prefix values ``p(H_j) + 1 - q(H_j)^k`` are those of :func:`solvers.closed_form.optimal_cut`
    (``"iid"``): same sums in the same order, so ``alpha`` and the cut are identical to it.
    ``marginal=False`` skips ``r`` (the importance rule needs only the ratios).

    Only the sums the thresholds read are formed: ``p`` from the left and ``q`` from the right over
    all columns (the cut), ``q`` from the left up to the largest cut of the batch and ``p`` from the
    right down to the smallest (each sum as a whole would give the same numbers there). When every
    row has the same cut and no ``q = 0`` token (one row of a softmax), the masks of ``H`` and of
    ``q = 0`` drop out. numpy keeps the intermediates of small batches in per-thread
    :func:`~ot_coupling.kernels._array.scratch` buffers (no page faults); the results are new arrays.
    """
    xp = array_namespace(P, Q)
    B, V = P.shape
    key, all_finite = _ratio_key(xp, P, Q)                             # all_finite: every q > 0
    order, ks = stable_sort_rows(xp, key, keys_out=scratch(xp, "ks", key.shape, key.dtype))
    ps, qs = take_rows(xp, P, order), take_rows(xp, Q, order)
    finite = None if all_finite else qs > 0
    pis_f = ks if all_finite else xp.where(finite, ks, 0.0)           # sorted p/q (0 where q = 0)
    Pc = _prefix_sums(xp, ps, "Pc")                                     # p(first j tokens)
    Qs = _at_most_one(xp, _suffix_sums(xp, qs, "Qs"))                  # q(tokens j..V-1)
    cover = one_minus_power(xp, Qs, k, out=scratch(xp, "e", Qs.shape, Qs.dtype))   # 1 - q(H_j)^k, exact for tiny tails
    vals = _op(xp, "add", Pc, cover, "vals")
    j = xp.argmin(vals, axis=1)                                         # first minimiser
    alpha = take_at(xp, vals, j)
    target_a = take_at(xp, cover, j)                                    # 1 - q(H)^k
    lo, hi = min(int(xp.min(j)), V - 1), int(xp.max(j))
    one_cut = lo == hi                                                  # every row cut at hi
    if not one_cut:
        idx = xp.arange(V, device=device(P))[None, :]
        in_h = idx < j[:, None]

    # theta_A: F(th) = sum_{i >= j, q_i > 0} min(p_i, th q_i) = 1 - q(H)^k; F piecewise linear,
    # increasing; its value at the breakpoint th = pis_i is (Ps_j - Ps_{i+1}) + pis_i Qs_{i+1}
    # (q = 0 tokens, ratio inf, count as reached; tokens of H never). Only the columns from the
    # smallest cut of the batch on can reach it, only those below the largest cut are in some H.
    # (scratch slots "key", "vals" and "e" are free from here)
    Ps = _suffix_sums(xp, ps[:, lo:], "key")                            # Ps[:, c]: p(tokens lo + c..V-1)
    Ps_j = take_at(xp, Ps, j - lo)
    f_at = _op(xp, "subtract", Ps_j[:, None], Ps[:, 1:], "vals")
    # pis_i Qs_{i+1} is 0 where no q-mass follows, also for a ratio that overflowed to inf
    with np.errstate(invalid="ignore"):                                # inf * 0, replaced by 0
        tail = xp.where(Qs[:, lo + 1:] > 0, _op(xp, "multiply", pis_f[:, lo:], Qs[:, lo + 1:], "e"), 0.0)
    f_at = _op(xp, "add", f_at, tail, "vals")
    reached = _op(xp, "greater_equal", f_at, target_a[:, None], "mask", bool)
    if not all_finite:
        reached = reached | ~finite[:, lo:]
    if not one_cut:
        reached = reached & ~in_h[:, lo:]
    first = xp.argmax(reached if xp is np else xp.astype(reached, xp.int8), axis=1)
    ia = lo + first                                                     # first breakpoint reaching it
    denom = take_at(xp, Qs, ia)
    ok = take_at(xp, reached, first) & (denom > 0)                     # else no cap binds (round-off)
    if not all_finite:
        ok = ok & take_at(xp, finite, ia)
    th_a = xp.where(ok, (target_a - (Ps_j - take_at(xp, Ps, first))) / xp.where(ok, denom, 1.0), math.inf)

    # theta_B: G(th) = sum_{i < j} max(p_i, th q_i) = q(H)^k, G piecewise linear increasing
    Qc = _at_most_one(xp, _prefix_sums(xp, qs[:, :max(hi, 1)], "key"))  # q(first j tokens), j <= hi
    q_cut = take_at(xp, Qc, j)
    target_b = q_cut ** k
    Pc_j = take_at(xp, Pc, j)
    g_at = _op(xp, "multiply", pis_f[:, :hi], Qc[:, 1:hi + 1], "vals")
    g_at = _op(xp, "add", g_at, _op(xp, "subtract", Pc_j[:, None], Pc[:, 1:hi + 1], "e"), "vals")
    below = _op(xp, "less_equal", g_at, target_b[:, None], "mask", bool)
    if not one_cut:
        below = below & in_h[:, :hi]
    ib = _count_true(xp, below) - 1
    ib = xp.where(ib > 0, ib, 0) + 1                                    # last breakpoint not above it
    Qc_b = take_at(xp, Qc, ib)
    th_b = xp.where(j > 0, (target_b - Pc_j + take_at(xp, Pc, ib)) / xp.where(Qc_b > 0, Qc_b, 1.0), 0.0)

    tb, ta = th_b[:, None], th_a[:, None]
    if one_cut:                                                         # H = the first hi columns
        ratio = _clip_split(xp, pis_f, hi, tb, ta)
    else:
        ratio = xp.where(in_h, xp.maximum(pis_f, tb), xp.minimum(pis_f, ta))
    if not all_finite:
        ratio = xp.where(finite, ratio, 0.0)
    r = None
    if marginal:
        if one_cut:
            in_h = xp.arange(V, device=device(P))[None, :] < hi
        r = xp.where(in_h, xp.maximum(ps, tb * qs),
                     xp.minimum(ps, ta * (qs if all_finite else xp.where(finite, qs, 1.0))))
        if not all_finite:
            r = xp.where(finite, r, 0.0)
    return SelectionScan(order, j, alpha, ps, qs, ratio, r, th_a, th_b, q_cut)
