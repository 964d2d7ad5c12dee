r"""Inclusion probabilities ``P(x in S)`` of the draft laws, batched, for any array-API backend:
the acceptance of naive ("target-only") verification is ``sum_x p(x) P(x in S)``
(docs/theory/token_verifiers.md).

* i.i.d.: ``1 - (1 - q(x))^k`` (``-expm1(k log1p(-q))``, no cancellation);
* SpecHub's hub pairs (k = 2): 1 at the hub ``a = argmax q`` (lowest index among ties), else
  ``q(x) / q(V \ a)`` with the denominator summed directly (``1 - q(a)`` cancels when ``q(a)``
  is near 1; the former torch copy used it);
* greedy drafts: 1 on the top-(k-1) tokens (stable order, ties to the lower index), else ``q``
  restricted to the other tokens and renormalised;
* without replacement: the exponential-race integral of :func:`ot_coupling.race.inclusion_wor`
  (prefix/suffix DP, ``O(V k^2 n_nodes)`` time, any ``V``), run on the host row by row for every
  backend (it is a sequential recursion over tokens). It replaced torch's ``O(B V^2)`` pairwise
  race integral, which refused ``B V^2 > 2e6``.

Inputs are validated rows (support checks are the callers').
"""

from __future__ import annotations

import numpy as np

from ._array import array_namespace, device, one_minus_power

LAWS = ("iid", "without_replacement", "hub", "greedy")


def inclusion_probabilities(Q, k: int, law: str):
    """``P(x in S)`` per token and row (``[B, V]``, same backend and dtype as ``Q``)."""
    xp = array_namespace(Q)
    B, V = Q.shape
    vocab = xp.arange(V, device=device(Q))[None, :]
    if law == "iid":
        return one_minus_power(xp, Q, k)
    if law == "hub":
        hub = xp.argmax(Q, axis=1)[:, None]
        is_hub = vocab == hub
        rest = xp.sum(xp.where(is_hub, 0.0, Q), axis=1, keepdims=True)
        return xp.where(is_hub, 1.0, Q / xp.where(rest > 0, rest, 1.0))
    if law == "greedy":
        order = xp.argsort(-Q, axis=1, stable=True)[:, : k - 1]
        in_top = xp.any(vocab[:, :, None] == order[:, None, :], axis=2) if k > 1 else vocab < 0
        rest = xp.where(in_top, 0.0, Q)
        total = xp.sum(rest, axis=1, keepdims=True)
        return xp.where(in_top, 1.0, rest / xp.where(total > 0, total, 1.0))
    if law == "without_replacement":
        from ot_coupling.race import inclusion_wor

        host = np.asarray(Q.cpu() if hasattr(Q, "cpu") else Q, dtype=np.float64)
        out = np.zeros_like(host)
        for b in range(B):
            out[b] = inclusion_wor(host[b], k)
        return xp.asarray(out, dtype=Q.dtype, device=device(Q))
    raise ValueError(f"no inclusion kernel for draft law {law!r}; known: {', '.join(LAWS)}")
