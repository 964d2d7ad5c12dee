"""Inclusion probabilities of the without-replacement draft law (numpy): :func:`inclusion_wor`.

``P(x among the first k arrivals)`` of the exponential race ``A_x ~ Exp(q_x)``
(docs/theory/membership_ot.md) by a sequential prefix/suffix dynamic programme. The batched race
work (quadrature nodes and error bound, Poisson-binomial law, race integral) is the array-API kernel
:mod:`ot_coupling.kernels.race`, shared with torch; three of its names are re-exported here.
"""

from __future__ import annotations

import numpy as np

from .kernels.race import STEP, gumbel_nodes, poisson_binomial_below

__all__ = ["STEP", "gumbel_nodes", "inclusion_wor", "poisson_binomial_below"]


def _add_token(dist: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Truncated Poisson-binomial DP step: the count law ``dist [..., k]`` (values 0..k-1) after one
    more ``Bernoulli(prob [...])`` trial (mass moving past ``k - 1`` is dropped)."""
    out = dist * (1.0 - prob)[..., None]
    out[..., 1:] += dist[..., :-1] * prob[..., None]
    return out


def inclusion_wor(q: np.ndarray, k: int) -> np.ndarray:
    """``P(x in S)`` for ``k`` draws without replacement from ``q``, every ``x`` at once.

    Token ``x`` is drafted iff fewer than ``k`` other clocks (``E_z ~ Exp(q_z)``) ring before its own:
    ``P = int_0^inf q_x t e^{-q_x t} P(N_{-x}(t) <= k-1) dg`` with ``t = e^{-g}``, on one trapezoidal
    grid in ``g`` covering every token's scale (step :data:`STEP`). ``P(N_{-x} <= k-1)`` combines a
    prefix DP (tokens before ``x``) with a suffix DP (tokens after ``x``), both truncated at ``k``
    and positive (no deconvolution); suffixes are checkpointed every ``sqrt(V)`` tokens, so time is
    ``O(V k^2 n_nodes)`` and memory ``O(sqrt(V) k n_nodes)``.
    """
    support = np.flatnonzero(q > 0)
    if support.size < k:
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0, "
                         f"q has {support.size}")
    qs = q[support]
    g = np.arange(np.log(qs.min()) - np.log(60.0), np.log(qs.max()) + 42.0, STEP)
    t = np.exp(-g)
    arrived = -np.expm1(-np.outer(qs, t))  # [m, nodes]: P(clock z has rung by t)
    m, n_nodes = arrived.shape
    block = max(1, int(np.ceil(np.sqrt(m))))
    starts = list(range(0, m, block))
    empty = np.zeros((n_nodes, k))
    empty[:, 0] = 1.0
    after = [empty] * len(starts)  # after[b]: DP over the tokens behind block b
    dist = empty
    for b in range(len(starts) - 1, -1, -1):
        after[b] = dist
        for z in range(min(starts[b] + block, m) - 1, starts[b] - 1, -1):
            dist = _add_token(dist, arrived[z])
    # P(N_{-x} <= k-1) = sum_{i + j <= k-1} prefix[i] suffix[j]; cum_suffix[j] = P(suffix <= j)
    out = np.zeros(m)
    prefix = empty
    for b, s0 in enumerate(starts):
        s1 = min(s0 + block, m)
        suffixes = [after[b]]
        for z in range(s1 - 1, s0, -1):
            suffixes.append(_add_token(suffixes[-1], arrived[z]))
        for x in range(s0, s1):
            cum_suffix = np.cumsum(suffixes[s1 - 1 - x], axis=1)
            below = (prefix * cum_suffix[:, ::-1]).sum(axis=1)
            out[x] = STEP * float((qs[x] * t * np.exp(-qs[x] * t)) @ below)
            prefix = _add_token(prefix, arrived[x])
    full = np.zeros(q.size)
    full[support] = out
    return full
