"""Single-draft speculative sampling in torch (Leviathan et al., ICML 2023, Algorithm 1; Chen et
al., arXiv 2302.01318): the maximal coupling of ``q`` and ``p``.

Accept the draft ``X ~ q`` when ``u q(X) < p(X)`` (probability ``min(1, p(X)/q(X))``); otherwise
output ``Y ~ (p - q)^+ / TV(p, q)``, sampled by the exponential race on the unnormalised residual.
Acceptance ``alpha = sum_x min(p(x), q(x)) = 1 - TV(p, q)`` (docs/theory/markov.md#speedup-model).
"""

from __future__ import annotations

import torch

from .base import Noise, TorchSelector
from .ops import coin, membership, race_sample, take


class TorchSpeculative(TorchSelector):
    """Batched speculative sampling (k = 1); numpy reference :class:`ot_coupling.speculative.SpeculativeSampling`."""

    name = "speculative"
    draft_law = "iid"
    max_k = 1

    def acceptance(self, p, q, k: int = 1, *, logits: bool = False) -> torch.Tensor:
        """``sum_x min(p(x), q(x))`` per row."""
        p_t, q_t, _ = self._prepare(p, q, k, logits=logits)
        return torch.minimum(p_t, q_t).sum(dim=1)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B]`` uniforms and ``race [B, V]`` exponentials for the residual."""
        return {"coins": ((batch,), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        x = drafts[:, 0]
        accept = coin(noise["coins"], take(p, x), take(q, x))
        residual = race_sample(p - q, noise["race"], fallback=p)
        tokens = torch.where(accept, x, residual)
        return tokens, membership(tokens, drafts)
