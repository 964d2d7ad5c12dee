"""Traversal verification (Weng, Hu, Chen, Liu, Mei, Qiu, Tian, Shi, NeurIPS 2025, arXiv 2505.12398).

The draft tree of ``k`` i.i.d. paths is visited leaf first (post-order, siblings in order of first
appearance in path order). Every node ``u`` carries current target / draft conditionals
``P_u, Q_u`` (initially ``p_u, q_u``) and a weight ``w(u)`` with ``w(()) = 1`` and
``w(u.z) = min(1, w(u) P_u(z) / Q_u(z))``. The leftmost remaining leaf ``v`` is accepted with
probability ``w(v)`` (then ``Y = v.z``, ``z ~ P_v``; the root is always accepted). On rejection,
with ``u`` the parent and ``S = sum_x (w(u) P_u(x) - Q_u(x))^+``: ``P_u <- (w(u) P_u - Q_u)^+ / S``,
``w(u) <- S / (S + 1 - w(u))`` (``w(u) <- 0`` when ``S = 0``), then ``Q_u`` loses the rejected
token and is renormalised (the next sibling is a draft *without replacement*), and the weights
below ``u`` are recomputed. On a single path this is block verification's backward scan.

Which leaf is tried next never depends on a coin outcome other than "everything so far was
rejected", so :meth:`TraversalVerifier.conditional_law` integrates the coins out exactly by walking
the single rejection history. See docs/theory/sequence_verifiers.md#traversal-verification.
"""

from __future__ import annotations

import numpy as np

from ..rejection import inverse_cdf, normalise
from ..validation import as_generator
from .base import SequenceVerifier
from .core import _check_drafts_2d, _dist


class _Tree:
    """Mutable draft tree: ordered children, current ``P_u``, ``Q_u`` and ``w(u)`` per node."""

    def __init__(self, target, draft, d: np.ndarray, prefix: tuple, sibling_order: str):
        self.children: dict[tuple, list[int]] = {}
        for t in range(d.shape[1] + 1):
            for j in range(d.shape[0]):
                u = tuple(int(v) for v in d[j, :t])
                self.children.setdefault(u, [])
                if t > 0:
                    par = u[:-1]
                    if u[-1] not in self.children[par]:
                        self.children[par].append(u[-1])
        if sibling_order == "token":  # negative control: loses exactness
            for u in self.children:
                self.children[u].sort()
        self.P = {u: _dist(target, prefix + u, "target").copy() for u in self.children}
        self.Q = {u: _dist(draft, prefix + u, "draft").copy() for u in self.children if self.children[u]}
        self.w = {(): 1.0}
        self.reweight(())

    def reweight(self, u: tuple) -> None:
        for z in self.children[u]:
            num, den = self.w[u] * float(self.P[u][z]), float(self.Q[u][z])
            self.w[u + (z,)] = (min(1.0, num / den) if den > 0 else 1.0) if num > 0 else 0.0
            self.reweight(u + (z,))

    def leftmost_leaf(self) -> tuple:
        u: tuple = ()
        while self.children[u]:
            u = u + (self.children[u][0],)
        return u


class TraversalVerifier(SequenceVerifier):
    """Traversal verification of the tree of ``k`` i.i.d. draft paths (``"traversal"``)."""

    name = "traversal"
    _sibling_order = "appearance"  # "token": negative control (biased)
    _renormalise = True  # False: negative control (biased)

    def _steps(self, target, draft, d, prefix):
        """Yield ``(v, w(v), P_v)`` for the leaves tried in order, assuming all earlier ones rejected."""
        tree = _Tree(target, draft, d, prefix, self._sibling_order)
        while True:
            v = tree.leftmost_leaf()
            if v == ():
                yield v, 1.0, tree.P[()]
                return
            yield v, tree.w[v], tree.P[v]
            u, z = v[:-1], v[-1]
            tree.children[u].remove(z)
            excess = np.maximum(tree.w[u] * tree.P[u] - tree.Q[u], 0.0)
            S = float(excess.sum())
            if S > 0:
                tree.P[u] = normalise(excess, tree.P[u])
                tree.w[u] = S / (S + (1.0 - tree.w[u]))
            else:
                tree.w[u] = 0.0
            Q = tree.Q[u].copy()
            Q[z] = 0.0
            if self._renormalise:
                tot = Q.sum()
                Q = Q / tot if tot > 0 else Q
            tree.Q[u] = Q
            tree.reweight(u)

    def verify(self, target, draft, drafts, rng=None, prefix=()):
        gen = as_generator(rng)
        prefix = tuple(prefix)
        d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
        for v, w, P in self._steps(target, draft, d, prefix):
            if gen.random() < w:
                return v + (inverse_cdf(P, gen.random()),)
        raise AssertionError("unreachable: the root is always accepted")

    def conditional_law(self, target, draft, drafts, prefix=()):
        prefix = tuple(prefix)
        d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
        law: dict[tuple, float] = {}
        alive = 1.0
        for v, w, P in self._steps(target, draft, d, prefix):
            acc = alive * w
            alive *= 1.0 - w
            if acc > 0:
                for z in np.flatnonzero(P > 0):
                    law[v + (int(z),)] = law.get(v + (int(z),), 0.0) + acc * float(P[z])
            if alive <= 0:
                break
        return law
