r"""Recursive rejection sampling (RRS; SpecInfer, Miao et al., ASPLOS 2024, Algorithm 2) with i.i.d.
drafts and without replacement (Jeon et al., arXiv 2402.14160), batched, for any array-API backend.

One-parameter form (docs/theory/token_verifiers.md): with ``Z(t) = sum_x (p(x) - t q(x))^+``, the
state after ``i - 1`` rejections is ``p_i = (p - t_i q)^+ / Z(t_i)`` on the unseen tokens, with
``t_1 = 0`` and ``t_{i+1} = t_i + Z(t_i) c_i``, ``c_i = 1`` (i.i.d.) or ``1 / q(unseen)`` (without
replacement). Draft ``X_i`` is accepted with probability ``min(1, p_i(X_i) / q_i(X_i)) =
min(1, (p - t_i q)^+(X_i) / (Z(t_i) c_i q(X_i)))``; after ``k`` rejections the output is drawn from
``(p - t_{k+1} q)^+``. The i.i.d. acceptance is ``1 - Z(t_{k+1})``.

The acceptances use this form. :func:`rrs_plan` (the coins, shared by numpy and torch) runs the
equivalent explicit chain ``p_{i+1} ∝ (p_i - q_i)^+`` with lazy normalisation, which keeps the
residual accurate where ``p - t q`` cancels (see its docstring); both cost a few passes over the
vocabulary per step.
:func:`rrs_wor_acceptance` (exact, by recursion over rejection histories) replaced both the numpy
recursion and torch's batched path sums (budgets 50 000 and 200 000); it always computes in
float64: torch's float32 path sums lost 2.75e-3 on rows with masses from 1e-11 to 1.

Numerics (issue 11; checked against an exact rational enumeration of the explicit chain in
tests/test_rrs_exact.py, to 1e-15 on one-hot rows, masses from 5e-324 to 1 and float32 rows):
no mass is obtained as ``1 - (mass of the others)`` where that cancels (``q(unseen) - q(x)`` takes
the sum of the other tokens when ``x`` holds most of it); :func:`rrs_plan` carries the residual
step by step (``p_i - q_i`` against the previous residual, not ``p - t q`` against ``p``) and
divides rather than multiplying by reciprocals that overflow; the acceptance recursion scales ``q``
by a power of two so that ``1 / q(unseen)`` stays finite for subnormal masses; float32 rows are
renormalised in float64 before the recursions.
"""

from __future__ import annotations

import math

import numpy as np

from ._array import array_namespace, as_float64, clip_max, device, positive

#: the single budget of the exact RRS-without-replacement acceptance: most rejection paths it
#: enumerates before refusing (ValueError); about 1 s of work at V = 49152 on one CPU core
MAX_PATHS = 50_000


def _z(xp, P, Q, t):
    """``Z(t) = sum_x (p - t q)^+`` per row."""
    return xp.sum(positive(xp, P - t[:, None] * Q), axis=1)


def rrs_plan(P, Q, D, without_replacement: bool):
    """Coin numerators and denominators ``[B, k]`` (accept draft ``i`` iff ``u_i den < num``, i.e.
    with probability ``min(1, num/den)``) and the unnormalised final residual ``[B, V]`` for drafts
    ``D [B, k]``.

    ``num = p_i(X_i)`` and ``den = q_i(X_i)`` are the normalised step-``i`` laws (both in
    ``[0, 1]``: no under- or overflow of ``Z(t_i) c_i q(X_i)`` with masses near 1e-300), and the
    residual is carried as ``W_{i+1} = (W_i / Z_i - q / U_i)^+`` (``W_1 = p``, ``Z_i = sum W_i``,
    ``U_i = q(unseen) = 1 / c_i``), the explicit chain ``p_{i+1} ∝ (p_i - q_i)^+``; it equals
    ``(p - t_{i+1} q)^+`` up to scale. Each difference is taken against the previous residual, not
    against ``p``: ``p - t_{i+1} q`` computed from ``t_{i+1}`` loses every digit when
    ``t_{i+1} q(x)`` is within an ulp of ``p(x)`` (e.g. a conditional law 1.0 off for
    ``p(x) = 1, q(x) = 1 - 2^-35``, where the exact residual ``2^-70`` rounds to 0)."""
    xp = array_namespace(P, Q, D)
    B, k = D.shape
    dev = device(P)
    W = P
    Qu = Q
    U = None if without_replacement else xp.sum(Q, axis=1)   # q sums to 1 up to rounding
    vocab = xp.arange(Q.shape[1], device=dev)[None, :]
    nums, dens = [], []
    with np.errstate(over="ignore"):    # numpy: Q / U overflows to inf on seen tokens only
        for i in range(k):
            d = D[:, i:i + 1]
            z = xp.sum(W, axis=1)
            z = xp.where(z > 0, z, 1.0)     # z = 0: an unreachable state (W = 0, so num = 0)
            wx = xp.take_along_axis(W, d, axis=1)[:, 0]
            qx = xp.take_along_axis(Q, d, axis=1)[:, 0]
            if without_replacement:
                # q(unseen tokens), summed directly (1 - q(seen) cancels when q(seen) is near 1)
                U = xp.sum(Qu, axis=1)
                if i < k - 1:
                    Qu = xp.where(vocab == d, 0.0, Qu)
            nums.append(wx / z)
            dens.append(qx / U)
            # divisions, not products with 1/z, 1/U: those overflow when z or q(unseen) is
            # subnormal (Q / U overflows on seen tokens only, to inf, where the residual is 0)
            W = positive(xp, W / z[:, None] - Q / U[:, None])
    return xp.stack(nums, axis=1), xp.stack(dens, axis=1), W


def rrs_acceptance(P, Q, k: int):
    """Exact acceptance of RRS with ``k`` i.i.d. drafts per row: ``1 - Z(t_{k+1})``
    (equal to SpecInfer's ``1 - prod_i (1 - sum_x min(p_i, q))``).

    The rows are renormalised first (the recursion starts from ``Z(0) = 1``: float32 rows cast to
    float64 sum to ``1 +- 6e-8``, which made the acceptance ``-3e-8`` for ``p = (2/3, 1/3)``
    against a draft it never outputs) and the result is clipped to ``[0, 1]``."""
    xp = array_namespace(P, Q)
    P, Q = _normalise(xp, P), _normalise(xp, Q)
    t = xp.zeros((P.shape[0],), dtype=P.dtype, device=device(P))
    z = xp.ones_like(t)
    for _ in range(k):
        t = t + z
        z = _z(xp, P, Q, t)
    return positive(xp, 1.0 - z)


def _normalise(xp, w):
    """``w / sum(w)`` per row; rows that already sum to exactly 1 are returned as they are, rows of
    zero mass stay zero (one division pass, no where over ``[B, V]``)."""
    s = xp.sum(w, axis=1, keepdims=True)
    if bool(xp.all(s == 1.0)):
        return w
    return w / xp.where(s > 0, s, 1.0)


class _ZFunction:
    """``Z(t) = sum_{r_x > t} (p_x - t q_x)`` of one row in ``O(log V)`` from ratios sorted once."""

    def __init__(self, xp, p, q):
        self.xp = xp
        ratio = xp.where(q > 0, p / xp.where(q > 0, q, 1.0), math.inf)
        order = xp.argsort(ratio, stable=True)
        self.r = xp.take(ratio, order)
        zero = xp.zeros((1,), dtype=p.dtype, device=device(p))
        self.suffix_p = xp.concat([xp.flip(xp.cumulative_sum(xp.flip(xp.take(p, order)))), zero])
        self.suffix_q = xp.concat([xp.flip(xp.cumulative_sum(xp.flip(xp.take(q, order)))), zero])

    def __call__(self, t):
        xp = self.xp
        j = xp.searchsorted(self.r, t, side="right")
        return positive(xp, xp.take(self.suffix_p, j) - t * xp.take(self.suffix_q, j))


def _mass_without(xp, u, total: float, xs):
    """``total - u[x]`` for each index ``x`` in ``xs`` (``u >= 0``, ``total = sum(u)``) without
    cancellation: the subtraction is exact to a few ulps of the result whenever ``u[x] <= total / 2``;
    the at most one ``x`` with ``u[x] > total / 2`` gets the sum of the other entries instead (the
    former ``1 - q(x)`` lost every digit when ``q(x)`` carried almost all the unseen mass, e.g. 1.0
    instead of 1.6e-57, or 1.5e-9 off on the issue-11 corner)."""
    ux = xp.take(u, xs)
    out = total - ux
    if out.shape[0] == 0:                 # no rejectable token: nothing to correct
        return out
    j = int(xp.argmax(ux))
    if not float(ux[j]) > 0.5 * total:
        return out
    x = int(xs[j])
    rest = float(xp.sum(u[:x]) + xp.sum(u[x + 1:]))
    return xp.where(xp.arange(out.shape[0], device=device(u)) == j, rest, out)


def rrs_wor_acceptance(P, Q, k: int, max_paths: int = MAX_PATHS):
    """Exact acceptance of RRS without replacement per row, ``1 - E[Z(t_{k+1})]`` (float64 whatever
    the input dtype; the module docstring gives the one-parameter form).

    ``P(all rejected)`` sums, over the ordered histories of rejected tokens ``x_1..x_{k-2}``
    (recursion; each taken with probability ``r_i(x) = (c_i q(x) - (p(x) - t_i q(x))^+ / Z(t_i))^+``
    on the unseen tokens), the last two steps in closed form vectorised over ``x_{k-1}``: ``Z`` is
    evaluated in ``O(log V)`` from the ratios ``p/q`` sorted once per row (a rejected token has
    ``p < t q`` and leaves ``Z`` for good, so ``Z`` never needs the seen set). ``O(V log V)`` for
    ``k <= 2``, ``O(R^{k-2} V)`` beyond (``R`` rejectable tokens). More than ``max_paths`` histories
    (over all rows) raise ``ValueError``; the first level's count is checked before its work.
    """
    xp = array_namespace(P, Q)
    # renormalised in float64: rows normalised in float32 sum to 1 +- 6e-8 only, and the recursion
    # starts from Z(0) = 1 (the acceptance of the float32 rows is then exact to ~1e-16)
    P, Q = _normalise(xp, as_float64(xp, P)), _normalise(xp, as_float64(xp, Q))
    if k == 1:
        return clip_max(xp, xp.sum(xp.minimum(P, Q), axis=1), 1.0)
    if bool(xp.any(xp.sum(xp.astype(Q > 0, xp.int64), axis=1) < k)):
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0")
    budget = [max_paths]
    with np.errstate(over="ignore"):     # p / q and t q overflow to inf harmlessly (numpy)
        out = [min(max(1.0 - _reject_all(xp, P[b], Q[b], k, budget, max_paths), 0.0), 1.0)
               for b in range(P.shape[0])]
    return xp.asarray(out, dtype=xp.float64, device=device(P))


def _reject_all(xp, p, q, k: int, budget: list[int], max_paths: int) -> float:
    # Every quantity below is invariant under q -> s q, t -> t / s. With s = 2^m (exact) the
    # smallest positive q is at least 2^-1000, so c = 1 / q(unseen) <= 2^1000 and t stay finite;
    # a subnormal q(unseen) made c overflow (acceptance 4.5e-13 instead of 0.9995 for
    # p = e_2, q = (1, 5e-324, 1e-320), k = 2). t q may overflow to inf on seen tokens, where
    # (p - t q)^+ = 0 is the right value.
    q_min = float(xp.min(xp.where(q > 0, q, 1.0)))
    m = max(0, math.ceil(-1000.0 - math.log2(q_min)))
    if m:
        q = q * float(2.0 ** m)
    Z = _ZFunction(xp, p, q)
    V = p.shape[0]

    def one(t: float):
        return float(Z(xp.asarray([t], dtype=xp.float64, device=device(p)))[0])

    def rec(i: int, t: float, z: float, unseen) -> float:
        """P(steps i..k all reject | state) for a history with ``Z(t_i) = z > 0``."""
        unseen_q = xp.where(unseen, q, 0.0)
        unseen_mass = float(xp.sum(unseen_q))          # not 1 - q(seen): no cancellation
        c = 1.0 / unseen_mass
        t_next = t + z * c
        z_next = one(t_next)
        if i == k or z_next <= 0:
            return z_next / z
        rej = xp.where(unseen, positive(xp, c * q - positive(xp, p - t * q) / z), 0.0)
        xs = xp.nonzero(rej > 0)[0]
        if i == k - 1:   # last level vectorised: step k rejects with prob Z(t_{k+1}) / Z(t_k)
            c_k = 1.0 / _mass_without(xp, unseen_q, unseen_mass, xs)   # > 0: support >= k
            return float(xp.sum(xp.take(rej, xs) * Z(t_next + z_next * c_k))) / z_next
        budget[0] -= int(xs.shape[0])
        if budget[0] < 0:
            raise ValueError(f"exact rrs_wor acceptance for k={k} needs more than {max_paths} "
                             f"rejection histories (paths) at V={V}; reduce k or V")
        vocab = xp.arange(V, device=device(p))
        total = 0.0
        for x, w in zip(xs.tolist() if hasattr(xs, "tolist") else list(xs),
                        xp.take(rej, xs).tolist()):
            total += w * rec(i + 1, t_next, z_next, unseen & (vocab != x))
        return total

    return rec(1, 0.0, 1.0, xp.ones((V,), dtype=xp.bool, device=device(p)))
