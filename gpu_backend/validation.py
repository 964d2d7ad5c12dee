"""Turning user tensors (probabilities or logits, any float dtype, any device) into checked
``[B, V]`` probability matrices in a compute dtype (float64 stays float64; everything else is
computed in float32)."""

from __future__ import annotations

import torch

#: tolerance on ``|row sum - 1|`` for probability inputs, per compute dtype
SUM_TOL = {torch.float64: 1e-9, torch.float32: 1e-4}
#: looser tolerance for half-precision inputs (each entry is rounded to 8-11 mantissa bits)
HALF_SUM_TOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; fp32/fp16/bf16 are computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def prepare_probs(x, name: str = "p", *, logits: bool = False) -> torch.Tensor:
    """Validate ``x`` and return row-stochastic ``[B, V]`` probabilities in the compute dtype.

    ``logits=True``: ``x`` are logits (``-inf`` allowed, masked tokens); a row with NaN, ``+inf`` or
    all ``-inf`` raises. Otherwise ``x`` are probabilities: finite, >= 0, rows summing to 1 within
    :data:`SUM_TOL` (:data:`HALF_SUM_TOL` for fp16/bf16 input); rows are renormalised. 1-D input
    is treated as one row. The result is always a new tensor, never the memory of ``x`` (callers
    such as ``TorchOptimal``'s plan cache keep it without a copy).
    """
    t = torch.as_tensor(x)
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"{name} must have shape [B, V] or [V], got {tuple(torch.as_tensor(x).shape)}")
    tol = HALF_SUM_TOL.get(t.dtype, SUM_TOL[compute_dtype(t.dtype)])
    t = t.to(compute_dtype(t.dtype))
    if logits:
        # valid path: one row-max pass (amax propagates NaN, so NaN and +inf both fail `< inf`)
        top = t.amax(dim=1) if t.numel() else t.new_zeros(t.shape[0])
        if not bool((top < torch.inf).all()):
            _diagnose_entries(t, name, logits)
        dead = top == -torch.inf
        if dead.any():
            raise ValueError(f"{name} logits are all -inf in row {int(dead.nonzero()[0])}")
        return torch.softmax(t, dim=1)
    # valid path: the row sums and one min pass. A minimum >= 0 (amin propagates NaN) rules out NaN
    # and negative entries; non-negative entries whose row sums lie within `tol` of 1 are finite.
    # Anything else is diagnosed in the order NaN, inf, negative, row sum.
    sums = t.sum(dim=1, keepdim=True)
    if t.numel() and not bool((t.amin() >= 0) & ((sums - 1).abs() <= tol).all()):
        _diagnose_entries(t, name, logits)
        bad = (sums - 1).abs() > tol
        row = int(bad.squeeze(1).nonzero()[0])
        raise ValueError(f"{name} row {row} must sum to 1, sums to {float(sums[row]):.10g}")
    return t / sums


def _diagnose_entries(t: torch.Tensor, name: str, logits: bool) -> None:
    """Raise the error for the first kind of bad entry of ``t`` (NaN, then +inf for logits or any
    inf for probabilities, then negative mass). Called only when the fast check failed: logits
    then always raise; probabilities return when every entry is fine (the row sums are off)."""
    if torch.isnan(t).any():
        row = int(torch.isnan(t).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} contains NaN in row {row}")
    if logits:  # no NaN, so some entry is +inf
        raise ValueError(f"{name} logits contain +inf")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains inf")
    if (t < 0).any():
        row = int((t < 0).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} has negative mass in row {row}")


def prepare_pair(p, q, *, logits: bool = False, names: tuple[str, str] = ("p", "q")
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a target/draft pair: same shape, same device, a common compute dtype."""
    p_t = prepare_probs(p, names[0], logits=logits)
    q_t = prepare_probs(q, names[1], logits=logits)
    if p_t.shape != q_t.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got "
                         f"{tuple(p_t.shape)} and {tuple(q_t.shape)}")
    if p_t.device != q_t.device:
        raise ValueError(f"{names[0]} and {names[1]} are on different devices ({p_t.device}, {q_t.device})")
    dtype = torch.promote_types(p_t.dtype, q_t.dtype)
    return p_t.to(dtype), q_t.to(dtype)
