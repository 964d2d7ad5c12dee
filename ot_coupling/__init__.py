"""ot_coupling: numpy reference of every per-token speculative-decoding verification algorithm.

Speculative decoding as optimal transport with membership cost (Sun et al., SpecTr, 2023): a
verifier is a coupling of the draft tuple ``X_1..X_k ~ Q(q)`` and the output ``Y ~ p`` (exactly),
scored by its acceptance ``P(Y in {X_1..X_k})``. Here ``p`` is the target and ``q`` the draft.
"""

from .base import Selector
from .draft_laws import DRAFT_LAWS, DraftLaw, enumerate_drafts, get_draft_law, set_law
from .registry import SELECTORS, get_selector
from .sequence import (
    SEQUENCE_VERIFIERS,
    SelectionRule,
    SelectThenBlockVerify,
    SequenceVerifier,
    get_sequence_verifier,
    verify_block,
    verify_tree,
)
from .validation import (
    as_generator,
    tv_distance,
    validate_distribution,
    validate_drafts,
    validate_k,
    validate_pair,
)

__all__ = [
    "DRAFT_LAWS",
    "SELECTORS",
    "SEQUENCE_VERIFIERS",
    "SelectThenBlockVerify",
    "SelectionRule",
    "SequenceVerifier",
    "DraftLaw",
    "Selector",
    "as_generator",
    "enumerate_drafts",
    "get_draft_law",
    "get_selector",
    "get_sequence_verifier",
    "set_law",
    "tv_distance",
    "validate_distribution",
    "validate_drafts",
    "validate_k",
    "validate_pair",
    "verify_block",
    "verify_tree",
]
