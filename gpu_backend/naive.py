"""Naive multi-draft verification ("target-only", MCNS) in torch (docs/theory/token_verifiers.md#naive-sampling).

Sample ``Y ~ p`` (exponential race) independently of the drafts and accept iff ``Y`` is one of
them. Valid for any draft law; the acceptance is ``sum_x p(x) P(x in S)``, with inclusion
probabilities ``1 - (1 - q(x))^k`` for i.i.d. drafts, ``q(x) / (1 - q(a))`` (1 at the hub ``a``)
for SpecHub's hub pairs, ``q'(x)`` (1 on the top-(k-1)) for greedy drafts, and the
exponential-race integral of :func:`ot_coupling.race.inclusion_wor` without replacement.
"""

from __future__ import annotations

import torch

from ot_coupling.kernels.inclusion import inclusion_probabilities as kernel_inclusion

from .base import Noise, TorchSelector
from .drafting import LAWS, require_support
from .ops import membership, race_sample

def inclusion_probabilities(q: torch.Tensor, k: int, law: str) -> torch.Tensor:
    """``P(x in S)`` per token and row (``[B, V]``) for the draft law ``law``: the shared kernel
    :func:`ot_coupling.kernels.inclusion.inclusion_probabilities` (support checked here)."""
    if law == "hub":
        if k != 2:
            raise ValueError(f"hub-pair drafts need k=2, got k={k}")
        require_support(q, 2, "hub-pair drafts")
    elif law != "iid":
        require_support(q, k, f"{law} drafts")
    return kernel_inclusion(q, k, law)


class TorchNaive(TorchSelector):
    """Batched naive verification; numpy reference :class:`ot_coupling.naive.NaiveSampling`.

    ``drafts`` names the draft law (default ``"iid"``), as in the numpy reference.
    """

    name = "naive"

    def __init__(self, drafts: str = "iid"):
        if drafts not in LAWS:
            raise ValueError(f"unknown draft law {drafts!r}; known: {', '.join(LAWS)}")
        self.draft_law = drafts

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``sum_x p(x) P(x in S)`` per row."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        return (p_t * inclusion_probabilities(q_t, k, self.draft_law)).sum(dim=1)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``race [B, V]`` exponentials: the target sample."""
        return {"race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = race_sample(p, noise["race"])
        return tokens, membership(tokens, drafts)
