"""SpecHub in torch (Sun, Zhou, Chen, Sun, EMNLP 2024, arXiv 2411.05289; docs/theory/token_verifiers.md#spechub):
k = 2 drafts drawn as "hub pairs" around ``a = argmax q`` and verified by the sparse OT plan.

Draft law ``"hub"``: ``i ~ q``; the pair is ``(i, a)`` if ``i != a`` else ``(a, j)`` with
``j ~ q(. | j != a)``. With, for ``j != a``, ``q_ai(j) = q(a) q(j) / (1 - q(a))``,
``p'(j) = (p - q)^+(j)``, ``S_ia = sum_j (q - p)^+(j)``, ``S_ai = sum_j (q_ai - p')^+(j)``,
``p'(a) = (p(a) - S_ai)^+`` and ``p''(j) = (p' - q_ai)^+(j)``, ``p''(a) = (p'(a) - S_ia)^+``:

* pair ``(i, a)``: accept ``i`` if ``u_0 q(i) < p(i)``, else ``a`` if ``u_1 S_ia < p'(a)``;
* pair ``(a, j)``: accept ``j`` if ``u_1 q_ai(j) < p'(j)``, else ``a`` if ``u_0 S_ai < p(a)``;
* otherwise ``Y ~ norm(p'')`` (exponential race; never a drafted token).

The acceptance is ``1 - sum_y p''(y)``, the OT optimum for the hub draft law.
"""

from __future__ import annotations

import torch

from .base import Noise, TorchSelector
from .drafting import require_support
from .ops import coin, membership, race_sample, take


def _hub_plan(p: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-row quantities of SpecHub's plan (see the module docstring)."""
    require_support(q, 2, "hub-pair drafts")
    hub = q.argmax(dim=1)  # lowest index among ties, as ot_coupling.draft_laws.hub_token
    not_hub = torch.ones_like(q, dtype=torch.bool).scatter(1, hub.unsqueeze(1), False)
    q_hub = take(q, hub)
    p_hub = take(p, hub)
    # 1 - q(a) summed over the other tokens (no cancellation when q(a) rounds to 1), as numpy
    rest = torch.where(not_hub, q, 0).sum(dim=1)
    q_ai = torch.where(not_hub, (q_hub / rest).unsqueeze(1) * q, 0)
    p1 = torch.where(not_hub, (p - q).clamp_min(0), 0)
    s_ia = torch.where(not_hub, (q - p).clamp_min(0), 0).sum(dim=1)
    s_ai = (q_ai - p1).clamp_min(0).sum(dim=1)
    p1_hub = (p_hub - s_ai).clamp_min(0)
    p2 = (p1 - q_ai).clamp_min(0)
    p2 = p2.scatter(1, hub.unsqueeze(1), (p1_hub - s_ia).clamp_min(0).unsqueeze(1))
    return {"hub": hub, "q_ai": q_ai, "p1": p1, "s_ia": s_ia, "s_ai": s_ai,
            "p_hub": p_hub, "p1_hub": p1_hub, "p2": p2}


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
        return 1 - _hub_plan(p_t, q_t)["p2"].sum(dim=1)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B, 2]`` (one per tree node) and ``race [B, V]`` exponentials."""
        return {"coins": ((batch, 2), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        if drafts.shape[1] != 2:
            raise ValueError(f"selector 'spechub' needs k=2 drafts, got k={drafts.shape[1]}")
        plan = _hub_plan(p, q)
        hub = plan["hub"]
        x0, x1 = drafts[:, 0], drafts[:, 1]
        first_is_hub, second_is_hub = x0 == hub, x1 == hub
        if (first_is_hub == second_is_hub).any():
            raise ValueError("drafts must be SpecHub hub pairs: exactly one of the two drafts is argmax q")
        u0, u1 = noise["coins"][:, 0], noise["coins"][:, 1]
        # pair (i, a): i = x0
        take_i = coin(u0, take(p, x0), take(q, x0))
        take_a_after_i = coin(u1, plan["p1_hub"], plan["s_ia"])
        # pair (a, j): j = x1
        take_j = coin(u1, take(plan["p1"], x1), take(plan["q_ai"], x1))
        take_a_after_j = coin(u0, plan["p_hub"], plan["s_ai"])
        residual = race_sample(plan["p2"], noise["race"], fallback=p)
        tokens = torch.where(
            second_is_hub,
            torch.where(take_i, x0, torch.where(take_a_after_i, hub, residual)),
            torch.where(take_j, x1, torch.where(take_a_after_j, hub, residual)))
        return tokens, membership(tokens, drafts)
