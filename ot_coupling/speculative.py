"""Single-draft speculative sampling: the maximal coupling of ``q`` and ``p``.

Leviathan, Kalman & Matias (ICML 2023, Algorithm 1) and Chen et al. (arXiv 2302.01318, Algorithm 2):
draft ``X ~ q``, accept it with probability ``min(1, p(X) / q(X))``, otherwise output
``Y ~ (p - q)^+ / sum (p - q)^+``. The output is exactly ``p`` and the acceptance
``sum_x min(p(x), q(x)) = 1 - TV(p, q)`` is the optimum of the membership-cost transport for
``k = 1`` (SpecTr, Sun et al. 2023, eq. (OTM) with k = 1; docs/theory/membership_ot.md#the-transport-problem).
"""

from __future__ import annotations

import numpy as np

from .rejection import SequentialRejection, normalise, normalise_rows, ratio_coin


class SpeculativeSampling(SequentialRejection):
    """k = 1 speculative sampling (maximal coupling)."""

    name = "speculative"
    draft_law = "iid"
    max_k = 1

    def acceptance(self, p, q, k: int = 1) -> float:
        p, q, k = self._check(p, q, k)
        return float(np.minimum(p, q).sum())

    def plan(self, p, q, drafts):
        coins = ratio_coin(p[drafts], q[drafts])
        return drafts, coins, normalise(np.maximum(p - q, 0.0), p)

    def plan_batch(self, P, Q, D):
        rows = np.arange(P.shape[0])[:, None]
        coins = ratio_coin(P[rows, D], Q[rows, D])
        return D, coins, normalise_rows(np.maximum(P - Q, 0.0), P)
