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

Finding ``rho*`` exactly: the shared kernel :func:`ot_coupling.kernels.kseq.kseq_rho` (one sort
of the breakpoints ``p/q`` inside ``(1, k)`` locates the root's segment, a multisection on the
explicit segment function returns the smallest valid float64 ``rho``), run by this numpy selector and
by :class:`gpu_backend.kseq.TorchKSeq` alike. ``method="bisect"`` is the safeguarded bisection on
the full ``beta`` (``O(V)`` per step), kept as a cross-check.
"""

from __future__ import annotations

import numpy as np

from .kernels.kseq import kseq_acceptance, kseq_residual, validity_gap
from .kernels.kseq import kseq_rho as kernel_rho
from .rejection import SequentialRejection, normalise, normalise_rows, ratio_coin
from .validation import validate_k, validate_pair

def kseq_rho_batch(P: np.ndarray, Q: np.ndarray, k: int, method: str = "exact") -> np.ndarray:
    """``rho*`` for every row of ``[B, V]`` target/draft arrays (inputs assumed valid).

    ``method="exact"``: the shared kernel :func:`ot_coupling.kernels.kseq.kseq_rho` (sorted
    breakpoints + multisection on the root's segment, last-bit exact); ``method="bisect"``:
    bisection on the full ``beta`` over ``[1, k]`` (``O(V)`` per step), kept as a cross-check.
    """
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    Q = np.atleast_2d(np.asarray(Q, dtype=np.float64))
    if method == "exact":
        return kernel_rho(P, Q, k)
    if method != "bisect":
        raise ValueError(f"method must be 'exact' or 'bisect', got {method!r}")
    B = P.shape[0]
    ones = np.ones(B)
    if k == 1:
        return ones
    done = validity_gap(np, np.minimum(P, Q).sum(axis=1), ones, k) <= 0
    lo, hi = ones, np.full(B, float(k))
    for _ in range(200):  # [1, k] halves to below one ulp well before this
        mid = 0.5 * (lo + hi)
        active = (mid > lo) & (mid < hi)
        if not active.any():
            break
        ok = validity_gap(np, np.minimum(Q, P / mid[:, None]).sum(axis=1), mid, k) <= 0
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid, lo)
    return np.where(done, 1.0, hi)


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
        res, _ = kseq_residual(P, Q, rho, k)
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
        return float(kseq_acceptance(p[None], q[None], self._rhos(p[None], q[None], k), k)[0])

    def plan(self, p, q, drafts):
        key = p.tobytes() + q.tobytes() + drafts.size.to_bytes(8, "little")
        if self._last is None or self._last[0] != key:
            self._last = (key, float(self._rhos(p[None], q[None], drafts.size)[0]))
        rho = np.array([self._last[1]])
        res, _ = kseq_residual(p[None], q[None], rho, drafts.size)
        coins = ratio_coin(p[drafts], rho[0] * q[drafts])
        return drafts, coins, normalise(np.maximum(res[0], 0.0), p)

    def plan_batch(self, P, Q, D):
        k = D.shape[1]
        rho = self._rhos(P, Q, k)
        rows = np.arange(P.shape[0])[:, None]
        coins = ratio_coin(P[rows, D], rho[:, None] * Q[rows, D])
        res, _ = kseq_residual(P, Q, rho, k)
        return D, coins, normalise_rows(np.maximum(res, 0.0), P)
