"""Batched draft sampling in torch for the draft laws of :mod:`ot_coupling.draft_laws`."""

from __future__ import annotations

import torch

from .ops import stable_topk, zero_at

#: the laws :func:`sample_drafts` knows
LAWS = ("iid", "without_replacement", "hub", "greedy")


def sample_drafts(q: torch.Tensor, k: int, law: str = "iid", *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, k]`` drafts from the ``[B, V]`` probabilities ``q`` under draft law ``law``.

    ``"iid"``: ``torch.multinomial`` with replacement. ``"without_replacement"``: Gumbel-top-k
    (tokens with ``q = 0`` get key ``-inf`` and are never drawn). ``"hub"`` (k = 2, SpecHub):
    ``a = argmax q``, ``i ~ q``; ``(i, a)`` if ``i != a`` else ``(a, j)`` with ``j ~ q(. | != a)``.
    ``"greedy"`` (Hu et al.): the top-(k-1) tokens of ``q`` (ties to the lower index) then one draw
    from ``q`` restricted to the other tokens. Same laws as :mod:`ot_coupling.draft_laws`.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if law == "iid":
        return torch.multinomial(q, k, replacement=True, generator=generator)
    if law == "without_replacement":
        require_support(q, k, "drafts without replacement")
        u = torch.rand(q.shape, generator=generator, device=q.device, dtype=q.dtype)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(q.dtype).tiny)))
        keys = torch.where(q > 0, torch.log(q) + gumbel, torch.full_like(q, -torch.inf))
        return torch.topk(keys, k, dim=1).indices
    if law == "hub":
        if k != 2:
            raise ValueError(f"hub-pair drafts need k=2, got k={k}")
        require_support(q, 2, "hub-pair drafts")
        hub = q.argmax(dim=1, keepdim=True)
        first = torch.multinomial(q, 1, generator=generator)
        second = torch.multinomial(zero_at(q, hub), 1, generator=generator)
        return torch.where(first != hub, torch.cat([first, hub], 1), torch.cat([hub, second], 1))
    if law == "greedy":
        require_support(q, k, "greedy drafts")
        top = stable_topk(q, k - 1)
        last = torch.multinomial(zero_at(q, top), 1, generator=generator)
        return torch.cat([top, last], dim=1)
    raise ValueError(f"draft law {law!r} has no torch sampler; known: {', '.join(LAWS)}")


def require_support(q: torch.Tensor, k: int, what: str) -> None:
    if ((q > 0).sum(dim=1) < k).any():
        raise ValueError(f"k={k} {what} need at least k tokens with q > 0 in every row")
