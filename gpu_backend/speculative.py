"""Single-draft speculative sampling in torch (Leviathan et al., ICML 2023, Algorithm 1; Chen et
al., arXiv 2302.01318): accept ``X ~ q`` when ``u q(X) < p(X)``, else ``Y ~ (p - q)^+`` by the
exponential race; acceptance ``1 - TV(p, q)``. Plan and acceptance: the shared kernels
:mod:`ot_coupling.kernels.plans` (the numpy reference :mod:`ot_coupling.speculative` states the rule).
"""

from __future__ import annotations

import torch

from ot_coupling.kernels.plans import speculative_acceptance, speculative_plan

from .base import Noise, TorchSelector
from .ops import membership, run_plan


class TorchSpeculative(TorchSelector):
    """Batched speculative sampling (k = 1); numpy reference :class:`ot_coupling.speculative.SpeculativeSampling`."""

    name = "speculative"
    draft_law = "iid"
    max_k = 1

    def acceptance(self, p, q, k: int = 1, *, logits: bool = False) -> torch.Tensor:
        """``sum_x min(p(x), q(x))`` per row."""
        p_t, q_t, _ = self._prepare(p, q, k, logits=logits)
        return speculative_acceptance(p_t, q_t)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B]`` uniforms and ``race [B, V]`` exponentials for the residual."""
        return {"coins": ((batch,), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = run_plan(*speculative_plan(p, q, drafts), noise["coins"], noise["race"], p)
        return tokens, membership(tokens, drafts)
