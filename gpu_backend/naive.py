"""Naive multi-draft verification ("target-only", MCNS) in torch (docs/theory/token_verifiers.md#naive-sampling).

Sample ``Y ~ p`` (exponential race) independently of the drafts and accept iff ``Y`` is one of
them. Valid for any draft law; the acceptance is ``sum_x p(x) P(x in S)``, with inclusion
probabilities ``1 - (1 - q(x))^k`` for i.i.d. drafts, ``q(x) / (1 - q(a))`` (1 at the hub ``a``)
for SpecHub's hub pairs, ``q'(x)`` (1 on the top-(k-1)) for greedy drafts, and the
exponential-race integral of :func:`ot_coupling.race.inclusion_wor` without replacement.
"""

from __future__ import annotations

import torch

from .base import Noise, TorchSelector
from .drafting import LAWS, require_support
from .ops import (
    membership,
    normalise,
    one_minus_power,
    race_integral,
    race_sample,
    stable_topk,
    take,
    zero_at,
)

#: largest B * V^2 of the exact inclusion probabilities without replacement
MAX_PAIRS = 2_000_000


def inclusion_probabilities(q: torch.Tensor, k: int, law: str) -> torch.Tensor:
    """``P(x in S)`` per token and row (``[B, V]``) for the draft law ``law``."""
    if law == "iid":
        return one_minus_power(q, k)
    if law == "hub":
        if k != 2:
            raise ValueError(f"hub-pair drafts need k=2, got k={k}")
        require_support(q, 2, "hub-pair drafts")
        hub = q.argmax(dim=1, keepdim=True)
        return (q / (1 - take(q, hub))).scatter(1, hub, 1.0)
    require_support(q, k, f"{law} drafts")
    if law == "greedy":
        top = stable_topk(q, k - 1)
        return normalise(zero_at(q, top)).scatter(1, top, 1.0)
    batch, vocab = q.shape
    if batch * vocab * vocab > MAX_PAIRS:
        raise ValueError(f"exact inclusion probabilities without replacement cost O(B V^2); B*V^2 = "
                         f"{batch * vocab * vocab} exceeds {MAX_PAIRS}")
    live = q > 0
    rates = q.unsqueeze(1) / torch.where(live, q, 1).unsqueeze(2)   # [B, x, z] = q_z / q_x
    rates = rates * (1 - torch.eye(vocab, dtype=q.dtype, device=q.device))
    return torch.where(live, race_integral(rates, k), 0)


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
