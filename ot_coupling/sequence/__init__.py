"""Sequence-level verification: one round over ``k`` draft paths of length ``L``.

:mod:`.core` holds the primitives (SpecTr's draft tree walk, block verification for any draft law
given by its conditionals, exact law enumerators, target laws); :mod:`.base` the interface
(:class:`SequenceVerifier`, :class:`SelectionRule`, :class:`SelectThenBlockVerify`);
:mod:`.registry` the name registry ``SEQUENCE_VERIFIERS``. See docs/theory/sequence_verifiers.md.
"""

from .base import MAX_ENUMERATION, SelectionRule, SelectThenBlockVerify, SequenceVerifier, iid_draft_tuples
from .core import (
    Conditional,
    SequenceLaw,
    block_conditional_law,
    block_output_law,
    complete_law,
    draft_tree,
    target_law,
    tree_conditional_law,
    tree_output_law,
    verify_block,
    verify_tree,
)
from .registry import SEQUENCE_VERIFIERS, get_sequence_verifier

__all__ = [
    "MAX_ENUMERATION",
    "SEQUENCE_VERIFIERS",
    "Conditional",
    "SelectThenBlockVerify",
    "SelectionRule",
    "SequenceLaw",
    "SequenceVerifier",
    "block_conditional_law",
    "block_output_law",
    "complete_law",
    "draft_tree",
    "get_sequence_verifier",
    "iid_draft_tuples",
    "target_law",
    "tree_conditional_law",
    "tree_output_law",
    "verify_block",
    "verify_tree",
]
