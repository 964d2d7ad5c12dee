r"""The optimal selection law of ``k`` i.i.d. drafts by prefix scans: one kernel, any array-API backend.

A rule selecting one draft ``Z`` among ``X_1..X_k ~ q`` followed by single-draft speculative sampling
against ``p`` accepts with ``sum_y min(r_y, p_y)``, ``r`` the law of ``Z`` (Khisti et al., ICLR 2025,
arXiv 2410.18234). The optimal law (docs/theory/optimal_verifier.md) is

.. math:: r^*_y = q_y\,\mathrm{clip}(p_y / q_y, \theta_B, \theta_A),

with ``H`` the first minimising prefix of ``p(H) + 1 - q(H)^k`` in ascending ``p/q``
(docs/theory/membership_ot.md; ties in the ratio keep the input order), ``theta_A`` solving
``sum_{y not in H} min(p_y, theta_A q_y) = 1 - q(H)^k`` and ``theta_B`` solving
``sum_{y in H} max(p_y, theta_B q_y) = q(H)^k``. Both equations are piecewise linear and monotone
in the threshold and are solved exactly at their breakpoints by prefix and suffix sums of the sorted
masses (suffix sums keep the tiny masses of the high-ratio tail exact). ``O(V log V)`` per row,
vectorised over the rows of ``[B, V]``.

This one function replaced the numpy scans of ``solvers.selection_law`` and their torch copy in
``gpu_backend.optimal`` (issue 12).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._array import array_namespace, device, one_minus_power


class SelectionScan(NamedTuple):
    """The optimal selection law of :func:`selection_scan`; arrays ``[B, V]`` are in the sorted order
    ``order`` (ascending ``p/q``, stable), vectors are ``[B]``."""

    order: Any      #: ``[B, V]`` token ids by ascending ``p/q`` (``q = 0`` last)
    cut: Any        #: ``[B]`` size ``j`` of the minimising prefix ``H`` (``in_cut = arange(V) < cut``)
    alpha: Any      #: ``[B]`` ``alpha* = p(H) + 1 - q(H)^k``
    ps: Any         #: ``[B, V]`` ``p`` sorted
    qs: Any         #: ``[B, V]`` ``q`` sorted
    ratio: Any      #: ``[B, V]`` ``r*/q`` sorted (0 where ``q = 0``)
    r: Any          #: ``[B, V]`` ``r*`` sorted
    theta_a: Any    #: ``[B]`` cap on ``A = V \ H`` (``inf`` when no cap binds)
    theta_b: Any    #: ``[B]`` floor on ``H`` (0 when ``H`` is empty)
    q_cut: Any      #: ``[B]`` ``q(H)``

    @property
    def in_cut(self):
        """``[B, V]`` membership in ``H`` (sorted order)."""
        xp = array_namespace(self.qs)
        return xp.arange(self.qs.shape[1], device=device(self.qs))[None, :] < self.cut[:, None]


def _at(xp, x, j):
    """``x[b, j[b]]`` per row."""
    return xp.take_along_axis(x, j[:, None], axis=1)[:, 0]


def selection_scan(P, Q, k: int) -> SelectionScan:
    """The optimal selection law ``r* = q clip(p/q, theta_B, theta_A)`` of ``[B, V]`` rows
    (validated distributions), its cut and thresholds, in ascending-ratio order (module docstring).

    The prefix values ``p(H_j) + 1 - q(H_j)^k`` are those of :func:`solvers.closed_form.optimal_cut`
    (``"iid"``): same sums in the same order, so ``alpha`` and the cut are identical to it.
    """
    xp = array_namespace(P, Q)
    B, V = P.shape
    dev = device(P)
    finite_all = Q > 0
    key = xp.where(finite_all, P / xp.where(finite_all, Q, 1.0), math.inf)
    order = xp.argsort(key, axis=1, stable=True)
    pis = xp.take_along_axis(key, order, axis=1)
    ps, qs = xp.take_along_axis(P, order, axis=1), xp.take_along_axis(Q, order, axis=1)
    finite = qs > 0
    pis_f = xp.where(finite, pis, 0.0)
    zero = xp.zeros((B, 1), dtype=P.dtype, device=dev)
    Pc = xp.cumulative_sum(ps, axis=1, include_initial=True)           # p(first j tokens)
    Qc = xp.minimum(xp.cumulative_sum(qs, axis=1, include_initial=True), 1.0)
    Ps = xp.concat([xp.flip(xp.cumulative_sum(xp.flip(ps, axis=1), axis=1), axis=1), zero], axis=1)
    Qs = xp.minimum(xp.concat([xp.flip(xp.cumulative_sum(xp.flip(qs, axis=1), axis=1), axis=1), zero],
                              axis=1), 1.0)
    cover = one_minus_power(xp, Qs, k)                                  # 1 - q(H_j)^k, exact for tiny tails
    vals = Pc + cover
    j = xp.argmin(vals, axis=1)                                         # first minimiser
    alpha = _at(xp, vals, j)
    idx = xp.arange(V, device=dev)[None, :]
    in_h = idx < j[:, None]

    # theta_A: F(th) = sum_{i >= j, q_i > 0} min(p_i, th q_i) = 1 - q(H)^k; F piecewise linear,
    # increasing; its value at the breakpoint th = pis_i is (Ps_j - Ps_{i+1}) + pis_i Qs_{i+1}
    target_a = _at(xp, cover, j)
    Ps_j = _at(xp, Ps, j)
    f_at = xp.where(in_h, -math.inf,
                    xp.where(finite, (Ps_j[:, None] - Ps[:, 1:]) + pis_f * Qs[:, 1:], math.inf))
    reached = f_at >= target_a[:, None]
    ia = xp.argmax(xp.astype(reached, xp.int8), axis=1)                # first breakpoint reaching it
    denom = _at(xp, Qs, ia)
    ok = xp.any(reached, axis=1) & _at(xp, finite, ia) & (denom > 0)   # else no cap binds (round-off)
    th_a = xp.where(ok, (target_a - (Ps_j - _at(xp, Ps, ia))) / xp.where(ok, denom, 1.0), math.inf)

    # theta_B: G(th) = sum_{i < j} max(p_i, th q_i) = q(H)^k, G piecewise linear increasing
    q_cut = _at(xp, Qc, j)
    target_b = q_cut ** k
    Pc_j = _at(xp, Pc, j)
    g_at = xp.where(in_h, pis_f * Qc[:, 1:] + (Pc_j[:, None] - Pc[:, 1:]), math.inf)
    ib = xp.sum(xp.astype(g_at <= target_b[:, None], xp.int64), axis=1) - 1
    ib = xp.where(ib > 0, ib, 0) + 1                                    # last breakpoint not above it
    Qc_b = _at(xp, Qc, ib)
    has_h = j > 0
    th_b = xp.where(has_h, (target_b - Pc_j + _at(xp, Pc, ib)) / xp.where(Qc_b > 0, Qc_b, 1.0), 0.0)

    ratio = xp.where(finite, xp.where(in_h, xp.maximum(pis_f, th_b[:, None]),
                                      xp.minimum(pis_f, th_a[:, None])), 0.0)
    r = xp.where(finite, xp.where(in_h, xp.maximum(ps, th_b[:, None] * qs),
                                  xp.minimum(ps, th_a[:, None] * xp.where(finite, qs, 1.0))), 0.0)
    return SelectionScan(order, j, alpha, ps, qs, ratio, r, th_a, th_b, q_cut)

