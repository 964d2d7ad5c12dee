"""Greedy multi-draft verification in torch (Hu et al., ICLR 2025, arXiv 2502.18779; reconstruction
in docs/theory/membership_ot.md#greedy-drafts).

Draft law ``"greedy"``: ``T`` = the top-(k-1) tokens of ``q`` (deterministic, ties to the lower
index) plus ``X ~ q' = q`` restricted to the other tokens, renormalised. Verification is
single-draft speculative sampling of ``X`` against ``p`` (accept when ``u q'(X) < p(X)``, else
``Y ~ norm((p - q')^+)`` over the whole vocabulary); ``Y in T`` also counts as accepted. Its
acceptance ``p(T) + sum_{x not in T} min(q'(x), p(x))`` is the OT optimum for this draft law.
"""

from __future__ import annotations

import torch

from .base import Noise, TorchSelector
from .drafting import require_support
from .ops import coin, membership, normalise, race_sample, stable_topk, take, zero_at


class TorchGreedy(TorchSelector):
    """Batched greedy-draft verification; numpy reference :class:`ot_coupling.greedy.GreedyDrafts`."""

    name = "greedy"
    draft_law = "greedy"

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``p(T) + sum_{x not in T} min(q'(x), p(x))`` per row."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        require_support(q_t, k, "greedy drafts")
        top = stable_topk(q_t, k - 1)
        rest = normalise(zero_at(q_t, top))
        return take(p_t, top).sum(dim=1) + torch.minimum(zero_at(p_t, top), rest).sum(dim=1)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B]`` uniforms for the sampled draft and ``race [B, V]`` exponentials."""
        return {"coins": ((batch,), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        x = drafts[:, -1]
        rest = normalise(zero_at(q, drafts[:, :-1]))
        accept = coin(noise["coins"], take(p, x), take(rest, x))
        residual = race_sample(p - rest, noise["race"], fallback=p)
        tokens = torch.where(accept, x, residual)
        return tokens, membership(tokens, drafts)
