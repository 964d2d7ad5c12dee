"""Recursive rejection sampling (RRS) in torch: SpecInfer's multi-step speculative sampling with
i.i.d. drafts (Miao et al., ASPLOS 2024, Algorithm 2) and its without-replacement variant (Jeon et
al., arXiv 2402.14160; docs/theory/token_verifiers.md). Plan and acceptances: the shared
one-parameter kernels :mod:`ot_coupling.kernels.rrs` (the module docstring states the rule).
"""

from __future__ import annotations

import torch

from ot_coupling.kernels import rrs as kernel_rrs

from .base import Noise, TorchSelector
from .drafting import require_support
from .ops import membership, run_plan

#: the single budget of the exact RRS-wor acceptance (rejection paths), shared with numpy
MAX_PATHS = kernel_rrs.MAX_PATHS


def rrs_wor_acceptance(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """Exact acceptance of RRS without replacement per row (float64), by the shared kernel
    :func:`ot_coupling.kernels.rrs.rrs_wor_acceptance` run on the host: a sequential recursion over
    rejection histories, whose many small operations cost several times more as torch ops (and
    device syncs) than as numpy ops. Computing in float64 fixes the 2.75e-3 float32 error of the
    former torch path sums (masses from 1e-11 to 1)."""
    p64 = p.detach().to(device="cpu", dtype=torch.float64).numpy()
    q64 = q.detach().to(device="cpu", dtype=torch.float64).numpy()
    return torch.as_tensor(kernel_rrs.rrs_wor_acceptance(p64, q64, k, MAX_PATHS), device=p.device)


class TorchRRS(TorchSelector):
    """Batched RRS with i.i.d. drafts; numpy reference :class:`ot_coupling.rrs.RecursiveRejection`."""

    name = "rrs"
    draft_law = "iid"
    _without_replacement = False

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``1 - Z(t_{k+1})`` per row, in float64 (:func:`ot_coupling.kernels.rrs.rrs_acceptance`)."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        return kernel_rrs.rrs_acceptance(p_t.double(), q_t.double(), k).to(p_t.dtype)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B, k]`` uniforms (one per draft) and ``race [B, V]`` exponentials."""
        return {"coins": ((batch, k), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        plan = kernel_rrs.rrs_plan(p, q, drafts, self._without_replacement)
        tokens = run_plan(drafts, *plan, noise["coins"], noise["race"], p)  # candidates: the drafts
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
        return rrs_wor_acceptance(p_t, q_t, k).to(p_t.dtype)
