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
from functools import lru_cache
from math import comb, factorial, lgamma, prod

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
#: elements of the largest temporary array of one block of draft sets
_BLOCK_ELEMENTS = 1 << 21
#: index patterns of at most this many subsets are cached per (support size, m)
_CACHE_COMBINATIONS = 200_000


def compositions(k: int, m: int):
    """All ordered ``m``-tuples of positive integers summing to ``k``."""
    for cuts in combinations(range(1, k), m - 1):
        bounds = (0,) + cuts + (k,)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(m))


def count_iid_multisets(q: np.ndarray, k: int) -> int:
    """Number of draft multisets of ``k`` i.i.d. draws from the support of ``q`` (exact integer)."""
    n = int((np.asarray(q) > 0).sum())
    return sum(comb(n, m) * comb(k - 1, m - 1) for m in range(1, min(k, n) + 1))


def _survival_tables(layout: Layout, V: int):
    """Elementary intervals sorted by start: ``B[t, e] = |S_t cap [a_e, 1]|`` as a ``[V, E + 1]``
    table, the lengths ``[E + 1]`` and, per token, the indices of the intervals it owns ``[V, W]``.

    Column ``E`` is a dummy interval of length 0 (``B = 0``): the padding of ``slots`` points at it,
    so padded entries add exactly 0.
    """
    counts = np.diff(layout.ptr)
    owner = np.repeat(np.arange(V), counts)
    order = np.argsort(layout.starts, kind="stable")
    own = owner[order]
    E = own.size
    length = np.zeros(E + 1)
    length[:E] = (layout.ends - layout.starts)[order]
    # B[t, e] = sum of the lengths of t's own intervals at or after e (suffix sums per token)
    B = np.zeros((V, E + 1))
    B[own, np.arange(E)] = length[:E]
    B[:, :E] = np.cumsum(B[:, E - 1::-1], axis=1)[:, ::-1] if E else B[:, :E]
    width = max(int(counts.max(initial=0)), 1)
    slots = np.full((V, width), E, dtype=np.int64)
    by_owner = np.argsort(own, kind="stable")            # sorted positions grouped by owner, in order
    first = np.cumsum(counts) - counts
    slots[own[by_owner], np.arange(E) - first[own[by_owner]]] = by_owner
    return B, length, slots


@lru_cache(maxsize=64)
def _composition_table(k: int, m: int):
    """Compositions ``d`` of ``k`` into ``m`` positive parts ``[R, m]`` and their multinomial
    coefficients ``k! / prod d_i!``, as floats, or as logs (``in_logs``) when a float overflows."""
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


def _monomials(x: np.ndarray, exponents: np.ndarray, coef: np.ndarray, in_logs: bool) -> np.ndarray:
    """``coef_R prod_j x[..., j] ** exponents[R, j]`` as ``[..., R]`` (exponents >= 1; ``x >= 0``)."""
    if exponents.shape[1] == 0:
        return np.broadcast_to(np.exp(coef) if in_logs else coef, x.shape[:-1] + coef.shape)
    if in_logs:
        with np.errstate(divide="ignore"):
            return np.exp(np.log(x) @ exponents.T.astype(np.float64) + coef)
    dmax = int(exponents.max())
    powers = np.cumprod(np.broadcast_to(x[..., None], x.shape + (dmax,)), axis=-1)   # x^1..x^dmax
    cols = np.arange(exponents.shape[1])
    return np.prod(powers[..., cols, exponents - 1], axis=-1) * coef


def _selection_mass(B, length, slots, idx: np.ndarray, k: int) -> np.ndarray:
    r"""``Q(S) P(Z = y | S)`` for the sets ``idx [N, m]`` (rows) and each member ``y`` (columns).

    With ``B_t(u) = |S_t cap [u, 1]|``, the probability that all ``k`` scores exceed ``u`` and the
    draft set is ``S`` is ``Phi_S(B(u)) = sum_d k!/prod d_t! prod_t B_t(u)^{d_t}`` (compositions
    ``d`` of ``k`` into ``|S|`` positive parts). On an interval ``[a_e, b_e]`` owned by ``y`` only
    ``B_y`` moves, by the interval's length, so the mass of ``Z = y`` is

    .. math:: \sum_{e \text{ owned by } y} \sum_d \frac{k!}{\prod_t d_t!}
        \bigl(x^{d_y} - z^{d_y}\bigr) \prod_{t \ne y} B_t(a_e)^{d_t},
        \qquad x = B_y(a_e),\ z = x - |e|,

    with ``x^c - z^c = |e| sum_{i<c} x^i z^{c-1-i}`` (positive terms only, no cancellation).
    Vectorised over (set, member, owned interval) with the owned intervals padded to ``W``.
    """
    N, m = idx.shape
    comps, coef, in_logs = _composition_table(k, m)
    e = slots[idx]                                              # [N, m, W]
    x = B[idx[:, :, None], e]
    ln = length[e]
    z = np.maximum(x - ln, 0.0)
    cmax = int(comps[:, 0].max())
    h = np.empty(x.shape + (cmax,))                             # h[..., c-1] = sum_{i<c} x^i z^{c-1-i}
    h[..., 0] = 1.0
    zp = np.ones_like(z)
    for c in range(1, cmax):
        zp = zp * z
        h[..., c] = x * h[..., c - 1] + zp
    xo = B[idx[:, _others(m)][:, :, None, :], e[..., None]]       # [N, m, W, m-1]
    terms = _monomials(xo, comps[:, 1:], coef, in_logs)        # [N, m, W, R]
    mass = np.einsum("...r,...r->...", terms, h[..., comps[:, 0] - 1]) * ln
    return mass.sum(axis=-1)


def _set_probs(q: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """``Q(S) = sum_d k!/prod d_t! prod_t q_t^{d_t}`` for the sets ``idx [N, m]`` (positive terms)."""
    comps, coef, in_logs = _composition_table(k, idx.shape[1])
    return _monomials(q[idx], comps, coef, in_logs).sum(axis=-1)


@lru_cache(maxsize=32)
def _range_combinations(n: int, m: int) -> np.ndarray:
    combos = np.arange(n, dtype=np.int64)[:, None]
    for _ in range(1, m):
        last = combos[:, -1]
        reps = n - 1 - last
        base = np.repeat(combos, reps, axis=0)
        start = np.repeat(last + 1 - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
        nxt = np.arange(base.shape[0]) + start
        combos = np.concatenate([base, nxt[:, None]], axis=1)
    combos.setflags(write=False)
    return combos


def _combinations_array(items: np.ndarray, m: int) -> np.ndarray:
    """All ``m``-subsets of ``items`` (increasing rows, lexicographic order) as an ``[C, m]`` array.

    The index pattern depends on ``(len(items), m)`` only and is cached when it is small
    (:data:`_CACHE_COMBINATIONS` rows).
    """
    n = items.size
    if comb(n, m) <= _CACHE_COMBINATIONS:
        return items[_range_combinations(n, m)]
    return items[_range_combinations.__wrapped__(n, m)]


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
    V = p_arr.size
    layout = greedy_layout(p_arr, q_arr, k)
    r = layout.marginal
    with np.errstate(divide="ignore", invalid="ignore"):
        accept = np.where(r > 0, np.minimum(1.0, p_arr / np.where(r > 0, r, 1.0)), 0.0)
    B, length, slots = _survival_tables(layout, V)
    support = np.flatnonzero(q_arr > 0)
    set_blocks, prob_blocks, mass_blocks = [], [], []
    for m in range(1, min(k, support.size) + 1):
        all_idx = _combinations_array(support, m)
        R = _composition_table(k, m)[0].shape[0]
        per_set = m * slots.shape[1] * max(m - 1, 1) * (R + k - m + 2)
        chunk = max(1, _BLOCK_ELEMENTS // per_set)
        for lo in range(0, all_idx.shape[0], chunk):
            idx = all_idx[lo:lo + chunk]
            set_blocks.append(idx)
            prob_blocks.append(_set_probs(q_arr, idx, k))
            mass_blocks.append(_selection_mass(B, length, slots, idx, k))
    n_sets = sum(b.shape[0] for b in set_blocks)
    sets = np.full((n_sets, k), _PAD, dtype=np.int64)
    set_probs = np.concatenate(prob_blocks)
    total = set_probs.sum()
    set_probs = set_probs / total                            # round-off only (sum is 1 exactly)
    edge_set, edge_token, raw = [], [], []
    row = 0
    for idx, mass in zip(set_blocks, mass_blocks):
        N, m = idx.shape
        sets[row:row + N, :m] = idx
        edge_set.append(np.repeat(np.arange(row, row + N), m))
        edge_token.append(idx.ravel())
        raw.append((mass * accept[idx]).ravel())
        row += N
    edge_set, edge_token = np.concatenate(edge_set), np.concatenate(edge_token)
    raw = np.concatenate(raw) / total
    if (p_arr[support] <= 0).any():                          # no membership edge into p = 0
        keep = p_arr[edge_token] > 0
        edge_set, edge_token, raw = edge_set[keep], edge_token[keep], raw[keep]
    # the rule's own marginals, before the plan repairs round-off: flow into y is min(r_y, p_y),
    # flow out of S is at most Q(S); anything else is an error of this module, not round-off
    col_err = np.abs(np.bincount(edge_token, raw, minlength=V) - np.minimum(r, p_arr)).max()
    row_excess = (np.bincount(edge_set, raw, minlength=n_sets) - set_probs).max(initial=0.0)
    error = float(max(col_err, row_excess, 0.0))
    if error > 1e-9:
        raise RuntimeError(f"layout plan marginals off by {error:.3g} (p, q, k = V{V}, k{k})")
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

