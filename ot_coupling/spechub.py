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
Plan and acceptance: the shared kernels :mod:`ot_coupling.kernels.plans` (also run by torch).
"""

from __future__ import annotations

from .draft_laws import hub_token
from .kernels.plans import hub_acceptance, hub_plan
from .rejection import KernelRejection


class SpecHub(KernelRejection):
    """SpecHub verification of hub-pair drafts (k = 2)."""

    name = "spechub"
    draft_law = "hub"
    max_k = 2
    kernel = staticmethod(hub_plan)

    def acceptance(self, p, q, k: int = 2) -> float:
        p, q, k = self._check(p, q, k)
        self.draft_tuples(q, k)  # validates k == 2 and |supp q| >= 2
        return float(hub_acceptance(p[None], q[None])[0])

    def plan(self, p, q, drafts):
        a = hub_token(q)
        if drafts.size != 2 or a not in drafts or drafts[0] == drafts[1]:
            raise ValueError(f"drafts must be a hub pair (i, a) or (a, j) with hub a={a}, got {drafts.tolist()}")
        return super().plan(p, q, drafts)
