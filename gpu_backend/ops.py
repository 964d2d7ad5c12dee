"""Shared tensor kernels of the torch selectors: the exponential race, coins, membership, stable
top-k and numerically careful closed forms. Every function is batched over rows ``[B, ...]``.

The *exponential race* (Gumbel-max in disguise) samples ``Y ~ w / sum(w)`` from unnormalised
weights ``w >= 0`` as ``argmax_x w(x) / E_x`` with ``E_x ~ Exp(1)`` i.i.d.: ``E_x / w(x)`` is
``Exp(w(x))``, and the first arrival of independent exponential clocks is token ``x`` with
probability ``w(x) / sum(w)``. It needs no normalisation, so a residual of zero mass is never
divided (as vLLM V1's ``sample_recovered_tokens`` does). We evaluate it
as ``argmax(log w - log E)``: tokens with ``w = 0`` get key ``-inf`` and can never win against a
positive weight, even when ``w / E`` would underflow.
"""

from __future__ import annotations

import numpy as np
import torch


def race_sample(weights: torch.Tensor, exponentials: torch.Tensor,
                fallback: torch.Tensor | None = None, *, sparse: bool = False) -> torch.Tensor:
    """Sample one token per row of the unnormalised ``[B, V]`` weights by the exponential race.

    ``exponentials`` are i.i.d. ``Exp(1)`` of the same shape. Rows whose weights are all zero
    (a residual of zero mass: in exact arithmetic a branch of probability 0) race on ``fallback``
    instead (the target ``p``), so a token of zero weight is never returned when any weight is
    positive, and no NaN ever appears. Returns ``[B]`` int64 token ids in ``[0, V)``.

    ``sparse=True`` (weights that are mostly zeros, such as a residual ``(p - r)^+``): on a CPU the
    keys are computed on the positive entries only, the CPU ``log`` being ~20x slower on zeros.
    Those keys are the same values as the dense ones, elementwise; the dense keys of the other
    entries are ``-inf`` and cannot win against a finite key, and ties go to the lower index as with
    ``argmax``; so the token is the same for exponentials in ``(0, inf)``, which is all
    :meth:`~gpu_backend.base.TorchSelector.draw_noise` produces. Elsewhere (no host sync) dense.
    """
    if sparse and weights.device.type == "cpu":
        return _race_on_support(weights, exponentials, fallback)
    w = weights.clamp_min(0)
    if fallback is not None:
        w = torch.where((w > 0).any(dim=1, keepdim=True), w, fallback)
    keys = torch.log(w) - torch.log(exponentials)
    return keys.argmax(dim=1)


def _race_on_support(weights: torch.Tensor, exponentials: torch.Tensor,
                     fallback: torch.Tensor | None) -> torch.Tensor:
    """The dense race's token on a CPU, from the keys ``log w - log E`` of the entries with
    ``w > 0`` only (``fallback``'s entries for a row without any; token 0 for a row of zeros), the
    first index among equal keys. The positive entries are found by numpy on views of the same
    memory (several times faster than ``torch.nonzero``); the keys are torch's ``log``."""
    B, V = weights.shape
    if B == 1:  # one row: 1-D indices and gathers
        src = weights[0]
        cols = np.flatnonzero(src.detach().numpy() > 0)
        if not cols.size and fallback is not None:
            src = fallback[0]
            cols = np.flatnonzero(src.detach().numpy() > 0)
        if not cols.size:
            return torch.zeros(1, dtype=torch.long)
        c = torch.from_numpy(cols)
        keys = torch.log(src.index_select(0, c)) - torch.log(exponentials[0].index_select(0, c))
        return c[int(keys.detach().numpy().argmax())].reshape(1)
    w = weights
    rows, cols = np.nonzero(w.detach().numpy() > 0)
    if fallback is not None:
        empty = np.bincount(rows, minlength=B) == 0
        if empty.any():
            w = torch.where(torch.from_numpy(empty).unsqueeze(1), fallback, weights)
            rows, cols = np.nonzero(w.detach().numpy() > 0)
    r, c = torch.from_numpy(rows), torch.from_numpy(cols)
    keys = torch.log(w[r, c]) - torch.log(exponentials[r, c])
    best = torch.full((B,), -torch.inf, dtype=keys.dtype).scatter_reduce_(0, r, keys, "amax")
    hit = keys == best[r]
    first = torch.full((B,), V, dtype=torch.long).scatter_reduce_(0, r[hit], c[hit], "amin")
    return torch.where(first < V, first, torch.zeros_like(first))


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b, ...]]`` per row: ``idx`` is ``[B]`` or ``[B, m]``; the result has its shape."""
    if idx.ndim == 1:
        return x.gather(1, idx.unsqueeze(1)).squeeze(1)
    return x.gather(1, idx)


def coin(u: torch.Tensor, target: torch.Tensor, proposal: torch.Tensor) -> torch.Tensor:
    """Accept with probability ``min(1, target / proposal)`` given a uniform ``u`` in ``[0, 1)``.

    Written ``u * proposal < target`` (strict): a token with ``target = 0`` is never accepted,
    even with a coin of exactly 0, and ``proposal = 0`` accepts iff ``target > 0``; no division.
    """
    return u * proposal < target


def run_plan(candidates: torch.Tensor, num: torch.Tensor, den: torch.Tensor, residual: torch.Tensor,
             coins: torch.Tensor, race: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Run a plan of :mod:`ot_coupling.kernels` (``candidates, num, den [B, m]``, ``residual [B, V]``):
    the first candidate whose :func:`coin` ``coins * den < num`` succeeds (``coins [B, m]``, or ``[B]``
    shared by all), else the exponential race on the residual's positive part (``fallback`` where
    it has no mass)."""
    hits = coin(coins if coins.ndim == 2 else coins.unsqueeze(1), num, den)
    first = hits.long().argmax(dim=1)  # first accepted candidate (0 when none; masked below)
    return torch.where(hits.any(dim=1), take(candidates, first),
                       race_sample(residual, race, fallback=fallback))


def membership(tokens: torch.Tensor, drafts: torch.Tensor) -> torch.Tensor:
    """``accepted[b] = tokens[b] in drafts[b, :]`` (membership acceptance)."""
    return (drafts == tokens.unsqueeze(1)).any(dim=1)


def stable_topk(x: torch.Tensor, m: int) -> torch.Tensor:
    """Indices ``[B, m]`` of the ``m`` largest entries per row, in descending order, ties going to
    the lower index (the order of ``numpy.argsort(-x, kind="stable")[:m]``).

    ``torch.topk`` finds the threshold value; which tied tokens enter is then fixed by index, so
    the selected set does not depend on the kernel's tie handling.
    """
    if m == 0:
        return torch.empty(x.shape[0], 0, dtype=torch.long, device=x.device)
    thr = torch.topk(x, m, dim=1).values[:, -1:]
    above = x > thr
    ties = x == thr
    need = m - above.sum(dim=1, keepdim=True)
    chosen = above | (ties & (torch.cumsum(ties.long(), dim=1) <= need))
    idx = chosen.nonzero()[:, 1].reshape(x.shape[0], m)  # ascending index within each row
    order = torch.sort(take(x, idx), dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def zero_at(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with ``x[b, idx[b, :]] = 0``."""
    return x.scatter(1, idx, 0.0)


