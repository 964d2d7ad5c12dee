r"""An exact float max-flow for the membership-cost transport problem: value, plan and min cut.

The membership LP (:mod:`solvers.membership_lp`; docs/theory/membership_ot.md, "The max-flow
form") is the maximum flow of the bipartite network (this module:
docs/theory/membership_ot.md#the-exact-float-max-flow)

.. math::
    \text{source} \xrightarrow{Q(S)} S \xrightarrow{\infty,\ y \in S} y \xrightarrow{p(y)} \text{sink},

with one node per draft set ``S`` (``n`` of them, each with at most ``k`` tokens) and one per token
(``V``). Here ``V`` is small and ``n`` large, so the flow is computed on the *token* side.

Algorithm
---------
1. **Greedy start.** Tokens are visited in descending order of ``p(y) / qbar(y)``, with
   ``qbar(y) = sum_{S containing y} Q(S) / |S|`` the draft mass of ``y`` in the set law: token
   ``y`` takes the unsent mass of its sets, up to ``p(y)``, preferring sets with the fewest tokens
   still to be visited (they have no later outlet). One vectorised pass per token. On the
   without-replacement, greedy and hub laws of benchmarks/bench_flow_plan.py it is already optimal.
2. **Shortest augmenting paths on the token graph** (Edmonds and Karp, J. ACM 19, 1972). An
   augmenting path of the network alternates sets and tokens:
   ``source -> S_0 -> y_1 <- S_1 -> y_2 <- ... -> y_t -> sink``; the backward step ``y_i <- S_i``
   moves flow of ``S_i`` from ``y_i`` to ``y_{i+1}``. So a path is a path ``y_1 -> ... -> y_t`` in
   the token graph with an arc ``y -> y'`` whenever some set ``S \ni y, y'`` has ``f(S, y) > 0``,
   starting at a token with an unsaturated set and ending at a token with ``p(y) - load(y) > 0``.
   Breadth-first search reads the arcs off the flows (one vectorised pass over the edges per
   level; the ``V x V`` token graph is never stored, so ``V`` may be a full vocabulary); the
   bottleneck is summed over *all* sets of each arc (they are parallel paths of the same length),
   so one augmentation moves whole bundles of sets.
3. **Exactness in floats.** The capacities are never rescaled or rounded: every amount moved is a
   sum of stored float masses. An arc, source or sink that is the bottleneck is set to exactly 0
   (the drained sets are those of a prefix of the cumulative sum that defines the bottleneck), so
   no round-off residue can keep a path open, and the Edmonds-Karp termination argument applies.
   Masses down to the smallest subnormal are transported as they are (a scaled-integer flow,
   ``backend="maxflow"``, floors everything below ``1 / scale``).
4. **Certificate.** When no path is left, the tokens reachable from the source form a minimum cut
   ``H``; its exact value ``p(H) + 1 - Q(S \subseteq H)`` (docs/theory/membership_ot.md,
   "Optimal acceptance by min-cut") is an upper bound equal to the flow value up to round-off.
   The best prefix of the ``p / q`` order (the closed-form cut of :func:`solvers.closed_form.optimal_cut`
   for the ``iid`` and without-replacement laws; ``p / qbar`` for an explicit law) is evaluated
   exactly on the set law too (:func:`prefix_cut`) and the lower of the two cuts is kept.

The plan is completed as every membership plan (:func:`solvers.membership_lp._make_plan`) and then
*verified*: both marginals to :data:`MARGINAL_TOL` and ``|certificate - value|`` to :data:`GAP_TOL`
(both widened to ``eps (n + V)`` above ``n + V = 4500``, :func:`tolerance`);
a failed check gives ``success=False`` with a :class:`RuntimeWarning` (``backend="flow"``) or the
HiGHS LP (``backend="auto"``), never a silent wrong answer. A ``time_limit`` is checked between
augmenting paths; when it stops the search the flow so far (feasible, a lower bound) is returned with
``success=False``, ``status=1`` and a :class:`RuntimeWarning`, under either backend name.
"""

from __future__ import annotations

import math
import time
from numbers import Real

import numpy as np

#: absolute tolerance of the verified plan marginals (set law and target law)
MARGINAL_TOL = 1e-12
#: largest certificate gap ``certificate_value - value`` of a successful flow solve
GAP_TOL = 1e-12
#: augmenting paths allowed per node of the network (``n + V``) before giving up (``finished=False``);
#: far above what occurs (at most 96 paths on 16,000 sets even from a random greedy order)
AUGMENTATIONS_PER_NODE = 10


def augmentation_limit(n_sets: int, V: int) -> int:
    """Default ``max_augmentations`` of :func:`max_flow`: :data:`AUGMENTATIONS_PER_NODE` ``* (n + V)``."""
    return AUGMENTATIONS_PER_NODE * (n_sets + V)


def check_time_limit(time_limit) -> float | None:
    """``time_limit`` as seconds: ``None`` (no limit) or a positive finite real number.

    Raises
    ------
    ValueError
        naming ``time_limit`` for anything else (0, a negative number, NaN, infinity, a bool, a string).
    """
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, Real) or not (
            math.isfinite(time_limit) and time_limit > 0):
        raise ValueError("time_limit must be a positive finite number of seconds or None, "
                         f"got {time_limit!r}")
    return float(time_limit)


class FlowState:
    """Flows ``F[s, c]`` on the membership edges ``(s, tokens[s, c])`` and the slacks of both sides.

    ``tokens`` is the ``[n, w]`` set array with ``-1`` for pads *and* for tokens of zero target mass
    (no edge); ``r`` = unsent set mass, ``l`` = unfilled target mass. Memory is ``O(n w + V)``: the
    token graph is never stored, its arcs are read off ``F`` during the search.
    """

    def __init__(self, p: np.ndarray, tokens: np.ndarray, set_probs: np.ndarray):
        n, w = tokens.shape
        V = p.size
        self.V, self.n, self.w = V, n, w
        self.tokens = tokens
        self.F = np.zeros((n, w))
        self.r = set_probs.astype(np.float64).copy()
        self.l = p.astype(np.float64).copy()
        flat = tokens.ravel()
        valid = np.flatnonzero(flat >= 0)
        order = valid[np.argsort(flat[valid], kind="stable")]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(flat[valid], minlength=V))])
        self._by_token, self._ptr = order, ptr

    def edges_of(self, y: int) -> np.ndarray:
        """Flat edge ids ``s * w + c`` of the sets containing token ``y``, in increasing set order."""
        return self._by_token[self._ptr[y]:self._ptr[y + 1]]

    @staticmethod
    def _take(values: np.ndarray, amount: float, total: float) -> np.ndarray:
        """Amounts taken from ``values`` (a prefix; the last one partially) to make up ``amount``.

        ``amount == total`` (``total`` = the last cumulative sum) takes every value exactly.
        """
        if amount >= total:
            return values.copy()
        c = np.cumsum(values)
        j = int(np.searchsorted(c, amount, side="right"))      # values[:j] are taken whole
        out = np.zeros_like(values)
        out[:j] = values[:j]
        if j < values.size:
            out[j] = min(values[j], amount - (c[j - 1] if j else 0.0))
        return out

    # ------------------------------------------------------------------ moves
    def push_from_sets(self, edges: np.ndarray, amount: float, total: float) -> None:
        """Send ``amount`` from the unsent mass of the sets of ``edges`` into the edges' token."""
        s = edges // self.w
        take = self._take(self.r[s], amount, total)
        F = self.F.ravel()
        F[edges] += take
        self.r[s] = np.where(take >= self.r[s], 0.0, self.r[s] - take)

    def move(self, sets: np.ndarray, cols: np.ndarray, cols_next: np.ndarray, values: np.ndarray,
             amount: float, total: float) -> None:
        """Move ``amount`` of the flow of ``sets`` from columns ``cols`` to columns ``cols_next``.

        ``values`` are the flows ``F[sets, cols]`` when the path was found (flows earlier on the
        same path may since have grown; only the snapshot is counted on)."""
        F = self.F
        take = self._take(values, amount, total)
        now = F[sets, cols]
        F[sets, cols] = np.where(take >= now, 0.0, now - take)
        F[sets, cols_next] += take

    # ------------------------------------------------------------------ queries
    def supply(self, y: int) -> tuple[np.ndarray, float]:
        """Edges of ``y`` whose set has unsent mass, and that mass (the last cumulative sum)."""
        e = self.edges_of(y)
        e = e[self.r[e // self.w] > 0]
        return e, (float(np.cumsum(self.r[e // self.w])[-1]) if e.size else 0.0)

    def arc(self, y: int, y_next: int):
        """Sets containing ``y`` and ``y_next`` with flow on ``y``.

        Returns ``(sets, cols, cols_next, flows, capacity)``."""
        e = self.edges_of(y)
        s, c = e // self.w, e % self.w
        f = self.F[s, c]
        hit = self.tokens[s] == y_next                          # [m, w]
        ok = hit.any(axis=1) & (f > 0)
        s, c = s[ok], c[ok]
        c_next = hit[ok].argmax(axis=1)
        values = f[ok]
        cap = float(np.cumsum(values)[-1]) if s.size else 0.0
        return s, c, c_next, values, cap

    def reachable(self, stop_at_sink: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Breadth-first search on the token graph from the tokens of sets with unsent mass.

        Returns ``(dist, parent)`` (``-1`` = not reached). An arc ``y -> y'`` is a set ``S``
        containing both with ``F(S, y) > 0``; each level is one vectorised pass over the edges.
        With ``stop_at_sink`` the search ends at the first level that reaches a token with
        ``l > 0``.
        """
        V, w, tok = self.V, self.w, self.tokens
        flat = tok.ravel()
        dist = np.full(V, -1, dtype=np.int64)
        parent = np.full(V, -1, dtype=np.int64)
        supplied = flat[(flat >= 0) & np.repeat(self.r > 0, w)]
        dist[supplied] = 0
        if stop_at_sink and (self.l[supplied] > 0).any():
            return dist, parent
        in_frontier = dist == 0
        carrying = np.flatnonzero(self.F.ravel() > 0)          # edges with flow (never a pad)
        c_token, c_set = flat[carrying], carrying // w
        level = 0
        while True:
            hit = in_frontier[c_token]
            if not hit.any():
                break
            cand = tok[c_set[hit]].ravel()                      # every token of those sets
            par = np.repeat(c_token[hit], w)
            ok = cand >= 0
            ok[ok] = dist[cand[ok]] < 0
            if not ok.any():
                break
            level += 1
            dist[cand[ok]] = level
            parent[cand[ok]] = par[ok]                          # any frontier parent will do
            in_frontier = dist == level
            if stop_at_sink and (self.l[in_frontier] > 0).any():
                break
        return dist, parent


def greedy_start(state: FlowState, order: np.ndarray) -> None:
    """Step 1 of the module docstring: tokens in ``order`` take the unsent mass of their sets.

    Consecutive tokens (in ``order``) that share no set do not interact, so they are served in one
    vectorised batch (a row each of a padded ``[batch, degree]`` array, cumulative sums along the
    rows); the result is the same as visiting them one by one. With the hub and greedy laws almost
    all tokens share no set, so a vocabulary-sized ``V`` takes a few batches, not ``V`` passes.
    Only ``F``, ``r`` and ``l`` change.
    """
    V, w = state.V, state.w
    rank = np.empty(V, dtype=np.int64)
    rank[order] = np.arange(V)
    tok = state.tokens
    valid = tok >= 0
    tok_rank = np.where(valid, rank[np.where(valid, tok, 0)], -1)                  # [n, w]
    # per row, the ranks in ascending order (pads, -1, first): the entries after a token are its
    # set's outlets still to come; the entry before it is the latest earlier token sharing the set
    col_sort = np.argsort(tok_rank, axis=1, kind="stable")
    pos = np.empty_like(col_sort)
    np.put_along_axis(pos, col_sort, np.arange(w)[None, :], axis=1)
    sorted_rank = np.take_along_axis(tok_rank, col_sort, axis=1)
    later = (w - 1 - pos).ravel()
    before = np.where(pos > 0, np.take_along_axis(sorted_rank, np.maximum(pos - 1, 0), axis=1), -1)
    flat = tok.ravel()
    edges = np.flatnonzero(flat >= 0)
    conflict = np.full(V, -1, dtype=np.int64)             # latest earlier rank sharing a set, per rank
    np.maximum.at(conflict, rank[flat[edges]], before.ravel()[edges])
    edges = edges[np.lexsort((later[edges], rank[flat[edges]]))]                  # by rank, then outlets
    deg = np.bincount(rank[flat[edges]], minlength=V)
    bounds = np.concatenate([[0], np.cumsum(deg)])
    # batches of consecutive ranks sharing no set; the padded batch stays within 4x its edges
    batches, b, width = [], 0, 0
    conflict_l, deg_l, bounds_l = conflict.tolist(), deg.tolist(), bounds.tolist()
    for i in range(V):
        di = deg_l[i]
        wide = width if width >= di else di
        if i > b and (conflict_l[i] >= b or (i + 1 - b) * wide > 4 * (bounds_l[i + 1] - bounds_l[b]) + 64):
            batches.append((b, i))
            b, wide = i, di
        width = wide
    batches.append((b, V))
    F, r, l = state.F.ravel(), state.r, state.l
    for b, e in batches:
        lo, hi = bounds[b], bounds[e]
        if lo == hi:
            continue
        tokens = order[b:e]
        d = deg[b:e]
        row = np.repeat(np.arange(e - b), d)
        col = np.arange(hi - lo) - np.repeat(bounds[b:e] - lo, d)
        ed = edges[lo:hi]
        s = ed // w
        vals = np.zeros((e - b, int(d.max())))
        vals[row, col] = r[s]
        c = np.cumsum(vals, axis=1)
        before_c = np.zeros_like(c)
        before_c[:, 1:] = c[:, :-1]
        cap = l[tokens][:, None]
        take = np.clip(np.minimum(vals, cap - before_c), 0.0, None)[row, col]
        total = c[:, -1]
        l[tokens] = np.where(total >= l[tokens], 0.0, l[tokens] - total)
        v = r[s]
        F[ed] += take
        r[s] = np.where(take >= v, 0.0, v - take)


def augment(state: FlowState, max_augmentations: int, deadline: float | None = None) -> tuple[int, bool]:
    """Step 2: shortest augmenting paths until none is left; returns (augmentations, finished).

    The search stops early (``finished=False``, the flow feasible but maybe not maximal) before
    the path after ``max_augmentations`` paths, or before a path found once
    :func:`time.perf_counter` has passed ``deadline``. A flow with no path left is reported
    finished however late: the clock is read only when there is work left.
    """
    count = 0
    while True:
        dist, parent = state.reachable(stop_at_sink=True)
        open_sink = np.flatnonzero((dist >= 0) & (state.l > 0))
        if open_sink.size == 0:
            return count, True
        if count >= max_augmentations:
            return count, False
        if deadline is not None and time.perf_counter() > deadline:
            return count, False
        end = int(open_sink[np.argmin(dist[open_sink])])
        path = [end]
        while parent[path[-1]] >= 0:
            path.append(int(parent[path[-1]]))
        path.reverse()
        src_edges, src_total = state.supply(path[0])
        arcs = [state.arc(a, b) for a, b in zip(path[:-1], path[1:])]
        amount = min([src_total, float(state.l[end])] + [a[4] for a in arcs])
        if amount <= 0:                                         # cannot happen: every term is > 0
            raise RuntimeError("zero bottleneck on an augmenting path")
        state.push_from_sets(src_edges, amount, src_total)
        for s, c, c_next, values, cap in arcs:
            state.move(s, c, c_next, values, amount, cap)
        state.l[end] = 0.0 if amount >= state.l[end] else state.l[end] - amount
        count += 1


def max_flow(p: np.ndarray, sets: np.ndarray, set_probs: np.ndarray, order: np.ndarray | None = None,
             max_augmentations: int | None = None, time_limit: float | None = None):
    """Exact float maximum flow of the membership network (module docstring).

    Parameters
    ----------
    p: target law ``[V]`` (non-negative floats).
    sets: ``[n, w]`` draft sets, token ids in ``[0, V)`` padded with ``-1``.
    set_probs: ``Q(S)`` ``[n]`` (non-negative floats).
    order: token visiting order of the greedy start, a permutation of ``range(V)`` (default:
        ``p / qbar`` descending, :func:`ratio_order_of`).
    max_augmentations: stop (``finished = False``) after this many augmenting paths (default
        :func:`augmentation_limit`, :data:`AUGMENTATIONS_PER_NODE` ``* (n + V)``).
    time_limit: seconds (positive, finite; default ``None``: no limit) from the call after which no
        further augmenting path is started (``finished = False``); the clock is read in the
        augmenting-path loop, after the greedy start.

    Returns
    -------
    ``(F [n, w], cut, augmentations, finished)``: flows on ``(s, sets[s, c])`` (0 on pads and on
    tokens with ``p = 0``), the source side ``H`` of a minimum cut (tokens reachable from the
    source, plus the tokens with ``p = 0``), the number of augmenting paths, and whether the
    search ended because no path was left. When ``finished`` is false, ``F`` is a feasible flow (a
    lower bound), ``H`` a cut of the residual network (an upper bound, not a minimum one), and the
    augmentation limit stopped the search if ``augmentations == max_augmentations``, else the
    time limit.

    Raises
    ------
    ValueError
        naming the argument (``p``, ``sets``, ``set_probs``, ``order``, ``time_limit``) that is malformed.
    """
    start = time.perf_counter()
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("p must be a 1-d array of finite non-negative masses")
    V = p.size
    sets = np.asarray(sets)
    if sets.ndim != 2 or not np.issubdtype(sets.dtype, np.integer) or (sets < -1).any() or (sets >= V).any():
        raise ValueError(f"sets must be an [n, w] integer array of token ids in [0, {V}) padded with -1")
    sets = sets.astype(np.int64)
    set_probs = np.asarray(set_probs, dtype=np.float64)
    if set_probs.shape != (sets.shape[0],) or not np.isfinite(set_probs).all() or (set_probs < 0).any():
        raise ValueError(f"set_probs must hold {sets.shape[0]} finite non-negative masses, "
                         "one per row of sets")
    if order is not None:
        order = np.asarray(order)
        if order.shape != (V,) or not np.array_equal(np.sort(order), np.arange(V)):
            raise ValueError(f"order must be a permutation of range({V})")
    if max_augmentations is None:
        max_augmentations = augmentation_limit(sets.shape[0], V)
    time_limit = check_time_limit(time_limit)
    tokens = np.where((sets >= 0) & (p[np.where(sets >= 0, sets, 0)] > 0), sets, -1)
    state = FlowState(p, tokens, set_probs)
    if order is None:
        order = ratio_order_of(p, None, sets, set_probs)[::-1]
    greedy_start(state, np.asarray(order, dtype=np.int64))
    count, finished = augment(state, max_augmentations, None if time_limit is None else start + time_limit)
    dist, _ = state.reachable()
    cut = np.flatnonzero((dist >= 0) | (p <= 0)).astype(np.int64)
    return state.F, cut, count, finished


def ratio_order_of(p: np.ndarray, q, sets: np.ndarray, set_probs: np.ndarray) -> np.ndarray:
    """Tokens by ``p / q`` ascending (:func:`solvers.closed_form.ratio_order`); without ``q`` (an
    explicit tuple law) ``q`` is replaced by the mass of each token in the set law,
    ``sum_{S \\ni y} Q(S) / |S|``."""
    from .closed_form import ratio_order

    if q is None:
        valid = sets >= 0
        size = np.maximum(valid.sum(axis=1), 1)
        q = np.bincount(sets[valid], weights=np.broadcast_to((set_probs / size)[:, None], sets.shape)[valid],
                        minlength=p.size)
    return ratio_order(p, np.asarray(q, dtype=np.float64))


def prefix_cut(p: np.ndarray, sets: np.ndarray, set_probs: np.ndarray,
               order: np.ndarray) -> tuple[np.ndarray, float]:
    """The best prefix ``H_j`` of ``order`` and its exact cut value ``p(H_j) + 1 - Q(S subset of H_j)``.

    All ``V + 1`` prefixes are scanned in ``O(n + V)``: a set lies inside ``H_j`` iff the largest
    rank of its tokens is below ``j`` (docs/theory/membership_ot.md, "The prefix cut for iid
    drafts"). With ``order`` = ``p/q`` ascending this is the closed-form cut of the named laws,
    evaluated exactly on the set law (no quadrature).
    """
    V = p.size
    rank = np.empty(V, dtype=np.int64)
    rank[order] = np.arange(V)
    valid = sets >= 0
    top = np.where(valid, rank[np.where(valid, sets, 0)], -1).max(axis=1)
    inside = np.concatenate([[0.0], np.cumsum(np.bincount(top, weights=set_probs, minlength=V))])
    target = np.concatenate([[0.0], np.cumsum(p[order])])
    vals = target + (1.0 - inside)
    j = int(np.argmin(vals))
    return np.sort(order[:j]).astype(np.int64), float(vals[j])


def verify_plan(plan, value: float, certificate: float, tol: float) -> str | None:
    """``None`` if the plan's marginals match ``p`` and ``Q`` to ``tol`` and the certificate gap is
    within ``tol``; otherwise the reason."""
    out_err = float(np.abs(plan.output_law() - plan.p).max()) if plan.p.size else 0.0
    rows = np.bincount(plan.edge_set, weights=plan.edge_flow, minlength=plan.n_sets)
    set_err = float(np.abs(rows + plan.set_leftover - plan.set_probs).max()) if plan.n_sets else 0.0
    if not out_err <= tol:
        return f"target marginal off by {out_err:.1e} (> {tol:.0e})"
    if not set_err <= tol:
        return f"draft-set marginal off by {set_err:.1e} (> {tol:.0e})"
    if not abs(certificate - value) <= tol:
        return f"certificate gap {certificate - value:.1e} exceeds {tol:.0e}"
    return None


def tolerance(n_sets: int, V: int) -> float:
    """Verification tolerance: :data:`GAP_TOL`, widened by ``eps`` per node for very large problems."""
    return max(GAP_TOL, float(np.finfo(np.float64).eps) * (n_sets + V))
