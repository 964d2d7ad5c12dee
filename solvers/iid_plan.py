r"""The exact optimal plan for k i.i.d. drafts without a general LP: read off the min-score layout.

For ``X_1..X_k ~ q`` i.i.d., the optimal verifier selects one draft ``Z`` by the greedy min-score
layout (:mod:`solvers.min_score_layout`, docs/theory/optimal_verifier.md) and accepts it with
probability ``min(1, p_Z / r_Z)``, where ``r`` is the layout's selection law; its acceptance is
``sum_y min(r_y, p_y) = alpha*`` (Khisti et al., ICLR 2025, the canonical decomposition). The
membership flow of that rule is therefore an optimal solution of the membership LP
(:mod:`solvers.membership_lp`):

.. math::
    f(S, y) = \min\Bigl(1, \frac{p_y}{r_y}\Bigr) \sum_{M:\ \mathrm{set}(M) = S} Q(M)\, P(Z = y \mid M),

summed over the draft multisets ``M`` whose set of distinct tokens is ``S``, with
``Q(M) = k! / \prod_t c_t! \prod_t q_t^{c_t}`` (computed in log space, so no count overflows).

``P(Z = y | M)`` has a closed form. The sets ``S_t`` of the layout partition ``[0, 1]`` into
elementary intervals ``e = [a_e, b_e]``, each owned by one token. Let ``G_t(u) = |S_t \cap [u, 1]|
/ q_t`` be the probability that a score drawn uniformly on ``S_t`` exceeds ``u``. On an interval
owned by ``y`` only ``G_y`` moves, so integrating the density of the smallest score gives

.. math::
    P(Z = y \mid M) = \sum_{e \text{ owned by } y}
        \bigl[G_y(a_e)^{c_y} - G_y(b_e)^{c_y}\bigr] \prod_{t \in M,\ t \ne y} G_t(a_e)^{c_t},

where the bracket is evaluated as ``(x - z) \sum_i x^i z^{c-1-i}`` (positive terms only, no
cancellation). The cost is linear in the number of draft multisets times ``k^2`` times the number
of intervals per token, with no solver. The plan is completed with the leftovers as every
membership plan (:func:`solvers.membership_lp._make_plan`), and its certificate is the closed-form
prefix cut (:func:`solvers.closed_form.optimal_cut`): ``certificate_value - value`` bounds the error.
"""

from __future__ import annotations

import time
from itertools import combinations
from math import comb, lgamma

import numpy as np

from ot_coupling.validation import validate_distribution, validate_k

from .closed_form import cut_value, optimal_cut
from .membership_lp import _PAD, GAP_TOL, MembershipOT, _make_plan
from .min_score_layout import Layout, greedy_layout
from .result import warn_if_failed

#: default limit on the number of draft multisets enumerated (refused before any work above it)
MAX_MULTISETS = 20_000_000
#: limit on the compositions of k looped over (one vectorised pass each; large k with small V)
MAX_COMPOSITIONS = 20_000
_CHUNK = 1 << 16


def compositions(k: int, m: int):
    """All ordered ``m``-tuples of positive integers summing to ``k``."""
    for cuts in combinations(range(1, k), m - 1):
        bounds = (0,) + cuts + (k,)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(m))


def count_iid_multisets(q: np.ndarray, k: int) -> int:
    """Number of draft multisets of ``k`` i.i.d. draws from the support of ``q`` (exact integer)."""
    n = int((np.asarray(q) > 0).sum())
    return sum(comb(n, m) * comb(k - 1, m - 1) for m in range(1, min(k, n) + 1))


def _survival_tables(layout: Layout, q: np.ndarray):
    """Elementary intervals (sorted), their owners, and ``G_t(a_e)`` as a ``[V, E]`` table."""
    V = q.size
    owner = np.repeat(np.arange(V), np.diff(layout.ptr))
    order = np.argsort(layout.starts, kind="stable")
    a, b, own = layout.starts[order], layout.ends[order], owner[order]
    length = b - a
    # beyond[t, e] = |S_t cap [a_e, 1]|: suffix sums of the lengths of t's own intervals
    own_len = np.zeros((V, a.size))
    own_len[own, np.arange(a.size)] = length
    beyond = np.cumsum(own_len[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.where(q[:, None] > 0, np.minimum(beyond / q[:, None], 1.0), 0.0)
    # per token: the indices of the intervals it owns, padded with -1
    counts = np.bincount(own, minlength=V)
    width = max(int(counts.max(initial=0)), 1)
    slots = np.full((V, width), -1, dtype=np.int64)
    rank = np.zeros(a.size, dtype=np.int64)
    seen = np.zeros(V, dtype=np.int64)
    for e, t in enumerate(own.tolist()):      # E = O(V) intervals
        rank[e] = seen[t]
        seen[t] += 1
    slots[own, rank] = np.arange(a.size)
    drop = np.where(q[:, None] > 0, length[np.maximum(slots, 0)] / np.where(q > 0, q, 1.0)[:, None], 0.0)
    return G, slots, np.where(slots >= 0, drop, 0.0)


def _bracket(x: np.ndarray, d: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``x^c - (x - d)^c`` for integer ``c >= 1`` as ``d * sum_i x^i (x - d)^(c-1-i)`` (no cancellation)."""
    z = np.clip(x - d, 0.0, None)
    out = np.zeros(np.broadcast(x, z, c).shape)
    cmax = int(np.max(c))
    for i in range(cmax):
        term = x ** i * z ** np.clip(c - 1 - i, 0, None)
        out += np.where(i < c, term, 0.0)
    return d * out


def _selection(logG, G, slots, n_own, drop, tokens: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``P(Z = tokens[:, i] | multiset)`` for a block of multisets ``[N, m]`` with counts ``[m]``.

    Works on the flat list of (multiset, position ``i``, interval ``e`` owned by ``tokens[:, i]``)
    triples, so a token owning many intervals costs only where it occurs.
    """
    N, m = tokens.shape
    flat = tokens.ravel()
    reps = n_own[flat]
    pair = np.repeat(np.arange(N * m), reps)                 # (multiset, position) of each triple
    first = np.cumsum(reps) - reps
    e = slots[flat[pair], np.arange(pair.size) - np.repeat(first, reps)]
    y = flat[pair]
    c_y = np.tile(counts, N)[pair]
    g_self = G[y, e]                                         # G_y(a_e) > 0 on y's own intervals
    own = _bracket(g_self, drop[y, np.arange(pair.size) - np.repeat(first, reps)], c_y)
    row = pair // m
    log_other = -c_y * np.log(g_self)                        # remove y's own term from the sum
    for j in range(m):
        log_other += counts[j] * logG[tokens[row, j], e]
    return np.bincount(pair, weights=own * np.exp(log_other), minlength=N * m).reshape(N, m)


def _combinations_array(items: np.ndarray, m: int) -> np.ndarray:
    """All ``m``-subsets of ``items`` (increasing rows, lexicographic order) as an ``[C, m]`` array."""
    n = items.size
    combos = np.arange(n, dtype=np.int64)[:, None]
    for _ in range(1, m):
        last = combos[:, -1]
        reps = n - 1 - last
        base = np.repeat(combos, reps, axis=0)
        start = np.repeat(last + 1 - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
        nxt = np.arange(base.shape[0]) + start
        combos = np.concatenate([base, nxt[:, None]], axis=1)
    return items[combos]


def iid_layout_plan(p, q, k: int, *, max_multisets: int = MAX_MULTISETS) -> MembershipOT:
    """Exact optimal membership plan for ``k`` i.i.d. drafts from the min-score layout (no LP).

    Parameters
    ----------
    p, q : array_like
        Target and draft distributions (length ``V``).
    k : int
        Number of i.i.d. drafts.
    max_multisets : int, optional
        Refuse (``ValueError``) before any work when the number of draft multisets exceeds this.

    Returns
    -------
    MembershipOT
        ``value`` (acceptance of the exactly feasible plan), the complete ``plan`` over draft sets,
        the certificate ``cut`` (closed-form prefix cut) and its ``certificate_value``;
        ``backend == "layout"``.
    """
    p_arr = validate_distribution(p, "p")
    q_arr = validate_distribution(q, "q")
    if p_arr.size != q_arr.size:
        raise ValueError(f"p and q must have the same length, got {p_arr.size} and {q_arr.size}")
    k = validate_k(k)
    n_multi = count_iid_multisets(q_arr, k)
    n_support = int((q_arr > 0).sum())
    n_comp = sum(comb(k - 1, m - 1) for m in range(1, min(k, n_support) + 1))
    if n_comp > MAX_COMPOSITIONS:
        raise ValueError(f"problem too large: {n_comp} compositions of k={k} exceed {MAX_COMPOSITIONS}; "
                         "use solvers.optimal_acceptance for the value alone")
    if n_multi > max_multisets:
        raise ValueError(f"problem too large: {n_multi} draft multisets exceed max_multisets={max_multisets}; "
                         "use solvers.optimal_acceptance for the value alone")
    t0 = time.perf_counter()
    layout = greedy_layout(p_arr, q_arr, k)
    r = layout.marginal
    with np.errstate(divide="ignore", invalid="ignore"):
        accept = np.where(r > 0, np.minimum(1.0, p_arr / np.where(r > 0, r, 1.0)), 0.0)
    G, slots, drop = _survival_tables(layout, q_arr)
    n_own = (slots >= 0).sum(axis=1)
    with np.errstate(divide="ignore"):
        logG = np.log(G)
    support = np.flatnonzero(q_arr > 0)
    logq = np.full(q_arr.size, -np.inf)
    logq[support] = np.log(q_arr[support])
    log_kfact = lgamma(k + 1)
    set_blocks, prob_blocks, flow_blocks = [], [], []
    for m in range(1, min(k, support.size) + 1):
        comps = [np.array(c) for c in compositions(k, m)]
        log_coef = [log_kfact - sum(lgamma(ci + 1) for ci in c) for c in comps]
        all_idx = _combinations_array(support, m)
        for lo in range(0, all_idx.shape[0], _CHUNK):
            idx = all_idx[lo:lo + _CHUNK]
            lq = logq[idx]
            set_prob = np.zeros(idx.shape[0])
            flow = np.zeros(idx.shape)
            for c, lc in zip(comps, log_coef):
                qm = np.exp(lc + lq @ c)                     # Q(M) of the multiset (idx, c)
                set_prob += qm
                flow += qm[:, None] * _selection(logG, G, slots, n_own, drop, idx, c)
            set_blocks.append(np.concatenate([idx, np.full((idx.shape[0], k - m), _PAD)], axis=1))
            prob_blocks.append(set_prob)
            flow_blocks.append(np.concatenate([flow * accept[idx],
                                               np.zeros((idx.shape[0], k - m))], axis=1))
    sets = np.concatenate(set_blocks)
    set_probs = np.concatenate(prob_blocks)
    flows = np.concatenate(flow_blocks)
    total = set_probs.sum()
    set_probs = set_probs / total                            # round-off only (sum is 1 exactly)
    flows = flows / total
    keep = (sets != _PAD) & (p_arr[np.where(sets != _PAD, sets, 0)] > 0)
    edge_set = np.repeat(np.arange(sets.shape[0]), k)[keep.ravel()]
    edge_token = sets.ravel()[keep.ravel()]
    raw = flows.ravel()[keep.ravel()]
    # the rule's own marginals, before the plan repairs round-off: flow into y is min(r_y, p_y),
    # flow out of S is at most Q(S); anything else is an error of this module, not round-off
    col_err = np.abs(np.bincount(edge_token, raw, minlength=p_arr.size) - np.minimum(r, p_arr)).max()
    row_excess = (np.bincount(edge_set, raw, minlength=set_probs.size) - set_probs).max(initial=0.0)
    error = float(max(col_err, row_excess, 0.0))
    if error > 1e-9:
        raise RuntimeError(f"layout plan marginals off by {error:.3g} (p, q, k = V{p_arr.size}, k{k})")
    plan = _make_plan(p_arr, sets, set_probs, edge_set, edge_token, raw)
    build = time.perf_counter() - t0
    cut = optimal_cut(p_arr, q_arr, k).cut
    certificate = cut_value(p_arr, sets, set_probs, cut)
    value = plan.acceptance()
    code, message = 0, f"optimal (min-score layout; raw marginal error {error:.1e})"
    if certificate - value > GAP_TOL:
        code, message = 3, f"certificate gap {certificate - value:.2e} exceeds {GAP_TOL:g}"
    return warn_if_failed(MembershipOT(
        value=value, plan=plan, cut=cut, certificate_value=certificate, success=code == 0, status=code,
        message=message, backend="layout", n_variables=edge_set.size, n_constraints=sets.shape[0] + p_arr.size,
        n_sets=sets.shape[0], solve_seconds=build, build_seconds=0.0, k=k, draft_law="iid"))

