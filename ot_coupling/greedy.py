"""Greedy drafts (Hu et al., "Towards Optimal Multi-draft Speculative Decoding", ICLR 2025;
docs/theory/membership_ot.md#greedy-drafts): the drafts are ``T`` = the top-(k-1) tokens of ``q`` (deterministic) and one
``X ~ q' = q`` restricted to the other tokens, renormalised.

Verifier: single-draft speculative sampling of ``X`` against ``p``: accept ``X`` with probability
``min(1, p(X) / q'(X))``, else ``Y ~ norm(p - min(p, q'))`` over the whole vocabulary; a residual draw
that lands in ``T`` is in the draft tree, hence accepted. Acceptance
``alpha = p(T) + sum_{x not in T} min(q'(x), p(x))``, the optimum of membership-cost transport for this
draft law (docs/theory/membership_ot.md#greedy-drafts; checked against brute force in the tests).
"""

from __future__ import annotations

import numpy as np

from .draft_laws import greedy_split
from .rejection import SequentialRejection, normalise_rows, ratio_coin


def greedy_plan_batch(P: np.ndarray, Q: np.ndarray, D: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plan for drafts ``D [B, k]`` = top-(k-1) tokens then the sampled one: only the last draft has
    a coin, ``min(1, p(X) / q'(X))``; residual ``norm(p - min(p, q'))``."""
    rows = np.arange(P.shape[0])
    rest = Q.copy()
    np.put_along_axis(rest, D[:, :-1], 0.0, axis=1)
    rest = normalise_rows(rest, Q)
    x = D[:, -1]
    coins = np.zeros(D.shape)
    coins[:, -1] = ratio_coin(P[rows, x], rest[rows, x])
    return D, coins, normalise_rows(P - np.minimum(P, rest), P)


class GreedyDrafts(SequentialRejection):
    """Speculative sampling of the single random draft of the greedy draft law."""

    name = "greedy"
    draft_law = "greedy"

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        top, rest = greedy_split(q, k)
        return float(p[top].sum() + np.minimum(np.delete(rest, top), np.delete(p, top)).sum())

    def plan(self, p, q, drafts):
        cand, coins, residual = greedy_plan_batch(p[None], q[None], drafts[None])
        return cand[0], coins[0], residual[0]

    def plan_batch(self, P, Q, D):
        return greedy_plan_batch(P, Q, D)
