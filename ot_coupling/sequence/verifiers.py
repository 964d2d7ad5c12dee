"""First-class sequence verifiers: block verification of one path and the token-level trees.

* :class:`BlockVerifier` (``"bv"``) -- block verification (Sun, Mendlovic, Leviathan, Aharoni, Ro,
  Beirami, Suresh, ICLR 2025, Alg. 2) of the first draft path only; optimal for one path.
* :class:`TreeVerifier` (``"spectr"``: K-SEQ per depth, Sun et al., NeurIPS 2023; ``"specinfer"``:
  recursive rejection sampling with replacement per depth, duplicates kept, Miao et al., ASPLOS
  2024) -- walk the draft tree depth by depth, handing the surviving paths' next tokens to a
  token-level selector (:func:`ot_coupling.sequence.verify_tree`).

See docs/theory/sequence_verifiers.md for the losslessness arguments.
"""

from __future__ import annotations

import numpy as np

from ..registry import get_selector
from ..validation import as_generator
from .base import SelectionRule, SelectThenBlockVerify, SequenceVerifier
from .core import _check_drafts_2d, _dist, tree_conditional_law, verify_tree


class FirstPathRule(SelectionRule):
    """Always select path 1: the selected path is a plain draft path (law ``q``)."""

    name = "bv"
    closed_form = True

    def selection_probs(self, target, draft, drafts, prefix=()):
        out = np.zeros(np.asarray(drafts).shape[0])
        out[0] = 1.0
        return out

    def selected_law(self, target, draft, k, L, prefix=()):
        prefix = tuple(prefix)
        return lambda u: draft(prefix + tuple(u))


class BlockVerifier(SelectThenBlockVerify):
    """Block verification of the first draft path (``"bv"``); the other ``k - 1`` paths are ignored."""

    name = "bv"

    def __init__(self):
        super().__init__(FirstPathRule())


class TreeVerifier(SequenceVerifier):
    """Token-level tree verification: at each depth the surviving paths' next tokens go to the
    token-level ``selector`` (``"kseq"`` for SpecTr, ``"rrs"`` for SpecInfer)."""

    def __init__(self, selector: str = "kseq"):
        self.selector = get_selector(selector)
        if self.selector.draft_law != "iid":
            raise ValueError(f"selector must take i.i.d. drafts, {selector!r} uses {self.selector.draft_law!r}")
        self.name = {"kseq": "spectr", "rrs": "specinfer"}.get(selector, f"tree_{selector}")

    def verify(self, target, draft, drafts, rng=None, prefix=()):
        tokens, _ = verify_tree(target, draft, drafts, self.selector, as_generator(rng), tuple(prefix))
        return tuple(int(v) for v in tokens)

    def conditional_law(self, target, draft, drafts, prefix=()):
        prefix = tuple(prefix)
        d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
        return tree_conditional_law(target, draft, d, self.selector, prefix)


    def output_law(self, target, draft, k, L, prefix=()):
        plain, self.selector = self.selector, _CachedSelector(self.selector)
        try:
            return super().output_law(target, draft, k, L, prefix)
        finally:
            self.selector = plain


class _CachedSelector:
    """Memoises a token-level selector's conditional law (enumeration revisits the same nodes)."""

    def __init__(self, selector):
        self.selector, self.draft_law, self.name, self.cache = selector, selector.draft_law, selector.name, {}

    def conditional_law(self, p, q, drafts):
        key = (p.tobytes(), q.tobytes(), np.asarray(drafts).tobytes())
        if key not in self.cache:
            self.cache[key] = self.selector.conditional_law(p, q, drafts)
        return self.cache[key]


class SpecTrVerifier(TreeVerifier):
    """SpecTr's draft tree with K-SEQ at every depth (Sun et al., NeurIPS 2023)."""

    def __init__(self):
        super().__init__("kseq")


class SpecInferVerifier(TreeVerifier):
    """SpecInfer's tree with recursive rejection sampling with replacement (duplicates kept)."""

    def __init__(self):
        super().__init__("rrs")
