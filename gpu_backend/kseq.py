"""SpecTr's K-SEQ in torch (Sun et al., NeurIPS 2023, Algorithm "K-SEQ"; docs/theory/token_verifiers.md#k-seq),
with the optimal division factor ``rho*`` computed per row, vectorised.

With ``beta(rho) = sum_x min(q(x), p(x)/rho)``: accept draft ``X_i`` (i = 1..k, first success
wins) when ``u_i rho q(X_i) < p(X_i)``; if all k are rejected output
``Y ~ p_res = [p - min(rho q, p) (1 - (1-beta)^k) / (rho beta)] / (1-beta)^k``. It is valid iff
``1 - (1-beta(rho))^k <= rho beta(rho)``, its acceptance is ``1 - (1 - beta(rho))^k``, decreasing in
rho, so ``rho*`` is the root in ``[1, k]`` of ``f(rho) = 1 - (1-beta)^k - rho beta`` (f is
non-increasing, ``f(1) >= 0 >= f(k)``). At ``rho*`` the residual is ``(p - rho* q)^+``.
"""

from __future__ import annotations

import torch

from ot_coupling.kernels.kseq import kseq_acceptance, kseq_residual
from ot_coupling.kernels.kseq import kseq_rho as kernel_rho

from .base import Noise, TorchSelector
from .ops import membership, run_plan, take

def kseq_rho(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """``rho*`` per row of the ``[B, V]`` pair (float64): the shared kernel
    :func:`ot_coupling.kernels.kseq.kseq_rho`, the same code as the numpy selector's."""
    return kernel_rho(p, q, k)


class TorchKSeq(TorchSelector):
    """Batched K-SEQ with ``rho*``; numpy reference :class:`ot_coupling.kseq.KSeq`."""

    name = "kseq"
    draft_law = "iid"

    def rho(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``rho*`` per row (float64), see :func:`kseq_rho`."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        return kseq_rho(p_t, q_t, k)

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``1 - (1 - beta(rho*))^k`` per row."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        p64, q64 = p_t.to(torch.float64), q_t.to(torch.float64)
        return kseq_acceptance(p64, q64, kernel_rho(p64, q64, k), k).to(p_t.dtype)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B, k]`` uniforms (one per draft) and ``race [B, V]`` exponentials."""
        return {"coins": ((batch, k), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        rho = kernel_rho(p, q, drafts.shape[1]).to(p.dtype)
        residual, _ = kseq_residual(p, q, rho, drafts.shape[1])
        tokens = run_plan(drafts, take(p, drafts), rho.unsqueeze(1) * take(q, drafts), residual,
                          noise["coins"], noise["race"], fallback=p)
        return tokens, membership(tokens, drafts)
