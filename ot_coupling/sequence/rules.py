"""Select-then-block-verify verifiers built on the lexicographic-maximum rules of :mod:`.lexmax`."""

from __future__ import annotations

from .base import SelectThenBlockVerify
from .lexmax import BlendRule, GBVRule


class GBVVerifier(SelectThenBlockVerify):
    """Greedy multi-path block verification (Thomas & Pal, arXiv 2602.16961, 2026): the
    lexicographic maximum of the ``k`` paths under the ``p/q`` order, block-verified against its
    order-statistic law (docs/theory/sequence_verifiers.md)."""

    name = "gbv"

    def __init__(self):
        super().__init__(GBVRule())


class BlendVerifier(SelectThenBlockVerify):
    """This project's multi-path rule: GBV's path with probability ``lam``, else path 1, verified
    against the blended law (docs/theory/sequence_verifiers.md#the-blend-rule)."""

    name = "blend"

    def __init__(self, lam: float | None = None):
        super().__init__(BlendRule(lam))
