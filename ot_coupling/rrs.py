"""Recursive rejection sampling (RRS): SpecInfer's multi-step speculative sampling (Miao et al.,
ASPLOS 2024, Algorithm 2) with i.i.d. drafts, and its without-replacement variant (RSD, Jeon et al.
arXiv 2402.14160; Sequoia; MCSD), docs/theory/token_verifiers.md.

With ``p_1 = p, q_1 = q``, draft ``X_i`` is accepted with probability
``min(1, p_i(X_i) / q_i(X_i))``; on rejection ``p_{i+1} = norm((p_i - q_i)^+)`` and, without
replacement, ``q_{i+1} = norm(q_i`` with ``X_i`` removed``)`` (i.i.d.: ``q_i = q``). If all ``k``
drafts are rejected the output is ``Y ~ p_{k+1}``.

One-parameter form (our derivation, checked by enumeration in tests/test_selectors_exact.py). Let
``Z(t) = sum_x (p(x) - t q(x))^+`` (convex, decreasing, ``Z(0) = 1``). By induction
``p_i = (p - t_i q)^+ / Z(t_i)`` on the unseen tokens with ``t_1 = 0`` and
``t_{i+1} = t_i + Z(t_i) / (1 - q(X_1..X_{i-1}))``: on tokens with ``p > t_i q``,
``p_i - q_i = (p - t_{i+1} q) / Z(t_i)``, and a rejected token has ``p < t_{i+1} q`` so it leaves the
support for good (hence coin acceptance = membership acceptance). The step-``i`` acceptance is
``1 - Z(t_{i+1}) / Z(t_i)`` (from ``min(a^+, b) = a^+ - (a - b)^+``), so the rejections telescope:

* i.i.d.: ``t_{i+1} = t_i + Z(t_i)`` and ``alpha = 1 - Z(t_{k+1})``; this equals SpecInfer's
  ``1 - prod_i (1 - sum_x min(p_i, q))`` (docs/theory/token_verifiers.md#recursive-rejection-with-replacement).
* without replacement: ``alpha = 1 - E[Z(t_{k+1})]``, an expectation over the rejected tokens
  ``X_1..X_{k-1}`` (``X_k`` sums out). :func:`rrs_wor_acceptance` computes it exactly by recursion
  over rejection histories with the last level vectorised: ``O(V log V)`` for ``k <= 2`` and
  ``O(R^{k-2} V log V)`` in general (``R`` = tokens with ``q > p`` that can be rejected); a budget
  guards against exponential blow-up. The array work is the shared kernel layer
  (:mod:`ot_coupling.kernels.rrs`), the same code as the torch selectors'.
"""

from __future__ import annotations

import numpy as np

from .kernels.rrs import MAX_PATHS, rrs_plan
from .kernels.rrs import rrs_acceptance as kernel_rrs_acceptance
from .kernels.rrs import rrs_wor_acceptance as kernel_rrs_wor_acceptance
from .rejection import KernelRejection
from .validation import validate_k, validate_pair

#: most rejection histories :func:`rrs_wor_acceptance` will enumerate before refusing (the
#: kernel layer's single budget, shared with the torch selector).
MAX_HISTORIES = MAX_PATHS


def rrs_acceptance(p, q, k: int) -> float:
    """Exact RRS acceptance with i.i.d. drafts, ``1 - Z(t_{k+1})``."""
    p, q = validate_pair(p, q)
    k = validate_k(k)
    return float(kernel_rrs_acceptance(p[None], q[None], k)[0])


def rrs_wor_acceptance(p, q, k: int, max_histories: int = MAX_HISTORIES) -> float:
    """Exact RRS-without-replacement acceptance ``1 - E[Z(t_{k+1})]`` (see the module docstring;
    the shared kernel :func:`ot_coupling.kernels.rrs.rrs_wor_acceptance`).

    Raises ``ValueError`` when more than ``max_histories`` rejection histories would be needed.
    """
    p, q = validate_pair(p, q)
    k = validate_k(k)
    return float(kernel_rrs_wor_acceptance(p[None], q[None], k, max_histories)[0])


def _rrs_iid_plan(P, Q, D):
    """The shared kernel :func:`ot_coupling.kernels.rrs.rrs_plan` with i.i.d. drafts."""
    return (D, *rrs_plan(P, Q, D, False))


def _rrs_wor_plan(P, Q, D):
    """The shared kernel :func:`ot_coupling.kernels.rrs.rrs_plan` without replacement."""
    return (D, *rrs_plan(P, Q, D, True))


class RecursiveRejection(KernelRejection):
    """SpecInfer RRS with i.i.d. drafts (docs/theory/token_verifiers.md#recursive-rejection-with-replacement)."""

    name = "rrs"
    draft_law = "iid"
    kernel = staticmethod(_rrs_iid_plan)

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        return rrs_acceptance(p, q, k)


class RecursiveRejectionWOR(RecursiveRejection):
    """RRS for drafts without replacement: ``q`` is renormalised over unseen tokens (docs/theory/token_verifiers.md#recursive-rejection-without-replacement)."""

    name = "rrs_wor"
    draft_law = "without_replacement"
    kernel = staticmethod(_rrs_wor_plan)

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        return rrs_wor_acceptance(p, q, k)
