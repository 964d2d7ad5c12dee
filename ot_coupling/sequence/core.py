"""Sequence-level verification primitives: SpecTr's draft tree and Sun et al.'s block verification.

Models are given as *conditional distributions*: callables ``target(prefix) -> p`` and
``draft(prefix) -> q`` mapping a tuple of token ids (the context after the fixed ``prefix``) to a
length-``V`` probability vector (for example ``MarkovLM.next_dist``). Every function is exact; the
``*_law`` helpers return the law of the emitted sequence as a ``{tuple: probability}`` dict, computed
by enumeration (small ``V``, ``k``, ``L`` only) for the tests.

``verify_tree`` -- SpecTr (Sun et al., NeurIPS 2023): ``k`` draft sequences of
length ``L``; at depth ``t`` the tokens of the drafts that agree with the accepted prefix (``k_t`` of
them) go to a token-level selector run with ``k = k_t``; a token outside them ends the block; if all
``L`` depths accept, a bonus token is drawn from the target. Exact because, given the accepted
prefix, the surviving continuations are again a draft tuple of the selector's law with ``k_t``
drafts: i.i.d. sequences stay i.i.d. (``"iid"``); for ``"without_replacement"`` the ``k`` root tokens
are distinct and each continues as its own chain, so ``k_t = 1`` below the root. Other draft laws
(hub, greedy) are not closed under this conditioning and are refused. Merging i.i.d. drafts into a
deduplicated tree and verifying with the with-replacement residual is biased; the tests check that
this is detected.

``verify_block`` -- block verification (Sun, Mendlovic, Leviathan, Aharoni, Beirami, Ro, Suresh,
ICLR 2025, Algorithm 2): one draft ``X_1..X_g``; ``w_0 = 1``,
``w_i = min(w_{i-1} p(X_i | X_<i) / q(X_i | X_<i), 1)``; for ``i < g``
``A_i = sum_x (w_i p(x | X_<=i) - q(x | X_<=i))^+`` and ``h_i = A_i / (A_i + 1 - w_i)`` (``0/0 := 1``),
``h_g = w_g``; with independent ``eta_i ~ U[0, 1)``, ``tau = max{i : eta_i < h_i}``; emit ``X_<=tau``
then ``Y ~ norm((w_tau p(. | X_<=tau) - q(. | X_<=tau))^+)`` (``tau < g``) or the bonus
``Y ~ p(. | X)`` (``tau = g``). ``P(tau = i | X) = h_i prod_{j>i} (1 - h_j)``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np

from ..base import Selector
from ..draft_laws import get_draft_law
from ..rejection import inverse_cdf, normalise, ratio_coin
from ..validation import SeedLike, as_generator, validate_distribution, validate_k

Conditional = Callable[[tuple], np.ndarray]
SequenceLaw = dict[tuple, float]

_TREE_LAWS = ("iid", "without_replacement")


def _dist(model: Conditional, context: tuple, name: str) -> np.ndarray:
    if isinstance(model, _Memo):
        return model(context)
    return validate_distribution(model(tuple(int(x) for x in context)), f"{name}{tuple(context)}")


class _Memo:
    """Memoised, validated conditional model (exact enumerations call each prefix many times)."""

    def __init__(self, model: Conditional, name: str = "model"):
        self.model, self.name, self.cache = model, name, {}

    def __call__(self, ctx: tuple) -> np.ndarray:
        ctx = tuple(int(v) for v in ctx)
        if ctx not in self.cache:
            self.cache[ctx] = validate_distribution(self.model(ctx), f"{self.name}{ctx}")
        return self.cache[ctx]


def _check_drafts_2d(drafts, V: int) -> np.ndarray:
    d = np.asarray(drafts)
    if d.ndim != 2 or d.size == 0 or not np.issubdtype(d.dtype, np.integer):
        raise ValueError(f"drafts must be a non-empty [k, L] integer array, got shape {d.shape}")
    if (d < 0).any() or (d >= V).any():
        raise ValueError(f"drafts holds token ids outside [0, {V})")
    return d.astype(np.int64)


def _check_tree_selector(selector: Selector) -> None:
    if selector.draft_law not in _TREE_LAWS:
        raise ValueError(f"tree verification needs a selector whose draft law is one of {_TREE_LAWS}, "
                         f"{selector.name!r} uses {selector.draft_law!r}")


# ----------------------------------------------------------------------------- drafting
def draft_tree(draft: Conditional, k: int, L: int, rng: SeedLike = None, prefix: tuple = (),
               law: str = "iid") -> np.ndarray:
    """``[k, L]`` draft sequences: ``"iid"`` = ``k`` independent chains from the draft model;
    ``"without_replacement"`` = ``k`` distinct root tokens (Gumbel-top-k), each continued as a chain."""
    k, L = validate_k(k), validate_k(L, "L")
    if law not in _TREE_LAWS:
        raise ValueError(f"law must be one of {_TREE_LAWS}, got {law!r}")
    gen = as_generator(rng)
    root = _dist(draft, prefix, "draft")
    out = np.empty((k, L), dtype=np.int64)
    out[:, 0] = get_draft_law(law).sample(root, k, gen)
    for j in range(k):
        for t in range(1, L):
            q = _dist(draft, prefix + tuple(out[j, :t]), "draft")
            out[j, t] = gen.choice(q.size, p=q)
    return out


# ----------------------------------------------------------------------------- SpecTr tree
def verify_tree(target: Conditional, draft: Conditional, drafts, selector: Selector,
                rng: SeedLike = None, prefix: tuple = ()) -> tuple[np.ndarray, int]:
    """Verify ``k`` draft sequences ``drafts [k, L]`` with a token-level ``selector`` at each depth.

    Returns ``(tokens, n_accepted)``: the emitted tokens (the accepted draft prefix, then one
    residual or bonus token) and the number of accepted draft tokens (``len(tokens) - 1``).
    """
    _check_tree_selector(selector)
    gen = as_generator(rng)
    prefix = tuple(prefix)
    V = _dist(target, prefix, "target").size
    d = _check_drafts_2d(drafts, V)
    alive = np.arange(d.shape[0])
    out: list[int] = []
    for t in range(d.shape[1]):
        ctx = prefix + tuple(out)
        toks = d[alive, t]
        y, _ = selector.verify(_dist(target, ctx, "target"), _dist(draft, ctx, "draft"), toks, gen)
        out.append(int(y))
        if y not in toks:
            return np.array(out, dtype=np.int64), t
        alive = alive[toks == y]
    bonus = _dist(target, prefix + tuple(out), "target")
    out.append(inverse_cdf(bonus, gen.random()))
    return np.array(out, dtype=np.int64), d.shape[1]


def tree_conditional_law(target: Conditional, draft: Conditional, drafts, selector: Selector,
                         prefix: tuple = ()) -> SequenceLaw:
    """Exact law of :func:`verify_tree`'s emitted sequence given ``drafts`` (coins integrated out)."""
    _check_tree_selector(selector)
    prefix = tuple(prefix)
    d = _check_drafts_2d(drafts, _dist(target, prefix, "target").size)
    law: SequenceLaw = {}

    def walk(out: tuple, alive: np.ndarray, mass: float) -> None:
        t = len(out)
        if t == d.shape[1]:
            for y, w in enumerate(_dist(target, prefix + out, "target")):
                if w > 0:
                    law[out + (y,)] = law.get(out + (y,), 0.0) + mass * w
            return
        ctx = prefix + out
        toks = d[alive, t]
        K = selector.conditional_law(_dist(target, ctx, "target"), _dist(draft, ctx, "draft"), toks)
        for y in np.flatnonzero(K > 0):
            if y in toks:
                walk(out + (int(y),), alive[toks == y], mass * K[y])
            else:
                law[out + (int(y),)] = law.get(out + (int(y),), 0.0) + mass * K[y]

    walk((), np.arange(d.shape[0]), 1.0)
    return law


def _chains(draft: Conditional, start: tuple, length: int, V: int):
    """Every continuation of ``length`` tokens after ``start`` with its draft probability."""
    for seq in product(range(V), repeat=length):
        prob = 1.0
        for t, x in enumerate(seq):
            prob *= _dist(draft, start + seq[:t], "draft")[x]
            if prob == 0.0:
                break
        if prob > 0.0:
            yield seq, prob


def tree_output_law(target: Conditional, draft: Conditional, selector: Selector, k: int, L: int,
                    prefix: tuple = ()) -> SequenceLaw:
    """Exact law of the emitted sequence of draft-then-:func:`verify_tree`, enumerating every
    ``[k, L]`` draft array of the selector's draft law (``V^(kL)`` arrays: tiny cases only)."""
    _check_tree_selector(selector)
    k, L = validate_k(k), validate_k(L, "L")
    prefix = tuple(prefix)
    q0 = _dist(draft, prefix, "draft")
    V = q0.size
    roots, root_probs = get_draft_law(selector.draft_law).enumerate(q0, k)
    law: SequenceLaw = {}
    for root, w_root in zip(roots, root_probs):
        tails = [list(_chains(draft, prefix + (int(x),), L - 1, V)) for x in root]
        for combo in product(*tails):
            arr = np.array([[int(x), *seq] for x, (seq, _) in zip(root, combo)], dtype=np.int64)
            w = w_root * float(np.prod([pr for _, pr in combo]))
            for seq, pr in tree_conditional_law(target, draft, arr, selector, prefix).items():
                law[seq] = law.get(seq, 0.0) + w * pr
    return law


# ----------------------------------------------------------------------------- block verification
def _block_plan(target: Conditional, draft: Conditional, x: np.ndarray, prefix: tuple):
    """``h [g+1]``, residual laws ``[g, V]`` and the bonus law for a single draft ``x``.

    ``draft`` is the conditional law of the *draft path's own law* (any law on ``V^g``, given by its
    conditionals ``q(. | x_<i)``, ``i < g``): block verification is lossless for every draft law as
    long as it is fed that law (Sun et al., ICLR 2025; docs/theory/sequence_verifiers.md). It is
    never evaluated at the full draft ``x`` (a selected-path law need not be defined there).
    """
    g = x.size
    w = np.ones(g + 1)
    h = np.ones(g + 1)
    residuals = []
    for i in range(g):
        ctx = prefix + tuple(int(v) for v in x[:i])
        p, q = _dist(target, ctx, "target"), _dist(draft, ctx, "draft")
        excess = np.maximum(w[i] * p - q, 0.0)
        A = float(excess.sum())
        h[i] = A / (A + (1.0 - w[i])) if A + (1.0 - w[i]) > 0 else 1.0
        residuals.append(normalise(excess, p))
        w[i + 1] = min(float(ratio_coin(w[i] * p[x[i]], q[x[i]])), 1.0)
    h[g] = w[g]
    return h, residuals, _dist(target, prefix + tuple(int(v) for v in x), "target")


def verify_block(target: Conditional, draft: Conditional, drafts, rng: SeedLike = None,
                 prefix: tuple = ()) -> tuple[np.ndarray, int]:
    """Block verification of one draft sequence ``drafts [g]``: ``(tokens, tau)`` where ``tokens``
    is ``X_<=tau`` followed by one residual or bonus token."""
    gen = as_generator(rng)
    prefix = tuple(prefix)
    x = _check_drafts_2d(np.atleast_2d(drafts), _dist(target, prefix, "target").size)[0]
    h, residuals, bonus = _block_plan(target, draft, x, prefix)
    eta = gen.random(x.size + 1)
    tau = int(np.flatnonzero(eta < h).max(initial=0))
    law = bonus if tau == x.size else residuals[tau]
    return np.append(x[:tau], inverse_cdf(law, gen.random())).astype(np.int64), tau


def block_conditional_law(target: Conditional, draft: Conditional, drafts,
                          prefix: tuple = ()) -> SequenceLaw:
    """Exact law of :func:`verify_block`'s emitted sequence given the draft (coins integrated out)."""
    prefix = tuple(prefix)
    x = _check_drafts_2d(np.atleast_2d(drafts), _dist(target, prefix, "target").size)[0]
    h, residuals, bonus = _block_plan(target, draft, x, prefix)
    law: SequenceLaw = {}
    later_fail = 1.0
    for i in range(x.size, -1, -1):
        p_tau = h[i] * later_fail
        later_fail *= 1.0 - h[i]
        if p_tau <= 0:
            continue
        y_law = bonus if i == x.size else residuals[i]
        for y in np.flatnonzero(y_law > 0):
            seq = tuple(int(v) for v in x[:i]) + (int(y),)
            law[seq] = law.get(seq, 0.0) + p_tau * y_law[y]
    return law


def block_output_law(target: Conditional, draft: Conditional, gamma: int, prefix: tuple = ()) -> SequenceLaw:
    """Exact law of draft-then-:func:`verify_block` over all ``V^gamma`` drafts (tiny cases only)."""
    gamma = validate_k(gamma, "gamma")
    prefix = tuple(prefix)
    V = _dist(draft, prefix, "draft").size
    law: SequenceLaw = {}
    for seq, w in _chains(draft, prefix, gamma, V):
        for out, pr in block_conditional_law(target, draft, np.array(seq), prefix).items():
            law[out] = law.get(out, 0.0) + w * pr
    return law


# ----------------------------------------------------------------------------- target laws
def complete_law(target: Conditional, law: SequenceLaw, length: int, prefix: tuple = ()) -> np.ndarray:
    """Extend every emitted sequence to ``length`` tokens with the target's own continuation and
    return the law over ``V^length`` strings (row-major index); compare with :func:`target_law`."""
    prefix = tuple(prefix)
    V = _dist(target, prefix, "target").size
    out = np.zeros(V ** length)
    for seq, w in law.items():
        if len(seq) > length:
            raise ValueError(f"sequence {seq} is longer than length={length}")
        for tail, pr in _chains(target, prefix + seq, length - len(seq), V):
            out[np.ravel_multi_index(seq + tail, (V,) * length)] += w * pr
    return out


def target_law(target: Conditional, length: int, prefix: tuple = ()) -> np.ndarray:
    """The target's law over ``V^length`` continuations of ``prefix`` (row-major index)."""
    return complete_law(target, {(): 1.0}, length, prefix)
