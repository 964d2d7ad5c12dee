"""Greedy drafts (Hu et al., "Towards Optimal Multi-draft Speculative Decoding", ICLR 2025;
docs/theory/membership_ot.md#greedy-drafts): the drafts are ``T`` = the top-(k-1) tokens of ``q`` (deterministic) and one
``X ~ q' = q`` restricted to the other tokens, renormalised.

Verifier: single-draft speculative sampling of ``X`` against ``p``: accept ``X`` with probability
``min(1, p(X) / q'(X))``, else ``Y ~ norm(p - min(p, q'))`` over the whole vocabulary; a residual draw
that lands in ``T`` is in the draft tree, hence accepted. Acceptance
``alpha = p(T) + sum_{x not in T} min(q'(x), p(x))``, the optimum of membership-cost transport for this
draft law (docs/theory/membership_ot.md#greedy-drafts; checked against brute force in the tests).
Plan and acceptance: the shared kernels :mod:`ot_coupling.kernels.plans` (also run by torch).
"""

from __future__ import annotations

from .draft_laws import greedy_split
from .kernels.plans import greedy_acceptance, greedy_plan
from .rejection import KernelRejection


class GreedyDrafts(KernelRejection):
    """Speculative sampling of the single random draft of the greedy draft law."""

    name = "greedy"
    draft_law = "greedy"
    kernel = staticmethod(greedy_plan)

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        top, _ = greedy_split(q, k)            # validates |supp q| >= k
        return float(greedy_acceptance(p[None], q[None], top[None])[0])
