"""SpecHub in torch (Sun, Zhou, Chen, Sun, EMNLP 2024, arXiv 2411.05289; docs/theory/token_verifiers.md#spechub):
k = 2 drafts drawn as "hub pairs" around ``a = argmax q`` and verified by the sparse OT plan.

The plan (candidates ``(x, a)`` in the order tried, coins, residual ``p''``; formulas in
:mod:`ot_coupling.spechub`) and the acceptance ``1 - sum_y p''(y)`` are the shared kernels
:mod:`ot_coupling.kernels.plans`; ``coins[:, i]`` is the uniform of the ``i``-th candidate tried
(as the numpy uniforms), the residual is drawn by the exponential race (never a drafted token).
"""

from __future__ import annotations

import torch

from ot_coupling.kernels.plans import hub_acceptance, hub_plan

from .base import Noise, TorchSelector
from .drafting import require_support
from .ops import membership, run_plan


class TorchSpecHub(TorchSelector):
    """Batched SpecHub (k = 2, hub-pair drafts); numpy reference :class:`ot_coupling.spechub.SpecHub`."""

    name = "spechub"
    draft_law = "hub"
    max_k = 2

    def acceptance(self, p, q, k: int = 2, *, logits: bool = False) -> torch.Tensor:
        """``1 - sum_y p''(y)`` per row."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        if k != 2:
            raise ValueError(f"selector 'spechub' needs k=2, got k={k}")
        require_support(q_t, 2, "hub-pair drafts")
        return hub_acceptance(p_t, q_t)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B, 2]`` (one per candidate, in the order tried) and ``race [B, V]`` exponentials."""
        return {"coins": ((batch, 2), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        if drafts.shape[1] != 2:
            raise ValueError(f"selector 'spechub' needs k=2 drafts, got k={drafts.shape[1]}")
        require_support(q, 2, "hub-pair drafts")
        plan = hub_plan(p, q, drafts)  # candidates (x, hub)
        if ((drafts[:, 0] == plan[0][:, 1]) == (drafts[:, 1] == plan[0][:, 1])).any():
            raise ValueError("drafts must be SpecHub hub pairs: exactly one of the two drafts is argmax q")
        tokens = run_plan(*plan, noise["coins"], noise["race"], p)
        return tokens, membership(tokens, drafts)
