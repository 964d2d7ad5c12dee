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
``Q(M) = k! / \prod_t c_t! \prod_t q_t^{c_t}``.

The masses have a closed form. The sets ``S_t`` of the layout partition ``[0, 1]`` into
elementary intervals ``e = [a_e, b_e]``, each owned by one token. Let ``B_t(u) = |S_t \cap [u, 1]|``.
The probability that all ``k`` scores exceed ``u`` and the draft set is ``S`` is
``\Phi_S(B(u)) = \sum_d k!/\prod_t d_t! \prod_t B_t(u)^{d_t}`` (compositions ``d`` of ``k`` into
``|S|`` positive parts), and on an interval owned by ``y`` only ``B_y`` moves, so

.. math::
    \sum_{M:\ \mathrm{set}(M) = S} Q(M)\, P(Z = y \mid M) = \sum_{e \text{ owned by } y} \sum_d
        \frac{k!}{\prod_t d_t!} \bigl[x_e^{d_y} - (x_e - |e|)^{d_y}\bigr]
        \prod_{t \in S,\ t \ne y} B_t(a_e)^{d_t}, \qquad x_e = B_y(a_e),

where the bracket is evaluated as ``|e| \sum_i x^i z^{c-1-i}`` (positive terms only, no
cancellation). For small problems the inner sums are formed for all tokens at once per interval
(outer products of the columns ``B(a_e)``) and summed over each token's intervals with one matrix
product (:func:`_owner_tensor`); large ones gather per (set, member, owned interval)
(:func:`_selection_mass`). The cost is linear in the number of draft sets, with no solver and no
per-set Python loop; coefficients that overflow a float are used in logs. The plan is completed
with the leftovers as every membership plan (:func:`solvers.membership_lp._make_plan`), and its
certificate is the closed-form prefix cut (:func:`solvers.closed_form.optimal_cut`):
``certificate_value - value`` bounds the error. Index patterns that depend only on the support
size and ``k`` are cached (:func:`clear_caches` empties them).
"""

from __future__ import annotations

import time
from functools import lru_cache
from itertools import combinations
from math import comb, factorial, lgamma, prod
from typing import NamedTuple

import numpy as np

from ot_coupling.validation import validate_distribution, validate_k

from .closed_form import _cut_iid, cut_value
from .membership_lp import _PAD, GAP_TOL, MembershipOT, _make_plan
from .min_score_layout import Layout, greedy_layout
from .result import warn_if_failed
from .subsets import MAX_CACHED_ROWS, range_subsets, subsets_of
from .subsets import clear_cache as clear_subsets_cache

#: default limit on the number of draft multisets enumerated (refused before any work above it)
MAX_MULTISETS = 20_000_000
#: limit on the compositions of k tabulated per set size (large k with small V; refused above)
MAX_COMPOSITIONS = 20_000
#: elements of the largest temporary array of one block of draft sets
_BLOCK_ELEMENTS = 1 << 21
#: per-interval owner tensors (:func:`_owner_tensor`) up to this many numbers replace per-set gathers
_TENSOR_ELEMENTS = 1 << 22
#: index patterns of at most this many draft sets are cached per (support size, k) (shape only)
_CACHE_SETS = MAX_CACHED_ROWS
#: up to this many compositions are looped over (one array pass each), more are done in one pass
_LOOPED_TERMS = 32


def compositions(k: int, m: int):
    """All ordered ``m``-tuples of positive integers summing to ``k``."""
    for cuts in combinations(range(1, k), m - 1):
        bounds = (0,) + cuts + (k,)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(m))


def count_iid_multisets(q: np.ndarray, k: int) -> int:
    """Number of draft multisets of ``k`` i.i.d. draws from the support of ``q`` (exact integer)."""
    n = int((np.asarray(q) > 0).sum())
    return sum(comb(n, m) * comb(k - 1, m - 1) for m in range(1, min(k, n) + 1))


class _Intervals(NamedTuple):
    """The layout's elementary intervals ``e`` sorted by start (column ``E`` is a dummy of length 0).

    ``B[t, e] = |S_t cap [a_e, 1]|`` (``[V, E + 1]``, suffix sums of each token's own lengths);
    ``own[e]`` its owner; ``length[e]``; ``n_own[t]`` how many intervals ``t`` owns; ``order``
    the sorted position of each of the layout's intervals; ``h[c - 1][e] = sum_{i<c} x^i
    z^{c-1-i}`` for ``c < k`` with ``x = B[own_e, e]``, ``z = x - length_e``.
    """

    B: np.ndarray
    own: np.ndarray
    length: np.ndarray
    n_own: np.ndarray
    order: np.ndarray
    h: list


def _intervals(layout: Layout, V: int, k: int) -> _Intervals:
    counts = np.diff(layout.ptr)
    order = np.argsort(layout.starts, kind="stable")
    own = np.repeat(np.arange(V), counts)[order]
    E = own.size
    length = np.zeros(E + 1)
    length[:E] = (layout.ends - layout.starts)[order]
    B = np.zeros((V, E + 1))
    cols = np.arange(E)
    if E:
        B[own, cols] = length[:E]
        B[:, :E] = np.cumsum(B[:, E - 1::-1], axis=1)[:, ::-1]
    h = [np.ones(E)]
    if k > 2:
        x = B[own, cols]
        z = np.maximum(x - length[:E], 0.0)
        zp = z
        h.append(x + z)
        for _ in range(3, k):
            zp = zp * z
            h.append(x * h[-1] + zp)
    return _Intervals(B, own, length, counts, order, h)


def _owned_slots(iv: _Intervals) -> np.ndarray:
    """``[V, W]``: the sorted positions of the intervals each token owns, padded with ``E`` (the dummy)."""
    V, E = iv.n_own.size, iv.own.size
    rank = np.empty(E, dtype=np.int64)
    rank[iv.order] = np.arange(E)                               # layout index -> sorted position
    slots = np.full((V, max(int(iv.n_own.max(initial=0)), 1)), E, dtype=np.int64)
    first = np.cumsum(iv.n_own) - iv.n_own
    token = np.repeat(np.arange(V), iv.n_own)
    slots[token, np.arange(E) - first[token]] = rank
    return slots


@lru_cache(maxsize=64)
def _composition_table(k: int, m: int):
    """Compositions ``d`` of ``k`` into ``m`` positive parts ``[R, m]`` and their multinomial
    coefficients ``k! / prod d_i!``: floats, or logs (``in_logs``) when a float would overflow."""
    comps = np.array(list(compositions(k, m)), dtype=np.int64).reshape(-1, m)
    log_coef = lgamma(k + 1) - np.array([sum(lgamma(c + 1) for c in row) for row in comps.tolist()])
    in_logs = bool(log_coef.max(initial=0.0) > 690.0)
    if in_logs:
        coef = log_coef
    else:
        coef = np.array([float(factorial(k) // prod(factorial(c) for c in row)) for row in comps.tolist()])
    for arr in (comps, coef):
        arr.setflags(write=False)
    return comps, coef, in_logs


@lru_cache(maxsize=16)
def _others(m: int) -> np.ndarray:
    """``[m, m - 1]``: for each position ``i``, the other positions."""
    out = np.array([[j for j in range(m) if j != i] for i in range(m)], dtype=np.int64).reshape(m, m - 1)
    out.setflags(write=False)
    return out


def _poly(x: np.ndarray, comps: np.ndarray, coef: np.ndarray, in_logs: bool, h=None) -> np.ndarray:
    """``sum_R coef_R w_R prod_j x[..., j] ** comps[R, j]`` over the rows ``R`` of ``comps``.

    Without ``h`` the weights are 1 and every column of ``comps`` is an exponent. With ``h`` the
    first column of ``comps`` is an own count ``c`` with weight ``h[c - 1]`` and ``x`` holds the
    remaining columns. All terms are non-negative (no cancellation); in logs when ``in_logs``.
    """
    own, exps = (comps[:, 0], comps[:, 1:]) if h is not None else (None, comps)
    shape = x.shape[:-1]
    if in_logs:
        with np.errstate(divide="ignore"):
            logs = np.log(x) @ exps.T.astype(np.float64) + coef if exps.shape[1] else np.broadcast_to(
                coef, shape + coef.shape)
            if h is not None:
                logs = logs + np.log(np.stack([h[c - 1] for c in own.tolist()], axis=-1))
        return np.exp(logs).sum(axis=-1)
    if comps.shape[0] > _LOOPED_TERMS:                        # many compositions: one pass over all
        dmax = int(exps.max(initial=1))
        powers = np.cumprod(np.broadcast_to(x[..., None], x.shape + (dmax,)), axis=-1)
        terms = np.prod(powers[..., np.arange(exps.shape[1]), exps - 1], axis=-1) * coef
        if h is not None:
            terms = terms * np.stack([h[c - 1] for c in own.tolist()], axis=-1)
        return terms.sum(axis=-1)
    cols = [x[..., j] for j in range(exps.shape[1])]
    pw: dict = {}
    out = np.zeros(shape)
    for r, (row, cf) in enumerate(zip(exps.tolist(), coef.tolist())):
        term = h[own[r] - 1] * cf if h is not None else cf
        for j, d in enumerate(row):
            if (j, d) not in pw:
                pw[j, d] = cols[j] if d == 1 else cols[j] ** d
            term = term * pw[j, d]
        out = out + term
    return out


def _owner_tensor(iv: _Intervals, support: np.ndarray, k: int, m: int) -> np.ndarray:
    r"""``T[y, t_1..t_{m-1}]``: the mass of ``Z = y`` for the draft set ``{y, t_1..t_{m-1}}``.

    The sum of :func:`_selection_mass` formed per elementary interval ``e`` for *all* other tokens
    at once (outer products of the columns ``B[:, e]``, ``E n^{m-1}`` numbers) and summed over the
    intervals each token owns; no per-set gathers. Indexed by rank in ``support`` (``n`` tokens).
    Symmetric in the others (the compositions are closed under permuting them); only entries with
    distinct tokens are read (:func:`_tensor_positions`).
    """
    comps, coef, _ = _composition_table(k, m)
    n, E = support.size, iv.own.size
    everything = n == iv.B.shape[0]
    Be = (iv.B[:, :E] if everything else iv.B[support, :E]).T  # [E, n]
    powers = [None, Be]
    for _ in range(2, int(comps[:, 1:].max(initial=1)) + 1):
        powers.append(powers[-1] * Be)
    acc = None                                                  # [E, n, ..., n]: per-interval masses
    for row, cf in zip(comps.tolist(), coef.tolist()):
        term = ((cf * iv.length[:E]) * iv.h[row[0] - 1])[:, None] * powers[row[1]]
        for j, d in enumerate(row[2:], start=2):
            term = term[..., None] * powers[d].reshape((E,) + (1,) * (j - 1) + (n,))
        acc = term if acc is None else acc + term
    # sum over the intervals each token owns: a one-hot [n, E] matrix times the per-interval masses
    owns = np.zeros((n, E))
    owns[iv.own if everything else np.searchsorted(support, iv.own), np.arange(E)] = 1.0   # owners: q > 0
    return (owns @ acc.reshape(E, -1)).reshape((n,) * m)


@lru_cache(maxsize=16)
def _tensor_positions(n: int, m: int) -> np.ndarray:
    """``[C(n, m), m]``: flat index into an ``[n]^m`` tensor of (member ``i``, the others in order)
    for every ``m``-subset of ``range(n)`` (lexicographic rows, as :func:`solvers.subsets.range_subsets`)."""
    combos = range_subsets(n, m)
    weights = n ** np.arange(m - 1, -1, -1, dtype=np.int64)
    out = np.stack([combos[:, [i] + others] @ weights for i, others in enumerate(_others(m).tolist())],
                   axis=1)
    out.setflags(write=False)
    return out


def _selection_mass(iv: _Intervals, slots: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    r"""``Q(S) P(Z = y | S)`` for the sets ``idx [N, m]`` (rows) and each member ``y`` (columns).

    With ``B_t(u) = |S_t cap [u, 1]|``, the probability that all ``k`` scores exceed ``u`` and the
    draft set is ``S`` is ``Phi_S(B(u)) = sum_d k!/prod d_t! prod_t B_t(u)^{d_t}`` (compositions
    ``d`` of ``k`` into ``|S|`` positive parts). On an interval ``[a_e, b_e]`` owned by ``y`` only
    ``B_y`` moves, by the interval's length, so the mass of ``Z = y`` is

    .. math:: \sum_{e \text{ owned by } y} \sum_d \frac{k!}{\prod_t d_t!}
        \bigl(x^{d_y} - z^{d_y}\bigr) \prod_{t \ne y} B_t(a_e)^{d_t},
        \qquad x = B_y(a_e),\ z = x - |e|,

    with ``x^c - z^c = |e| sum_{i<c} x^i z^{c-1-i}`` (positive terms only, no cancellation).
    Vectorised over the (set, member, owned interval) triples, one pass per interval rank ``w``
    over the members that own more than ``w`` intervals (no padding).
    """
    N, m = idx.shape
    comps, coef, in_logs = _composition_table(k, m)
    E1 = iv.B.shape[1]
    Bf = iv.B.ravel()
    tokens = idx.ravel()
    n_own = iv.n_own[tokens]
    others = _others(m)
    out = np.zeros(N * m)
    for w in range(slots.shape[1]):
        if w == 0:                                              # every member owns an interval or the dummy
            f, y = slice(None), tokens
            o = idx[:, others].reshape(N * m, m - 1)
        else:
            f = np.flatnonzero(n_own > w)
            if f.size == 0:
                break
            y = tokens[f]
            o = tokens[(f // m * m)[:, None] + others[f % m]]     # [P, m - 1]
        e = slots[y, w]
        ln = iv.length[e]
        x = Bf[y * E1 + e]
        z = np.maximum(x - ln, 0.0)
        h, zp = [np.ones(y.size)], np.ones(y.size)
        for _ in range(1, int(comps[:, 0].max())):
            zp = zp * z
            h.append(x * h[-1] + zp)
        xo = Bf[o * E1 + e[:, None]]
        out[f] += _poly(xo, comps, coef, in_logs, h) * ln
    return out.reshape(N, m)


def _set_probs(q: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """``Q(S) = sum_d k!/prod d_t! prod_t q_t^{d_t}`` for the sets ``idx [N, m]`` (positive terms)."""
    comps, coef, in_logs = _composition_table(k, idx.shape[1])
    return _poly(q[idx], comps, coef, in_logs)


@lru_cache(maxsize=8)
def _set_pattern(n: int, k: int):
    """The draft sets of ``k`` draws from ``n`` tokens as indices ``[N, k]`` (padded with ``n``),
    by size then lexicographically, and the set and the member of each membership edge (row-major)."""
    blocks = [range_subsets(n, m) for m in range(1, min(k, n) + 1)]
    sets = np.full((sum(b.shape[0] for b in blocks), k), n, dtype=np.int64)
    edge_set, row = [], 0
    for b in blocks:
        N, m = b.shape
        sets[row:row + N, :m] = b
        edge_set.append(np.repeat(np.arange(row, row + N), m))
        row += N
    edge_set = np.concatenate(edge_set)
    edge_member = sets[sets < n]                                # each edge's member, row-major
    padded = np.where(sets < n, sets, _PAD)                     # the sets of range(n), padded with -1
    for arr in (sets, edge_set, edge_member, padded):
        arr.setflags(write=False)
    return sets, edge_set, edge_member, padded


def clear_caches() -> None:
    """Empty the shape-only caches (subset index patterns, composition tables) of this module."""
    for fn in (_composition_table, _others, _set_pattern, _tensor_positions):
        fn.cache_clear()
    clear_subsets_cache()


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
    support = np.flatnonzero(q_arr > 0)
    n = support.size
    n_multi = sum(comb(n, m) * comb(k - 1, m - 1) for m in range(1, min(k, n) + 1))   # count_iid_multisets
    n_comp = sum(comb(k - 1, m - 1) for m in range(1, min(k, n) + 1))
    if n_comp > MAX_COMPOSITIONS:
        raise ValueError(f"problem too large: {n_comp} compositions of k={k} exceed {MAX_COMPOSITIONS}; "
                         "use solvers.optimal_acceptance for the value alone")
    if n_multi > max_multisets:
        raise ValueError(f"problem too large: {n_multi} draft multisets exceed max_multisets={max_multisets}; "
                         "use solvers.optimal_acceptance for the value alone")
    t0 = time.perf_counter()
    V = p_arr.size
    layout = greedy_layout(p_arr, q_arr, k)
    r = layout.marginal
    accept = np.zeros(V)                                     # min(1, p_y / r_y), 0 where r_y = 0
    selected = r > 0
    accept[selected] = np.minimum(1.0, p_arr[selected] / r[selected])
    iv = _intervals(layout, V, k)
    small = sum(comb(n, m) for m in range(1, min(k, n) + 1)) <= _CACHE_SETS
    pattern = _set_pattern if small else _set_pattern.__wrapped__
    set_index, edge_set, edge_member, padded = pattern(n, k)
    if n == V:                                               # support = range(V): the pattern itself
        sets, edge_token = padded, edge_member
    else:
        sets = np.append(support, _PAD)[set_index]            # the pad index n reads -1
        edge_token = support[edge_member]                     # members in row-major order, as the masses
    prob_blocks, mass_blocks, slots = [q_arr[support] ** k], [], None
    mass_blocks.append(prob_blocks[0])                        # {y}: all k drafts are y, Z = y
    for m in range(2, min(k, n) + 1):
        idx = range_subsets(n, m) if n == V else subsets_of(support, m)
        comps, _, in_logs = _composition_table(k, m)
        prob_blocks.append(_set_probs(q_arr, idx, k))
        if not in_logs and iv.own.size * n ** (m - 1) * comps.shape[0] <= _TENSOR_ELEMENTS:
            cached = idx.shape[0] <= _CACHE_SETS
            positions = (_tensor_positions if cached else _tensor_positions.__wrapped__)(n, m)
            mass_blocks.append(_owner_tensor(iv, support, k, m).ravel()[positions].ravel())
        else:
            slots = _owned_slots(iv) if slots is None else slots
            per_set = m * (1 + m) * (2 + comps.shape[0] + k)       # temporaries per set (one interval rank)
            chunk = max(1, _BLOCK_ELEMENTS // per_set)
            mass_blocks += [_selection_mass(iv, slots, idx[lo:lo + chunk], k).ravel()
                            for lo in range(0, idx.shape[0], chunk)]
    set_probs = np.concatenate(prob_blocks)
    total = set_probs.sum()
    set_probs = set_probs / total                            # round-off only (sum is 1 exactly)
    raw = np.concatenate(mass_blocks) * (accept[edge_token] / total)
    if (p_arr[support] <= 0).any():                          # no membership edge into p = 0
        keep = p_arr[edge_token] > 0
        edge_set, edge_token, raw = edge_set[keep], edge_token[keep], raw[keep]
    n_sets = set_probs.size
    # the rule's own marginals, before the plan repairs round-off: flow into y is min(r_y, p_y),
    # flow out of S is at most Q(S); anything else is an error of this module, not round-off
    col_err = np.abs(np.bincount(edge_token, raw, minlength=V) - np.minimum(r, p_arr)).max()
    row_excess = (np.bincount(edge_set, raw, minlength=n_sets) - set_probs).max(initial=0.0)
    error = float(max(col_err, row_excess, 0.0))
    if error > 1e-9:
        raise RuntimeError(f"layout plan marginals off by {error:.3g} (p, q, k = V{V}, k{k})")
    plan = _make_plan(p_arr, sets, set_probs, edge_set, edge_token, raw)
    build = time.perf_counter() - t0
    cut = _cut_iid(p_arr, q_arr, k).cut                      # inputs validated above
    certificate = cut_value(p_arr, sets, set_probs, cut)
    value = plan.acceptance()
    code, message = 0, f"optimal (min-score layout; raw marginal error {error:.1e})"
    if certificate - value > GAP_TOL:
        code, message = 3, f"certificate gap {certificate - value:.2e} exceeds {GAP_TOL:g}"
    return warn_if_failed(MembershipOT(
        value=value, plan=plan, cut=cut, certificate_value=certificate, success=code == 0, status=code,
        message=message, backend="layout", n_variables=edge_set.size, n_constraints=sets.shape[0] + p_arr.size,
        n_sets=sets.shape[0], solve_seconds=build, build_seconds=0.0, k=k, draft_law="iid"))

