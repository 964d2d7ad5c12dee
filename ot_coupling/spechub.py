"""SpecHub (Sun, Zhou, Chen, Sun; EMNLP 2024; arXiv 2411.05289), k = 2, docs/theory/token_verifiers.md#spechub.

Draft law ``"hub"``: ``a = argmax q``; the first draft ``i ~ q``; the pair is ``(i, a)`` if
``i != a``, else ``(a, j)`` with ``j ~ q(. | j != a)``; so ``Q(i, a) = q(i)`` and
``Q(a, j) = q_ai(j) = q(a) q(j) / (1 - q(a))``. Verification (official code:
``Sequoia/Tree/MyTree.py::accept_step`` in MasterGodzilla/Speculative_decoding_OT), for ``j != a``::

    p'(j) = (p(j) - q(j))^+            q_ia_res(j) = (q(j) - p(j))^+
    q_ai_res(j) = (q_ai(j) - p'(j))^+   p''(j) = (p'(j) - q_ai(j))^+
    p'(a) = (p(a) - sum q_ai_res)^+     p''(a) = (p'(a) - sum q_ia_res)^+
    pair (i, a): accept i w.p. min(1, p(i)/q(i)); else a w.p. min(1, p'(a) / sum q_ia_res)
    pair (a, j): accept j w.p. min(1, p'(j)/q_ai(j)); else a w.p. min(1, p(a) / sum q_ai_res)
    all rejected: Y ~ norm(p'')

Validity: token ``j != a`` is output with mass ``min(q, p)(j) + min(q_ai, p')(j) = p(j) - p''(j)``;
the hub collects ``min(p(a), sum q_ai_res) + min(p'(a), sum q_ia_res) = p(a) - p''(a)``; the
rejected mass ``1 - alpha = sum p''`` is refilled by the residual. A token with ``p'' > 0`` is
accepted with certainty whenever drafted, so ``alpha = 1 - sum p''`` is also the membership
acceptance, and it equals the optimum for the hub draft law (docs/theory/token_verifiers.md#spechub). A zero
residual (``sum p'' = 0``) is reached with probability 0 and falls back to ``p`` instead of NaN.
"""

from __future__ import annotations

import numpy as np

from .draft_laws import hub_token
from .rejection import SequentialRejection, normalise_rows, ratio_coin


def _hub_terms(P: np.ndarray, Q: np.ndarray) -> dict[str, np.ndarray]:
    """The quantities of the module docstring, row-wise (``p2`` = the unnormalised residual ``p''``)."""
    rows = np.arange(P.shape[0])
    a = np.argmax(Q, axis=1)  # = draft_laws.hub_token per row (lowest index among ties)
    other = np.arange(Q.shape[1])[None, :] != a[:, None]
    qa, pa = Q[rows, a], P[rows, a]
    # 1 - q(a) summed over the other tokens directly (no cancellation when q(a) is near 1)
    q_ai = np.where(other, qa[:, None] * Q / np.where(other, Q, 0.0).sum(axis=1, keepdims=True), 0.0)
    p1 = np.where(other, np.maximum(P - Q, 0.0), 0.0)
    ia = np.where(other, np.maximum(Q - P, 0.0), 0.0).sum(axis=1)
    ai = np.maximum(q_ai - p1, 0.0).sum(axis=1)
    p2 = np.maximum(p1 - q_ai, 0.0)
    p1_a = np.maximum(pa - ai, 0.0)
    p2[rows, a] = np.maximum(p1_a - ia, 0.0)
    return {"a": a, "pa": pa, "q_ai": q_ai, "p1": p1, "ia": ia, "ai": ai, "p1_a": p1_a, "p2": p2}


def hub_plan_batch(P: np.ndarray, Q: np.ndarray, D: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SpecHub plan for hub pairs ``D [B, 2]``: candidates in the order tried, coins, residual law."""
    h = _hub_terms(P, Q)
    rows, a = np.arange(P.shape[0]), h["a"]
    first_is_other = D[:, 1] == a  # pair (i, a); else pair (a, j), where j is tried first
    x = np.where(first_is_other, D[:, 0], D[:, 1])
    coin_x = np.where(first_is_other, ratio_coin(P[rows, x], Q[rows, x]),
                      ratio_coin(h["p1"][rows, x], h["q_ai"][rows, x]))
    coin_a = np.where(first_is_other, ratio_coin(h["p1_a"], h["ia"]), ratio_coin(h["pa"], h["ai"]))
    return np.stack([x, a], axis=1), np.stack([coin_x, coin_a], axis=1), normalise_rows(h["p2"], P)


class SpecHub(SequentialRejection):
    """SpecHub verification of hub-pair drafts (k = 2)."""

    name = "spechub"
    draft_law = "hub"
    max_k = 2

    def acceptance(self, p, q, k: int = 2) -> float:
        p, q, k = self._check(p, q, k)
        self.draft_tuples(q, k)  # validates k == 2 and |supp q| >= 2
        return float(1.0 - _hub_terms(p[None], q[None])["p2"].sum())

    def plan(self, p, q, drafts):
        a = hub_token(q)
        if drafts.size != 2 or a not in drafts or drafts[0] == drafts[1]:
            raise ValueError(f"drafts must be a hub pair (i, a) or (a, j) with hub a={a}, got {drafts.tolist()}")
        cand, coins, residual = hub_plan_batch(p[None], q[None], drafts[None])
        return cand[0], coins[0], residual[0]

    def plan_batch(self, P, Q, D):
        return hub_plan_batch(P, Q, D)
