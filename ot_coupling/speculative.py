"""Single-draft speculative sampling: the maximal coupling of ``q`` and ``p``.

Leviathan, Kalman & Matias (ICML 2023, Algorithm 1) and Chen et al. (arXiv 2302.01318, Algorithm 2):
draft ``X ~ q``, accept it with probability ``min(1, p(X) / q(X))``, otherwise output
``Y ~ (p - q)^+ / sum (p - q)^+``. The output is exactly ``p`` and the acceptance
``sum_x min(p(x), q(x)) = 1 - TV(p, q)`` is the optimum of the membership-cost transport for
``k = 1`` (SpecTr, Sun et al. 2023, eq. (OTM) with k = 1; docs/theory/membership_ot.md#the-transport-problem).
Plan and acceptance: the shared kernels :mod:`ot_coupling.kernels.plans` (also run by torch).
"""

from __future__ import annotations

from .kernels.plans import speculative_acceptance, speculative_plan
from .rejection import KernelRejection


class SpeculativeSampling(KernelRejection):
    """k = 1 speculative sampling (maximal coupling)."""

    name = "speculative"
    draft_law = "iid"
    max_k = 1
    kernel = staticmethod(speculative_plan)

    def acceptance(self, p, q, k: int = 1) -> float:
        p, q, k = self._check(p, q, k)
        return float(speculative_acceptance(p[None], q[None])[0])
