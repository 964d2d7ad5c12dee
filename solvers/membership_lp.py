r"""The exact membership-cost transport LP over draft *sets*, with a complete plan and a certificate.

Problem (Sun et al., SpecTr, NeurIPS 2023, eq. (OTM); docs/theory/membership_ot.md#the-lp-over-draft-sets): couple the
draft tuple ``X ~ Q`` with ``Y ~ p`` so as to maximise ``P(Y in S(X))``. The cost depends on the
tuple only through its set ``S(X)``, so the tuple law collapses to the law of the set
(``ot_coupling.draft_laws.set_law``): at most ``sum_{m<=k} C(V, m)`` rows instead of ``V^k``.
Only membership edges carry value, giving the max-flow LP (docs/theory/membership_ot.md#the-max-flow-form)

.. math::
    \max \sum_{S}\sum_{y \in S} f(S, y) \quad\text{s.t.}\quad
    \sum_{y \in S} f(S, y) \le Q(S),\;\; \sum_{S \ni y} f(S, y) \le p(y),\;\; f \ge 0 .

Each edge has exactly two unit nonzeros (rows ``S`` and ``n_sets + y``), so the CSC arrays are
built with ``numpy`` alone. The leftover masses ``r_S = Q(S) - sum_y f(S, y)`` and
``l_y = p(y) - sum_S f(S, y)`` have the same total ``1 - value``; coupling them independently,
``g(S, y) = r_S l_y / (1 - value)``, completes ``f`` to a full coupling with both marginals exact
(:class:`MembershipPlan`). At an optimum the completion adds no membership mass (else ``f`` could
be augmented), so the plan's acceptance equals the LP value.

Certificate: the LP dual ``min sum_S Q(S) u_S + sum_y p(y) v_y`` s.t. ``u_S + v_y >= 1`` has
optimal threshold cuts ``H_theta = {y : v_y >= theta}`` (the standard rounding of the min-cut
LP); we evaluate the exact cut value ``p(H) + 1 - Q(S subset of H)`` (docs/theory/membership_ot.md#optimal-acceptance-by-min-cut) for every
threshold and keep the smallest. ``certificate_value >= alpha* >= value`` always (weak duality and
feasibility of the repaired plan), so their gap bounds the error.

Backends
--------
``"flow"`` (the default for every law but i.i.d.): the exact float max-flow of
:mod:`solvers.flow_plan` (greedy start, then shortest augmenting paths on the token graph; no
rescaling, no LP), with its plan verified: both marginals and the certificate gap to
:data:`solvers.flow_plan.GAP_TOL` (``1e-12``). A failed check gives ``success=False`` and a
:class:`RuntimeWarning`; under ``"auto"`` the HiGHS LP is solved instead. Measured in
benchmarks/bench_flow_plan.py (results in benchmarks/results/flow_plan.md).
``"highs"``: HiGHS through ``scipy.optimize.linprog(method="highs")`` (``highs_api="auto"`` or
``"linprog"``) or ``highspy`` directly (``"highspy"``, interior point + crossover). Measured in
benchmarks/bench_solvers.py (results in benchmarks/results/solvers.md): scipy's bundled HiGHS
1.12 beat highspy 1.16 by 1.7-3.5x at every size from 1e3 to 1.6e5 variables (e.g. 0.95 s vs
3.3 s at V=64, k=3) and tied at 256 variables; hence ``"auto"`` means linprog. (highspy's dual simplex is slower still: 3 s at V=32, k=3.)
``"cvxpy"``: the same model written readably in cvxpy (default solver CLARABEL; any installed
one via ``cvxpy_solver``). ``"maxflow"``:
``scipy.sparse.csgraph.maximum_flow`` on capacities scaled to int32 and floored; the integral flow
is feasible, so ``value`` is a certified lower bound, and the min cut of the residual graph gives
``certificate_value``, an exact upper bound; ``tolerance = certificate_value - value <= (number of
floored capacities)/scale`` (about ``(n_sets + V) / 2^31``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from math import comb

import numpy as np
from scipy import sparse

from ot_coupling.draft_laws import check_hub, get_draft_law, greedy_split, hub_token
from ot_coupling.validation import (
    SeedLike,
    as_generator,
    sample_categorical,
    validate_distribution,
    validate_drafts,
    validate_k,
)

from .closed_form import cut_value
from .flow_plan import check_time_limit
from .highs import new_highs
from .result import _UNSET, SolverResult, deprecated_alias, renamed_argument, warn_if_failed
from .subsets import range_subsets

BACKENDS = ("auto", "layout", "flow", "highs", "cvxpy", "maxflow")
#: default limit on the number of draft sets (rows) of the LP
MAX_SETS = 2_000_000
_PAD = -1
#: a certificate gap ``certificate_value - value`` above this marks the result success=False
GAP_TOL = 1e-6
#: tighter than HiGHS' defaults (1e-7) so that LP values match the closed forms to ~1e-9
_HIGHS_TOLERANCES = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


# --------------------------------------------------------------------------- draft-set laws
def count_draft_sets(q: np.ndarray, k: int, drafts: str) -> int:
    """Number of draft sets of positive probability (an upper bound for ``"iid"``), before building."""
    n = int((q > 0).sum())
    if drafts == "iid":
        return sum(comb(n, m) for m in range(1, min(k, n) + 1))
    if drafts == "without_replacement":
        return comb(n, k)
    if drafts == "hub":
        return max(n - 1, 0)
    if drafts == "greedy":
        return max(n - k + 1, 0)
    return n ** k                                          # other laws are enumerated tuple by tuple


#: refuse an i.i.d. set law whose exact DP needs more than this many multiply-adds (before building)
MAX_IID_WORK = 400_000_000


def _iid_work(n_support: int, k: int) -> int:
    """Multiply-adds of :func:`_iid_sets`: ``sum_m C(n, m) m k^2`` (an upper bound)."""
    return sum(comb(n_support, m) * m for m in range(1, min(k, n_support) + 1)) * (k + 1) ** 2


def _iid_sets(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Law of the set of ``k`` i.i.d. draws, exactly and without overflow at any ``k``.

    ``Q(S) = sum_c k!/prod c_i! prod q_i^{c_i}`` over the compositions ``c`` of ``k`` into ``|S|``
    positive parts. Neither the multinomial coefficients (``k! > 2^63`` from ``k = 21``) nor the
    number of compositions is formed: a DP over the tokens of ``S`` = ``(x_1..x_m)``,

    .. math:: g_j(n) = \sum_{c=1}^{n} \binom{n}{c} q_{x_j}^c\, g_{j-1}(n - c),\quad g_0(n) = [n = 0],

    gives ``Q(S) = g_m(k)`` (``g_j(n)`` = probability that ``n`` draws all land in
    ``{x_1..x_j}`` and hit each of them). Every term is a non-negative float (binomials are
    float64, exact to ``k = 56`` and within one rounding beyond), ``g <= 1``: no cancellation, no
    overflow; the relative error is ``O(m k eps)``. Sets whose probability underflows to 0 are kept
    (see docs/numerics.md): every set of support tokens is a possible draft set.
    """
    support = np.flatnonzero(q > 0)
    n = support.size
    binom = np.array([[float(comb(a, c)) for c in range(k + 1)] for a in range(k + 1)])
    ns = np.arange(k + 1)
    blocks, probs = [], []
    for m in range(1, min(k, n) + 1):
        idx = range_subsets(n, m)
        qs = q[support[idx]]                                        # [N, m]
        g = np.zeros((idx.shape[0], k + 1))
        g[:, 0] = 1.0
        with np.errstate(under="ignore"):
            for j in range(m):
                powers = qs[:, j:j + 1] ** ns                       # q^c, c = 0..k  [N, k+1]
                new = np.zeros_like(g)
                for c in range(1, k + 1):
                    # new[:, nn] += C(nn, c) q^c g[:, nn - c] for nn >= c
                    new[:, c:] += binom[c:, c] * powers[:, c:c + 1] * g[:, :k + 1 - c]
                g = new
        pad = np.full((idx.shape[0], k - m), _PAD, dtype=np.int64)
        blocks.append(np.concatenate([support[idx], pad], axis=1))
        probs.append(g[:, k])
    return np.concatenate(blocks), np.concatenate(probs)


def _wor_sets(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Law of the set of ``k`` draws without replacement, by a DP over the subsets of each set:
    ``f(A) = sum_{x in A} f(A - x) q_x / q(Omega - (A - x))`` with ``q(Omega - B)`` summed from
    positive terms (``q(S^c) + q(S - B)``), which avoids the cancellation of ``1 - q(B)``."""
    support = np.flatnonzero(q > 0)
    n = support.size
    if k > n:
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0, q has {n}")
    # q(S^c) as a sum of positive runs: with the support sorted by q ascending, S^c is at most
    # k + 1 contiguous runs, each a difference of prefix sums over tokens no larger than the run's
    # own, so its relative error is O(n eps) however small q(S^c) is (1 - q(S), even in extended
    # precision, returns 0 when q(S^c) < 1e-19 and turns such sets' laws into garbage)
    by_mass = support[np.argsort(q[support], kind="stable")]
    pos = range_subsets(n, k)
    prefix = np.concatenate([[0.0], np.cumsum(q[by_mass].astype(np.longdouble))])
    starts = np.concatenate([np.zeros((pos.shape[0], 1), dtype=np.int64), pos + 1], axis=1)
    stops = np.concatenate([pos, np.full((pos.shape[0], 1), n, dtype=np.int64)], axis=1)
    outside = np.clip(prefix[stops] - prefix[starts], 0.0, None).sum(axis=1).astype(np.float64)
    idx = np.sort(by_mass[pos], axis=1)
    lex = np.lexsort(idx.T[::-1])                               # rows in lexicographic order
    idx, outside = idx[lex], outside[lex]
    qs = q[idx]
    f = np.zeros((idx.shape[0], 1 << k))
    f[:, 0] = 1.0
    bits = np.arange(k)
    for mask in sorted(range(1, 1 << k), key=int.bit_count):
        members = bits[(mask >> bits) & 1 == 1]
        for b in members:
            prev = mask ^ (1 << b)
            rest = [j for j in bits if not (prev >> j) & 1]     # tokens of S not yet drawn
            f[:, mask] += f[:, prev] * qs[:, b] / (outside + qs[:, rest].sum(axis=1))
    return idx, f[:, -1]


def _hub_sets(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """SpecHub pairs ``{a, j}``, ``a = argmax q``: ``Q({a, j}) = q_j / q(Omega - a)`` (docs/theory/membership_ot.md#hub-drafts)."""
    check_hub(q, k)
    a = hub_token(q)
    others = np.flatnonzero((q > 0) & (np.arange(q.size) != a))
    sets = np.sort(np.stack([np.full_like(others, a), others], axis=1), axis=1)
    return sets.astype(np.int64), q[others] / q[others].sum()


def _greedy_sets(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy drafts: top-(k-1) tokens ``T`` plus ``x ~ q`` restricted to the rest (docs/theory/membership_ot.md#greedy-drafts)."""
    top, rest = greedy_split(q, k)
    last = np.flatnonzero(rest > 0)
    sets = np.sort(np.concatenate([np.tile(top, (last.size, 1)), last[:, None]], axis=1), axis=1)
    return sets.astype(np.int64), rest[last]


_SET_BUILDERS = {"iid": _iid_sets, "without_replacement": _wor_sets, "hub": _hub_sets, "greedy": _greedy_sets}


def sets_from_tuples(tuples: np.ndarray, probs: np.ndarray,
                     keep_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`ot_coupling.draft_laws.set_law`: rows = sorted distinct tokens padded with -1.

    Sets of probability 0 are dropped unless ``keep_zero`` (a named law's tuples of underflowed
    probability are possible draws and keep their row)."""
    t = np.sort(np.asarray(tuples, dtype=np.int64), axis=1)
    dup = np.zeros(t.shape, dtype=bool)
    dup[:, 1:] = t[:, 1:] == t[:, :-1]
    big = np.iinfo(np.int64).max
    t = np.sort(np.where(dup, big, t), axis=1)
    t[t == big] = _PAD
    base = int(t.max()) + 2                                  # digits t + 1 (the pad -1 -> 0)
    if base ** t.shape[1] < 2**62:
        # one int64 key per row, in the rows' lexicographic order: np.unique on a 1-d array is
        # ~20x faster than np.unique(axis=0), which argsorts a structured view
        keys = (t + 1) @ (base ** np.arange(t.shape[1] - 1, -1, -1, dtype=np.int64))
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        sets = t[first]
    else:
        sets, inverse = np.unique(t, axis=0, return_inverse=True)
    set_probs = np.bincount(inverse.ravel(), weights=probs, minlength=sets.shape[0])
    keep = set_probs >= 0 if keep_zero else set_probs > 0
    sets, set_probs = sets[keep], set_probs[keep]
    width = int((sets != _PAD).sum(axis=1).max())
    return sets[:, :width], set_probs


def _explicit_law(drafts, V: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        tuples, probs = drafts
    except (TypeError, ValueError):
        raise ValueError("drafts must be a draft-law name or a (tuples [n, k], probs [n]) pair") from None
    tuples = np.asarray(tuples)
    if tuples.ndim != 2 or tuples.shape[0] == 0:
        raise ValueError(f"drafts: tuples must be a non-empty [n, k] array, got shape {tuples.shape}")
    if not np.issubdtype(tuples.dtype, np.integer) or (tuples < 0).any() or (tuples >= V).any():
        raise ValueError(f"drafts: tuples must hold integer token ids in [0, {V})")
    probs = validate_distribution(probs, "drafts probs")
    if probs.size != tuples.shape[0]:
        raise ValueError(f"drafts: {tuples.shape[0]} tuples but {probs.size} probabilities")
    return tuples.astype(np.int64), probs


def draft_set_law(p: np.ndarray, q: np.ndarray | None, k: int | None, drafts,
                  max_sets: int = MAX_SETS) -> tuple[np.ndarray, np.ndarray, int]:
    """``(sets [n, m] padded with -1, Q(S) [n], k)`` for a named law or an explicit tuple law."""
    V = p.size
    if not isinstance(drafts, str):
        tuples, probs = _explicit_law(drafts, V)
        sets, set_probs = sets_from_tuples(tuples, probs)
        return sets, set_probs, tuples.shape[1]
    law = get_draft_law(drafts)
    if q is None or k is None:
        raise ValueError(f"q and k are required with the named draft law {drafts!r}")
    q = validate_distribution(q, "q")
    if q.size != V:
        raise ValueError(f"p and q must have the same length, got {V} and {q.size}")
    k = validate_k(k)
    n_sets = count_draft_sets(q, k, drafts)
    if n_sets > max_sets:
        raise ValueError(f"the LP is too large: about {n_sets:,} draft sets for V={V} "
                         f"(support {int((q > 0).sum())}), k={k}, drafts={drafts!r} (max_sets={max_sets:,}); "
                         "use solvers.optimal_acceptance for the value")
    if drafts == "iid" and _iid_work(int((q > 0).sum()), k) > MAX_IID_WORK:
        raise ValueError(f"the LP is too large: the exact i.i.d. set law for k={k} over "
                         f"{int((q > 0).sum())} tokens needs about {_iid_work(int((q > 0).sum()), k):,} "
                         "operations; use solvers.optimal_acceptance for the value")
    if drafts in _SET_BUILDERS:
        sets, probs = _SET_BUILDERS[drafts](q, k)
    else:
        sets, probs = sets_from_tuples(*law.enumerate(q, k), keep_zero=True)
    # Sets whose probability underflows to 0 stay (rows of capacity 0): every set of tokens with
    # q > 0 is a possible draft set, and the plan must have a conditional law for it
    # (docs/numerics.md). Renormalise against round-off so that both marginals have the same total.
    return sets, probs / probs.sum(), k


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class MembershipPlan:
    r"""A complete coupling of the draft set ``S`` and the output ``Y`` (exact marginals).

    ``K(y | S) = f(S, y)/Q(S) + (r_S / Q(S)) * l_y / sum(l)`` with membership flows ``f``
    (edges ``edge_set -> edge_token``), leftover set mass ``r_S`` and leftover target mass ``l_y``.
    The law given an ordered tuple is the law given its set (the plan is symmetric).
    """

    p: np.ndarray
    sets: np.ndarray
    set_probs: np.ndarray
    edge_set: np.ndarray
    edge_token: np.ndarray
    edge_flow: np.ndarray
    set_leftover: np.ndarray
    token_leftover: np.ndarray
    _edge_ptr: np.ndarray = field(repr=False)

    @property
    def n_sets(self) -> int:
        return self.set_probs.size

    @cached_property
    def _index(self) -> dict[tuple, int]:
        return {tuple(int(v) for v in row if v != _PAD): i for i, row in enumerate(self.sets.tolist())}

    def set_index(self, drafts) -> int:
        """Row of the draft set of ``drafts`` (an ordered tuple or a set of token ids)."""
        d = validate_drafts(np.asarray(sorted(set(np.asarray(drafts).tolist()))), self.p.size)
        key = tuple(int(v) for v in d)
        try:
            return self._index[key]
        except KeyError:
            raise ValueError(f"drafts {key} have probability 0 under this draft law") from None

    def conditional_law_by_index(self, s: int) -> np.ndarray:
        """``K(. | S)`` for the set in row ``s``."""
        law = np.zeros(self.p.size)
        lo, hi = self._edge_ptr[s], self._edge_ptr[s + 1]
        np.add.at(law, self.edge_token[lo:hi], self.edge_flow[lo:hi])
        total_left = self.token_leftover.sum()
        if self.set_leftover[s] > 0 and total_left > 0:
            law += self.set_leftover[s] * self.token_leftover / total_left
        total = law.sum()
        if not total > 0:
            # only reachable through round-off (a set of mass ~1e-18 with no flow and no leftover
            # target mass): any law is exact to that precision; use the target.
            return self.p.copy()
        return law / total

    def conditional_law(self, drafts) -> np.ndarray:
        """``K(. | drafts)``: the output law given an ordered draft tuple (through its set)."""
        return self.conditional_law_by_index(self.set_index(drafts))

    def sample(self, drafts, rng: SeedLike = None) -> int:
        """Draw ``Y ~ K(. | drafts)``."""
        return sample_categorical(self.conditional_law(drafts), as_generator(rng))

    def conditional_matrix(self) -> np.ndarray:
        """Dense ``[n_sets, V]`` matrix of ``K(. | S)`` (small problems only)."""
        return np.stack([self.conditional_law_by_index(s) for s in range(self.n_sets)])

    def output_law(self) -> np.ndarray:
        """``sum_S Q(S) K(. | S)`` (equals ``p``)."""
        out = np.bincount(self.edge_token, weights=self.edge_flow, minlength=self.p.size)
        total_left = self.token_leftover.sum()
        if total_left > 0:
            out = out + self.set_leftover.sum() * self.token_leftover / total_left
        return out

    def acceptance(self) -> float:
        """``P(Y in S)`` under the complete plan (membership flow plus completion mass inside ``S``)."""
        acc = float(self.edge_flow.sum())
        total_left = self.token_leftover.sum()
        if total_left > 0:
            valid = self.sets != _PAD
            inside = np.where(valid, self.token_leftover[np.where(valid, self.sets, 0)], 0.0).sum(axis=1)
            acc += float((self.set_leftover * inside).sum() / total_left)
        return acc


def _make_plan(p, sets, set_probs, edge_set, edge_token, flow) -> MembershipPlan:
    """Repair solver round-off (clip at 0, scale rows then columns into the capacities) and
    attach the leftovers; the result is exactly feasible."""
    n = set_probs.size
    f = np.clip(np.asarray(flow, dtype=np.float64), 0.0, None)
    rows = np.bincount(edge_set, weights=f, minlength=n)
    over = rows > set_probs
    if over.any():
        f = f * np.where(over, set_probs / np.where(over, rows, 1.0), 1.0)[edge_set]
    cols = np.bincount(edge_token, weights=f, minlength=p.size)
    over = cols > p
    if over.any():
        f = f * np.where(over, p / np.where(over, cols, 1.0), 1.0)[edge_token]
    rows = np.bincount(edge_set, weights=f, minlength=n)
    cols = np.bincount(edge_token, weights=f, minlength=p.size)
    ptr = np.searchsorted(edge_set, np.arange(n + 1))
    return MembershipPlan(p=p, sets=sets, set_probs=set_probs, edge_set=edge_set, edge_token=edge_token,
                          edge_flow=f, set_leftover=np.clip(set_probs - rows, 0.0, None),
                          token_leftover=np.clip(p - cols, 0.0, None), _edge_ptr=ptr)


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, kw_only=True)
class MembershipOT(SolverResult):
    """Result of :func:`solve_membership_ot` (solver result protocol, :class:`solvers.result.SolverResult`).

    ``value``: acceptance of the returned (exactly feasible) plan, a lower bound on ``alpha*``;
    ``certificate_value``: ``p(H) + 1 - Q(S subset of H)`` of the certificate cut ``cut``, an upper
    bound; ``tolerance = certificate_value - value``. For the ``"maxflow"`` backend both are exact
    bounds of the scaled integer flow. ``success`` is false (with a :class:`RuntimeWarning`) when
    the backend reports a non-optimal status (``status`` 1: time/iteration limit, 2: other; without
    a primal point the plan is the independent coupling, whose acceptance is still a valid lower
    bound) or the certificate gap exceeds :data:`GAP_TOL` (``status`` 3); ``message`` carries the
    backend's text.
    """

    value: float
    plan: MembershipPlan
    cut: np.ndarray
    certificate_value: float
    backend: str
    n_variables: int
    n_constraints: int
    n_sets: int
    solve_seconds: float
    build_seconds: float
    k: int
    draft_law: str

    drafts = deprecated_alias("draft_law", "drafts")

    @property
    def tolerance(self) -> float:
        return self.certificate_value - self.value


# --------------------------------------------------------------------------- backends
def _csc(edge_set, edge_token, n_sets, V):
    m = edge_set.size
    index = np.empty(2 * m, dtype=np.int32)
    index[0::2] = edge_set
    index[1::2] = n_sets + edge_token
    start = np.arange(0, 2 * m + 1, 2, dtype=np.int32)
    return start, index, np.ones(2 * m)


def _solve_linprog(start, index, value, upper, m, time_limit):
    from scipy.optimize import linprog

    A = sparse.csc_matrix((value, index, start), shape=(upper.size, m))
    options = dict(_HIGHS_TOLERANCES, **({"time_limit": time_limit} if time_limit else {}))
    res = linprog(-np.ones(m), A_ub=A, b_ub=upper, bounds=(0, None), method="highs", options=options)
    code = 0 if res.status == 0 else (1 if res.status == 1 else 2)
    if res.x is None:                      # no primal point: the zero flow is feasible (value 0)
        return np.zeros(m), None, (code or 2, f"HiGHS (linprog) returned no solution: {res.message}")
    return res.x, -res.ineqlin.marginals, (code, "optimal" if res.status == 0 else str(res.message))


def _solve_highspy(start, index, value, upper, m, time_limit, solver="ipm"):
    import highspy

    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("solver", solver)
    for name, val in _HIGHS_TOLERANCES.items():
        h.setOptionValue(name, val)
    if time_limit:
        h.setOptionValue("time_limit", float(time_limit))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = m, upper.size
    lp.col_cost_ = -np.ones(m)
    lp.col_lower_ = np.zeros(m)
    lp.col_upper_ = np.full(m, highspy.kHighsInf)
    lp.row_lower_ = np.full(upper.size, -highspy.kHighsInf)
    lp.row_upper_ = upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    h.passModel(lp)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    sol = h.getSolution()
    code = 0 if status.lower() == "optimal" else (1 if "limit" in status.lower() else 2)
    if not sol.value_valid:                # no primal point: the zero flow is feasible (value 0)
        return np.zeros(m), None, (code or 2, f"HiGHS (highspy) returned no solution: {status}")
    duals = -np.asarray(sol.row_dual) if sol.dual_valid else None
    return np.asarray(sol.col_value), duals, (code, status.lower())


def _solve_cvxpy(edge_set, edge_token, set_probs, p, solver):
    import cvxpy as cp

    m, n, V = edge_set.size, set_probs.size, p.size
    set_rows = sparse.csr_matrix((np.ones(m), (edge_set, np.arange(m))), shape=(n, m))
    token_rows = sparse.csr_matrix((np.ones(m), (edge_token, np.arange(m))), shape=(V, m))
    f = cp.Variable(m, nonneg=True)
    constraints = [set_rows @ f <= set_probs, token_rows @ f <= p]
    problem = cp.Problem(cp.Maximize(cp.sum(f)), constraints)
    problem.solve(solver=solver or "CLARABEL")
    if f.value is None:
        raise RuntimeError(f"cvxpy ({solver or 'CLARABEL'}) failed: {problem.status}")
    duals = np.concatenate([np.asarray(constraints[0].dual_value), np.asarray(constraints[1].dual_value)])
    code = 0 if problem.status == "optimal" else 2
    return f.value, duals, (code, str(problem.status))


def _solve_maxflow(edge_set, edge_token, set_probs, p, scale):
    """Integral max flow on floored capacities; returns (flow, token side of the min cut, status)."""
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    n, V, m = set_probs.size, p.size, edge_set.size
    source, sink = 0, n + V + 1
    tails = np.concatenate([np.zeros(n, dtype=np.int64), 1 + edge_set, 1 + n + np.arange(V)])
    heads = np.concatenate([1 + np.arange(n), 1 + n + edge_token, np.full(V, sink)])
    caps = np.concatenate([np.floor(set_probs * scale), np.full(m, scale), np.floor(p * scale)])
    graph = sparse.csr_matrix((caps.astype(np.int32), (tails, heads)), shape=(sink + 1, sink + 1))
    res = maximum_flow(graph, source, sink, method="dinic")
    flow = res.flow.tocsr()
    edge_flow = np.asarray(flow[1 + edge_set, 1 + n + edge_token]).ravel() / scale
    # residual graph: forward capacity - flow, plus reverse edges carrying the flow back
    residual = (graph.astype(np.int64) - flow.astype(np.int64)).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    side = np.zeros(V, dtype=bool)
    side[reached[(reached > n) & (reached <= n + V)] - (1 + n)] = True
    side |= p <= 0                                          # free to include, never increases the cut
    return edge_flow, np.flatnonzero(side), (0, "optimal (scaled integer capacities)")


def _mass_at_least(values: np.ndarray, weights: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """``sum(weights[values >= theta])`` for every ``theta``."""
    order = np.argsort(values, kind="stable")
    top = np.concatenate([[0.0], np.cumsum(weights[order][::-1])])   # top[c]: weight of the c largest
    return top[values.size - np.searchsorted(values[order], thetas, side="left")]


def _threshold_cut(p, sets, set_probs, token_dual):
    """Best threshold cut ``{y : v_y >= theta}`` of the dual token potentials (exact cut values)."""
    v = np.clip(np.nan_to_num(np.asarray(token_dual, dtype=np.float64), nan=0.0), 0.0, None)
    v = np.where(p > 0, v, np.inf)                          # p = 0 tokens are free to include
    valid = sets != _PAD
    set_min = np.where(valid, v[np.where(valid, sets, 0)], np.inf).min(axis=1)
    thetas = np.append(np.unique(v[np.isfinite(v)]), np.inf)   # inf: only the p = 0 tokens
    vals = _mass_at_least(v, p, thetas) + 1.0 - _mass_at_least(set_min, set_probs, thetas)
    best = int(np.argmin(vals))
    if vals[best] >= 1.0:
        return np.zeros(0, dtype=np.int64)                 # H = {} (value 1) is as good
    return np.flatnonzero(v >= thetas[best]).astype(np.int64)


# --------------------------------------------------------------------------- entry point
def solve_membership_ot(p, q=None, k: int | None = None, draft_law=_UNSET, backend: str = "auto", *,
                        drafts=_UNSET, highs_api: str = "auto", cvxpy_solver: str | None = None,
                        maxflow_scale: int = 2**31 - 2, max_sets: int = MAX_SETS,
                        time_limit: float | None = None) -> MembershipOT:
    """Solve the membership-cost transport LP exactly (see the module docstring).

    Parameters
    ----------
    p: target distribution (length ``V``).
    q, k: draft distribution and number of drafts (for a named law).
    draft_law: a law name of :data:`ot_coupling.draft_laws.DRAFT_LAWS` (``"iid"``,
        ``"without_replacement"``, ``"hub"``, ``"greedy"``) or an explicit ``(tuples [n, k], probs [n])``
        law of ordered draft tuples (e.g. drafts from two different models).
    backend: ``"auto"`` (default: ``"layout"`` for i.i.d. drafts, ``"flow"`` otherwise, falling
        back to ``"highs"`` if the flow's verification fails), ``"layout"`` (the exact i.i.d. plan
        read off the min-score layout, no LP: :func:`solvers.iid_plan.iid_layout_plan`),
        ``"flow"`` (exact float max-flow, :mod:`solvers.flow_plan`), ``"highs"``, ``"cvxpy"`` or
        ``"maxflow"`` (the LP backends and the scaled-integer flow, kept as the cross-check).
    highs_api: ``"auto"``, ``"linprog"`` or ``"highspy"`` (backend ``"highs"`` only).
    max_sets: refuse (``ValueError``) problems with more draft sets than this, before building.
    time_limit: seconds the solver may take (positive and finite; default ``None``: no limit), for
        the ``"highs"`` and ``"flow"`` backends. Past it the result has ``success=False``,
        ``status=1`` and a :class:`RuntimeWarning`; its plan is still exactly feasible (``value`` a
        lower bound) and ``certificate_value`` an exact upper bound. The flow reads the clock
        between augmenting paths; under ``"auto"`` a flow stopped by the time limit is returned as
        it is (the LP is not tried).

    Returns
    -------
    MembershipOT with the value, the complete plan, the certificate cut and solver statistics.
    """
    drafts = renamed_argument(draft_law, drafts, "drafts", "draft_law", "iid")
    p_arr = validate_distribution(p, "p")
    time_limit = check_time_limit(time_limit)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if highs_api not in ("auto", "linprog", "highspy"):
        raise ValueError(f"highs_api must be 'auto', 'linprog' or 'highspy', got {highs_api!r}")
    auto = backend == "auto"
    if auto:
        backend = "layout" if isinstance(drafts, str) and drafts == "iid" else "flow"
    if backend == "layout":
        if not (isinstance(drafts, str) and drafts == "iid"):
            raise ValueError(f"backend 'layout' needs draft_law='iid', got {drafts!r}")
        if q is None or k is None:
            raise ValueError("backend 'layout' needs q and k")
        from .iid_plan import iid_layout_plan
        return iid_layout_plan(p_arr, q, k, max_multisets=max_sets)
    t0 = time.perf_counter()
    sets, set_probs, k = draft_set_law(p_arr, q, k, drafts, max_sets)
    V, n = p_arr.size, set_probs.size
    flat = sets.ravel()
    valid = flat != _PAD
    valid[valid] = p_arr[flat[valid]] > 0                   # no edge into a token of zero target mass
    edge_set = np.repeat(np.arange(n), sets.shape[1])[valid]
    edge_token = flat[valid]
    m = edge_set.size
    build = time.perf_counter() - t0

    t1 = time.perf_counter()
    cut = None
    tol = GAP_TOL
    timed_out = False
    if m == 0:
        flow, duals, status, used = np.zeros(0), None, (0, "optimal (no membership edge)"), backend
    elif backend == "highs":
        upper = np.concatenate([set_probs, p_arr])
        api = "linprog" if highs_api == "auto" else highs_api
        start, index, value = _csc(edge_set, edge_token, n, V)
        solve = _solve_linprog if api == "linprog" else _solve_highspy
        flow, duals, status = solve(start, index, value, upper, m, time_limit)
        used = f"highs ({api})"
    elif backend == "cvxpy":
        flow, duals, status = _solve_cvxpy(edge_set, edge_token, set_probs, p_arr, cvxpy_solver)
        used = f"cvxpy ({cvxpy_solver or 'CLARABEL'})"
    elif backend == "flow":
        from .flow_plan import augmentation_limit, max_flow, prefix_cut, ratio_order_of, tolerance

        limit = augmentation_limit(n, V)
        F, cut, count, finished = max_flow(p_arr, sets, set_probs, max_augmentations=limit,
                                           time_limit=time_limit)
        flow, duals, used = F.ravel()[valid], None, "flow (float max-flow)"
        # the closed-form prefix cut (p/q order), evaluated exactly on the set law, when it is lower
        order = ratio_order_of(p_arr, q if isinstance(drafts, str) else None, sets, set_probs)
        best, best_value = prefix_cut(p_arr, sets, set_probs, order)
        if best_value < cut_value(p_arr, sets, set_probs, cut):
            cut = best
        timed_out = not finished and count < limit
        status = ((0, f"optimal ({count} augmenting paths after the greedy start)") if finished else
                  (1, f"augmenting-path limit reached after {count} paths") if not timed_out else
                  (1, f"time limit of {time_limit:g} s reached after {count} augmenting paths"))
        tol = tolerance(n, V)
    else:
        flow, cut, status = _solve_maxflow(edge_set, edge_token, set_probs, p_arr, maxflow_scale)
        duals, used = None, "maxflow (scipy dinic)"
    solve_seconds = time.perf_counter() - t1

    plan = _make_plan(p_arr, sets, set_probs, edge_set, edge_token, flow)
    if cut is None:
        if duals is None and m > 0 and status[0] == 0:
            raise RuntimeError("the solver returned no duals for the certificate")
        # without duals (no edge, or a failed solve) the threshold cut of zero potentials is still
        # a valid (exact) upper bound, only a weak one
        token_dual = np.zeros(V) if duals is None else duals[n:]
        cut = _threshold_cut(p_arr, sets, set_probs, token_dual)
    certificate = cut_value(p_arr, sets, set_probs, cut)
    label = drafts if isinstance(drafts, str) else "explicit"
    value = plan.acceptance()
    code, message = status
    if code == 0 and backend == "flow":
        # the flow's one check: both marginals and |certificate - value| to the flow's tolerance
        from .flow_plan import verify_plan

        problem = verify_plan(plan, value, certificate, tol)
        if problem is not None:
            code, message = 3, f"flow plan failed verification: {problem}"
    elif code == 0:
        gap_tol = max(GAP_TOL, (n + V + 1) / maxflow_scale) if backend == "maxflow" else GAP_TOL
        if certificate - value > gap_tol:
            code, message = 3, f"certificate gap {certificate - value:.2e} exceeds {gap_tol:g}"
    if code != 0 and backend == "flow" and auto and not timed_out:
        res = solve_membership_ot(p_arr, q, k, drafts, "highs", highs_api=highs_api, max_sets=max_sets,
                                  time_limit=time_limit)
        return replace(res, message=f"{res.message} (HiGHS LP after the flow backend's {message})")
    return warn_if_failed(MembershipOT(
        value=value, plan=plan, cut=cut, certificate_value=certificate, success=code == 0,
        status=code, message=message, backend=used, n_variables=m, n_constraints=n + V, n_sets=n,
        solve_seconds=solve_seconds, build_seconds=build, k=k, draft_law=label))
