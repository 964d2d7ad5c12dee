r"""Recursive rejection sampling (RRS; SpecInfer, Miao et al., ASPLOS 2024, Algorithm 2) with i.i.d.
drafts and without replacement (Jeon et al., arXiv 2402.14160), batched, for any array-API backend.

One-parameter form (docs/theory/token_verifiers.md): with ``Z(t) = sum_x (p(x) - t q(x))^+``, the
state after ``i - 1`` rejections is ``p_i = (p - t_i q)^+ / Z(t_i)`` on the unseen tokens, with
``t_1 = 0`` and ``t_{i+1} = t_i + Z(t_i) c_i``, ``c_i = 1`` (i.i.d.) or ``1 / q(unseen)`` (without
replacement). Draft ``X_i`` is accepted with probability ``min(1, p_i(X_i) / q_i(X_i)) =
min(1, (p - t_i q)^+(X_i) / (Z(t_i) c_i q(X_i)))``; after ``k`` rejections the output is drawn from
``(p - t_{k+1} q)^+``. The i.i.d. acceptance is ``1 - Z(t_{k+1})``.

This single form replaced the explicit chain of renormalised ``p_i, q_i`` (torch) and the numpy
one-parameter loop; it needs one pass over the vocabulary per step (two without replacement).
:func:`rrs_wor_acceptance` (exact, by recursion over rejection histories) replaced both the numpy
recursion and torch's batched path sums (budgets 50 000 and 200 000); it always computes in
float64: torch's float32 path sums lost 2.75e-3 on rows with masses from 1e-11 to 1.
"""

from __future__ import annotations

import math

from ._array import array_namespace, as_float64, clip_min, device, positive

#: the single budget of the exact RRS-without-replacement acceptance: most rejection paths it
#: enumerates before refusing (ValueError); about 1 s of work at V = 49152 on one CPU core
MAX_PATHS = 50_000


def _z(xp, P, Q, t):
    """``Z(t) = sum_x (p - t q)^+`` per row."""
    return xp.sum(positive(xp, P - t[:, None] * Q), axis=1)


def rrs_plan(P, Q, D, without_replacement: bool):
    """Coin numerators and denominators ``[B, k]`` (accept draft ``i`` iff ``u_i den < num``, i.e.
    with probability ``min(1, num/den)``) and the unnormalised final residual ``[B, V]`` for drafts
    ``D [B, k]``."""
    xp = array_namespace(P, Q, D)
    B, k = D.shape
    dtype = P.dtype
    dev = device(P)
    t = xp.zeros((B,), dtype=dtype, device=dev)
    z = xp.ones((B,), dtype=dtype, device=dev)
    Qu = Q
    nums, dens = [], []
    for i in range(k):
        d = D[:, i:i + 1]
        px = xp.take_along_axis(P, d, axis=1)[:, 0]
        qx = xp.take_along_axis(Q, d, axis=1)[:, 0]
        # 1 / q(unseen tokens), summed directly (1 - q(seen) cancels when q(seen) is near 1)
        c = 1.0 / xp.sum(Qu, axis=1) if without_replacement else xp.ones_like(t)
        nums.append(positive(xp, px - t * qx))
        dens.append(z * c * qx)
        t = t + z * c
        if i == k - 1:
            break                            # the last Z is not needed: the residual uses t only
        z = _z(xp, P, Q, t)
        if without_replacement:
            Qu = xp.where(xp.arange(Q.shape[1], device=dev)[None, :] == d, 0.0, Qu)
    residual = positive(xp, P - t[:, None] * Q)
    return xp.stack(nums, axis=1), xp.stack(dens, axis=1), residual


def rrs_acceptance(P, Q, k: int):
    """Exact acceptance of RRS with ``k`` i.i.d. drafts per row: ``1 - Z(t_{k+1})``
    (equal to SpecInfer's ``1 - prod_i (1 - sum_x min(p_i, q))``)."""
    xp = array_namespace(P, Q)
    t = xp.zeros((P.shape[0],), dtype=P.dtype, device=device(P))
    z = xp.ones_like(t)
    for _ in range(k):
        t = t + z
        z = _z(xp, P, Q, t)
    return 1.0 - z


def _normalise(xp, w):
    s = xp.sum(w, axis=1, keepdims=True)
    return xp.where(s > 0, w / xp.where(s > 0, s, 1.0), 0.0)


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
    P, Q = as_float64(xp, P), as_float64(xp, Q)
    if k == 1:
        return xp.sum(xp.minimum(P, Q), axis=1)
    if bool(xp.any(xp.sum(xp.astype(Q > 0, xp.int64), axis=1) < k)):
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0")
    budget = [max_paths]
    out = [1.0 - _reject_all(xp, P[b], Q[b], k, budget, max_paths) for b in range(P.shape[0])]
    return xp.asarray(out, dtype=xp.float64, device=device(P))


def _reject_all(xp, p, q, k: int, budget: list[int], max_paths: int) -> float:
    Z = _ZFunction(xp, p, q)
    tiny = xp.finfo(xp.float64).tiny
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
            c_k = 1.0 / clip_min(xp, unseen_mass - xp.take(q, xs), tiny)
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
