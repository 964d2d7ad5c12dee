"""K-SEQ, SpecTr's k-sequential draft selection (Sun, Suresh, Ro, Beirami, Jain, Yu; NeurIPS 2023).

Letters: ``p`` = target, ``q`` = draft (SpecTr swaps them; docs/theory/membership_ot.md#setting-and-notation). With a division
factor ``rho`` and ``beta(rho) = sum_x min(q(x), p(x) / rho)`` (docs/theory/token_verifiers.md#k-seq):

* try the i.i.d. drafts in order, accepting ``X_i`` with probability ``min(1, p(X_i) / (rho q(X_i)))``;
* if all ``k`` are rejected, output ``Y ~ p_res``,
  ``p_res = [p - min(q, p / rho) (1 - (1 - beta)^k) / beta] / (1 - beta)^k``.

``p_res >= 0`` (validity) iff ``1 - (1 - beta)^k <= rho beta`` (for tokens with ``p <= rho q``).
The acceptance decreases in ``rho`` so the best valid factor is the root ``rho*`` in ``[1, k]`` of
``1 - (1 - beta(rho))^k = rho beta(rho)``, where ``alpha = rho* beta(rho*) = sum_x min(p, rho* q)``
and ``p_res = (p - rho* q)^+ / (1 - beta)^k`` (docs/theory/token_verifiers.md#the-division-factor-rho-star). SpecTr's Theorem
(abstract of arXiv 2310.15141): ``alpha_KSEQ >= (1 - 1/e) alpha*_k``.

Finding ``rho*`` exactly (:func:`kseq_rho`): with ``r_x = p(x) / q(x)`` sorted,
``beta(rho) = A_j / rho + B_j`` between consecutive breakpoints, ``A_j`` = target mass of the ``j``
smallest ratios and ``B_j`` = draft mass of the others. ``g(rho) = 1 - (1 - beta)^k - rho beta`` is
decreasing, so sorting the ``m`` breakpoints that lie inside ``(1, k)`` (``O(V + m log m)``) and one
vectorised pass over them locate the segment holding the root; on that segment the equation is the
explicit monotone function ``h(rho) = 1 - (1 - B - A / rho)^k - A - B rho`` (a degree-(k+1)
polynomial after multiplying by ``rho^k``), solved to the last floating-point bit by bisection on
``h`` alone (no further pass over the vocabulary). ``method="bisect"`` is the safeguarded bisection
on the full ``beta`` (``O(V)`` per step) of docs/theory/token_verifiers.md#k-seq, kept as a cross-check.
"""

from __future__ import annotations

import numpy as np

from .rejection import SequentialRejection, normalise, normalise_rows, ratio_coin
from .validation import validate_k, validate_pair

#: bisection steps; [1, k] halves to below one ulp well before this.
_BISECT_STEPS = 200


def _beta(P: np.ndarray, Q: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``beta(rho) = sum_x min(q, p / rho)`` per row."""
    return np.minimum(Q, P / rho[:, None]).sum(axis=1)


def _g(beta: np.ndarray, rho: np.ndarray, k: int) -> np.ndarray:
    """``1 - (1 - beta)^k - rho beta``: ``<= 0`` iff ``rho`` is a valid division factor."""
    with np.errstate(divide="ignore"):  # beta = 1: log1p(-1) = -inf, expm1(-inf) = -1
        return -np.expm1(k * np.log1p(-np.minimum(beta, 1.0))) - rho * beta


def _bisect(fun, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Vectorised bisection for a decreasing ``fun`` with ``fun(lo) > 0 >= fun(hi)``; returns the
    valid end ``hi`` (``fun(hi) <= 0``) once the bracket is one ulp wide."""
    lo, hi = lo.copy(), hi.copy()
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        active = (mid > lo) & (mid < hi)
        if not active.any():
            break
        ok = fun(mid) <= 0
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid, lo)
    return hi


def kseq_rho_batch(P: np.ndarray, Q: np.ndarray, k: int, method: str = "exact") -> np.ndarray:
    """``rho*`` for every row of ``[B, V]`` target/draft arrays (inputs assumed valid).

    ``method="exact"``: sorted breakpoints + closed-form segment (see the module docstring);
    ``method="bisect"``: bisection on the full ``beta`` over ``[1, k]``.
    """
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    Q = np.atleast_2d(np.asarray(Q, dtype=np.float64))
    B = P.shape[0]
    ones = np.ones(B)
    if k == 1:
        return ones
    done = _g(_beta(P, Q, ones), ones, k) <= 0  # rho = 1 already valid (e.g. p == q)
    if method == "bisect":
        rho = _bisect(lambda r: _g(_beta(P, Q, r), r, k), ones, np.full(B, float(k)))
        return np.where(done, 1.0, rho)
    if method != "exact":
        raise ValueError(f"method must be 'exact' or 'bisect', got {method!r}")
    live = (P > 0) & (Q > 0)  # other tokens contribute 0 to beta at every rho
    Pe, Qe = np.where(live, P, 0.0), np.where(live, Q, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(live, P / np.where(live, Q, 1.0), np.inf)
    # only breakpoints strictly inside (1, k) can bound the root's segment: sort just those
    inner = (ratio > 1.0) & (ratio < k)
    m = int(inner.sum(axis=1).max())
    lo, hi = np.ones(B), np.full(B, float(k))
    if m:
        keyed = np.where(inner, ratio, np.inf)
        part = np.argpartition(keyed, m - 1, axis=1)[:, :m]
        sub = np.take_along_axis(keyed, part, axis=1)
        order = np.take_along_axis(part, np.argsort(sub, axis=1), axis=1)
        r = np.take_along_axis(keyed, order, axis=1)
        valid = np.isfinite(r)
        base_p = np.where(ratio <= 1.0, Pe, 0.0).sum(axis=1, keepdims=True)
        top_q = np.where(ratio >= k, Qe, 0.0).sum(axis=1, keepdims=True)
        cum_p = base_p + np.cumsum(np.where(valid, np.take_along_axis(Pe, order, axis=1), 0.0), axis=1)
        q_in = np.where(valid, np.take_along_axis(Qe, order, axis=1), 0.0)
        with np.errstate(invalid="ignore"):
            beta_knots = cum_p / np.where(valid, r, 1.0) + top_q + q_in.sum(axis=1, keepdims=True) - np.cumsum(q_in, axis=1)
            g_knots = _g(beta_knots, np.where(valid, r, 1.0), k)
        lo = np.maximum(lo, np.where(valid & (g_knots > 0), r, 1.0).max(axis=1))
        hi = np.minimum(hi, np.where(valid & (g_knots <= 0), r, float(k)).min(axis=1))
    below = ratio <= lo[:, None]
    A = np.where(below, Pe, 0.0).sum(axis=1)
    Bq = np.where(below, 0.0, Qe).sum(axis=1)
    rho = _bisect(lambda x: _g(A / x + Bq, x, k), lo, hi)
    return np.where(done, 1.0, rho)


def kseq_rho(p, q, k: int, method: str = "exact") -> float:
    """SpecTr's optimal division factor ``rho*``: the root in ``[1, k]`` of
    ``1 - (1 - beta(rho))^k = rho beta(rho)`` (1 when ``rho = 1`` is already valid).

    ``method="exact"`` (default): ``O(V log V)`` from the sorted breakpoints of ``p / q``;
    ``method="bisect"``: safeguarded bisection, ``O(V)`` per step. Both return the smallest
    floating-point ``rho`` found valid, and agree to a few ulps.
    """
    p_arr, q_arr = validate_pair(p, q)
    k = validate_k(k)
    return float(kseq_rho_batch(p_arr[None], q_arr[None], k, method)[0])


def _residual_weights(p: np.ndarray, q: np.ndarray, rho: np.ndarray, k: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised residual ``p - min(q, p/rho) (1 - (1-beta)^k)/beta`` and ``beta`` (rows)."""
    m = np.minimum(q, p / rho[:, None])
    beta = m.sum(axis=1)
    with np.errstate(divide="ignore"):
        acc = -np.expm1(k * np.log1p(-np.minimum(beta, 1.0)))
    scale = np.where(beta > 0, acc / np.where(beta > 0, beta, 1.0), 0.0)
    return p - m * scale[:, None], beta


class KSeq(SequentialRejection):
    """SpecTr K-SEQ with ``rho*`` (default) or a user-supplied division factor ``rho``."""

    name = "kseq"
    draft_law = "iid"

    def __init__(self, rho: float | None = None, method: str = "exact"):
        if rho is not None and not (np.isfinite(rho) and rho > 0):
            raise ValueError(f"rho must be a positive finite number or None, got {rho!r}")
        if method not in ("exact", "bisect"):
            raise ValueError(f"method must be 'exact' or 'bisect', got {method!r}")
        self.rho = None if rho is None else float(rho)
        self.method = method
        self._last: tuple[bytes, float] | None = None  # rho of the last single row (enumeration reuses it)

    def division_factor(self, p, q, k: int) -> float:
        """The ``rho`` in use: the user's (checked) or ``rho*``."""
        p_arr, q_arr, k = self._check(p, q, k)
        return float(self._rhos(p_arr[None], q_arr[None], k)[0])

    def _rhos(self, P: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
        if self.rho is None:
            return kseq_rho_batch(P, Q, k, self.method)
        rho = np.full(P.shape[0], self.rho)
        res, _ = _residual_weights(P, Q, rho, k)
        worst = res.min(axis=1)
        if (worst < -1e-12).any():
            b = int(np.argmin(worst))
            raise ValueError(
                f"rho={self.rho:g} is invalid for k={k}: the K-SEQ residual has negative mass "
                f"{worst[b]:.3g} at token {int(np.argmin(res[b]))} (need 1-(1-beta)^k <= rho*beta; "
                f"the smallest valid rho is {kseq_rho_batch(P[b:b+1], Q[b:b+1], k)[0]:.6f})")
        return rho

    def acceptance(self, p, q, k: int) -> float:
        """``P(Y in drafts)``: ``1 - (1 - beta)^k`` plus, for ``rho > rho*``, the chance that the
        residual draws a token that was drafted and rejected,
        ``sum_y p_res(y) [(1-beta)^k - (1 - beta - (q(y) - p(y)/rho)^+)^k]`` (zero at ``rho*``)."""
        p, q, k = self._check(p, q, k)
        rho = self._rhos(p[None], q[None], k)
        res, beta = _residual_weights(p[None], q[None], rho, k)
        res, beta = np.maximum(res[0], 0.0), float(beta[0])
        reject_all = (1.0 - beta) ** k
        res_law = normalise(res, p)
        rejected_mass = np.maximum(q - p / rho[0], 0.0)
        extra = res_law @ (reject_all - np.maximum(1.0 - beta - rejected_mass, 0.0) ** k)
        return float(1.0 - reject_all + extra)

    def plan(self, p, q, drafts):
        key = p.tobytes() + q.tobytes() + drafts.size.to_bytes(8, "little")
        if self._last is None or self._last[0] != key:
            self._last = (key, float(self._rhos(p[None], q[None], drafts.size)[0]))
        rho = np.array([self._last[1]])
        res, _ = _residual_weights(p[None], q[None], rho, drafts.size)
        coins = ratio_coin(p[drafts], rho[0] * q[drafts])
        return drafts, coins, normalise(np.maximum(res[0], 0.0), p)

    def plan_batch(self, P, Q, D):
        k = D.shape[1]
        rho = self._rhos(P, Q, k)
        rows = np.arange(P.shape[0])[:, None]
        coins = ratio_coin(P[rows, D], rho[:, None] * Q[rows, D])
        res, _ = _residual_weights(P, Q, rho, k)
        return D, coins, normalise_rows(np.maximum(res, 0.0), P)
