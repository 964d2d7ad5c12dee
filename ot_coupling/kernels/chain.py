"""Batched chain verification (one draft path per request) written once against the array API.

The same function runs on numpy and torch arrays (``array_api_compat.array_namespace``), on any
device torch supports. Layout is the flattened one production engines use:

* ``draft_token_ids [T]``: the draft tokens of all requests, request after request;
* ``cu_num_draft_tokens [B]``: cumulative draft counts (``cu[b] = n_0 + ... + n_b``), so request
  ``b`` owns the flat positions ``cu[b] - n_b .. cu[b] - 1``; draft lengths may differ and may be 0;
* ``draft_probs [T, V]``: row ``s`` is the draft law the token at flat position ``s`` was sampled
  from;
* ``target_probs [T + B, V]``: for request ``b`` the ``n_b + 1`` rows ``cu[b] - n_b + b ..
  cu[b] + b``: the target law at every draft position, then the bonus row (the target law after
  the whole draft).

Two rules, both lossless (the emitted sequence followed by the target's own continuation has the
target's sequence law):

``"speculative"`` -- standard speculative sampling (Leviathan, Kalman, Matias, ICML 2023,
Algorithm 1; Chen et al. 2023, Algorithm 2): accept ``X_j`` while ``u_j q_j(X_j) < p_j(X_j)``
(probability ``min(1, p/q)``); at the first rejection ``j`` emit ``Y ~ norm((p_j - q_j)^+)``; if all
``n`` are accepted emit the bonus ``Y ~ p_n``.

``"block"`` -- block verification (Sun, Mendlovic, Leviathan, Aharoni, Beirami, Ro, Suresh, ICLR
2025, Algorithm 2): ``w_0 = 1``, ``w_{i+1} = min(1, w_i p_i(X_i) / q_i(X_i))``; for ``i < n``
``A_i = sum_x (w_i p_i(x) - q_i(x))^+`` and ``h_i = A_i / (A_i + 1 - w_i)`` (``0/0 := 1``), ``h_n = w_n``;
``tau = max{i : eta_i < h_i}`` (``h_0 = 1``); emit ``X_<tau`` (``tau`` tokens) then
``Y ~ norm((w_tau p_tau - q_tau)^+)`` (``tau < n``) or the bonus ``Y ~ p_n`` (``tau = n``). This is
the same rule as :func:`ot_coupling.sequence.verify_block` (the numpy reference, one request).

Only the row where verification stops is turned into a residual law ([B, V] work); speculative
sampling touches the other rows only at the drafted tokens. Block verification computes ``A_i``
(one pass over a row) only at the positions its backward scan ``i = n, n-1, ...`` actually visits.

Randomness is explicit: ``noise = {"uniform": [T], "sample": [B]}`` (uniforms in ``[0, 1)``: the
acceptance coin ``u_j`` resp. ``eta_{j+1}`` of every draft position, and the inverse-CDF uniform of
the final token of every request), or drawn from ``rng`` (``numpy.random.Generator | int | None``
for numpy inputs, ``torch.Generator | None`` for torch). With the same noise the numpy and torch
results are identical.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace, is_torch_namespace

RULES = ("speculative", "block")


class ChainOutput(NamedTuple):
    """``output_token_ids [B, max_n + 1]`` (accepted drafts, then the residual/bonus token, padded
    with -1) and ``num_accepted [B]`` (accepted draft tokens; ``num_accepted + 1`` tokens emitted)."""

    output_token_ids: object
    num_accepted: object


class ChainLayout(NamedTuple):
    """Padded view of the flattened layout: ``n [B]``, ``start [B]`` (first flat draft position),
    ``pos [B, m]`` (flat draft positions, clipped; ``m = max n``), ``valid [B, m]``, ``m``."""

    n: object
    start: object
    pos: object
    valid: object
    m: int


# ------------------------------------------------------------------------------------- checks
def _check(xp, target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens) -> tuple[int, int, int]:
    if target_probs.ndim != 2:
        raise ValueError("target_probs must be [num_tokens + num_requests, V], "
                         f"got shape {tuple(target_probs.shape)}")
    if draft_probs.ndim != 2 or draft_token_ids.ndim != 1 or cu_num_draft_tokens.ndim != 1:
        raise ValueError("draft_probs must be [num_tokens, V], draft_token_ids [num_tokens] and "
                         "cu_num_draft_tokens [num_requests]")
    T, V = int(draft_probs.shape[0]), int(target_probs.shape[1])
    B = int(cu_num_draft_tokens.shape[0])
    if B < 1:
        raise ValueError("cu_num_draft_tokens must name at least one request")
    if int(draft_token_ids.shape[0]) != T or (T and int(draft_probs.shape[1]) != V):
        raise ValueError(f"draft_token_ids [{int(draft_token_ids.shape[0])}] and draft_probs "
                         f"{tuple(draft_probs.shape)} must have num_tokens rows and V={V} columns")
    if int(target_probs.shape[0]) != T + B:
        raise ValueError(f"target_probs must have num_tokens + num_requests = {T + B} rows "
                         f"(bonus rows included), got {int(target_probs.shape[0])}")
    cu = cu_num_draft_tokens
    if bool(xp.any(cu[1:] < cu[:-1])) or bool(cu[0] < 0) or int(cu[-1]) != T:
        raise ValueError(f"cu_num_draft_tokens must be non-decreasing, >= 0 and end at num_tokens={T}")
    if T and (bool(xp.any(draft_token_ids < 0)) or bool(xp.any(draft_token_ids >= V))):
        raise ValueError(f"draft_token_ids holds token ids outside [0, {V})")
    return T, B, V


def chain_layout(cu_num_draft_tokens) -> ChainLayout:
    """The padded ``[B, max n]`` view of the flat positions (see :class:`ChainLayout`)."""
    xp = array_namespace(cu_num_draft_tokens)
    cu = xp.astype(cu_num_draft_tokens, xp.int64)
    zero = xp.zeros(1, dtype=xp.int64, device=_device(cu))
    start = xp.concat([zero, cu[:-1]])
    n = cu - start
    m = int(xp.max(n))
    j = xp.arange(max(m, 1), dtype=xp.int64, device=_device(cu))
    pos = start[:, None] + j[None, :]
    valid = j[None, :] < n[:, None]
    T = int(cu[-1])
    pos = xp.where(valid, pos, xp.zeros_like(pos)) if T else xp.zeros_like(pos)
    if m == 0:
        pos, valid = pos[:, :0], valid[:, :0]
    return ChainLayout(n, start, pos, valid, m)


def _device(x):
    return getattr(x, "device", None) if not isinstance(x, np.ndarray) else None


def _at(xp, probs, rows, tokens):
    """``probs[rows, tokens]`` elementwise for index arrays of one shape (flat gather)."""
    V = int(probs.shape[1])
    flat = xp.reshape(probs, (-1,))
    idx = xp.reshape(rows * V + tokens, (-1,))
    return xp.reshape(xp.take(flat, idx), rows.shape)


def _ratio(xp, num, den):
    """``min(1, num / den)`` with ``num = 0 -> 0`` and ``den = 0 < num -> 1`` (no division by 0)."""
    safe = xp.where(den > 0, den, xp.ones_like(den))
    r = xp.where(den > 0, num / safe, xp.where(num > 0, xp.ones_like(num), xp.zeros_like(num)))
    return xp.where(num > 0, xp.minimum(r, xp.ones_like(r)), xp.zeros_like(r))


# ------------------------------------------------------------------------------------- plans
def chain_plan(target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens, rule: str = "speculative",
               *, with_h: bool = True):
    """Per-position verification probabilities, the part of the kernel that is not random.

    Returns ``(layout, stop, w)`` with ``stop [B, m + 1]``:

    * ``"speculative"``: ``stop[:, j] = min(1, p_j(X_j)/q_j(X_j))`` for ``j < n`` -- the probability
      of accepting position ``j`` given it is reached (column ``n`` and padding are 0); ``w = 1``;
    * ``"block"``: ``stop[:, i] = h_i`` for ``i <= n`` (padding 0) and ``w [B, m + 1]`` the capped
      sequence ratios ``w_i``.

    ``P(tau = i | X)`` is ``prod_{j<i} a_j (1 - a_i)`` (``a_n := 0``) for speculative sampling and
    ``h_i prod_{i<j<=n} (1 - h_j)`` for block verification. ``with_h=False`` (block only) skips
    the ``A_i`` pass and returns ``stop = None`` (the sampler computes ``h_i`` lazily).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    xp = array_namespace(target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens)
    _check(xp, target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens)
    lay = chain_layout(cu_num_draft_tokens)
    B, m = int(lay.n.shape[0]), lay.m
    dt = target_probs.dtype
    dev = _device(target_probs)
    b = xp.arange(B, dtype=xp.int64, device=dev)[:, None]
    ones = xp.ones((B, 1), dtype=dt, device=dev)
    zeros = xp.zeros((B, 1), dtype=dt, device=dev)
    if m == 0:
        w = ones
        stop = ones if rule == "block" else zeros
        return lay, stop, w
    tok = xp.take(xp.astype(draft_token_ids, xp.int64), xp.reshape(lay.pos, (-1,)))
    tok = xp.reshape(tok, lay.pos.shape)
    p_x = _at(xp, target_probs, lay.pos + b, tok)
    q_x = _at(xp, draft_probs, lay.pos, tok)
    if rule == "speculative":
        acc = xp.where(lay.valid, _ratio(xp, p_x, q_x), xp.zeros_like(p_x))
        return lay, xp.concat([acc, zeros], axis=1), xp.ones((B, m + 1), dtype=dt, device=dev)
    # block verification: w_i, then A_i over the whole rows
    w_cols = [ones[:, 0]]
    for j in range(m):
        nxt = _ratio(xp, w_cols[-1] * p_x[:, j], q_x[:, j])
        w_cols.append(xp.where(lay.valid[:, j], nxt, w_cols[-1]))
    w = xp.stack(w_cols, axis=1)                                         # [B, m + 1]
    if not with_h:
        return lay, None, w
    # A over the flat [T, V] layout: draft rows are already in position order, only the target
    # rows (bonus rows skipped) are gathered
    T = int(draft_probs.shape[0])
    s = xp.arange(T, dtype=xp.int64, device=dev)
    req = xp.astype(xp.searchsorted(xp.astype(cu_num_draft_tokens, xp.int64), s, side="right"), xp.int64)
    w_flat = _at(xp, w, req, s - xp.take(lay.start, req))
    P = xp.take(target_probs, s + req, axis=0)
    A_flat = xp.sum(xp.maximum(w_flat[:, None] * P - draft_probs, xp.zeros_like(P)), axis=1)
    A = xp.reshape(xp.take(A_flat, xp.reshape(lay.pos, (-1,))), lay.pos.shape)
    wi = w[:, :m]
    den = A + (1.0 - wi)
    h = xp.where(den > 0, A / xp.where(den > 0, den, xp.ones_like(den)), xp.ones_like(den))
    h = xp.where(lay.valid, h, xp.zeros_like(h))
    col = xp.arange(m + 1, dtype=xp.int64, device=dev)[None, :]
    h = xp.concat([h, zeros], axis=1)
    h = xp.where(col == lay.n[:, None], w, h)                            # h_n = w_n
    return lay, h, w


def final_weights(target_probs, draft_probs, cu_num_draft_tokens, tau, w_tau=None,
                  layout: ChainLayout | None = None):
    """Unnormalised law ``[B, V]`` of the token emitted after ``tau`` accepted drafts:
    ``(w_tau p_tau - q_tau)^+`` when ``tau < n``, the bonus row ``p_n`` when ``tau = n``
    (``w_tau = None`` means 1). Only these ``B`` rows are touched. A residual without mass (a
    probability-0 event) is left as zeros; :func:`inverse_cdf_rows` then samples the target row (its ``fallback``)."""
    xp = array_namespace(target_probs, draft_probs, cu_num_draft_tokens, tau)
    lay = layout if layout is not None else chain_layout(cu_num_draft_tokens)
    B = int(lay.n.shape[0])
    b = xp.arange(B, dtype=xp.int64, device=_device(target_probs))
    tau = xp.astype(tau, xp.int64)
    p = xp.take(target_probs, lay.start + tau + b, axis=0)
    if int(draft_probs.shape[0]) == 0:
        return p, p
    drow = xp.minimum(lay.start + tau, xp.full_like(tau, int(draft_probs.shape[0]) - 1))
    # bonus rows subtract nothing: scale their draft row by 0 (no [B, V] select)
    scale = xp.astype(tau < lay.n, target_probs.dtype)
    q = xp.take(draft_probs, drow, axis=0) * scale[:, None]
    wp = p if w_tau is None else w_tau[:, None] * p
    return xp.maximum(wp - q, xp.zeros_like(p)), p


def _searchsorted_rows(xp, cdf, t):
    """Per row ``#{i : cdf[i] <= t}`` (``side="right"``), O(B log V)."""
    if is_torch_namespace(xp):
        import torch

        return torch.searchsorted(cdf, t[:, None], right=True)[:, 0]
    return np.array([np.searchsorted(c, v, side="right") for c, v in zip(cdf, t)], dtype=np.int64)


def inverse_cdf_rows(weights, u, fallback=None):
    """Row-wise inverse-CDF sample of ``[B, V]`` non-negative weights with uniforms ``u [B]``:
    index ``i`` with ``cdf[i-1] <= u * total < cdf[i]``; round-off at the top falls back to the last
    positive weight, so a zero-weight token is never returned (same rule as
    :func:`ot_coupling.rejection.inverse_cdf_rows`). Rows without mass are sampled from
    ``fallback`` (same shape) instead."""
    xp = array_namespace(weights, u)
    cdf = xp.cumulative_sum(weights, axis=1)
    total = cdf[:, -1]
    idx = xp.astype(_searchsorted_rows(xp, cdf, u * total), xp.int64)
    V = int(weights.shape[1])
    empty = total <= 0
    if fallback is not None and bool(xp.any(empty)):
        rows = xp.nonzero(empty)[0]
        sub = inverse_cdf_rows(xp.take(fallback, rows, axis=0), xp.take(u, rows))
        idx = _put(xp, idx, rows, sub)
    top = idx >= V
    if bool(xp.any(top)):  # u * total rounded up to total: the last positive weight
        last = V - 1 - xp.argmax(xp.astype(xp.flip(weights > 0, axis=1), xp.int8), axis=1)
        idx = xp.where(top, xp.astype(last, xp.int64), idx)
    return idx


def _put(xp, arr, rows, values):
    """``arr`` with ``arr[rows] = values`` (functional, 1-D)."""
    B = int(arr.shape[0])
    hit = xp.zeros(B, dtype=xp.bool, device=_device(arr))
    full = xp.zeros(B, dtype=arr.dtype, device=_device(arr))
    if is_torch_namespace(xp):
        hit = hit.index_fill(0, rows, True)
        full = full.index_copy(0, rows, values)
    else:
        hit[rows] = True
        full[rows] = values
    return xp.where(hit, full, arr)


def _block_tau(xp, target_probs, draft_probs, lay: ChainLayout, w, uu):
    """``tau = max{i : eta_i < h_i}`` by the backward scan ``i = n, n-1, ..., 1`` (``h_0 = 1``),
    computing ``h_i`` (hence ``A_i``, a pass over one row) only for the requests still scanning at
    ``i``: with high acceptance most requests stop at ``i = n`` where ``h_n = w_n`` costs nothing."""
    B, m = int(lay.n.shape[0]), lay.m
    dev = _device(target_probs)
    tau = xp.zeros(B, dtype=xp.int64, device=dev)
    undecided = xp.ones(B, dtype=xp.bool, device=dev)
    for i in range(m, 0, -1):
        at = undecided & (lay.n >= i)
        if not bool(xp.any(at)):
            continue
        rows = xp.nonzero(at)[0]
        ci = xp.full_like(rows, i)
        w_i = _at(xp, w, rows, ci)
        eta = _at(xp, uu, rows, ci - 1)
        h = w_i                                                          # h_n = w_n
        inner = xp.nonzero(xp.take(lay.n, rows) > i)[0]
        if int(inner.shape[0]):
            r2 = xp.take(rows, inner)
            pos = xp.take(lay.start, r2) + i
            P = xp.take(target_probs, pos + r2, axis=0)
            Q = xp.take(draft_probs, pos, axis=0)
            wi2 = xp.take(w_i, inner)
            A = xp.sum(xp.maximum(wi2[:, None] * P - Q, xp.zeros_like(P)), axis=1)
            den = A + (1.0 - wi2)
            h2 = xp.where(den > 0, A / xp.where(den > 0, den, xp.ones_like(den)), xp.ones_like(den))
            h = _put(xp, h, inner, h2)
        stopped = xp.take(rows, xp.nonzero(eta < h)[0])
        if int(stopped.shape[0]):
            tau = _put(xp, tau, stopped, xp.full_like(stopped, i))
            undecided = _put(xp, undecided, stopped, xp.zeros_like(stopped, dtype=xp.bool))
    return tau


# ------------------------------------------------------------------------------------- kernel
def draw_noise(xp, num_tokens: int, num_requests: int, dtype, device=None, rng=None) -> dict:
    """``{"uniform": [T], "sample": [B]}`` uniforms in ``[0, 1)`` from ``rng`` (numpy Generator /
    seed for numpy, ``torch.Generator`` for torch)."""
    if is_torch_namespace(xp):
        import torch

        return {"uniform": torch.rand(num_tokens, generator=rng, dtype=dtype, device=device),
                "sample": torch.rand(num_requests, generator=rng, dtype=dtype, device=device)}
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return {"uniform": gen.random(num_tokens).astype(dtype), "sample": gen.random(num_requests).astype(dtype)}


def verify_chain(target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens, *,
                 rule: str = "speculative", noise: dict | None = None, rng=None) -> ChainOutput:
    """Verify one draft path per request, all requests at once (see the module docstring for the
    layout, the two rules and the noise).

    Parameters
    ----------
    target_probs : ``[T + B, V]`` target probabilities, bonus rows included.
    draft_probs : ``[T, V]`` draft probabilities the drafts were sampled from.
    draft_token_ids : ``[T]`` integer draft tokens.
    cu_num_draft_tokens : ``[B]`` cumulative draft counts.
    rule : ``"speculative"`` or ``"block"``.
    noise : optional ``{"uniform": [T], "sample": [B]}``; else drawn from ``rng``.

    Returns
    -------
    ChainOutput
        ``output_token_ids [B, max n + 1]`` padded with -1 and ``num_accepted [B]``.
    """
    xp = array_namespace(target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens)
    lay, stop, w = chain_plan(target_probs, draft_probs, draft_token_ids, cu_num_draft_tokens, rule,
                              with_h=False)
    T, B, m = int(draft_token_ids.shape[0]), int(lay.n.shape[0]), lay.m
    dev = _device(target_probs)
    if noise is None:
        noise = draw_noise(xp, T, B, target_probs.dtype, dev, rng)
    u, s = noise.get("uniform"), noise.get("sample")
    if u is None or s is None or tuple(u.shape) != (T,) or tuple(s.shape) != (B,):
        raise ValueError(f"noise must hold 'uniform' [{T}] and 'sample' [{B}] uniforms")
    col = xp.arange(m + 1, dtype=xp.int64, device=dev)[None, :]
    if m:
        uu = xp.reshape(xp.take(u, xp.reshape(lay.pos, (-1,))), lay.pos.shape)
    if rule == "speculative":
        if m:
            rejected = ~(uu < stop[:, :m]) & lay.valid
            first = xp.where(rejected, col[:, :m], xp.full_like(rejected, m, dtype=xp.int64))
            tau = xp.minimum(xp.min(first, axis=1), lay.n)
        else:
            tau = lay.n
        w_tau = None
    else:
        if m:  # eta_i = u at position i - 1
            tau = _block_tau(xp, target_probs, draft_probs, lay, w, uu)
        else:
            tau = lay.n
        w_tau = xp.reshape(_at(xp, w, xp.arange(B, dtype=xp.int64, device=dev), tau), (B,))
    weights, p_rows = final_weights(target_probs, draft_probs, cu_num_draft_tokens, tau, w_tau, lay)
    y = inverse_cdf_rows(weights, s, fallback=p_rows)
    if m:
        tok = xp.reshape(xp.take(xp.astype(draft_token_ids, xp.int64), xp.reshape(lay.pos, (-1,))),
                         lay.pos.shape)
        tok = xp.concat([tok, xp.zeros((B, 1), dtype=xp.int64, device=dev)], axis=1)
    else:
        tok = xp.zeros((B, 1), dtype=xp.int64, device=dev)
    out = xp.where(col < tau[:, None], tok, xp.full_like(tok, -1))
    out = xp.where(col == tau[:, None], y[:, None], out)
    return ChainOutput(out, tau)
