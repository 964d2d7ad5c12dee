"""Branch laws of a token selector: the joint law of the output and the number of surviving drafts.

For a selector verifying ``kk`` drafts at one node of the SpecTr tree, the exact DP of
:mod:`markov.exact` needs ``W[s, y, j] = P(Y = y, #{i : X_i = y} = j)`` for every state ``s``:
``j = 0`` means ``y`` came from the residual (a rejection); ``j >= 1`` means ``y`` was accepted and
``j`` drafts survive to the next depth. ``sum_j W[s, :, j] = p_s`` for a valid selector.

Closed forms (vectorised over states):

* speculative sampling and recursive rejection with i.i.d. drafts (SpecInfer;
  docs/theory/token_verifiers.md#recursive-rejection-with-replacement): the ``i``-th draft is accepted with probability ``min(1, r_i(x) / q(x))`` where the residual
  chain ``r_1 = p, r_{i+1} = (r_i - q)^+ / TV(r_i, q)`` does not depend on the draws, so the count
  of ``y`` among the drafts has a product generating function; a rejected token has ``r_i < q``,
  hence zero residual afterwards, so a residual output is never a drafted token;
* K-SEQ at ``rho*`` (SpecTr; docs/theory/token_verifiers.md#k-seq): the same scan with the constant coin
  ``min(1, p / (rho* q))``;
* naive sampling (docs/theory/token_verifiers.md#naive-sampling): ``Y ~ p`` independent of the ``Binomial(kk, q(y))`` count.

Any other selector: exact enumeration of draft tuples with ``selector.conditional_law`` (small V).
"""

from __future__ import annotations

import numpy as np
from scipy.special import comb

from ot_coupling.base import Selector
from ot_coupling.draft_laws import get_draft_law
from ot_coupling.kseq import kseq_rho_batch
from ot_coupling.rejection import ratio_coin

_RRS_NAMES = ("speculative", "rrs")


def rrs_residuals(P: np.ndarray, Q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Residual chain of recursive rejection sampling, vectorised over rows.

    Returns ``(R [n+1, S, V], beta [n, S])`` with ``R[0] = P``, ``R[i+1] = (R[i] - Q)^+ / TV`` and
    ``beta[i] = sum_x min(R[i], Q)`` (a row whose residual vanishes stays zero).
    """
    R = np.empty((n + 1,) + P.shape)
    beta = np.empty((n,) + P.shape[:-1])
    R[0] = P
    for i in range(n):
        beta[i] = np.minimum(R[i], Q).sum(axis=-1)
        nxt = np.maximum(R[i] - Q, 0.0)
        tot = nxt.sum(axis=-1, keepdims=True)
        R[i + 1] = np.divide(nxt, tot, out=np.zeros_like(nxt), where=tot > 1e-300)
    return R, beta


def _scan_branch(P: np.ndarray, Q: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Branch law of a sequential scan over ``kk`` i.i.d. drafts whose ``i``-th coin for token ``x``
    is ``acc[i, s, x]`` (independent of the draws), when a residual output is never a drafted token:
    ``W[y, j] = sum_i u_i(y) [z^(j-1)] prod_{m<i} (o_m + v_m z) (1 - q(y) + q(y) z)^(kk-1-i)`` with
    ``u_i = q a_i``, ``v_i = q (1 - a_i)``, ``o_i = 1 - sum_x q a_i - v_i``; ``W[y, 0] = p(y) - sum_j W[y, j]``."""
    kk = acc.shape[0]
    S, V = P.shape
    u = Q * acc                      # draft i accepted and equal to y
    v = Q * (1.0 - acc)              # draft i rejected and equal to y
    o = (1.0 - u.sum(axis=2))[:, :, None] - v  # draft i rejected and not y
    W = np.zeros((S, V, kk + 1))
    pre = np.zeros((kk + 1, S, V))   # coefficients in z (count of y) of prod_{m<i} (o_m + v_m z)
    pre[0] = 1.0
    for i in range(kk):
        post = np.stack([comb(kk - 1 - i, b) * Q**b * (1.0 - Q) ** (kk - 1 - i - b) for b in range(kk - i)])
        for a in range(i + 1):
            for b in range(kk - i):
                W[:, :, a + b + 1] += u[i] * pre[a] * post[b]
        nxt = np.zeros_like(pre)
        nxt[: i + 2] += pre[: i + 2] * o[i]
        nxt[1 : i + 2] += pre[: i + 1] * v[i]
        pre = nxt
    W[:, :, 0] = np.maximum(P - W[:, :, 1:].sum(axis=2), 0.0)
    return W


def _rrs_branch(P: np.ndarray, Q: np.ndarray, kk: int) -> np.ndarray:
    R, _ = rrs_residuals(P, Q, kk)
    return _scan_branch(P, Q, ratio_coin(R[:kk], Q))


def _kseq_branch(P: np.ndarray, Q: np.ndarray, kk: int) -> np.ndarray:
    """K-SEQ at ``rho*`` (docs/theory/token_verifiers.md#k-seq): coin ``min(1, p / (rho* q))`` for every draft; its
    residual ``(p - rho* q)^+`` vanishes on every token whose coin is below 1."""
    rho = kseq_rho_batch(P, Q, kk)
    return _scan_branch(P, Q, np.broadcast_to(ratio_coin(P / rho[:, None], Q), (kk,) + P.shape))


def _naive_branch(P: np.ndarray, Q: np.ndarray, kk: int) -> np.ndarray:
    j = np.arange(kk + 1)
    binom = comb(kk, j) * Q[..., None] ** j * (1.0 - Q[..., None]) ** (kk - j)
    return P[..., None] * binom


def _enumerated_branch(selector: Selector, P: np.ndarray, Q: np.ndarray, kk: int, law: str) -> np.ndarray:
    S, V = P.shape
    W = np.zeros((S, V, kk + 1))
    draft_law = get_draft_law(law)
    for s in range(S):
        tuples, probs = draft_law.enumerate(Q[s], kk)
        for t, w in zip(tuples, probs):
            K = selector.conditional_law(P[s], Q[s], t)
            counts = np.bincount(t, minlength=V)
            W[s, np.arange(V), counts] += w * K
    return W


def has_closed_form(selector: Selector, kk: int, law: str | None = None) -> bool:
    """Whether :func:`branch_law` has a closed form (no enumeration) for this selector and law."""
    law = selector.draft_law if law is None else law
    if not (law == "iid" or kk == 1):
        return False
    if selector.name == "kseq":
        return getattr(selector, "rho", None) is None  # the closed form needs rho = rho*
    return selector.name in _RRS_NAMES + ("naive",)


def branch_law(selector: Selector, P: np.ndarray, Q: np.ndarray, kk: int, law: str | None = None,
               method: str = "auto") -> np.ndarray:
    """``W [S, V, kk+1]``: joint law of the output and the survivor count, for every row of ``P, Q``.

    ``law`` is the draft law of the ``kk`` drafts (default: the selector's own). ``method``:
    ``"auto"`` (closed form when one is known for the selector and law, else enumeration) or
    ``"enumerate"`` (always enumerate; small ``V`` and ``kk`` only).
    """
    law = selector.draft_law if law is None else law
    if method not in ("auto", "enumerate"):
        raise ValueError(f"method must be 'auto' or 'enumerate', got {method!r}")
    P = np.atleast_2d(P)
    Q = np.atleast_2d(Q)
    if method == "auto" and has_closed_form(selector, kk, law):
        fn = {"naive": _naive_branch, "kseq": _kseq_branch}.get(selector.name, _rrs_branch)
        return fn(P, Q, kk)
    return _enumerated_branch(selector, P, Q, kk, law)
