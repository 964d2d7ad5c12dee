"""Shared-Gumbel coupling in torch (GumbelSpec, T. Shen; Daliri, Musco & Suresh, arXiv 2408.07978;
docs/theory/token_verifiers.md#gumbel-coupling), batched.

One exponential (Gumbel) noise vector ``F_x ~ Exp(1)`` drives both models: the drafts are the
first ``k`` arrivals of the race ``F_x / q_x`` (Gumbel-top-k of ``q``, i.e. the
``"without_replacement"`` law) and the target token is ``Y = argmin F_x / p_x`` (exactly ``p``,
whatever the drafter). :meth:`TorchGumbel.sample` draws the noise once.

Verification from the drafts alone (:meth:`TorchGumbel.verify`): the noise is sampled conditionally
on the ordered drafts being the first ``k`` arrivals. By memorylessness the arrival times are
``T_i = T_{i-1} + G_i / (1 - q(X_1..X_{i-1}))`` (``G_i ~ Exp(1)``, ``T_0 = 0``), so
``F_{X_i} = q(X_i) T_i``, and every other token has ``F_x = q_x T_k + F'_x`` with a fresh
``F'_x ~ Exp(1)`` (also right for ``q_x = 0``). Then ``Y = argmin F_x / p_x``. This is the exact law
of ``Y`` given the ordered drafts, so draft-then-verify has the coupling's joint law (the numpy
reference :class:`ot_coupling.gumbel.GumbelCoupling` conditions on the draft *set* instead; both
are exact and have the same acceptance).

Exact acceptance (``O(V log V)`` for ``k = 1``, ``O(V^2 k n_nodes)`` for ``k > 1``, ValueError past
:data:`MAX_PAIRS`): the array-API kernel :func:`ot_coupling.kernels.race.gumbel_acceptance`, shared
with the numpy reference.
"""

from __future__ import annotations

import torch

from ot_coupling.kernels import race as race_kernel

from .base import Noise, TorchSelector, _rng
from .drafting import require_support
from .ops import membership, race_sample, take

#: largest B * V^2 handled by the exact acceptance for k > 1
MAX_PAIRS = 2_000_000


def gumbel_acceptance(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """Exact ``P(Y in drafts)`` per row of the shared-Gumbel coupling (see the module docstring):
    the array-API kernel :func:`ot_coupling.kernels.race.gumbel_acceptance`, refused with
    ``ValueError`` for ``k > 1`` when ``B V^2`` exceeds :data:`MAX_PAIRS`."""
    batch, vocab = p.shape
    if k > 1 and batch * vocab * vocab > MAX_PAIRS:
        raise ValueError(f"exact gumbel acceptance for k={k} costs O(B V^2); B*V^2 = "
                         f"{batch * vocab * vocab} exceeds {MAX_PAIRS} (use k=1 or fewer rows)")
    return race_kernel.gumbel_acceptance(p, q, k)


class TorchGumbel(TorchSelector):
    """Batched shared-Gumbel coupling; numpy reference :class:`ot_coupling.gumbel.GumbelCoupling`."""

    name = "gumbel"
    draft_law = "without_replacement"

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """Exact acceptance per row, see :func:`gumbel_acceptance`."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        require_support(q_t, k, "drafts without replacement")
        return gumbel_acceptance(p_t, q_t, k)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``gaps [B, k]`` exponential inter-arrival times of the drafts and ``race [B, V]``
        exponentials for the other tokens."""
        return {"gaps": ((batch, k), "exponential"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        qd = take(q, drafts)
        if (qd <= 0).any() or (drafts.sort(dim=1).values.diff(dim=1) == 0).any():
            raise ValueError("drafts must be distinct tokens with q > 0 (Gumbel-top-k)")
        seen = torch.cumsum(qd, dim=1) - qd                     # q(X_1..X_{i-1})
        times = torch.cumsum(noise["gaps"] / (1 - seen).clamp_min(torch.finfo(q.dtype).tiny), dim=1)
        race = q * times[:, -1:] + noise["race"]
        race = race.scatter(1, drafts, qd * times)
        tokens = race_sample(p, race)
        return tokens, membership(tokens, drafts)

    def sample(self, p, q, k: int, rng: torch.Generator | None = None, *,
               logits: bool = False, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``F ~ Exp(1)^V`` once: drafts = first ``k`` arrivals of ``F / q``, ``Y = argmin F / p``."""
        generator = _rng(rng, generator)
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        require_support(q_t, k, "drafts without replacement")
        race = self.draw_noise(p_t.shape[0], p_t.shape[1], 1, generator=generator,
                               device=p_t.device, dtype=p_t.dtype)["race"]
        drafts = torch.topk(torch.log(q_t) - torch.log(race), k, dim=1).indices
        tokens = race_sample(p_t, race)
        return tokens, membership(tokens, drafts), drafts
