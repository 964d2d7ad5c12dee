"""Lexicographic-maximum path selection: GBV and the look-ahead rule, with the order-statistic law.

Fix at every prefix ``u`` a strict total order ``<_u`` of the vocabulary that depends only on ``u``
(through the models' conditionals at ``u`` and its ancestors), never on the drafts. These orders
define a lexicographic order on ``V^L``. The maximum ``X*`` of ``k`` i.i.d. draft paths under it
has ``P(X* <= s) = F(s)^k`` (``F`` the draft CDF in that order), and since the paths through a
prefix ``u`` form an interval of the order, its conditionals along any prefix are closed-form:

    q~(z | u) = [(A + M cp(z))^k - (A + M cm(z))^k] / [(A + M)^k - A^k],

``M = q(u)``, ``A`` = draft mass of the paths ranked below every path through ``u``,
``cm(z) = sum_{z' <_u z} q(z' | u)``, ``cp(z) = cm(z) + q(z | u)``. Block verification of ``X*``
against ``q~`` is then lossless (docs/theory/sequence_verifiers.md#the-order-statistic-law).

We evaluate it without cancellation: with ``r = A / (A + M)``, ``s = M / (A + M)``,
``a^k - b^k = (a - b) sum_i a^i b^(k-1-i)`` gives
``q~(z | u) = q(z | u) S(r + s cp, r + s cm) / S(1, r)``, ``S(a, b) = sum_{i<k} a^i b^(k-1-i)``,
and ``r, s`` are updated along the path by ``r' = (r + s cm(x)) / (r + s cp(x))``,
``s' = s q(x) / (r + s cp(x))``.

* :class:`GBVRule` -- greedy multi-path block verification (Thomas & Pal, arXiv 2602.16961, 2026):
  the order is the raw ratio ``p(z|u) / q(z|u)`` with the token id as tie-break.
* :class:`BlendRule` -- this project's rule: GBV's law blended with the plain draft law
  (docs/theory/sequence_verifiers.md#the-blend-rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import SelectionRule
from .core import _check_drafts_2d, _dist


@dataclass(frozen=True)
class NodeState:
    """What an order at prefix ``u`` may depend on besides the models' conditionals at ``u``.

    ``depth = |u|``; ``r, s`` the relative masses below / through ``u`` (module docstring);
    ``w`` the block-verification weight ``min(1, w_parent p(x|.) / q~(x|.))`` at ``u`` under the
    selected law; ``k``, ``L`` the round's shape. All are functions of ``u`` alone.
    """

    depth: int
    r: float
    s: float
    w: float
    k: int
    L: int


def _S(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """``sum_{i<k} a^i b^(k-1-i)`` (equals ``(a^k - b^k) / (a - b)`` for ``a != b``)."""
    out = np.zeros(np.broadcast(a, b).shape)
    for i in range(k):
        out = out + a ** i * b ** (k - 1 - i)
    return out


def strict_ranks(key: np.ndarray, tiebreak_ascending: bool = True) -> np.ndarray:
    """``rank[z]`` (0 = smallest) of the strict total order ``(key[z], z)`` (or ``(key[z], -z)``)."""
    ids = np.arange(key.size)
    order = np.lexsort((ids if tiebreak_ascending else -ids, key))
    rank = np.empty(key.size, dtype=np.int64)
    rank[order] = np.arange(key.size)
    return rank


def ratio_key(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``p / q`` with ``q = 0 -> +inf`` (``0/0 -> 0``); tokens with ``q = 0`` carry no draft mass,
    so where they sit in the order changes no law."""
    out = np.where(p > 0, np.inf, 0.0)
    np.divide(p, q, out=out, where=q > 0)
    return out


class LexMaxRule(SelectionRule):
    """Select the lexicographic maximum of the ``k`` paths under per-prefix strict orders given by
    :meth:`key`; :meth:`selected_law` is the closed-form order-statistic law (module docstring)."""

    name = "lexmax"
    closed_form = True

    def key(self, p: np.ndarray, q: np.ndarray, state: NodeState) -> np.ndarray:
        """Score of each child at a prefix (higher ranks higher; ties broken by token id)."""
        raise NotImplementedError

    def ranks(self, p, q, state) -> np.ndarray:
        """Strict order used by the selected law."""
        return strict_ranks(self.key(p, q, state))

    def selection_ranks(self, p, q, state) -> np.ndarray:
        """Strict order used to pick the maximum (must equal :meth:`ranks` for losslessness)."""
        return self.ranks(p, q, state)

    # -- one prefix: conditionals of the selected law, and the state update
    def _node(self, p, q, state: NodeState, ranks: np.ndarray):
        order = np.argsort(ranks)
        cp = np.empty_like(q)
        cp[order] = np.cumsum(q[order])
        cm = cp - q
        k = state.k
        norm = float(_S(np.float64(1.0), np.float64(state.r), k))
        qt = q * _S(state.r + state.s * cp, state.r + state.s * cm, k) / norm
        qt = np.where(q > 0, np.maximum(qt, 0.0), 0.0)
        return qt / qt.sum(), cm, cp

    def _advance(self, state: NodeState, x: int, p, q, qt, cm, cp) -> NodeState:
        den = state.r + state.s * cp[x]
        if den <= 0:  # x is unreachable: any law below it is exact (it is never used)
            return NodeState(state.depth + 1, 0.0, 1.0, 0.0, state.k, state.L)
        r = (state.r + state.s * cm[x]) / den
        s = state.s * q[x] / den
        w = min(1.0, state.w * p[x] / qt[x]) if qt[x] > 0 else 0.0
        return NodeState(state.depth + 1, r, s, w, state.k, state.L)

    def _start(self, k: int, L: int) -> NodeState:
        return NodeState(0, 0.0, 1.0, 1.0, int(k), int(L))

    def _walk(self, target, draft, prefix, u, k, L):
        """The state and selected-law conditional at every prefix of ``u`` (inclusive)."""
        state = self._start(k, L)
        for t in range(len(u) + 1):
            ctx = prefix + tuple(u[:t])
            p, q = _dist(target, ctx, "target"), _dist(draft, ctx, "draft")
            qt, cm, cp = self._node(p, q, state, self.ranks(p, q, state))
            if t == len(u):
                return qt
            state = self._advance(state, int(u[t]), p, q, qt, cm, cp)

    def selected_law(self, target, draft, k, L, prefix=()):
        prefix = tuple(prefix)
        cache: dict[tuple, np.ndarray] = {}

        def conditional(u: tuple) -> np.ndarray:
            u = tuple(int(v) for v in u)
            if u not in cache:
                cache[u] = self._walk(target, draft, prefix, u, k, L)
            return cache[u]

        return conditional

    def select(self, target, draft, drafts, prefix=()) -> int:
        """Index of (the first copy of) the lexicographic maximum of the drafted paths."""
        prefix = tuple(prefix)
        d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
        k, L = d.shape
        alive = np.arange(k)
        state = self._start(k, L)
        for t in range(L):
            ctx = prefix + tuple(int(v) for v in d[alive[0], :t])
            p, q = _dist(target, ctx, "target"), _dist(draft, ctx, "draft")
            sel = self.selection_ranks(p, q, state)
            toks = d[alive, t]
            x = int(toks[np.argmax(sel[toks])])
            alive = alive[toks == x]
            if t < L - 1:
                ranks = self.ranks(p, q, state)
                qt, cm, cp = self._node(p, q, state, ranks)
                state = self._advance(state, x, p, q, qt, cm, cp)
        return int(alive[0])

    def selection_probs(self, target, draft, drafts, prefix=()):
        j = self.select(target, draft, drafts, prefix)
        out = np.zeros(np.asarray(drafts).shape[0])
        out[j] = 1.0
        return out


class GBVRule(LexMaxRule):
    """Greedy multi-path block verification's path selection (Thomas & Pal, arXiv 2602.16961,
    2026): at every prefix order children by the raw ratio ``p(z|u) / q(z|u)`` (token id breaks
    ties), take the lexicographic maximum of the ``k`` paths."""

    name = "gbv"

    def key(self, p, q, state):
        return ratio_key(p, q)


def blend_weight(p: np.ndarray, g: np.ndarray, q: np.ndarray) -> float:
    """The largest maximiser ``lam`` in ``[0, 1]`` of ``sum_z min(p(z), lam g(z) + (1 - lam) q(z))``.

    The objective is concave and piecewise linear in ``lam``; its kinks are the ``lam`` where a
    token's blended mass crosses ``p(z)``. A binary search over the sorted kinks (concavity makes
    the values unimodal) costs ``O(V log V)``.
    """
    d = g - q
    with np.errstate(divide="ignore", invalid="ignore"):
        kinks = (p - q) / d
    kinks = kinks[np.isfinite(kinks) & (kinks > 0) & (kinks < 1)]
    cand = np.unique(np.concatenate([[0.0, 1.0], kinks]))

    def f(lam: float) -> float:
        return float(np.minimum(p, q + lam * d).sum())

    lo, hi = 0, cand.size - 1  # rightmost maximiser of a unimodal sequence
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if f(cand[mid]) >= f(cand[mid - 1]) - 1e-15:
            lo = mid
        else:
            hi = mid - 1
    return float(cand[lo])


def blend_choice(p: np.ndarray, laws: list[np.ndarray]) -> tuple[int, float]:
    """``(m, lam)`` maximising the root overlap ``sum_z min(p, lam laws[m] + (1 - lam) laws[m - 1])``
    over adjacent pairs of component laws (``laws[m - 1]`` = root law of component ``m``), ``lam``
    from :func:`blend_weight`; ties go to the larger ``m``. ``(1, 0.0)`` for a single component."""
    best = (-np.inf, 1, 0.0)
    for m in range(1, len(laws)):
        lam = blend_weight(p, laws[m], laws[m - 1])
        val = float(np.minimum(p, lam * laws[m] + (1.0 - lam) * laws[m - 1]).sum())
        if val >= best[0] - 1e-15:
            best = (val, m, lam)
    return best[1], best[2]


class BlendRule(GBVRule):
    """This project's rule: a coin-blend of two order-statistic laws of GBV's order.

    Component ``m`` is "the lexicographic maximum of the first ``m`` paths" (``m = 1``: path 1,
    law ``q``; ``m = k``: GBV), whose law has closed-form conditionals ``q~_m`` (module docstring).
    Before the drafts are seen, the rule fixes adjacent components ``(m, m + 1)`` and a weight
    ``lam``: among ``m = 1..k-1`` and ``lam in [0, 1]`` the pair maximising the overlap of the
    blended first-token law with the target's, ``sum_z min(p(z), lam q~_{m+1}(z) + (1 - lam) q~_m(z))``
    (:func:`blend_weight`; ties go to the larger ``m`` and ``lam``). With probability ``lam`` it
    selects component ``m + 1``'s path, else component ``m``'s, and block-verifies it against the
    blended law ``pi = lam law_{m+1} + (1 - lam) law_m``, whose conditionals along a path are
    closed-form: with the posterior weight ``b(u)`` of component ``m + 1`` (``b(()) = lam``,
    ``b(u.x) ∝ b(u) q~_{m+1}(x|u)`` against ``(1 - b(u)) q~_m(x|u)``),
    ``pi(z | u) = b(u) q~_{m+1}(z | u) + (1 - b(u)) q~_m(z | u)``.

    The order-statistic law of the maximum of ``k`` paths over-weights the top-ranked tokens (up
    to ``k q(z)``, beyond ``p(z)``); blending with fewer paths pulls it back toward the target.
    ``lam`` given explicitly fixes the pair ``(1, k)`` (docs/theory/sequence_verifiers.md#the-blend-rule).
    """

    name = "blend"

    def __init__(self, lam: float | None = None):
        if lam is not None and not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam must lie in [0, 1] or be None (chosen per round), got {lam!r}")
        self.lam = None if lam is None else float(lam)

    def _root_law(self, p, q, m, L):
        state = self._start(m, L)
        return self._node(p, q, state, self.ranks(p, q, state))[0]

    def weight(self, target, draft, k, L, prefix=()) -> tuple[int, float]:
        """``(m, lam)``: the blend ``lam law_{m+1} + (1 - lam) law_m`` of the round (a function
        of the root conditionals only)."""
        k = int(k)
        if k == 1:
            return 1, 0.0
        if self.lam is not None:
            return 1, self.lam if k > 1 else 0.0
        p, q = _dist(target, tuple(prefix), "target"), _dist(draft, tuple(prefix), "draft")
        return blend_choice(p, [self._root_law(p, q, m, L) for m in range(1, k + 1)])

    def _walk_blend(self, target, draft, prefix, u, m, L, lam):
        lo, hi, b = self._start(m, L), self._start(m + 1, L), lam
        for t in range(len(u) + 1):
            ctx = prefix + tuple(u[:t])
            p, q = _dist(target, ctx, "target"), _dist(draft, ctx, "draft")
            ranks = self.ranks(p, q, lo)
            ql, cml, cpl = self._node(p, q, lo, ranks)
            qh, cmh, cph = self._node(p, q, hi, ranks)
            if t == len(u):
                out = b * qh + (1.0 - b) * ql
                return out / out.sum()
            x = int(u[t])
            num, den = b * qh[x], b * qh[x] + (1.0 - b) * ql[x]
            b = num / den if den > 0 else b
            lo = self._advance(lo, x, p, q, ql, cml, cpl)
            hi = self._advance(hi, x, p, q, qh, cmh, cph)

    def selected_law(self, target, draft, k, L, prefix=()):
        prefix = tuple(prefix)
        m, lam = self.weight(target, draft, k, L, prefix)
        cache: dict[tuple, np.ndarray] = {}

        def conditional(u: tuple) -> np.ndarray:
            u = tuple(int(v) for v in u)
            if u not in cache:
                cache[u] = self._walk_blend(target, draft, prefix, u, m, L, lam)
            return cache[u]

        return conditional

    def selection_probs(self, target, draft, drafts, prefix=()):
        d = np.asarray(drafts)
        m, lam = self.weight(target, draft, d.shape[0], d.shape[1], prefix)
        out = np.zeros(d.shape[0])
        if lam < 1:
            out[self.select(target, draft, d[:m], prefix)] += 1.0 - lam
        if lam > 0:
            out[self.select(target, draft, d[:m + 1], prefix)] += lam
        return out
