"""Shared machinery of the *sequential rejection* verifiers (speculative sampling, naive, K-SEQ,
RRS with and without replacement, SpecHub, greedy drafts).

Each of these rules tries a sequence of candidate tokens ``c_1..c_m`` (the drafts in some order);
candidate ``c_i`` is accepted with probability ``a_i`` (its *coin*), the first success is returned,
and if every coin fails the output is drawn from a *residual* law ``r``. A subclass only states its
*plan* ``(candidates, coins, residual)`` given the drafts; everything else is derived here:

* the conditional law ``K(y | drafts) = sum_i a_i prod_{j<i}(1 - a_j) 1{y = c_i}
  + prod_i (1 - a_i) r(y)`` (coins integrated out), which the exact tier enumerates;
* the randomised rule driven by ``m + 1`` uniforms (one per coin, one for the residual by inverse
  CDF), so that the per-row and the vectorised batch paths consume identical randomness and can be
  compared bit for bit.

Coins are strict: candidate ``i`` is accepted iff ``u_i < a_i`` with ``u_i`` uniform on ``[0, 1)``,
so a coin of exactly 0 (a token with ``p = 0``) is never accepted, even when ``u_i = 0``
(sgl-project/sglang#35771).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import numpy as np

from .base import Selector
from .validation import SeedLike, as_generator


def ratio_coin(num, den) -> np.ndarray:
    """``min(1, num / den)`` elementwise, with ``num = 0 -> 0`` and ``den = 0 < num -> 1``.

    A zero denominator means the candidate had zero probability under the proposal (it cannot have
    been drafted); returning 1 then keeps every formula finite without changing any law.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.where(num > 0, 1.0, 0.0)
    np.divide(num, den, out=out, where=(den > 0) & (num > 0))
    return np.minimum(out, 1.0)


def normalise(w: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``w / sum(w)``, or ``fallback`` when ``w`` has no mass (a zero residual: the branch that uses
    it has probability 0 in exact arithmetic, so any law keeps the output exact)."""
    total = float(w.sum())
    return w / total if total > 0 else fallback


def normalise_rows(w: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Row-wise :func:`normalise` of a ``[B, V]`` array."""
    total = w.sum(axis=1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, w / safe, fallback)


def inverse_cdf(w: np.ndarray, u: float) -> int:
    """Index ``i`` with ``cdf[i-1] <= u * total < cdf[i]`` for a non-negative weight vector ``w``;
    never returns an index of zero weight (round-off at the top falls back to the last positive)."""
    cdf = np.cumsum(w)
    i = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    positive = np.flatnonzero(w > 0)
    later = positive[positive >= i]
    return int(later[0]) if later.size else int(positive[-1])


def inverse_cdf_rows(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise :func:`inverse_cdf` of ``[B, V]`` weights with uniforms ``u [B]`` (same result)."""
    cdf = np.cumsum(w, axis=1)
    idx = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)
    pos = w > 0
    V = w.shape[1]
    # first positive index >= idx, else the last positive index
    ar = np.arange(V)
    cand = np.where(pos & (ar[None, :] >= idx[:, None]), ar[None, :], V)
    first = cand.min(axis=1)
    last = V - 1 - np.argmax(pos[:, ::-1], axis=1)
    return np.where(first < V, first, last).astype(np.int64)


def plan_law(V: int, candidates: np.ndarray, coins: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """``K(y | drafts)`` of a plan: first-success over the coins, else the residual."""
    out = np.zeros(V)
    survive = 1.0
    for c, a in zip(candidates.tolist(), coins.tolist()):
        out[c] += survive * a
        survive *= 1.0 - a
    return out + survive * residual


def run_plan(candidates: np.ndarray, coins: np.ndarray, residual: np.ndarray, u: np.ndarray) -> int:
    """The randomised rule: ``u`` holds ``len(coins) + 1`` uniforms on ``[0, 1)``."""
    hit = np.flatnonzero(u[: coins.size] < coins)
    if hit.size:
        return int(candidates[hit[0]])
    return inverse_cdf(residual, float(u[coins.size]))


def run_plan_rows(candidates: np.ndarray, coins: np.ndarray, residual: np.ndarray,
                  u: np.ndarray) -> np.ndarray:
    """Vectorised :func:`run_plan`: ``candidates, coins [B, m]``, ``residual [B, V]``, ``u [B, m+1]``."""
    m = coins.shape[1]
    hit = u[:, :m] < coins
    any_hit = hit.any(axis=1)
    first = np.argmax(hit, axis=1)
    rows = np.arange(coins.shape[0])
    from_residual = inverse_cdf_rows(residual, u[:, m])
    return np.where(any_hit, candidates[rows, first], from_residual).astype(np.int64)


def membership(tokens: np.ndarray, drafts: np.ndarray) -> np.ndarray:
    """``accepted [B]``: whether each row's output token is one of its drafts."""
    return (drafts == tokens[:, None]).any(axis=1)


class SequentialRejection(Selector):
    """A selector given by a per-draft-tuple plan ``(candidates, coins, residual)``.

    Subclasses implement :meth:`plan` and, for the simulator's hot path, optionally
    :meth:`plan_batch` (same plan for ``[B, V]`` inputs, no loop over rows).
    """

    @abstractmethod
    def plan(self, p: np.ndarray, q: np.ndarray, drafts: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(candidates [m], coins [m], residual [V])`` for validated inputs."""

    def plan_batch(self, P: np.ndarray, Q: np.ndarray, D: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row-wise plan, ``(candidates [B, m], coins [B, m], residual [B, V])``. Default: loop."""
        plans = [self.plan(P[b], Q[b], D[b]) for b in range(P.shape[0])]
        return tuple(np.stack(x) for x in zip(*plans))  # type: ignore[return-value]

    def conditional_law(self, p, q, drafts) -> np.ndarray:
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        return plan_law(p_arr.size, *self.plan(p_arr, q_arr, d))

    def n_uniforms(self, k: int) -> int:
        """Uniforms consumed per verification with ``k`` drafts (coins + one for the residual)."""
        return k + 1

    def verify_uniforms(self, p, q, drafts, u) -> tuple[int, bool]:
        """:meth:`verify` with the randomness passed in (``u``: :meth:`n_uniforms` values in [0,1))."""
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        token = run_plan(*self.plan(p_arr, q_arr, d), np.asarray(u, dtype=np.float64))
        return token, bool(token in d)

    def verify(self, p, q, drafts, rng: SeedLike = None) -> tuple[int, bool]:
        d = np.asarray(drafts)
        return self.verify_uniforms(p, q, drafts, as_generator(rng).random(self.n_uniforms(d.size)))

    def verify_batch_uniforms(self, P: np.ndarray, Q: np.ndarray, D: np.ndarray,
                              U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`verify_batch` with the uniforms ``U [B, n_uniforms(k)]`` passed in; row ``b``
        gives exactly ``verify_uniforms(P[b], Q[b], D[b], U[b])``."""
        D = np.asarray(D, dtype=np.int64)
        tokens = run_plan_rows(*self.plan_batch(np.asarray(P, np.float64), np.asarray(Q, np.float64), D), U)
        return tokens, membership(tokens, D)

    def verify_batch(self, p: np.ndarray, q: np.ndarray, drafts: np.ndarray,
                     rng: SeedLike = None) -> tuple[np.ndarray, np.ndarray]:
        D = np.asarray(drafts, dtype=np.int64)
        U = as_generator(rng).random((D.shape[0], self.n_uniforms(D.shape[1])))
        return self.verify_batch_uniforms(p, q, D, U)


class KernelRejection(SequentialRejection):
    """A :class:`SequentialRejection` whose plan is a shared kernel of :mod:`ot_coupling.kernels`
    returning ``(candidates, num, den, residual)``: coins ``ratio_coin(num, den)``, residual's
    positive part normalised (the target when it has no mass); one row is a batch of one."""

    kernel: Callable[..., tuple]   # staticmethod: (P, Q, D) -> (candidates, num, den, residual)

    def plan(self, p, q, drafts):
        cand, coins, residual = self.plan_batch(p[None], q[None], drafts[None])
        return cand[0], coins[0], residual[0]

    def plan_batch(self, P, Q, D):
        cand, num, den, residual = self.kernel(P, Q, D)
        return cand, ratio_coin(num, den), normalise_rows(np.maximum(residual, 0.0, out=residual), P)
