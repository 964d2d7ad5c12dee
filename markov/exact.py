"""Exact (no sampling) expected cost of speculative decoding on Markov-chain LMs, by forward DP.

The DP follows the simulator of :mod:`markov.simulate` position by position. Its state at a
position is ``(context s, depth d, surviving drafts kk)``; ``d = 0`` starts a step (one target
call, ``kk = k``). With the branch law ``W[s, y, j]`` of the token selector
(:func:`markov.branch.branch_law`), mass at ``(s, d, kk)`` moves to

* ``(s', 0, k)`` with weight ``W[s, y, 0]`` (rejection: ``y`` from the residual, the step ends);
* ``(s', d+1, j)`` with weight ``W[s, y, j]``, ``j >= 1`` (``y`` accepted, ``j`` drafts survive);
* from ``d = gamma``: ``(s', 0, k)`` with weight ``p_s(y)`` (the bonus token),

where ``s'`` appends ``y`` to ``s``. Runs stop after ``n_tokens`` tokens, so
``E[target calls] = sum_{t < T} P(position t starts a step)``. With ``gamma=None`` (Yin et al.'s
unlimited lookahead) there is no bonus and no depth. The cost per position is
``O((1 + gamma k) S V k)`` for ``S`` contexts; the branch laws are computed once for stationary
chains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ot_coupling.base import Selector
from ot_coupling.validation import validate_k

from .branch import branch_law
from .model import MarkovLM
from .pair import ModelPair
from .simulate import inner_selector, resolve_selector, validate_gamma


@dataclass
class ExactResult:
    """Exact expectations for ``n_tokens`` tokens (see :mod:`markov.exact`)."""

    n_tokens: int
    k: int
    gamma: int | None
    expected_calls: float
    expected_rejections: float
    acceptance_by_position: np.ndarray

    @property
    def block_efficiency(self) -> float:
        """``n_tokens / E[target calls]``."""
        return self.n_tokens / self.expected_calls

    @property
    def expected_accepted(self) -> float:
        return float(self.acceptance_by_position.sum())

    def to_dict(self) -> dict:
        return {"n_tokens": self.n_tokens, "k": self.k, "gamma": self.gamma,
                "expected_calls": self.expected_calls, "expected_rejections": self.expected_rejections,
                "block_efficiency": self.block_efficiency, "expected_accepted": self.expected_accepted,
                "acceptance_by_position": self.acceptance_by_position}


class _BranchTables:
    """Branch laws at one position: ``first`` (``k`` drafts from the selector's law) and, computed
    on first use, ``deeper[kk]`` (``kk`` i.i.d. surviving drafts verified by the inner rule)."""

    def __init__(self, pair: ModelPair, sel: Selector, deep: Selector, k: int, position: int,
                 follow: str, method: str):
        self._P, self._Q = pair.tables(position)
        self._deep, self._follow, self._method = deep, follow, method
        self._deeper: dict[int, np.ndarray] = {}
        self.first = self._shape(branch_law(sel, self._P, self._Q, k, method=method))

    def _shape(self, W: np.ndarray) -> np.ndarray:
        if self._follow == "one":  # Algorithm B: one draft survives an acceptance
            return np.concatenate([W[:, :, :1], W[:, :, 1:].sum(axis=2, keepdims=True)], axis=2)
        return W

    def deeper(self, kk: int) -> np.ndarray:
        if kk not in self._deeper:
            W = branch_law(self._deep, self._P, self._Q, kk, law="iid", method=self._method)
            self._deeper[kk] = self._shape(W)
        return self._deeper[kk]


def expected_block_efficiency(target: MarkovLM, draft: MarkovLM, selector: str | Selector = "speculative",
                              k: int = 1, gamma: int | None = 4, n_tokens: int = 100, follow: str = "tree",
                              method: str = "auto", selector_kwargs: dict | None = None) -> ExactResult:
    """Exact ``E[target calls]``, ``E[rejections]``, block efficiency and per-position acceptance.

    Same arguments as :func:`markov.simulate.simulate`; ``method="enumerate"`` forces the branch
    laws to be enumerated from ``selector.conditional_law`` (a cross-check of the closed forms).
    """
    pair = ModelPair(target, draft, n_tokens)
    k = validate_k(k)
    gamma = validate_gamma(gamma)
    if follow not in ("tree", "one"):
        raise ValueError(f"follow must be 'tree' or 'one', got {follow!r}")
    sel = resolve_selector(selector, **(selector_kwargs or {}))
    if sel.max_k is not None and k > sel.max_k:
        raise ValueError(f"selector {sel.name!r} supports k <= {sel.max_k}, got k={k}")
    deep = inner_selector(sel)
    T, S = pair.n_tokens, pair.n_states
    inner_depths = [1] if gamma is None else list(range(1, gamma))  # depths that verify drafts

    m0 = pair.prompt_law().astype(np.float64)  # step starts (depth 0, k drafts)
    mass = np.zeros((len(inner_depths) + 1, k + 1, S))  # mass[d, kk] inside a step, d >= 1
    bonus = np.zeros(S)  # all gamma drafts accepted: the next token is the bonus
    calls = rejections = 0.0
    acceptance = np.zeros(T)
    tables = None
    for t in range(T):
        if tables is None or not pair.stationary:
            tables = _BranchTables(pair, sel, deep, k, t, follow, method)
        calls += m0.sum()
        new_m0 = np.zeros(S)
        new_mass = np.zeros_like(mass)
        new_bonus = np.zeros(S)
        if bonus.any():
            new_m0 += pair.advance_mass(bonus[:, None] * pair.tables(t)[0])
        sources = [(0, m0, tables.first)] + [(d, mass[d, kk], tables.deeper(kk)) for d in inner_depths
                                             for kk in range(1, k + 1) if mass[d, kk].any()]
        for d, m, W in sources:
            rej = m[:, None] * W[:, :, 0]
            rejections += rej.sum()
            new_m0 += pair.advance_mass(rej)
            acceptance[t] += m @ W[:, :, 1:].sum(axis=(1, 2))
            nd = 1 if gamma is None else d + 1
            for j in range(1, W.shape[2]):
                moved = pair.advance_mass(m[:, None] * W[:, :, j])
                if gamma is not None and nd == gamma:
                    new_bonus += moved
                else:
                    new_mass[nd, j] += moved
        m0, mass, bonus = new_m0, new_mass, new_bonus
    return ExactResult(n_tokens=T, k=k, gamma=gamma, expected_calls=float(calls),
                       expected_rejections=float(rejections), acceptance_by_position=acceptance)
