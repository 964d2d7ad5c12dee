"""Batched draft sampling in torch for the draft laws of :mod:`ot_coupling.draft_laws`."""

from __future__ import annotations

import torch


def sample_drafts(q: torch.Tensor, k: int, law: str = "iid", *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, k]`` drafts from the ``[B, V]`` probabilities ``q`` under draft law ``law``.

    ``"iid"``: ``torch.multinomial`` with replacement. ``"without_replacement"``: Gumbel-top-k
    (tokens with ``q = 0`` get key ``-inf`` and are never drawn).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if law == "iid":
        return torch.multinomial(q, k, replacement=True, generator=generator)
    if law == "without_replacement":
        support = (q > 0).sum(dim=1)
        if (support < k).any():
            raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0 per row")
        u = torch.rand(q.shape, generator=generator, device=q.device, dtype=q.dtype)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(q.dtype).tiny)))
        keys = torch.where(q > 0, torch.log(q) + gumbel, torch.full_like(q, -torch.inf))
        return torch.topk(keys, k, dim=1).indices
    raise ValueError(f"draft law {law!r} has no torch sampler; known: iid, without_replacement")
