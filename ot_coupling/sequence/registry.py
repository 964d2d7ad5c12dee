"""Registry of sequence verifiers: name -> class, lazy, extended by entry points.

Upper layers join through ``[project.entry-points."specot.sequence_verifiers"]`` (the exact
sequence-level optimum ``"optimal_lp"`` lives in :mod:`solvers`).
"""

from __future__ import annotations

from ..registry import Registry
from .base import SequenceVerifier

SEQUENCE_VERIFIERS: Registry = Registry(
    "sequence verifier",
    {
        "bv": "ot_coupling.sequence.verifiers:BlockVerifier",
        "spectr": "ot_coupling.sequence.verifiers:SpecTrVerifier",
        "specinfer": "ot_coupling.sequence.verifiers:SpecInferVerifier",
        "gbv": "ot_coupling.sequence.rules:GBVVerifier",
        "traversal": "ot_coupling.sequence.traversal:TraversalVerifier",
        "blend": "ot_coupling.sequence.rules:BlendVerifier",
    },
    group="specot.sequence_verifiers",
)


def get_sequence_verifier(name: str, **kwargs) -> SequenceVerifier:
    """Instantiate the sequence verifier registered as ``name`` (keyword arguments go to its constructor).

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    """
    return SEQUENCE_VERIFIERS.create(name, **kwargs)
