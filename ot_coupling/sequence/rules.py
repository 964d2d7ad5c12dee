"""Select-then-block-verify verifiers built on the lexicographic-maximum rules of :mod:`.lexmax`."""

from __future__ import annotations

from .base import SelectThenBlockVerify
from .lexmax import GBVRule, LookaheadRule


class GBVVerifier(SelectThenBlockVerify):
    """Greedy multi-path block verification (Thomas & Pal, arXiv 2602.16961, 2026): the
    lexicographic maximum of the ``k`` paths under the ``p/q`` order, block-verified against its
    order-statistic law (docs/theory/sequence_verifiers.md)."""

    name = "gbv"

    def __init__(self):
        super().__init__(GBVRule())


class LookaheadVerifier(SelectThenBlockVerify):
    """This project's multi-path rule (docs/theory/sequence_verifiers.md#the-look-ahead-rule)."""

    name = "lookahead"

    def __init__(self, **kwargs):
        super().__init__(LookaheadRule(**kwargs))
