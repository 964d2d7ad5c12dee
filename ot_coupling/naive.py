"""Naive ("target-only", MCNS) verification: ignore the drafts, sample ``Y ~ p``, accept iff
``Y`` is one of them (docs/theory/token_verifiers.md#naive-sampling; ``_MCNS`` in NJUNLP/MCSD; SGLang's target-only tree
sampling with thresholds 1). Valid for *any* draft law independent of the verifier's coins.

Acceptance ``E_Q[p(S(X))] = sum_x p(x) P(x in S(X))``: for i.i.d. drafts
``P(x in S) = 1 - (1 - q(x))^k`` (docs/theory/token_verifiers.md#naive-sampling); without replacement it is the exponential-race
integral of :func:`ot_coupling.race.inclusion_wor`; for the hub and greedy laws it is explicit.
"""

from __future__ import annotations

import numpy as np

from .draft_laws import get_draft_law, greedy_split
from .kernels.inclusion import LAWS as KERNEL_LAWS
from .kernels.inclusion import inclusion_probabilities as kernel_inclusion
from .rejection import SequentialRejection


def inclusion_probabilities(q: np.ndarray, k: int, drafts: str) -> np.ndarray:
    """``P(x in S(X))`` for every token ``x`` under the draft law ``drafts`` (exact; the shared
    kernel :func:`ot_coupling.kernels.inclusion.inclusion_probabilities` for the i.i.d., hub,
    greedy and without-replacement laws, enumeration for the others)."""
    if drafts in KERNEL_LAWS:
        if drafts == "hub":
            get_draft_law("hub").enumerate(q, k)  # validates k == 2 and the support
        elif drafts == "greedy":
            greedy_split(q, k)  # validates the support
        return kernel_inclusion(np.asarray(q, dtype=np.float64)[None], k, drafts)[0]
    tuples, probs = get_draft_law(drafts).enumerate(q, k)
    out = np.zeros(q.size)
    for t, w in zip(tuples, probs):
        out[np.unique(t)] += w
    return out


class NaiveSampling(SequentialRejection):
    """Sample from the target and count a hit when it lands in the draft set."""

    name = "naive"

    def __init__(self, drafts: str = "iid"):
        get_draft_law(drafts)  # ValueError for an unknown law
        self.draft_law = drafts

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        return float(p @ inclusion_probabilities(q, k, self.draft_law))

    def plan(self, p, q, drafts):
        return drafts, np.zeros(drafts.size), p

    def plan_batch(self, P, Q, D):
        return D, np.zeros(D.shape), P
