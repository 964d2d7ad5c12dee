"""The sequence-verifier interface: one verification round over ``k`` draft paths of length ``L``.

A round drafts ``D = (X^1..X^k)``, ``k`` i.i.d. paths from the draft model, and emits
``Y = u.z``: an accepted drafted prefix ``u`` (maybe empty) followed by one fresh token ``z``, so
``1 <= |Y| <= L + 1``. It is *lossless* when ``Y`` followed by the target's own continuation is
distributed as the target over ``L + 1`` tokens (docs/theory/sequence_verifiers.md).

:class:`SequenceVerifier` is the interface every sequence verifier implements (numpy here, torch in
:mod:`gpu_backend`, the LP optimum in :mod:`solvers`). :class:`SelectionRule` and
:class:`SelectThenBlockVerify` are the "select one path, then block-verify it against the selected
path's own law" class, which contains greedy multi-path block verification (Thomas & Pal, 2026)
and the sequence-level optimum.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from itertools import product

import numpy as np

from ..validation import SeedLike, as_generator, validate_k
from .core import (
    Conditional,
    SequenceLaw,
    _chains,
    _Memo,
    _check_drafts_2d,
    _dist,
    block_conditional_law,
    draft_tree,
    verify_block,
)

#: largest number ``V^(k L)`` of ordered draft tuples the exact enumerators accept.
MAX_ENUMERATION = 300_000


def _check_enumeration(V: int, k: int, L: int) -> None:
    n = float(V) ** (k * L)
    if n > MAX_ENUMERATION:
        raise ValueError(f"exact enumeration over V^(k L) = {V}^{k * L} = {n:.3g} draft tuples exceeds "
                         f"{MAX_ENUMERATION}; use smaller V, k or L")


def _paths(draft: Conditional, L: int, prefix: tuple) -> list[tuple[tuple, float]]:
    """Every draft path of length ``L`` with positive draft probability, with that probability."""
    V = _dist(draft, prefix, "draft").size
    return list(_chains(draft, prefix, L, V))


def iid_draft_tuples(draft: Conditional, k: int, L: int, prefix: tuple = ()):
    """Yield ``(drafts [k, L], probability)`` for every ordered tuple of ``k`` i.i.d. draft paths.

    Raises
    ------
    ValueError
        If ``V^(k L)`` exceeds :data:`MAX_ENUMERATION` (checked before any work).
    """
    k, L = validate_k(k), validate_k(L, "L")
    prefix = tuple(prefix)
    _check_enumeration(_dist(draft, prefix, "draft").size, k, L)
    paths = _paths(draft, L, prefix)
    for combo in product(paths, repeat=k):
        yield (np.array([s for s, _ in combo], dtype=np.int64).reshape(k, L),
               float(np.prod([w for _, w in combo])))


def _accumulate(law: SequenceLaw, part: SequenceLaw, weight: float) -> None:
    for seq, pr in part.items():
        law[seq] = law.get(seq, 0.0) + weight * pr


class SequenceVerifier(ABC):
    """A verification round over ``k`` i.i.d. draft paths (docs/theory/sequence_verifiers.md).

    Models are callables ``prefix tuple -> length-V probability vector`` (e.g.
    ``MarkovLM.next_dist``); ``prefix`` is the tuple of tokens after the fixed context.
    """

    name: str = "base"

    @abstractmethod
    def verify(self, target: Conditional, draft: Conditional, drafts, rng: SeedLike = None,
               prefix: tuple = ()) -> tuple[int, ...]:
        """Emit ``Y`` (``1 <= len(Y) <= L + 1``) for the ``[k, L]`` draft paths ``drafts``."""

    @abstractmethod
    def conditional_law(self, target: Conditional, draft: Conditional, drafts,
                        prefix: tuple = ()) -> SequenceLaw:
        """Exact law ``{Y: probability}`` of :meth:`verify`'s output given ``drafts`` (coins integrated out)."""

    def output_law(self, target: Conditional, draft: Conditional, k: int, L: int,
                   prefix: tuple = ()) -> SequenceLaw:
        """Exact law of ``Y`` for ``k`` i.i.d. draft paths of length ``L``: sums
        :meth:`conditional_law` over all ``(V^L)^k`` ordered draft tuples (small ``V`` only;
        ``ValueError`` before any work when there are more than :data:`MAX_ENUMERATION`)."""
        law: SequenceLaw = {}
        target, draft = _Memo(target, "target"), _Memo(draft, "draft")
        for drafts, w in iid_draft_tuples(draft, k, L, prefix):
            _accumulate(law, self.conditional_law(target, draft, drafts, prefix), w)
        return law

    def expected_length(self, target: Conditional, draft: Conditional, k: int, L: int,
                        prefix: tuple = ()) -> float:
        """Exact ``E|Y|`` (accepted tokens + 1) from :meth:`output_law`."""
        return float(sum(w * len(s) for s, w in self.output_law(target, draft, k, L, prefix).items()))

    def sample(self, target: Conditional, draft: Conditional, k: int, L: int, rng: SeedLike = None,
               prefix: tuple = ()) -> tuple[tuple, np.ndarray]:
        """Draft ``k`` i.i.d. paths of length ``L`` and verify them: ``(Y, drafts)``."""
        gen = as_generator(rng)
        drafts = draft_tree(draft, k, L, gen, prefix)
        return self.verify(target, draft, drafts, gen, prefix), drafts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SelectionRule(ABC):
    """Which drafted path to block-verify: ``P(J = j | D)`` and the law of the selected path ``X^J``.

    Any rule gives a lossless verifier when block verification is fed the conditionals of the
    selected path's own law (docs/theory/sequence_verifiers.md).
    """

    name: str = "rule"
    #: True when :meth:`selected_law` is exact in closed form (then the output law is a sum over
    #: the ``V^L`` selected paths instead of the ``V^(k L)`` draft tuples).
    closed_form: bool = False

    @abstractmethod
    def selection_probs(self, target: Conditional, draft: Conditional, drafts,
                        prefix: tuple = ()) -> np.ndarray:
        """``[k]`` probabilities ``P(J = j | D)``."""

    def selected_law(self, target: Conditional, draft: Conditional, k: int, L: int,
                     prefix: tuple = ()) -> Conditional:
        """Conditionals ``u -> q~(. | u)`` of the law of ``X^J`` when ``D`` is ``k`` i.i.d. paths.

        This default enumerates every draft tuple (small ``V`` only); tractable rules override it
        with a closed form. At prefixes the selected path reaches with probability 0 it returns
        the draft conditional (never used by block verification).
        """
        k, L = validate_k(k), validate_k(L, "L")
        prefix = tuple(prefix)
        mass: dict[tuple, float] = {}
        for drafts, w in iid_draft_tuples(draft, k, L, prefix):
            probs = self.selection_probs(target, draft, drafts, prefix)
            for j in np.flatnonzero(probs > 0):
                path = tuple(int(v) for v in drafts[j])
                for t in range(L + 1):
                    mass[path[:t]] = mass.get(path[:t], 0.0) + w * float(probs[j])

        def conditional(u: tuple) -> np.ndarray:
            u = tuple(int(v) for v in u)
            q = _dist(draft, prefix + u, "draft")
            m = mass.get(u, 0.0)
            if m <= 0.0:
                return q
            out = np.array([mass.get(u + (z,), 0.0) for z in range(q.size)]) / m
            return out / out.sum()

        return conditional

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _Shifted:
    """``u -> law(prefix-relative u)`` seen as a callable on absolute contexts ``prefix + u``."""

    def __init__(self, law: Conditional, prefix: tuple):
        self.law, self.n = law, len(prefix)

    def __call__(self, ctx: tuple) -> np.ndarray:
        return self.law(tuple(ctx)[self.n:])


class SelectThenBlockVerify(SequenceVerifier):
    """Draw ``J ~ rule.selection_probs(D)``, then block-verify ``X^J`` (Sun et al., ICLR 2025,
    Alg. 2) against the target with draft law ``rule.selected_law`` (docs/theory/sequence_verifiers.md).

    Lossless for every rule: ``X^J`` is one draft path of law ``q~`` and block verification is
    lossless for any draft law given its own conditionals.
    """

    def __init__(self, rule: SelectionRule):
        if not isinstance(rule, SelectionRule):
            raise ValueError(f"rule must be a SelectionRule, got {type(rule).__name__}")
        self.rule = rule
        self.name = rule.name

    def _law(self, target, draft, k, L, prefix) -> Conditional:
        return _Shifted(self.rule.selected_law(target, draft, k, L, prefix), prefix)

    def verify(self, target, draft, drafts, rng=None, prefix=()):
        gen = as_generator(rng)
        prefix = tuple(prefix)
        d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
        probs = self.rule.selection_probs(target, draft, d, prefix)
        j = int(gen.choice(d.shape[0], p=probs)) if d.shape[0] > 1 else 0
        law = self._law(target, draft, d.shape[0], d.shape[1], prefix)
        tokens, _ = verify_block(target, law, d[j], gen, prefix)
        return tuple(int(v) for v in tokens)

    def _conditional(self, target, law, drafts, probs, prefix) -> SequenceLaw:
        out: SequenceLaw = {}
        for j in np.flatnonzero(probs > 0):
            _accumulate(out, block_conditional_law(target, law, drafts[j], prefix), float(probs[j]))
        return out

    def conditional_law(self, target, draft, drafts, prefix=()):
        prefix = tuple(prefix)
        d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
        law = self._law(target, draft, d.shape[0], d.shape[1], prefix)
        return self._conditional(target, law, d, self.rule.selection_probs(target, draft, d, prefix), prefix)

    def output_law(self, target, draft, k, L, prefix=()):
        prefix = tuple(prefix)
        k, L = validate_k(k), validate_k(L, "L")
        _check_enumeration(_dist(draft, prefix, "draft").size, k, L)
        target, draft = _Memo(target, "target"), _Memo(draft, "draft")
        law = self._law(target, draft, k, L, prefix)  # computed once for the whole enumeration
        out: SequenceLaw = {}
        if self.rule.closed_form:
            # Y depends on D only through X^J, whose law is the selected law itself: sum over V^L.
            V = _dist(draft, prefix, "draft").size
            for path, w in _chains(law, prefix, L, V):
                _accumulate(out, block_conditional_law(target, law, np.array(path), prefix), w)
            return out
        for drafts, w in iid_draft_tuples(draft, k, L, prefix):
            probs = self.rule.selection_probs(target, draft, drafts, prefix)
            _accumulate(out, self._conditional(target, law, drafts, probs, prefix), w)
        return out


SelectedLaw = Callable[[tuple], np.ndarray]
