r"""Min-score layouts: realising a selection law of k i.i.d. drafts with interval sets (numpy).

research/optimal_verifier.md sec. 4. Split ``[0, 1]`` into sets ``S_y`` with ``|S_y| = q_y``. Given
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

from dataclasses import dataclass

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
    """Root ``u`` in ``[u_lo, u_hi]`` of ``u^k - (u - delta)^k = c`` (increasing in ``u``)."""
    lo, hi = u_lo, u_hi
    u = 0.5 * (lo + hi)
    for _ in range(200):
        f = u**k - (u - delta) ** k - c
        if f > 0:
            hi = u
        else:
            lo = u
        df = k * (u ** (k - 1) - (u - delta) ** (k - 1))
        nxt = u - f / df if df > 0 else 0.5 * (lo + hi)
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - u) <= 1e-17 + 4e-16 * abs(u) or hi - lo <= 4e-16 * max(hi, 1e-300):
            return nxt
        u = nxt
    return u


def greedy_layout(p: np.ndarray, q: np.ndarray, k: int) -> Layout:
    """The greedy min-score layout of research/optimal_verifier.md sec. 4 for validated ``p, q``.

    Cost: a sequential pass over the tokens; each step scans the free intervals it touches (and,
    for a slid chunk, the free intervals once).
    """
    V = p.size
    order = ratio_order(p, q)[::-1]
    fa, fb = np.array([0.0]), np.array([1.0])  # free intervals, sorted
    pieces: list[list[tuple[float, float]]] = [[] for _ in range(V)]
    free_total = 1.0

    for y in order.tolist():
        L = float(q[y])
        if L <= 0.0:
            continue
        L = min(L, free_total)
        chunk = _chunk(fa, fb, 0.0, L)  # the leftmost chunk
        if _chunk_value(fa, fb, chunk, k) > p[y]:
            chunk = _chunk(fa, fb, _slide(fa, fb, L, free_total, float(p[y]), k), L)
        (i, s1), (j, s2) = chunk
        taken = [(s1, fb[i])] if i < j else [(s1, s2)]
        taken += list(zip(fa[i + 1:j].tolist(), fb[i + 1:j].tolist()))
        if i < j:
            taken.append((fa[j], s2))
        pieces[y] = [(float(a), float(b)) for a, b in taken if b > a]
        # cut [s1 (in interval i), s2 (in interval j)] out of the free space
        keep_a = [fa[i]] if s1 > fa[i] else []
        keep_b = [s1] if s1 > fa[i] else []
        if s2 < fb[j]:
            keep_a.append(s2)
            keep_b.append(fb[j])
        fa = np.concatenate([fa[:i], keep_a, fa[j + 1:]])
        fb = np.concatenate([fb[:i], keep_b, fb[j + 1:]])
        free_total -= L
        if fa.size == 0:
            fa, fb = np.array([1.0]), np.array([1.0])
    ptr = np.zeros(V + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(pc) for pc in pieces])
    flat = [iv for pc in pieces for iv in pc]
    starts = np.array([a for a, _ in flat], dtype=np.float64)
    ends = np.array([b for _, b in flat], dtype=np.float64)
    seg = (1.0 - starts) ** k - (1.0 - ends) ** k
    marginal = np.bincount(np.repeat(np.arange(V), np.diff(ptr)), seg, minlength=V)
    return Layout(k, starts, ends, ptr, marginal)


_WINDOW = 64  # leftmost chunks: the free intervals are scanned in growing windows from the left


def _chunk(fa, fb, x: float, L: float) -> tuple[tuple[int, float], tuple[int, float]]:
    """Free coordinates ``[x, x + L]`` as ``((interval, position), (interval, position))``."""
    m = _WINDOW
    while True:
        lens = fb[:m] - fa[:m]
        cend = np.cumsum(lens)  # free coordinate at the end of each interval
        if m >= fa.size or cend[-1] >= x + L:
            break
        m *= 4
    last = lens.size - 1
    i = min(int(np.searchsorted(cend, x, side="right")), last)
    j = max(min(int(np.searchsorted(cend, x + L, side="left")), last), i)
    s1 = min(fa[i] + (x - (cend[i] - lens[i])), fb[i])
    s2 = min(fa[j] + (x + L - (cend[j] - lens[j])), fb[j])
    return (i, float(s1)), (j, float(max(s2, s1) if i == j else s2))


def _chunk_value(fa, fb, chunk, k: int) -> float:
    (i, s1), (j, s2) = chunk
    if i == j:
        return (1.0 - s1) ** k - (1.0 - s2) ** k
    inner = float(np.sum((1.0 - fa[i + 1:j]) ** k - (1.0 - fb[i + 1:j]) ** k))
    return (1.0 - s1) ** k - (1.0 - fb[i]) ** k + inner + (1.0 - fa[j]) ** k - (1.0 - s2) ** k


def _slide(fa, fb, L: float, total: float, target: float, k: int) -> float:
    """Free coordinate ``x`` of the chunk of measure ``L`` whose value is ``target`` (or the last).

    The value ``v(x)`` of the chunk ``[x, x + L]`` (free coordinates) decreases in ``x``. Its
    breakpoints (an end of the chunk at the start of a free interval) form two sorted families,
    ``C_m`` and ``C_m - L``; binary searches in both narrow the bracket to a piece without
    breakpoints, where both ends stay inside one interval each and the equation is solved exactly.
    """
    C = np.concatenate([[0.0], np.cumsum(fb - fa)])  # free coordinate of each interval start
    Dv = np.concatenate([[0.0], np.cumsum((1.0 - fa) ** k - (1.0 - fb) ** k)])
    n = fa.size
    xmax = max(total - L, 0.0)

    def locate(x: float) -> tuple[int, float]:
        i = min(max(int(np.searchsorted(C, x, side="right")) - 1, 0), n - 1)
        return i, min(fa[i] + (x - C[i]), fb[i])

    def value(x: float) -> float:  # int w over the free coordinates [x, x + L]
        (i1, u1), (i2, u2) = locate(x), locate(x + L)
        return (Dv[i2] - Dv[i1] + (1.0 - fa[i2]) ** k - (1.0 - u2) ** k
                - (1.0 - fa[i1]) ** k + (1.0 - u1) ** k)

    if value(xmax) >= target:
        return xmax
    lo, hi = 0.0, xmax  # value(lo) > target > value(hi)
    for family in (C[1:n], C[1:n] - L):
        a = int(np.searchsorted(family, lo, side="right"))
        b = int(np.searchsorted(family, hi, side="left"))
        while a < b:  # family[a:b] lies strictly inside (lo, hi)
            mid = (a + b) // 2
            if value(family[mid]) >= target:
                lo, a = float(family[mid]), mid + 1
            else:
                hi, b = float(family[mid]), mid
    # inside (lo, hi) both ends stay in one interval each; with u = 1 - pos(x):
    # v(x) = Dv[i2] - Dv[i1] + (1 - a[i2])^k - (1 - a[i1])^k + u^k - (u - delta)^k
    xm = 0.5 * (lo + hi)
    (i1, pos1), (i2, pos2) = locate(xm), locate(xm + L)
    const = Dv[i2] - Dv[i1] + (1.0 - fa[i2]) ** k - (1.0 - fa[i1]) ** k
    u_lo, u_hi = 1.0 - (fa[i1] + (hi - C[i1])), 1.0 - (fa[i1] + (lo - C[i1]))
    u = _solve_slide(float(pos2 - pos1), target - const, u_lo, u_hi, k)
    return float(np.clip(C[i1] + (1.0 - u) - fa[i1], lo, hi))


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
