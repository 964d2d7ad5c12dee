"""Greedy multi-draft verification in torch (Hu et al., ICLR 2025, arXiv 2502.18779; reconstruction
in docs/theory/membership_ot.md#greedy-drafts): the top-(k-1) tokens ``T`` of ``q`` plus ``X ~ q'``
(``q`` off ``T``, renormalised), verified by speculative sampling of ``X`` (``Y in T`` also counts
as accepted). Plan and acceptance: the shared kernels :mod:`ot_coupling.kernels.plans` (the numpy
reference :mod:`ot_coupling.greedy` states the rule).
"""

from __future__ import annotations

import torch

from ot_coupling.kernels.plans import greedy_acceptance, greedy_plan

from .base import Noise, TorchSelector
from .drafting import require_support
from .ops import membership, run_plan, stable_topk


class TorchGreedy(TorchSelector):
    """Batched greedy-draft verification; numpy reference :class:`ot_coupling.greedy.GreedyDrafts`."""

    name = "greedy"
    draft_law = "greedy"

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``p(T) + sum_{x not in T} min(q'(x), p(x))`` per row."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        require_support(q_t, k, "greedy drafts")
        return greedy_acceptance(p_t, q_t, stable_topk(q_t, k - 1))

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B]`` uniforms for the sampled draft and ``race [B, V]`` exponentials."""
        return {"coins": ((batch,), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        # one uniform for all k candidates: only the sampled draft's coin has num > 0
        tokens = run_plan(*greedy_plan(p, q, drafts), noise["coins"], noise["race"], p)
        return tokens, membership(tokens, drafts)
