"""The selector interface shared by every per-token verification algorithm.

A *selector* (a draft-verification rule) is a Markov kernel ``K(y | x_1..x_k)`` from the draft
tuple to the output token. It is *valid* (lossless) when ``sum_t Q(t) K(. | t) = p`` for the draft
law ``Q`` it is used with, and its *acceptance* is ``P(Y in {X_1..X_k})``, the objective of
optimal transport with membership cost (Sun et al., SpecTr, NeurIPS 2023, eq. (OTM)).

Subclasses implement

* :meth:`Selector.acceptance` -- the exact acceptance (closed form, no sampling);
* :meth:`Selector.verify` -- the randomised algorithm itself, given drafts and a generator;
* :meth:`Selector.conditional_law` -- ``K(. | drafts)`` with the algorithm's coins integrated out
  (this is what the exact tier of the tests enumerates).

Everything else (drafting, sampling, the exact output law by enumeration) is derived here.
``accepted`` always means membership: the output token is one of the drafts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from math import perm

import numpy as np

from .draft_laws import get_draft_law
from .validation import SeedLike, as_generator, validate_drafts, validate_k, validate_pair


#: largest number of draft tuples :meth:`Selector.enumerate` visits (refused before any work above it)
MAX_ENUMERATION = 1_000_000

class Selector(ABC):
    """Base class of a k-draft verification rule (numpy reference implementation)."""

    #: registry name, e.g. ``"kseq"``.
    name: str = ""
    #: name of the draft law in :mod:`ot_coupling.draft_laws` the rule is valid for.
    draft_law: str = "iid"
    #: largest supported number of drafts (``None``: any).
    max_k: int | None = None

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def acceptance(self, p, q, k: int) -> float:
        """Exact ``P(Y in drafts)`` when drafts follow :attr:`draft_law` (no sampling)."""

    @abstractmethod
    def verify(self, p, q, drafts, rng: SeedLike = None) -> tuple[int, bool]:
        """Run the rule on a draft tuple: return ``(token, accepted)``."""

    @abstractmethod
    def conditional_law(self, p, q, drafts) -> np.ndarray:
        """``K(. | drafts)``: the output law given the drafts, with the rule's coins integrated out."""

    # ------------------------------------------------------------------ derived
    def _check(self, p, q, k: int) -> tuple[np.ndarray, np.ndarray, int]:
        p_arr, q_arr = validate_pair(p, q)
        k = validate_k(k)
        if self.max_k is not None and k > self.max_k:
            raise ValueError(f"selector {self.name!r} supports k <= {self.max_k}, got k={k}")
        return p_arr, q_arr, k

    def _check_drafts(self, p, q, drafts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p_arr, q_arr = validate_pair(p, q)
        d = validate_drafts(drafts, p_arr.size)
        self._check(p_arr, q_arr, d.size)
        return p_arr, q_arr, d

    def draft(self, q, k: int, rng: SeedLike = None) -> np.ndarray:
        """Sample a draft tuple from this rule's draft law."""
        q_arr, _ = validate_pair(q, q, "q", "q")
        k = validate_k(k)
        return get_draft_law(self.draft_law).sample(q_arr, k, as_generator(rng))

    def sample(self, p, q, k: int, rng: SeedLike = None) -> tuple[int, bool, np.ndarray]:
        """Draft then verify: ``(token, accepted, drafts)``; ``token ~ p`` exactly."""
        p_arr, q_arr, k = self._check(p, q, k)
        gen = as_generator(rng)
        drafts = self.draft(q_arr, k, gen)
        token, accepted = self.verify(p_arr, q_arr, drafts, gen)
        return token, accepted, drafts

    def verify_batch(self, p: np.ndarray, q: np.ndarray, drafts: np.ndarray,
                     rng: SeedLike = None) -> tuple[np.ndarray, np.ndarray]:
        """Verify one draft tuple per row: ``p, q`` are ``[B, V]``, ``drafts`` ``[B, k]``.

        Returns ``(tokens [B], accepted [B])``. Inputs are assumed valid (this is the simulator's
        hot path). The default loops over rows; subclasses vectorise it.
        """
        gen = as_generator(rng)
        out = [self.verify(p[b], q[b], drafts[b], gen) for b in range(p.shape[0])]
        return (np.array([t for t, _ in out], dtype=np.int64), np.array([a for _, a in out], dtype=bool))

    def draft_tuples(self, q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Every draft tuple of positive probability under :attr:`draft_law`, with probabilities."""
        q_arr, _ = validate_pair(q, q, "q", "q")
        return get_draft_law(self.draft_law).enumerate(q_arr, validate_k(k))

    def output_law(self, p, q, k: int) -> np.ndarray:
        """Exact law of the output token, ``sum_t Q(t) K(. | t)`` over all draft tuples (small V)."""
        return self.enumerate(p, q, k)[0]

    def enumerate(self, p, q, k: int) -> tuple[np.ndarray, float]:
        """Exact ``(output law, acceptance)`` by enumerating draft tuples (small V and k only).

        Raises
        ------
        ValueError
            Before any work, when the i.i.d. or without-replacement draft law has more than
            :data:`MAX_ENUMERATION` tuples (``n^k`` or ``n!/(n-k)!`` over the support of ``q``).
        """
        p_arr, q_arr, k = self._check(p, q, k)
        n = int((q_arr > 0).sum())
        count = n ** k if self.draft_law == "iid" else perm(n, k) if self.draft_law == "without_replacement" else 0
        if count > MAX_ENUMERATION:
            raise ValueError(f"exact enumeration of {count:.3g} draft tuples (support {n}, k={k}) exceeds "
                             f"{MAX_ENUMERATION:,}; use acceptance() for the exact acceptance alone")
        tuples, probs = self.draft_tuples(q_arr, k)
        out = np.zeros_like(p_arr)
        acc = 0.0
        for t, w in zip(tuples, probs):
            law = self.conditional_law(p_arr, q_arr, t)
            out += w * law
            acc += w * law[np.unique(t)].sum()
        return out, float(acc)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, draft_law={self.draft_law!r})"
