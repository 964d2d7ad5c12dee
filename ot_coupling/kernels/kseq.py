r"""K-SEQ (SpecTr; Sun, Suresh, Ro, Beirami, Jain, Yu, NeurIPS 2023): the optimal division factor
``rho*``, the residual and the acceptance, batched over rows, for any array-API backend.

With ``beta(rho) = sum_x min(q(x), p(x)/rho)``, K-SEQ with factor ``rho`` is valid iff
``g(rho) = 1 - (1 - beta)^k - rho beta <= 0``; ``g`` decreases, so the best factor is the root
``rho*`` in ``[1, k]`` (docs/theory/token_verifiers.md).

Algorithm of :func:`kseq_rho` (one for every backend; it replaced a bisection in numpy and a
safeguarded Newton iteration with ulp polishing in torch, which agreed to ~1e-15 but not bitwise):
with ``r_x = p(x)/q(x)`` sorted, ``beta(rho) = A_j / rho + B_j`` between consecutive breakpoints
(``A_j`` = target mass of the ``j`` smallest ratios, ``B_j`` = draft mass of the others), so ``g``
at every breakpoint inside ``(1, k)`` comes from one sort and cumulative sums, which locate the
segment holding the root. On that segment ``g(x) = 1 - (1 - B - A/x)^k - A - B x`` is explicit in
``x``; a vectorised multisection (``SECTIONS`` points per round, so ~5 bits per round instead of
bisection's 1) shrinks the bracket until its ends are adjacent floating-point numbers and returns the
valid end: the smallest float ``rho`` with ``g(rho) <= 0``, exact to the last bit on every backend.
"""

from __future__ import annotations

import math

import numpy as np

from ._array import (
    array_namespace,
    as_float64,
    clip_min,
    device,
    is_numpy_namespace,
    one_minus_power,
    positive,
)

#: points per multisection round
SECTIONS = 32
#: rounds cap (53 bits at >= 5 bits per round need 11; the bracket stops shrinking earlier)
MAX_ROUNDS = 40


def validity_gap(xp, beta, rho, k: int):
    """``g = 1 - (1 - beta)^k - rho beta``: ``<= 0`` iff ``rho`` is a valid division factor."""
    return one_minus_power(xp, beta, k) - rho * beta


def _sorted_inner(xp, ratio, inner):
    """Ascending inner breakpoints (``inf`` padding) and their token indices, ``m`` columns only."""
    m = int(xp.max(xp.sum(xp.astype(inner, xp.int64), axis=1)))
    keyed = xp.where(inner, ratio, math.inf)
    if m == 0:
        return None, None
    if is_numpy_namespace(xp) and 4 * m < ratio.shape[1]:   # few breakpoints: partition first
        part = np.argpartition(keyed, m - 1, axis=1)[:, :m]
        sub = np.take_along_axis(keyed, part, axis=1)
        order = np.take_along_axis(part, np.argsort(sub, axis=1), axis=1)
    else:
        order = xp.argsort(keyed, axis=1)[:, :m]
    return xp.take_along_axis(keyed, order, axis=1), order


def kseq_rho(P, Q, k: int):
    """``rho*`` per row of ``[B, V]`` target/draft rows (validated, row-stochastic), float64.

    1 where ``rho = 1`` is valid up to round-off (``g(1) <= 8 eps``, e.g. ``p == q``); otherwise the smallest float64 ``rho``
    in ``(1, k]`` with ``1 - (1 - beta(rho))^k <= rho beta(rho)``.
    """
    xp = array_namespace(P, Q)
    P, Q = as_float64(xp, P), as_float64(xp, Q)
    B = P.shape[0]
    dev = device(P)
    ones = xp.ones((B,), dtype=xp.float64, device=dev)
    if k == 1:
        return ones
    # rho = 1 valid up to round-off (g(1) = 0 when p == q or the supports are disjoint). For p == q,
    # g = -(1 - 1/rho)^k: a k-fold root at 1 that no float search can locate better than this
    done = validity_gap(xp, xp.sum(xp.minimum(P, Q), axis=1), ones, k) <= 8 * xp.finfo(xp.float64).eps
    live = (P > 0) & (Q > 0)                 # other tokens contribute 0 to beta at every rho
    Pe, Qe = xp.where(live, P, 0.0), xp.where(live, Q, 0.0)
    ratio = xp.where(live, P / xp.where(live, Q, 1.0), math.inf)
    inner = (ratio > 1.0) & (ratio < k)     # only these breakpoints can bound the root's segment
    lo, hi = ones, xp.full((B,), float(k), dtype=xp.float64, device=dev)
    r, order = _sorted_inner(xp, ratio, inner)
    if r is not None:
        valid = xp.isfinite(r)
        r1 = xp.where(valid, r, 1.0)
        base_p = xp.sum(xp.where(ratio <= 1.0, Pe, 0.0), axis=1, keepdims=True)
        top_q = xp.sum(xp.where(ratio >= k, Qe, 0.0), axis=1, keepdims=True)
        p_in = xp.where(valid, xp.take_along_axis(Pe, order, axis=1), 0.0)
        q_in = xp.where(valid, xp.take_along_axis(Qe, order, axis=1), 0.0)
        cum_p = base_p + xp.cumulative_sum(p_in, axis=1)
        q_above = top_q + xp.sum(q_in, axis=1, keepdims=True) - xp.cumulative_sum(q_in, axis=1)
        g_knots = validity_gap(xp, cum_p / r1 + q_above, r1, k)
        lo = xp.maximum(lo, xp.max(xp.where(valid & (g_knots > 0), r, 1.0), axis=1))
        hi = xp.minimum(hi, xp.min(xp.where(valid & (g_knots <= 0), r, float(k)), axis=1))
    lo = xp.minimum(lo, hi)                 # round-off can cross the knots' signs
    below = ratio <= lo[:, None]
    A = xp.sum(xp.where(below, Pe, 0.0), axis=1)
    Bq = xp.sum(xp.where(below, 0.0, Qe), axis=1)
    rho = _multisect(xp, lambda x: validity_gap(xp, A[:, None] / x + Bq[:, None], x, k), lo, hi)
    return xp.where(done, 1.0, rho)


def _multisect(xp, fun, lo, hi):
    """Smallest float ``x`` in ``(lo, hi]`` with ``fun(x) <= 0`` per row, for a decreasing ``fun``
    with ``fun(lo) > 0 >= fun(hi)`` (``fun`` maps ``[B, S]`` points to ``[B, S]`` values)."""
    frac = xp.asarray(np.arange(1, SECTIONS + 1) / SECTIONS, dtype=lo.dtype, device=device(lo))
    for _ in range(MAX_ROUNDS):
        x = lo[:, None] + (hi - lo)[:, None] * frac[None, :]
        x = xp.concat([x[:, :-1], hi[:, None]], axis=1)          # the last point is hi exactly
        ok = fun(x) <= 0
        ok = xp.concat([ok[:, :-1], xp.ones_like(ok[:, :1])], axis=1)
        first = xp.argmax(xp.astype(ok, xp.int8), axis=1)        # first valid point
        new_hi = xp.take_along_axis(x, first[:, None], axis=1)[:, 0]
        prev = xp.take_along_axis(x, clip_min(xp, first - 1, 0)[:, None], axis=1)[:, 0]
        new_lo = xp.where(first > 0, prev, lo)
        if bool(xp.all((new_lo == lo) & (new_hi == hi))):
            break
        lo, hi = new_lo, new_hi
    return hi


def kseq_residual(P, Q, rho, k: int):
    """Unnormalised K-SEQ residual ``p - min(q, p/rho) (1 - (1-beta)^k)/beta`` and ``beta`` per row
    (``rho [B]``); negative entries mean ``rho`` is invalid (clip before sampling)."""
    xp = array_namespace(P, Q, rho)
    m = xp.minimum(Q, P / rho[:, None])
    beta = xp.sum(m, axis=1)
    acc = one_minus_power(xp, beta, k)
    scale = xp.where(beta > 0, acc / xp.where(beta > 0, beta, 1.0), 0.0)
    return P - m * scale[:, None], beta


def kseq_acceptance(P, Q, rho, k: int):
    """Membership acceptance per row of K-SEQ with factors ``rho [B]``:
    ``1 - (1-beta)^k`` plus, for ``rho > rho*``, the chance that the residual draws a drafted and
    rejected token, ``sum_y p_res(y) [(1-beta)^k - (1 - beta - (q(y) - p(y)/rho)^+)^k]`` (zero at
    ``rho*``)."""
    xp = array_namespace(P, Q, rho)
    res, beta = kseq_residual(P, Q, rho, k)
    res = positive(xp, res)
    total = xp.sum(res, axis=1, keepdims=True)
    law = xp.where(total > 0, res / xp.where(total > 0, total, 1.0), P)
    reject_all = (1.0 - beta) ** k
    rejected = positive(xp, Q - P / rho[:, None])
    extra = xp.sum(law * (reject_all[:, None]
                          - positive(xp, 1.0 - beta[:, None] - rejected) ** k), axis=1)
    return 1.0 - reject_all + extra
