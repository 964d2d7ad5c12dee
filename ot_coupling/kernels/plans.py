r"""Plans and acceptances of speculative sampling, greedy drafts and SpecHub, batched, for any
array-API backend (docs/theory/token_verifiers.md). A *plan* for drafts ``D [B, k]`` is
``(candidates [B, m], num [B, m], den [B, m], residual [B, V])``: the candidates are tried in order,
``i`` is accepted iff ``u_i den_i < num_i`` (``u_i`` uniform on ``[0, 1)``: probability
``min(1, num_i / den_i)``), and if all fail the output is drawn from the residual's positive part,
normalised (from ``p`` when it has no mass; returned unclipped: both consumers clip, and a
``[B, V]`` temporary costs more than the pass). Run by ``ot_coupling.rejection.KernelRejection``
(coins ``ratio_coin(num, den)``) and ``gpu_backend.ops.run_plan``; ``rrs.rrs_plan`` has the same
form without the candidates (the drafts, in order).
"""

from __future__ import annotations

from ._array import array_namespace, device, positive, take_at


def speculative_plan(P, Q, D):
    """Speculative sampling (Leviathan et al., ICML 2023, Algorithm 1): accept ``X = D[:, 0]`` with
    probability ``min(1, p(X) / q(X))``, else ``Y ~ (p - q)^+`` (residual ``p - q``)."""
    xp = array_namespace(P, Q, D)
    return D, xp.take_along_axis(P, D, axis=1), xp.take_along_axis(Q, D, axis=1), P - Q


def speculative_acceptance(P, Q):
    """``sum_x min(p(x), q(x)) = 1 - TV(p, q)`` per row."""
    xp = array_namespace(P, Q)
    return xp.sum(xp.minimum(P, Q), axis=1)


def _greedy_rest(xp, Q, top):
    """Membership of ``top [B, k-1]`` and ``q'``: ``q`` off ``top``, renormalised (zero rows stay zero)."""
    vocab = xp.arange(Q.shape[1], device=device(Q))[None, :]
    in_top = vocab < 0 if top.shape[1] == 0 else vocab == top[:, :1]
    for j in range(1, top.shape[1]):
        in_top = in_top | (vocab == top[:, j:j + 1])
    rest = xp.where(in_top, 0.0, Q)
    s = xp.sum(rest, axis=1, keepdims=True)
    return in_top, rest / xp.where(s > 0, s, 1.0)           # s = 0 only where rest = 0


def greedy_plan(P, Q, D):
    """Greedy drafts (Hu et al., ICLR 2025; docs/theory/membership_ot.md): ``D`` = the top-(k-1)
    tokens ``T`` of ``q`` then ``X ~ q'``. Only ``X`` has a coin, ``min(1, p(X) / q'(X))`` (the
    others get ``num = 0``); residual ``(p - q')^+`` over the whole vocabulary (``p - q'`` returned)."""
    xp = array_namespace(P, Q, D)
    _, rest = _greedy_rest(xp, Q, D[:, :-1])
    x = D[:, -1:]
    zeros = xp.zeros((D.shape[0], D.shape[1] - 1), dtype=P.dtype, device=device(P))
    num = xp.concat([zeros, xp.take_along_axis(P, x, axis=1)], axis=1)
    den = xp.concat([zeros + 1.0, xp.take_along_axis(rest, x, axis=1)], axis=1)
    return D, num, den, P - rest


def greedy_acceptance(P, Q, top):
    """``p(T) + sum_{x not in T} min(q'(x), p(x))`` per row, for the top tokens ``top [B, k-1]``
    (the deterministic part of the greedy draft law, computed by the caller)."""
    xp = array_namespace(P, Q, top)
    _, rest = _greedy_rest(xp, Q, top)                        # rest = 0 on T
    return xp.sum(xp.take_along_axis(P, top, axis=1), axis=1) + xp.sum(xp.minimum(P, rest), axis=1)


def _hub_terms(xp, P, Q):
    """SpecHub's quantities (``ot_coupling.spechub`` states them): hub ``a = argmax q`` (lowest
    index among ties), ``q_ai``, ``p'``, ``S_ia``, ``S_ai``, ``p'(a)``, ``p''(a)`` and ``p''`` off the hub."""
    a = xp.argmax(Q, axis=1)
    hub = xp.arange(Q.shape[1], device=device(Q))[None, :] == a[:, None]
    qa, pa = take_at(xp, Q, a), take_at(xp, P, a)
    # 1 - q(a) summed over the other tokens directly (no cancellation when q(a) is near 1)
    rest = xp.sum(xp.where(hub, 0.0, Q), axis=1)
    q_ai = xp.where(hub, 0.0, (qa / xp.where(rest > 0, rest, 1.0))[:, None] * Q)
    p1 = xp.where(hub, 0.0, positive(xp, P - Q))
    s_ia = xp.sum(xp.where(hub, 0.0, positive(xp, Q - P)), axis=1)
    s_ai = xp.sum(positive(xp, q_ai - p1), axis=1)
    p1_a = positive(xp, pa - s_ai)
    return hub, a, pa, q_ai, p1, s_ia, s_ai, p1_a, positive(xp, p1_a - s_ia), positive(xp, p1 - q_ai)


def hub_plan(P, Q, D):
    """SpecHub (Sun et al., EMNLP 2024) for hub pairs ``D [B, 2]`` (validated by the caller):
    candidates ``(x, a)`` in the order tried, pair ``(i, a)``: ``p(i)/q(i)`` then
    ``p'(a)/S_ia``; pair ``(a, j)``: ``p'(j)/q_ai(j)`` then ``p(a)/S_ai``; residual ``p''``."""
    xp = array_namespace(P, Q, D)
    hub, a, pa, q_ai, p1, s_ia, s_ai, p1_a, p2_a, p2 = _hub_terms(xp, P, Q)
    first_is_other = D[:, 1] == a                 # pair (i, a); else pair (a, j), j tried first
    x = xp.where(first_is_other, D[:, 0], D[:, 1])
    num_x = xp.where(first_is_other, take_at(xp, P, x), take_at(xp, p1, x))
    den_x = xp.where(first_is_other, take_at(xp, Q, x), take_at(xp, q_ai, x))
    num = xp.stack([num_x, xp.where(first_is_other, p1_a, pa)], axis=1)
    den = xp.stack([den_x, xp.where(first_is_other, s_ia, s_ai)], axis=1)
    return xp.stack([x, a], axis=1), num, den, xp.where(hub, p2_a[:, None], p2)


def hub_acceptance(P, Q):
    """``1 - sum_y p''(y)`` per row: SpecHub's acceptance, the optimum for the hub draft law."""
    xp = array_namespace(P, Q)
    *_, p2_a, p2 = _hub_terms(xp, P, Q)
    return 1.0 - (xp.sum(p2, axis=1) + p2_a)
