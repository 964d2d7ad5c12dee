"""Recursive rejection sampling (RRS) in torch: SpecInfer's multi-step speculative sampling with
i.i.d. drafts (Miao et al., ASPLOS 2024, Algorithm 2) and its without-replacement variant (Jeon et
al., arXiv 2402.14160; docs/theory/token_verifiers.md).

``p_1 = p, q_1 = q``; for ``i = 1..k``: accept ``X_i`` when ``u_i q_i(X_i) < p_i(X_i)``, else
``p_{i+1} = norm((p_i - q_i)^+)`` and, without replacement, ``q_{i+1} = norm(q_i with X_i := 0)``
(with replacement ``q_{i+1} = q``). If all are rejected, ``Y ~ p_{k+1}`` by the exponential race
on the unnormalised residual. Each step is a standard speculative step from ``q_i`` to ``p_i``,
hence exact (backward induction).
"""

from __future__ import annotations

import torch

from .base import Noise, TorchSelector
from .drafting import require_support
from .ops import coin, membership, normalise, race_sample, take, zero_at

#: most rejection paths the exact RRS-wor acceptance enumerates (per call) before refusing
MAX_PATHS = 200_000
#: states of the path enumeration are expanded in chunks of at most this many entries
CHUNK_ENTRIES = 4_000_000


def _rrs_chain(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, coins: torch.Tensor,
               race: torch.Tensor, without_replacement: bool) -> torch.Tensor:
    """Run the RRS chain on all rows at once; returns the output tokens ``[B]``."""
    batch, k = drafts.shape
    tokens = torch.zeros(batch, dtype=torch.long, device=p.device)
    done = torch.zeros(batch, dtype=torch.bool, device=p.device)
    p_i, q_i = p, q
    for i in range(k):
        x = drafts[:, i]
        hit = coin(coins[:, i], take(p_i, x), take(q_i, x)) & ~done
        tokens = torch.where(hit, x, tokens)
        done |= hit
        residual = (p_i - q_i).clamp_min(0)
        if i == k - 1:
            break
        p_i = normalise(residual)
        if without_replacement:
            q_i = normalise(zero_at(q_i, x.unsqueeze(1)))
    return torch.where(done, tokens, race_sample(residual, race, fallback=p))


def _overlap(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return torch.minimum(p, q).sum(dim=1)


def rrs_wr_acceptance(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """``1 - prod_i (1 - sum_x min(p_i(x), q(x)))``: with i.i.d. drafts the ``p_i`` do not depend
    on the draws (docs/theory/token_verifiers.md#recursive-rejection-with-replacement)."""
    reject = torch.ones(p.shape[0], dtype=p.dtype, device=p.device)
    p_i = p
    for i in range(k):
        reject = reject * (1 - _overlap(p_i, q)).clamp_min(0)
        if i < k - 1:
            p_i = normalise((p_i - q).clamp_min(0))
    return 1 - reject


def _two_step_rejection(p_i: torch.Tensor, q_i: torch.Tensor) -> torch.Tensor:
    """``P(reject X_i and X_{i+1})`` from state ``(p_i, q_i)`` (rows), without replacement.

    ``= sum_x (q_i - p_i)^+(x) TV(p', q_i^{-x})`` with ``p' = norm((p_i - q_i)^+)`` and
    ``q_i^{-x} = q_i`` without ``x``, renormalised by ``c_x = 1 / (1 - q_i(x))``. Since
    ``p'(x) = 0`` on rejectable ``x``: ``TV = G(c_x) - c_x q_i(x)`` with
    ``G(c) = sum_y (c q_i(y) - p'(y))^+``, piecewise linear in ``c`` with breakpoints
    ``p'(y)/q_i(y)``: one sort and a batched ``searchsorted`` give all ``x`` in ``O(V log V)``.
    """
    excess = (q_i - p_i).clamp_min(0)
    p_next = normalise((p_i - q_i).clamp_min(0))
    ratio = torch.where(q_i > 0, p_next / torch.where(q_i > 0, q_i, 1), torch.inf)
    t, order = torch.sort(ratio, dim=1, stable=True)
    q_cum = torch.cumsum(take(q_i, order), dim=1)
    p_cum = torch.cumsum(take(p_next, order), dim=1)
    zero = torch.zeros_like(q_cum[:, :1])
    q_cum, p_cum = torch.cat([zero, q_cum], 1), torch.cat([zero, p_cum], 1)
    c = 1 / (1 - q_i).clamp_min(torch.finfo(q_i.dtype).tiny)
    n_below = torch.searchsorted(t.contiguous(), c.contiguous(), side="left")  # tokens with ratio < c
    g = c * q_cum.gather(1, n_below) - p_cum.gather(1, n_below)
    tv = (g - c * q_i).clamp_min(0)
    return (excess * torch.where(excess > 0, tv, 0)).sum(dim=1)


def rrs_wor_acceptance(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """Exact acceptance of RRS without replacement, ``1 - P(all k drafts rejected)``.

    The state after rejections depends on the rejected tokens, so ``P(all rejected)`` sums over
    the ordered paths of rejected tokens ``x_1..x_{k-2}`` (each taken with probability
    ``(q_i - p_i)^+(x_i)``) of the closed-form two-step rejection :func:`_two_step_rejection`:
    ``O(V)`` for k = 1, ``O(V log V)`` for k = 2, ``O(R^{k-2} V log V)`` beyond (``R`` rejectable
    tokens; states are expanded in chunks of :data:`CHUNK_ENTRIES` entries, and more than
    :data:`MAX_PATHS` paths raise ValueError).
    """
    if k == 1:
        return _overlap(p, q)
    total = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    owner = torch.arange(p.shape[0], device=p.device)
    budget = [MAX_PATHS]
    _reject_paths(p, q, torch.ones_like(total), owner, k, total, budget)
    return 1 - total


def _reject_paths(p_i: torch.Tensor, q_i: torch.Tensor, weight: torch.Tensor, owner: torch.Tensor,
                  steps: int, total: torch.Tensor, budget: list[int]) -> None:
    """Add ``weight * P(the next `steps` drafts are all rejected | state)`` to ``total[owner]``."""
    if steps == 2:
        total.index_add_(0, owner, weight * _two_step_rejection(p_i, q_i))
        return
    excess = (q_i - p_i).clamp_min(0)
    path, token = (excess > 0).nonzero(as_tuple=True)
    budget[0] -= path.numel()
    if budget[0] < 0:
        raise ValueError(f"exact rrs_wor acceptance for k={steps} needs more than {MAX_PATHS} rejection "
                         f"paths at V={p_i.shape[1]}; reduce k or V")
    p_next = normalise((p_i - q_i).clamp_min(0))
    chunk = max(1, CHUNK_ENTRIES // p_i.shape[1])
    for s in range(0, path.numel(), chunk):
        pc, tc = path[s:s + chunk], token[s:s + chunk]
        _reject_paths(p_next[pc], normalise(zero_at(q_i[pc], tc.unsqueeze(1))),
                      weight[pc] * excess[pc, tc], owner[pc], steps - 1, total, budget)


class TorchRRS(TorchSelector):
    """Batched RRS with i.i.d. drafts; numpy reference :class:`ot_coupling.rrs.RecursiveRejection`."""

    name = "rrs"
    draft_law = "iid"
    _without_replacement = False

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """Exact acceptance per row (closed form, see :func:`rrs_wr_acceptance`)."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        return rrs_wr_acceptance(p_t, q_t, k)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B, k]`` uniforms (one per draft) and ``race [B, V]`` exponentials."""
        return {"coins": ((batch, k), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = _rrs_chain(p, q, drafts, noise["coins"], noise["race"], self._without_replacement)
        return tokens, membership(tokens, drafts)


class TorchRRSWOR(TorchRRS):
    """Batched RRS without replacement; numpy reference :class:`ot_coupling.rrs.RecursiveRejectionWOR`."""

    name = "rrs_wor"
    draft_law = "without_replacement"
    _without_replacement = True

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """Exact acceptance per row (path sum, see :func:`rrs_wor_acceptance`)."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        require_support(q_t, k, "drafts without replacement")
        return rrs_wor_acceptance(p_t, q_t, k)
