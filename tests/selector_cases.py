"""Selector configurations shared by the selector test modules."""

from __future__ import annotations

import numpy as np

from ot_coupling import get_selector

#: (label, registry name, constructor kwargs)
CONFIGS = [
    ("speculative", "speculative", {}),
    ("naive", "naive", {}),
    ("naive_wor", "naive", {"drafts": "without_replacement"}),
    ("naive_hub", "naive", {"drafts": "hub"}),
    ("naive_greedy", "naive", {"drafts": "greedy"}),
    ("kseq", "kseq", {}),
    ("kseq_bisect", "kseq", {"method": "bisect"}),
    ("rrs", "rrs", {}),
    ("rrs_wor", "rrs_wor", {}),
    ("spechub", "spechub", {}),
    ("greedy", "greedy", {}),
    ("gumbel", "gumbel", {}),
]


def make(label: str):
    name, kwargs = next((n, kw) for lab, n, kw in CONFIGS if lab == label)
    return get_selector(name, **kwargs)


def supported_ks(sel, q: np.ndarray, k_max: int = 3) -> list[int]:
    """The k in 1..k_max the selector's draft law allows for this q."""
    support = int((q > 0).sum())
    if sel.draft_law == "hub":
        return [2] if support >= 2 else []
    ks = range(1, (sel.max_k or k_max) + 1)
    if sel.draft_law in ("without_replacement", "greedy"):
        ks = [k for k in ks if k <= support]
    return list(ks)
