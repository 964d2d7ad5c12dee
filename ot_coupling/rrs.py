"""Recursive rejection sampling (RRS): SpecInfer's multi-step speculative sampling (Miao et al.,
ASPLOS 2024, Algorithm 2) with i.i.d. drafts, and its without-replacement variant (RSD, Jeon et al.
arXiv 2402.14160; Sequoia; MCSD), docs/theory/token_verifiers.md.

With ``p_1 = p, q_1 = q``, draft ``X_i`` is accepted with probability
``min(1, p_i(X_i) / q_i(X_i))``; on rejection ``p_{i+1} = norm((p_i - q_i)^+)`` and, without
replacement, ``q_{i+1} = norm(q_i`` with ``X_i`` removed``)`` (i.i.d.: ``q_i = q``). If all ``k``
drafts are rejected the output is ``Y ~ p_{k+1}``.

One-parameter form (our derivation, checked by enumeration in tests/test_selectors_exact.py). Let
``Z(t) = sum_x (p(x) - t q(x))^+`` (convex, decreasing, ``Z(0) = 1``). By induction
``p_i = (p - t_i q)^+ / Z(t_i)`` on the unseen tokens with ``t_1 = 0`` and
``t_{i+1} = t_i + Z(t_i) / (1 - q(X_1..X_{i-1}))``: on tokens with ``p > t_i q``,
``p_i - q_i = (p - t_{i+1} q) / Z(t_i)``, and a rejected token has ``p < t_{i+1} q`` so it leaves the
support for good (hence coin acceptance = membership acceptance). The step-``i`` acceptance is
``1 - Z(t_{i+1}) / Z(t_i)`` (from ``min(a^+, b) = a^+ - (a - b)^+``), so the rejections telescope:

* i.i.d.: ``t_{i+1} = t_i + Z(t_i)`` and ``alpha = 1 - Z(t_{k+1})``; this equals SpecInfer's
  ``1 - prod_i (1 - sum_x min(p_i, q))`` (docs/theory/token_verifiers.md#recursive-rejection-with-replacement).
* without replacement: ``alpha = 1 - E[Z(t_{k+1})]``, an expectation over the rejected tokens
  ``X_1..X_{k-1}`` (``X_k`` sums out). :func:`rrs_wor_acceptance` computes it exactly by recursion
  over rejection histories with the last level vectorised: ``O(V log V)`` for ``k <= 2`` and
  ``O(R^{k-2} V log V)`` in general (``R`` = tokens with ``q > p`` that can be rejected); a budget
  guards against exponential blow-up.
"""

from __future__ import annotations

import numpy as np

from .rejection import SequentialRejection, normalise_rows, ratio_coin
from .validation import validate_k, validate_pair

#: most rejection histories :func:`rrs_wor_acceptance` will enumerate before refusing.
MAX_HISTORIES = 50_000


def _z_rows(P: np.ndarray, Q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``Z(t) = sum_x (p - t q)^+`` per row."""
    return np.maximum(P - t[:, None] * Q, 0.0).sum(axis=1)


def rrs_plan_batch(P: np.ndarray, Q: np.ndarray, D: np.ndarray, without_replacement: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RRS coins ``[B, k]`` and final residual ``[B, V]`` for drafts ``D [B, k]`` (one-parameter form)."""
    B, k = D.shape
    rows = np.arange(B)
    t = np.zeros(B)
    z = np.ones(B)
    unseen = np.ones((B, Q.shape[1]), dtype=bool)
    coins = np.empty((B, k))
    for i in range(k):
        # 1 / q(unseen tokens), summed directly (1 - q(seen) cancels when q(seen) is near 1)
        c = 1.0 / np.where(unseen, Q, 0.0).sum(axis=1) if without_replacement else np.ones(B)
        px, qx = P[rows, D[:, i]], Q[rows, D[:, i]]
        coins[:, i] = ratio_coin(np.maximum(px - t * qx, 0.0), z * c * qx)
        t = t + z * c
        z = _z_rows(P, Q, t)
        if without_replacement:
            unseen[rows, D[:, i]] = False
    residual = normalise_rows(np.maximum(P - t[:, None] * Q, 0.0), P)
    return D, coins, residual


def rrs_acceptance(p, q, k: int) -> float:
    """Exact RRS acceptance with i.i.d. drafts, ``1 - Z(t_{k+1})``."""
    p, q = validate_pair(p, q)
    k = validate_k(k)
    t, z = 0.0, 1.0
    for _ in range(k):
        if z <= 0:
            return 1.0
        t += z
        z = float(np.maximum(p - t * q, 0.0).sum())
    return 1.0 - z


class _ZFunction:
    """``Z(t) = sum_{r_x > t} (p_x - t q_x)`` evaluated in ``O(log V)`` from ratios sorted once."""

    def __init__(self, p: np.ndarray, q: np.ndarray):
        with np.errstate(divide="ignore"):
            r = np.where(q > 0, p / np.where(q > 0, q, 1.0), np.inf)
        order = np.argsort(r, kind="stable")
        self.r = r[order]
        self.suffix_p = np.append(np.cumsum(p[order][::-1])[::-1], 0.0)
        self.suffix_q = np.append(np.cumsum(q[order][::-1])[::-1], 0.0)

    def __call__(self, t):
        j = np.searchsorted(self.r, t, side="right")
        return np.maximum(self.suffix_p[j] - np.asarray(t) * self.suffix_q[j], 0.0)


def rrs_wor_acceptance(p, q, k: int, max_histories: int = MAX_HISTORIES) -> float:
    """Exact RRS-without-replacement acceptance ``1 - E[Z(t_{k+1})]`` (see the module docstring).

    Raises ``ValueError`` when more than ``max_histories`` rejection histories would be needed.
    """
    p, q = validate_pair(p, q)
    k = validate_k(k)
    if int((q > 0).sum()) < k:
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0")
    Z = _ZFunction(p, q)
    budget = [max_histories]

    def reject_all(i: int, t: float, z: float, seen: np.ndarray) -> float:
        """P(steps i..k all reject | state) for a history with ``Z(t_i) = z > 0``."""
        unseen_mass = float(np.delete(q, seen).sum())  # not 1 - q(seen): no cancellation
        c = 1.0 / unseen_mass
        t_next = t + z * c
        z_next = float(Z(t_next))
        if i == k or z_next <= 0:
            return z_next / z
        # r_i(x) = (c q(x) - (p(x) - t q(x))^+ / z)^+ on unseen tokens
        rej = np.maximum(c * q - np.maximum(p - t * q, 0.0) / z, 0.0)
        rej[seen] = 0.0
        xs = np.flatnonzero(rej > 0)
        if i == k - 1:
            # last level vectorised: step k rejects with prob Z(t_{k+1}) / Z(t_k)
            c_k = 1.0 / np.maximum(unseen_mass - q[xs], np.finfo(float).tiny)
            return float(rej[xs] @ (Z(t_next + z_next * c_k) / z_next))
        budget[0] -= xs.size
        if budget[0] < 0:
            raise ValueError(f"exact RRS-wor acceptance for k={k} needs more than {max_histories} "
                             f"rejection histories at V={p.size}; reduce k or V")
        return float(sum(rej[x] * reject_all(i + 1, t_next, z_next, np.append(seen, x)) for x in xs))

    return 1.0 - reject_all(1, 0.0, 1.0, np.zeros(0, dtype=np.int64))


class RecursiveRejection(SequentialRejection):
    """SpecInfer RRS with i.i.d. drafts (docs/theory/token_verifiers.md#recursive-rejection-with-replacement)."""

    name = "rrs"
    draft_law = "iid"
    _wor = False

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        return rrs_acceptance(p, q, k)

    def plan(self, p, q, drafts):
        cand, coins, res = rrs_plan_batch(p[None], q[None], drafts[None], self._wor)
        return cand[0], coins[0], res[0]

    def plan_batch(self, P, Q, D):
        return rrs_plan_batch(P, Q, D, self._wor)


class RecursiveRejectionWOR(RecursiveRejection):
    """RRS for drafts without replacement: ``q`` is renormalised over unseen tokens (docs/theory/token_verifiers.md#recursive-rejection-without-replacement)."""

    name = "rrs_wor"
    draft_law = "without_replacement"
    _wor = True

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        return rrs_wor_acceptance(p, q, k)
