r"""Min-score layouts: realising a selection law of k i.i.d. drafts with interval sets (numpy).

docs/theory/optimal_verifier.md#min-score-layouts. Split ``[0, 1]`` into sets ``S_y`` with ``|S_y| = q_y``. Given
the drafts, draw for each draft a score ``U_i ~ Uniform(S_{X_i})`` independently and select the
draft with the smallest score. Marginally the ``U_i`` are i.i.d. ``Uniform(0, 1)``, so the selected
token has law

.. math:: r_y = P(Z = y) = \int_{S_y} w(u)\,du,\qquad w(u) = k (1 - u)^{k-1},

i.e. ``r_y`` is the sum over the intervals ``[a, b]`` of ``S_y`` of ``(1 - a)^k - (1 - b)^k``.

The greedy layout (sec. 4) reaches the optimum ``alpha* = min_H p(H) + 1 - q(H)^k``: free space
``[0, 1]``; for tokens in *descending* ``p/q``, take free measure ``q_y`` starting at the left end of
the free space; if that chunk's value exceeds ``p_y``, slide it right within the free space until
its value is exactly ``p_y`` (the value decreases as it slides, because ``w`` decreases); remove the
chunk. Everything is exact interval arithmetic (no discretisation): on each piece between two
breakpoints the slide equation ``u^k - (u - delta)^k = c`` is solved by safeguarded Newton to
machine precision.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from .closed_form import ratio_order


@dataclass
class Layout:
    """The sets ``S_y`` as intervals: token ``y`` owns ``starts[ptr[y]:ptr[y+1]]`` to ``ends[...]``.

    ``marginal[y]`` is the selection law ``r_y = int_{S_y} w`` of the min-score rule.
    """

    k: int
    starts: np.ndarray
    ends: np.ndarray
    ptr: np.ndarray
    marginal: np.ndarray

    def intervals(self, y: int) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)`` of the intervals forming ``S_y``."""
        sl = slice(self.ptr[y], self.ptr[y + 1])
        return self.starts[sl], self.ends[sl]


def _solve_slide(delta: float, c: float, u_lo: float, u_hi: float, k: int) -> float:
    """Root ``u`` in ``[u_lo, u_hi]`` of ``u^k - (u - delta)^k = c`` (increasing in ``u``).

    Safeguarded Newton on ``delta * s_k(u) = c`` with ``s_j(u) = sum_{i<j} u^i z^{j-1-i}``,
    ``z = u - delta`` (the difference of powers without cancellation, so the residual is accurate
    to a few ulps and Newton converges to machine precision); the derivative is ``k delta s_{k-1}``.
    """
    lo, hi = u_lo, u_hi
    if k == 2 and delta > 0:                       # u^2 - (u - delta)^2 = delta (2u - delta)
        return min(max(0.5 * (c / delta + delta), lo), hi)
    u = 0.5 * (lo + hi)
    for _ in range(200):
        z = u - delta if u > delta else 0.0
        s_prev, s, zp = 0.0, 1.0, 1.0              # s_0, s_1, z^0
        for _ in range(k - 1):
            zp *= z
            s_prev, s = s, u * s + zp
        f = delta * s - c
        if f == 0.0:
            return u
        if f > 0:
            hi = u
        else:
            lo = u
        df = k * delta * s_prev
        nxt = u - f / df if df > 0 else 0.5 * (lo + hi)
        if abs(nxt - u) <= 1e-300 + 2e-16 * abs(u):   # converged (a Newton step of ~1 ulp)
            return nxt if lo <= nxt <= hi else u
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if hi - lo <= 4e-16 * max(hi, 1e-300):
            return nxt
        u = nxt
    return u


def greedy_layout(p: np.ndarray, q: np.ndarray, k: int) -> Layout:
    """The greedy min-score layout of docs/theory/optimal_verifier.md#min-score-layouts for validated ``p, q``.

    Cost: a sequential pass over the tokens in plain Python floats (no per-token array calls). The
    free space is kept as sorted lists of intervals with their values ``int w``; a leftmost chunk
    walks the intervals it takes (each is then removed, so these walks cost ``O(V)`` in all); a
    chunk that must slide is found by walking left from the right end of the free space
    (:func:`_walk`, a few breakpoints in practice) or, after :data:`_MAX_STEPS` breakpoints, by
    bisecting prefix sums of the free space (:func:`_slide`).
    """
    V = p.size
    order = ratio_order(p, q)[::-1].tolist()
    ps, qs = p.tolist(), q.tolist()
    fa, fb, fv = [0.0], [1.0], [1.0]          # free intervals (sorted) and their values int w
    owner, starts, ends = [], [], []          # the pieces taken, in the order they are taken
    free_total = 1.0

    for y in order:
        L = qs[y]
        if L <= 0.0:
            continue
        if L > free_total:
            L = free_total
        n = len(fa)
        # the leftmost chunk [0, L] (free coordinates): intervals 0..j, ending at s2 in interval j
        acc, j, val = 0.0, 0, 0.0
        while j < n - 1 and acc + (fb[j] - fa[j]) < L:
            acc += fb[j] - fa[j]
            val += fv[j]
            j += 1
        i, s1 = 0, fa[0]
        s2 = fa[j] + (L - acc)
        if s2 > fb[j]:
            s2 = fb[j]
        val += (1.0 - fa[j]) ** k - (1.0 - s2) ** k
        if val > ps[y]:
            found = _walk(fa, fb, fv, L, ps[y], k)
            if found is None:
                found = _slide(fa, fb, fv, L, free_total, ps[y], k)
            (i, s1), (j, s2) = found
        if i == j:
            if s2 > s1:
                owner.append(y)
                starts.append(s1)
                ends.append(s2)
        else:
            for a, b in ((s1, fb[i]), *zip(fa[i + 1:j], fb[i + 1:j]), (fa[j], s2)):
                if b > a:
                    owner.append(y)
                    starts.append(a)
                    ends.append(b)
        # cut [s1 (in interval i), s2 (in interval j)] out of the free space
        left, right = s1 > fa[i], s2 < fb[j]
        if left and right:
            a, b = fa[i], fb[j]
            fa[i:j + 1] = (a, s2)
            fb[i:j + 1] = (s1, b)
            fv[i:j + 1] = ((1.0 - a) ** k - (1.0 - s1) ** k, (1.0 - s2) ** k - (1.0 - b) ** k)
        elif left:
            a = fa[i]
            fa[i:j + 1] = (a,)
            fb[i:j + 1] = (s1,)
            fv[i:j + 1] = ((1.0 - a) ** k - (1.0 - s1) ** k,)
        elif right:
            b = fb[j]
            fa[i:j + 1] = (s2,)
            fb[i:j + 1] = (b,)
            fv[i:j + 1] = ((1.0 - s2) ** k - (1.0 - b) ** k,)
        else:
            del fa[i:j + 1], fb[i:j + 1], fv[i:j + 1]
        free_total -= L
        if not fa:
            fa, fb, fv = [1.0], [1.0], [0.0]
    owner = np.array(owner, dtype=np.int64)
    by_token = np.argsort(owner, kind="stable")             # each token's pieces in taking order
    starts = np.array(starts)[by_token]
    ends = np.array(ends)[by_token]
    ptr = np.zeros(V + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=V), out=ptr[1:])
    seg = (1.0 - starts) ** k - (1.0 - ends) ** k
    marginal = np.bincount(owner[by_token], seg, minlength=V)
    return Layout(k, starts, ends, ptr, marginal)


_MAX_STEPS = 24  # a slid chunk walks this many breakpoints before the prefix-sum search takes over


def _walk(fa, fb, fv, L: float, target: float, k: int):
    """Slide a chunk of free measure ``L`` left from the right end of the free space, breakpoint by
    breakpoint (an end reaching the start of its interval), until its value rises to ``target``.

    Used when the leftmost chunk is worth more than ``target``; the value decreases as the chunk
    moves right, and slid chunks mostly end near the right end (later tokens have lower ``p/q``),
    so few breakpoints are passed. The value is kept incrementally (``inner`` = values of the
    intervals strictly between the ends), so a step costs O(1); between two breakpoints both ends
    stay in one interval each and the equation is solved exactly (:func:`_solve_slide`). Returns
    the chunk as :func:`_slide` does (the last chunk if even that is worth ``target`` or more), or
    ``None`` after :data:`_MAX_STEPS` breakpoints (then the prefix-sum search is used).
    """
    j = len(fa) - 1
    u2 = fb[j]
    acc, i = 0.0, j                           # the left end: free measure L back from the right end
    while i > 0 and acc + (fb[i] - fa[i]) < L:
        acc += fb[i] - fa[i]
        i -= 1
    u1 = fb[i] - (L - acc)
    if u1 < fa[i]:
        u1 = fa[i]
    inner = sum(fv[i + 1:j]) if j - i > 1 else 0.0
    rest = inner + (1.0 - fa[j]) ** k - (1.0 - fb[i]) ** k if i < j else 0.0
    if rest + (1.0 - u1) ** k - (1.0 - u2) ** k >= target:
        return (i, u1), (j, u2)               # even the last chunk is worth target or more
    for _ in range(_MAX_STEPS):
        d1, d2 = u1 - fa[i], u2 - fa[j]
        step = d1 if d1 < d2 else d2
        # value at the end of this piece: both ends moved left by step
        if rest + (1.0 - (u1 - step)) ** k - (1.0 - (u2 - step)) ** k >= target:
            u = _solve_slide(u2 - u1, target - rest, 1.0 - u1, 1.0 - (u1 - step), k)
            t = min(max(u1 - (1.0 - u), 0.0), step)
            return (i, u1 - t), (j, max(u2 - t, fa[j]))
        if i == 0 and d1 <= d2:               # reached the leftmost chunk (worth more than target)
            return None
        if d1 <= d2:                          # the left end reaches the start of interval i
            u2 -= d1
            i -= 1
            u1 = fb[i]
            if i + 1 < j:
                inner += fv[i + 1]
            if d1 == d2:                      # both at once: the right end moves on too
                j -= 1
                u2 = fb[j]
                if j > i:
                    inner -= fv[j]
        else:                                 # the right end reaches the start of interval j
            u1 -= d2
            j -= 1
            u2 = fb[j]
            if j > i:
                inner -= fv[j]
        rest = inner + (1.0 - fa[j]) ** k - (1.0 - fb[i]) ** k if i < j else 0.0
    return None


def _slide(fa, fb, fv, L: float, total: float, target: float, k: int):
    """The chunk of measure ``L`` whose value is ``target`` (or the last one), as
    ``((interval, position), (interval, position))`` of its two ends.

    The value ``v(x)`` of the chunk ``[x, x + L]`` (free coordinates) decreases in ``x``. Its
    breakpoints (an end of the chunk at the start of a free interval) form two sorted families,
    ``C_m`` and ``C_m - L``; binary searches in both narrow the bracket to a piece without
    breakpoints, where both ends stay inside one interval each and the equation is solved exactly.
    """
    n = len(fa)
    C = [0.0, *accumulate([b - a for a, b in zip(fa, fb)])]   # free coordinate of each interval start
    Dv = [0.0, *accumulate(fv)]
    xmax = max(total - L, 0.0)

    def locate(x: float):
        i = min(max(bisect_right(C, x) - 1, 0), n - 1)
        return i, min(fa[i] + (x - C[i]), fb[i])

    def value(x: float) -> float:  # int w over the free coordinates [x, x + L]
        (i1, u1), (i2, u2) = locate(x), locate(x + L)
        return (Dv[i2] - Dv[i1] + (1.0 - fa[i2]) ** k - (1.0 - u2) ** k
                - (1.0 - fa[i1]) ** k + (1.0 - u1) ** k)

    if value(xmax) >= target:
        x = xmax
    else:
        lo, hi = 0.0, xmax  # value(lo) > target > value(hi)
        for shift in (0.0, L):  # the families C[1:n] and C[1:n] - L
            a = bisect_right(C, lo, 1, n, key=lambda c: c - shift)
            b = bisect_left(C, hi, 1, n, key=lambda c: c - shift)
            while a < b:  # family[a:b] lies strictly inside (lo, hi)
                mid = (a + b) // 2
                xm = C[mid] - shift
                if value(xm) >= target:
                    lo, a = xm, mid + 1
                else:
                    hi, b = xm, mid
        # inside (lo, hi) both ends stay in one interval each; with u = 1 - pos(x):
        # v(x) = Dv[i2] - Dv[i1] + (1 - a[i2])^k - (1 - a[i1])^k + u^k - (u - delta)^k
        xm = 0.5 * (lo + hi)
        (i1, pos1), (i2, pos2) = locate(xm), locate(xm + L)
        const = Dv[i2] - Dv[i1] + (1.0 - fa[i2]) ** k - (1.0 - fa[i1]) ** k
        u_lo, u_hi = 1.0 - (fa[i1] + (hi - C[i1])), 1.0 - (fa[i1] + (lo - C[i1]))
        u = _solve_slide(pos2 - pos1, target - const, u_lo, u_hi, k)
        x = min(max(C[i1] + (1.0 - u) - fa[i1], lo), hi)
    # the chunk [x, x + L] as (interval, position) of both ends
    i = min(bisect_right(C, x, 1, n + 1) - 1, n - 1)
    j = max(min(bisect_left(C, x + L, 1, n + 1) - 1, n - 1), i)
    s1 = min(fa[i] + (x - C[i]), fb[i])
    s2 = min(fa[j] + (x + L - C[j]), fb[j])
    return (i, s1), (j, max(s2, s1) if i == j else s2)


def selection_probabilities(layout: Layout, drafts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``P(draft i has the smallest score | drafts)`` for each of the ``k`` drafts, exactly.

    ``P(i) = int f_i(u) prod_{j != i} (1 - F_j(u)) du`` with ``F_j`` the CDF of
    ``Uniform(S_{X_j})``. On each elementary interval between consecutive breakpoints of the drafted
    sets every ``F_j`` is affine, so the integrand is a polynomial of degree ``<= k - 1``, integrated
    exactly by Gauss-Legendre with ``ceil(k/2) + 1`` nodes.
    """
    tokens, inverse, counts = np.unique(drafts, return_inverse=True, return_counts=True)
    k = drafts.size
    a_list = [layout.intervals(int(y)) for y in tokens]
    edges = np.unique(np.concatenate([np.concatenate([a, b]) for a, b in a_list]))
    if edges.size < 2:
        return np.full(k, 1.0 / k)
    x, w = np.polynomial.legendre.leggauss(k // 2 + 2)
    lo, hi = edges[:-1], edges[1:]
    nodes = (lo[:, None] + (hi - lo)[:, None] * (1 + x) / 2).ravel()     # [E * n]
    weights = ((hi - lo)[:, None] * w / 2).ravel()
    cdf = np.empty((tokens.size, nodes.size))
    dens = np.empty((tokens.size, nodes.size))
    for l, (a, b) in enumerate(a_list):
        cdf[l] = np.clip(nodes[:, None] - a, 0.0, b - a).sum(axis=1) / q[tokens[l]]
        dens[l] = ((nodes[:, None] > a) & (nodes[:, None] < b)).any(axis=1) / q[tokens[l]]
    survive = np.clip(1.0 - cdf, 0.0, 1.0)
    per_token = np.empty(tokens.size)
    for l in range(tokens.size):
        others = np.prod(np.delete(survive, l, 0) ** np.delete(counts, l)[:, None], axis=0)
        per_token[l] = counts[l] * np.sum(weights * dens[l] * survive[l] ** (counts[l] - 1) * others)
    per_token /= per_token.sum()  # exact up to round-off; removes it
    return per_token[inverse] / counts[inverse]


def sample_scores(layout: Layout, drafts: np.ndarray, q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One score ``U_i ~ Uniform(S_{X_i})`` per draft (inverse CDF over the token's intervals).

    A token with ``0 < q_y`` below the spacing of doubles at its position in ``[0, 1]`` can own no
    interval of positive length (``S_y`` is empty in floating point; its selection probability
    :func:`selection_probabilities` is 0, docs/numerics.md). Such a draft gets the score
    ``1 + Uniform(0, 1)``: it is never selected over a draft with a non-empty set, and drafts that
    all have empty sets are selected uniformly, as :func:`selection_probabilities` says.
    """
    out = np.empty(drafts.size)
    for i, y in enumerate(drafts.tolist()):
        a, b = layout.intervals(y)
        cum = np.concatenate([[0.0], np.cumsum(b - a)])
        v = rng.random() * cum[-1]
        if not cum[-1] > 0:
            out[i] = 1.0 + rng.random()
            continue
        m = min(int(np.searchsorted(cum, v, side="right")) - 1, a.size - 1)
        out[i] = a[m] + (v - cum[m])
    return out
