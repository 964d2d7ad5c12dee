r"""The exact sequence-level optimum of multi-path verification, its certificate and bounds.

Setting (docs/theory/sequence_optimum.md): ``k`` draft paths ``X^1..X^k`` of length ``L``, i.i.d.
from the draft model ``q`` (autoregressively, after a fixed ``prefix``); ``D = (X^1..X^k)``; the
draft tree ``T(D)`` is the set of distinct prefixes of the paths (the empty prefix included). A
verifier emits ``Y = u.z``: an accepted node ``u`` of ``T(D)`` followed by one fresh token, so
``1 <= |Y| <= L + 1``. It is *lossless* when ``Y`` followed by the target's own continuation is
distributed as the target ``p``; with ``G(u) = P(u <= Y)`` (``u`` a prefix of ``Y``) and
``r(u) = P(Y = u)`` this is equivalent to the local condition

.. math:: G(u.z) = p(z \mid u)\,\bigl(G(u) - r(u)\bigr) \quad (|u| \le L,\ z \in V)

and to the full condition ``sum_m r(s_{1:m}) p(s_{m+1:L+1} | s_{1:m}) = p(s)`` for every
``s in V^{L+1}`` (both are implemented; the tests check that they give the same optimum).

The LP (``method="states"``). The constraints see ``D`` only through the set ``S`` of distinct
drafted paths, so the variables are ``pi(S, y)`` for every set ``S`` of at most ``k`` paths of
positive draft probability and every ``y = u.z`` with ``u in T(S)``; ``Q(S) = P(S(D) = S)`` is
summed exactly over the compositions of ``k`` (positive terms only, no cancellation)::

    maximise  sum_{S, y} |y| pi(S, y)
    s.t.      sum_y pi(S, y) = Q(S)                      (draft marginal)
              r(y) = sum_S pi(S, y) satisfies the lossless conditions,  pi >= 0.

Outputs with ``p(y) = 0`` are dropped (a lossless rule never emits them: ``G(y) <= p(y)``).

The decomposition (``method="selection"``; docs/theory/sequence_optimum.md, the structure
theorem): the same optimum equals ``max`` over laws ``w`` of a *selected* path ``X^J`` of the best
single-path lossless verifier for ``w``. The reachable ``w`` form the base polytope of the
coverage function ``A -> 1 - (1 - q(A))^k`` over paths (Gale's supply-demand theorem), whose
most violated inequality is a prefix of the paths sorted by ``w/q``
(:func:`solvers.selection_law.selection_law_violation`); the LP over ``(w, pi(x, y))`` is solved by
adding violated prefix cuts until none is violated by more than ``cut_tol``. Its size is
``O(V^L (L + 1) V)`` whatever ``k``: this is the method that scales.

Numerics. Draft masses reach 1e-16. Every variable is scaled to ``[0, 1]`` (``pi(S, y) = Q(S)
c(S, y)``: a conditional law; ``r(y) = p(y) rho(y)``), every row is divided by its largest entry,
HiGHS is run with tight tolerances and, on failure, with other settings; a solution is accepted
only if the draft marginals and the lossless conditions hold to ``residual_tol`` (1e-9) *in
original units*, recomputed from the returned plan. The certificate: for any row multipliers
``lam`` and ``0 <= x <= 1``, ``c.x = lam.b + (c - A^T lam).x <= lam.b + sum_j (c - A^T lam)_j^+``;
evaluated at HiGHS' duals this is a rigorous upper bound (:attr:`SequenceOptimum.dual_bound`),
whatever the dual's own feasibility error (reported as :attr:`SequenceOptimum.dual_infeasibility`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from math import comb

import numpy as np
from scipy import sparse

from ot_coupling.validation import validate_distribution, validate_k

from .closed_form import optimal_acceptance
from .flow_plan import check_time_limit
from .highs import new_highs
from .iid_plan import compositions
from .subsets import range_subsets

Conditional = Callable[[tuple], np.ndarray]

METHODS = ("auto", "states", "selection")
LOSSLESS_FORMS = ("local", "full")
BACKENDS = ("highs",)
#: default refusal threshold on the number of LP variables
MAX_VARIABLES = 3_000_000
#: ``method="auto"`` uses the state LP up to this many variables, the decomposition above
AUTO_STATES_MAX = 200_000
RESIDUAL_TOL = 1e-9
_TOL = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10,
        "small_matrix_value": 1e-12}
#: HiGHS settings tried in turn until the solution passes the residual check
#: (presolve is off first: on these LPs HiGHS' presolve costs ~50x the simplex solve itself)
_ATTEMPTS = ({"presolve": "off"}, {}, {"solver": "ipm", "run_crossover": "on"},
             {"presolve": "off", "solver": "simplex", "simplex_strategy": 4})



# --------------------------------------------------------------------------- models
class _Models:
    """Cached, validated target/draft conditionals after a fixed ``prefix``."""

    def __init__(self, target: Conditional, draft: Conditional, prefix: tuple):
        if not callable(target):
            raise ValueError("target must be a callable prefix tuple -> probabilities")
        if not callable(draft):
            raise ValueError("draft must be a callable prefix tuple -> probabilities")
        self._t, self._d = target, draft
        self.prefix = tuple(int(x) for x in prefix)
        self._pc: dict[tuple, np.ndarray] = {}
        self._qc: dict[tuple, np.ndarray] = {}
        self.V = self.p(()).size
        if self.q(()).size != self.V:
            raise ValueError(f"target and draft must share the vocabulary, got {self.V} and {self.q(()).size}")

    def p(self, u: tuple) -> np.ndarray:
        if u not in self._pc:
            self._pc[u] = validate_distribution(self._t(self.prefix + u), f"target{self.prefix + u}")
        return self._pc[u]

    def q(self, u: tuple) -> np.ndarray:
        if u not in self._qc:
            self._qc[u] = validate_distribution(self._d(self.prefix + u), f"draft{self.prefix + u}")
        return self._qc[u]


def _draft_paths(m: _Models, L: int) -> tuple[list[tuple], np.ndarray, list[list[tuple]]]:
    """Paths of positive draft probability, their probabilities, and the draftable nodes by depth."""
    level, probs = [()], [1.0]
    nodes = [[()]]
    for _ in range(L):
        nxt, nprobs = [], []
        for u, a in zip(level, probs):
            q = m.q(u)
            for z in np.flatnonzero(q > 0).tolist():
                nxt.append(u + (z,))
                nprobs.append(a * float(q[z]))
        level, probs = nxt, nprobs
        nodes.append(level)
    return level, np.array(probs), nodes


def _sequence_law(cond: Callable[[tuple], np.ndarray], V: int, t: int) -> np.ndarray:
    """Law over ``V^t`` (row-major) of ``t`` tokens drawn from the conditionals ``cond``."""
    law = np.ones(1)
    for depth in range(t):
        rows = np.stack([cond(tuple(int(v) for v in np.unravel_index(i, (V,) * depth))) if depth else cond(())
                         for i in range(V**depth)])
        law = (law[:, None] * rows).reshape(-1)
    return law


def depthwise_upper_bound(target: Conditional, draft: Conditional, k: int, L: int,
                          prefix: tuple = ()) -> tuple[float, np.ndarray]:
    r"""``1 + sum_{t=1}^{L} alpha_t`` and the ``alpha_t``.

    ``alpha_t = min_H p_t(H) + 1 - Q_t(H)^k`` is the optimal acceptance of ``k`` i.i.d. draws from
    the draft law ``Q_t`` of the first ``t`` tokens against the target law ``p_t`` on ``V^t``
    (:func:`solvers.closed_form.optimal_acceptance` on the flattened laws). Any lossless verifier
    has ``P(|Y| > t) = P(Y_{1:t} is a drafted depth-t prefix) <= alpha_t`` because ``Y_{1:t}`` has
    law ``p_t`` on that event's complement-completion (docs/theory/sequence_optimum.md).
    """
    k, L = validate_k(k), validate_k(L, "L")
    m = _Models(target, draft, tuple(prefix))
    alphas = np.array([optimal_acceptance(_sequence_law(m.p, m.V, t), _sequence_law(m.q, m.V, t), k)
                       for t in range(1, L + 1)])
    return float(1.0 + alphas.sum()), alphas


# --------------------------------------------------------------------------- draft sets
def count_states(n_paths: int, k: int) -> int:
    """Number of sets of at most ``k`` distinct paths out of ``n_paths`` (exact Python int)."""
    return sum(comb(n_paths, s) for s in range(1, min(k, n_paths) + 1))


def _multinomial(k: int, parts: tuple) -> int:
    out, left = 1, k
    for c in parts:
        out *= comb(left, c)
        left -= c
    return out


def _path_sets(probs: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per set size ``s``: path-index arrays ``[n_s, s]`` and ``Q(S) = sum_c k!/prod c_i! prod a_i^c_i``.

    Multinomials are exact Python integers (converted to float once, relative error <= 1.1e-16);
    every term is positive, so tiny masses keep their relative accuracy.
    """
    n = probs.size
    idx_blocks, prob_blocks = [], []
    for s in range(1, min(k, n) + 1):
        idx = range_subsets(n, s)
        a = probs[idx]
        Q = np.zeros(idx.shape[0])
        for c in compositions(k, s):
            Q += float(_multinomial(k, c)) * np.prod(a ** np.array(c, dtype=np.float64), axis=1)
        idx_blocks.append(idx)
        prob_blocks.append(Q)
    return idx_blocks, prob_blocks


# --------------------------------------------------------------------------- outputs and lossless rows
@dataclass
class _Outputs:
    """Admissible outputs ``y = u.z`` (``u`` a draftable node, ``p(y) > 0``) and their index."""

    seqs: list[tuple]
    index: dict[tuple, int]
    length: np.ndarray
    ptarget: np.ndarray                   # p(y)
    by_node: dict[tuple, np.ndarray]      # node u -> ids of u.z


def _outputs(m: _Models, nodes: list[list[tuple]]) -> _Outputs:
    seqs: list[tuple] = []
    pt: list[float] = []
    by_node: dict[tuple, np.ndarray] = {}
    pmass = {(): 1.0}
    for level in nodes:
        for u in level:
            pu = pmass.get(u)
            if pu is None:                               # p(u) from its parent
                pu = pmass[u[:-1]] * float(m.p(u[:-1])[u[-1]])
                pmass[u] = pu
            if pu <= 0:
                by_node[u] = np.zeros(0, dtype=np.int64)
                continue
            pz = m.p(u)
            ids = []
            for z in np.flatnonzero(pz > 0).tolist():
                ids.append(len(seqs))
                seqs.append(u + (z,))
                pt.append(pu * float(pz[z]))
            by_node[u] = np.array(ids, dtype=np.int64)
    index = {y: i for i, y in enumerate(seqs)}
    return _Outputs(seqs, index, np.array([len(y) for y in seqs], dtype=np.float64), np.array(pt), by_node)


def _local_rows(m: _Models, out: _Outputs) -> tuple[sparse.csr_matrix, np.ndarray]:
    """``A r = 0`` for the local lossless conditions ``G(u.z) - p(z|u)(G(u) - r(u)) = 0``.

    Coefficient of ``r(y)`` in row ``(u, z)``: ``[u.z <= y] - p(z|u) [u < y]`` for every strict prefix
    ``u`` of ``y`` (all are draftable nodes); rows are ``(u, z)`` for draftable ``u`` with an output below.
    """
    V = m.V
    row_of: dict[tuple, int] = {}
    rows, cols, vals = [], [], []
    for j, y in enumerate(out.seqs):
        for d in range(len(y)):
            u = y[:d]
            if u not in row_of:
                row_of[u] = len(row_of)
            base = row_of[u] * V
            coef = -m.p(u).copy()
            coef[y[d]] += 1.0
            nz = np.flatnonzero(coef)
            rows.extend((base + nz).tolist())
            cols.extend([j] * nz.size)
            vals.extend(coef[nz].tolist())
    A = sparse.csr_matrix((vals, (rows, cols)), shape=(len(row_of) * V, len(out.seqs)))
    keep = np.flatnonzero(np.diff(A.indptr) > 0)
    return A[keep], np.zeros(keep.size)


def _full_rows(m: _Models, out: _Outputs, L: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """``A r = b`` for ``sum_m r(s_{1:m}) p(s_{m+1:} | s_{1:m}) = p(s)``, ``s in V^{L+1}``."""
    V = m.V
    rows, cols, vals = [], [], []
    b = np.zeros(V ** (L + 1))
    for i, s in enumerate(product(range(V), repeat=L + 1)):
        # suffix probabilities p(s_{m+1:} | s_{1:m}) for m = L+1 .. 0
        tail = np.ones(L + 2)
        for mm in range(L, -1, -1):
            tail[mm] = float(m.p(s[:mm])[s[mm]]) * tail[mm + 1]
        b[i] = tail[0]
        for mm in range(1, L + 2):
            j = out.index.get(s[:mm])
            if j is not None and tail[mm] > 0:
                rows.append(i)
                cols.append(j)
                vals.append(tail[mm])
    A = sparse.csr_matrix((vals, (rows, cols)), shape=(b.size, len(out.seqs)))
    keep = np.flatnonzero((np.diff(A.indptr) > 0) | (b > 0))
    return A[keep], b[keep]


def _lossless_residual(m: _Models, out: _Outputs, r: np.ndarray, L: int, form: str) -> float:
    """``|A r - b|_inf`` of the lossless conditions in original units (``r`` = law of ``Y``)."""
    A, b = (_local_rows(m, out) if form == "local" else _full_rows(m, out, L))
    return float(np.abs(A @ r - b).max(initial=0.0))


# --------------------------------------------------------------------------- HiGHS
@dataclass
class _Solution:
    x: np.ndarray
    row_dual: np.ndarray | None
    status: str
    attempt: dict
    seconds: float


def _highs(c, A: sparse.csr_matrix, lo, hi, time_limit, options) -> _Solution:
    """``max c.x`` s.t. ``lo <= A x <= hi``, ``0 <= x <= 1`` with highspy."""
    import highspy

    t0 = time.perf_counter()
    h = new_highs()
    h.setOptionValue("output_flag", False)
    for name, val in {**_TOL, **options}.items():
        h.setOptionValue(name, val)
    if time_limit:
        h.setOptionValue("time_limit", float(time_limit))
    Ac = A.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.asarray(c, dtype=np.float64)
    lp.col_lower_ = np.zeros(A.shape[1])
    lp.col_upper_ = np.ones(A.shape[1])
    lp.row_lower_ = np.asarray(lo, dtype=np.float64)
    lp.row_upper_ = np.asarray(hi, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = Ac.indptr.astype(np.int32)
    lp.a_matrix_.index_ = Ac.indices.astype(np.int32)
    lp.a_matrix_.value_ = Ac.data.astype(np.float64)
    h.passModel(lp)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    sol = h.getSolution()
    x = np.asarray(sol.col_value) if sol.value_valid else None
    dual = np.asarray(sol.row_dual) if sol.dual_valid else None
    return _Solution(x, dual, status, options, time.perf_counter() - t0)


def _certificate(c, A: sparse.csr_matrix, lo, hi, dual) -> tuple[float, float]:
    """Rigorous upper bound ``lam.b + sum_j (c - A^T lam)_j^+`` over ``0 <= x <= 1`` from row duals.

    Row ``i`` with ``lo_i = hi_i`` takes any sign; an inequality row keeps only the sign that is
    valid for its finite side. Both sign conventions are tried; the smaller bound is returned with
    the dual infeasibility ``max_j (c - A^T lam)_j^+`` it carries.
    """
    best = (np.inf, np.inf)
    if dual is None:
        return best
    eq = lo == hi
    for sgn in (1.0, -1.0):
        lam = sgn * np.asarray(dual, dtype=np.float64)
        # lam_i > 0 needs an upper side (hi finite), lam_i < 0 a lower side
        lam = np.where(eq, lam, np.where(lam > 0, np.where(np.isfinite(hi), lam, 0.0),
                                         np.where(np.isfinite(lo), lam, 0.0)))
        bvec = np.where(lam > 0, hi, lo)
        bvec = np.where(lam == 0, 0.0, bvec)
        slack = np.asarray(c) - A.T @ lam
        bound = float(lam @ bvec + np.clip(slack, 0.0, None).sum())
        if bound < best[0]:
            best = (bound, float(np.clip(slack, 0.0, None).max(initial=0.0)))
    return best


def _scale_rows(A: sparse.csr_matrix, lo: np.ndarray, hi: np.ndarray):
    d = np.abs(A).max(axis=1).toarray().ravel()
    d = np.where(d > 0, 1.0 / d, 1.0)
    D = sparse.diags(d)
    return (D @ A).tocsr(), lo * d, hi * d


# --------------------------------------------------------------------------- results
@dataclass
class SequencePlan:
    """The optimal plan ``pi(S, y)`` over (set of distinct drafted paths, emitted sequence).

    ``paths``: the draftable paths; ``states[i]``: path indices of set ``i`` (sorted);
    ``state_probs[i] = Q(S_i)``; ``outputs[j]``: the emitted sequence ``y_j``; ``matrix`` (CSR
    ``[n_states, n_outputs]``) holds ``pi``, each row summing to ``Q(S_i)``.
    """

    paths: list[tuple]
    states: list[tuple]
    state_probs: np.ndarray
    outputs: list[tuple]
    matrix: sparse.csr_matrix
    _index: dict = field(default_factory=dict, repr=False)

    def state_index(self, drafts) -> int:
        """Row of the set of distinct paths of ``drafts`` (``[k, L]`` tokens)."""
        if not self._index:
            self._index.update({s: i for i, s in enumerate(self.states)})
            self._path_id = {x: i for i, x in enumerate(self.paths)}
        d = np.atleast_2d(np.asarray(drafts, dtype=np.int64))
        try:
            key = tuple(sorted({self._path_id[tuple(int(v) for v in row)] for row in d}))
        except KeyError:
            raise ValueError("drafts hold a path of zero draft probability") from None
        return self._index[key]

    def output_law(self) -> dict[tuple, float]:
        """``P(Y = y)`` summed over the states."""
        r = np.asarray(self.matrix.sum(axis=0)).ravel()
        return {y: float(v) for y, v in zip(self.outputs, r) if v > 0}

    def selected_path_law(self) -> np.ndarray:
        """Law ``w`` over :attr:`paths` of the path selected uniformly among the distinct drafted
        paths that extend ``Y_{1:|Y|-1}`` (the rule of :class:`OptimalLPSelection`)."""
        w = np.zeros(len(self.paths))
        M = self.matrix.tocsr()
        for i, s in enumerate(self.states):
            for j, v in zip(M.indices[M.indptr[i]:M.indptr[i + 1]], M.data[M.indptr[i]:M.indptr[i + 1]]):
                u = self.outputs[j][:-1]
                cand = [x for x in s if self.paths[x][:len(u)] == u]
                w[cand] += v / len(cand)
        return w


@dataclass
class SequenceOptimum:
    """Result of :func:`sequence_optimum` (scipy ``OptimizeResult`` protocol).

    Attributes
    ----------
    value : float
        LP* = the largest ``E|Y|`` of any lossless verifier of ``k`` i.i.d. draft paths (emitting an
        accepted drafted prefix plus one token), attained by :attr:`plan`.
    upper_bound : float
        ``1 + sum_t alpha_t`` (:func:`depthwise_upper_bound`), ``>= value``.
    alphas : ndarray
        the depth-wise optimal acceptances ``alpha_t``.
    dual_bound : float
        certificate: an upper bound on LP* from HiGHS' row duals (``>= value``).
    dual_infeasibility : float
        largest positive reduced cost of those duals in the scaled LP (folded into the bound).
    gap : float
        ``dual_bound - value``.
    residual : float
        ``|A pi - b|_inf`` of the draft marginals and lossless conditions in original units.
    success, status, message : OptimizeResult protocol (``status`` 0 = ok).
    plan : SequencePlan or None
        ``pi(S, y)`` (``method="states"``).
    selection : ndarray or None
        ``w`` over :attr:`paths`: the optimal law of the selected path (``method="selection"``).
    paths : list of tuple
        the draftable paths (index of ``selection``).
    """

    value: float
    upper_bound: float
    alphas: np.ndarray
    dual_bound: float
    dual_infeasibility: float
    residual: float
    success: bool
    status: int
    message: str
    method: str
    lossless: str
    n_variables: int
    n_rows: int
    build_seconds: float
    solve_seconds: float
    plan: SequencePlan | None = None
    selection: np.ndarray | None = None
    paths: list = field(default_factory=list, repr=False)
    output_law: dict = field(default_factory=dict, repr=False)
    cuts: int = 0

    @property
    def gap(self) -> float:
        return self.dual_bound - self.value

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.solve_seconds

    def __getitem__(self, key):          # OptimizeResult-style access
        return getattr(self, key)


# --------------------------------------------------------------------------- sizes
def estimate_variables(n_paths: int, k: int, L: int, V: int, method: str) -> int:
    """Upper estimate of the LP's variable count before anything is built."""
    if method == "selection":
        return n_paths * (1 + (L + 1) * V) + sum(V**t for t in range(1, L + 2))
    return sum(comb(n_paths, s) * (1 + s * L) * V for s in range(1, min(k, n_paths) + 1))


# --------------------------------------------------------------------------- state LP
def _solve_states(m: _Models, k, L, form, paths, probs, nodes, out, time_limit):
    t0 = time.perf_counter()
    idx_blocks, prob_blocks = _path_sets(probs, k)
    node_id: dict[tuple, int] = {}
    for level in nodes:
        for u in level:
            node_id[u] = len(node_id)
    node_list = list(node_id)
    path_nodes = np.array([[node_id[x[:t]] for t in range(L + 1)] for x in paths], dtype=np.int64)
    node_out = [out.by_node[u] for u in node_list]
    states, qs, col_state, col_y = [], [], [], []
    for idx, Q in zip(idx_blocks, prob_blocks):
        for row, qv in zip(idx, Q):
            if qv <= 0:
                continue
            sid = len(states)
            states.append(tuple(int(v) for v in row))
            qs.append(qv)
            ys = np.concatenate([node_out[n] for n in np.unique(path_nodes[row].ravel())])
            col_state.append(np.full(ys.size, sid, dtype=np.int64))
            col_y.append(ys)
    qs = np.array(qs)
    col_state = np.concatenate(col_state)
    col_y = np.concatenate(col_y)
    nS, nY, nC = len(states), len(out.seqs), col_state.size
    # columns: c(S, y) [nC] then rho(y) [nY]; pi = Q(S) c, r = p(y) rho
    rows_state = sparse.csr_matrix((np.ones(nC), (col_state, np.arange(nC))), shape=(nS, nC + nY))
    rdef = sparse.csr_matrix((np.concatenate([qs[col_state], -out.ptarget]),
                              (np.concatenate([col_y, np.arange(nY)]), np.concatenate([np.arange(nC), nC + np.arange(nY)]))),
                             shape=(nY, nC + nY))
    Al, bl = _local_rows(m, out) if form == "local" else _full_rows(m, out, L)
    Al = sparse.hstack([sparse.csr_matrix((Al.shape[0], nC)), Al @ sparse.diags(out.ptarget)]).tocsr()
    A = sparse.vstack([rows_state, rdef, Al]).tocsr()
    b = np.concatenate([np.ones(nS), np.zeros(nY), bl])
    A, lo, hi = _scale_rows(A, b, b.copy())
    cost = np.concatenate([np.zeros(nC), out.length * out.ptarget])
    build = time.perf_counter() - t0

    def unpack(x):
        cvals = np.clip(x[:nC], 0.0, None)
        tot = np.bincount(col_state, cvals, minlength=nS)
        tot = np.where(tot > 0, tot, 1.0)
        pi = qs[col_state] * cvals / tot[col_state]          # rows sum to Q(S) exactly
        M = sparse.csr_matrix((pi, (col_state, col_y)), shape=(nS, nY))
        M.eliminate_zeros()
        r = np.bincount(col_y, pi, minlength=nY)
        marg = float(np.abs(np.bincount(col_state, pi, minlength=nS) - qs).max(initial=0.0))
        return M, r, marg

    return dict(A=A, lo=lo, hi=hi, cost=cost, build=build, unpack=unpack, states=states, qs=qs,
                n_vars=nC + nY)


# --------------------------------------------------------------------------- selection LP (decomposition)
def _solve_selection(m: _Models, k, L, form, paths, probs, out, time_limit, cut_tol, max_cuts):
    """Decomposed LP over ``(w, c(x, y), rho(y))`` with prefix cuts ``w(A) <= 1 - (1 - q(A))^k``."""
    import highspy

    t0 = time.perf_counter()
    N, nY = len(paths), len(out.seqs)
    col_x, col_y = [], []
    for i, x in enumerate(paths):
        ys = np.concatenate([out.by_node[x[:t]] for t in range(L + 1)])
        col_x.append(np.full(ys.size, i, dtype=np.int64))
        col_y.append(ys)
    col_x = np.concatenate(col_x)
    col_y = np.concatenate(col_y)
    nC = col_x.size
    # columns: w(x) = q(x) omega(x)?  w is not bounded by q; use w itself in [0, 1].
    # pi(x, y) = c(x, y) in [0, 1] (absolute: pi <= w <= 1); r(y) = p(y) rho(y)
    W0, C0, R0 = 0, N, N + nC
    nvar = N + nC + nY
    ar = np.arange
    blocks = []
    # sum_y pi(x, y) - w(x) = 0
    blocks.append(sparse.csr_matrix((np.concatenate([np.ones(nC), -np.ones(N)]),
                                     (np.concatenate([col_x, ar(N)]), np.concatenate([C0 + ar(nC), W0 + ar(N)]))),
                                    shape=(N, nvar)))
    # sum_x pi(x, y) - p(y) rho(y) = 0
    blocks.append(sparse.csr_matrix((np.concatenate([np.ones(nC), -out.ptarget]),
                                     (np.concatenate([col_y, ar(nY)]), np.concatenate([C0 + ar(nC), R0 + ar(nY)]))),
                                    shape=(nY, nvar)))
    Al, bl = _local_rows(m, out) if form == "local" else _full_rows(m, out, L)
    blocks.append(sparse.hstack([sparse.csr_matrix((Al.shape[0], N + nC)), Al @ sparse.diags(out.ptarget)]).tocsr())
    # sum_x w(x) = 1
    blocks.append(sparse.csr_matrix((np.ones(N), (np.zeros(N, dtype=np.int64), W0 + ar(N))), shape=(1, nvar)))
    A = sparse.vstack(blocks).tocsr()
    b = np.concatenate([np.zeros(N + nY), bl, [1.0]])
    A, lo, hi = _scale_rows(A, b, b.copy())
    cost = np.concatenate([np.zeros(N + nC), out.length * out.ptarget])
    build = time.perf_counter() - t0

    t1 = time.perf_counter()
    h = new_highs()
    h.setOptionValue("output_flag", False)
    for name, val in {**_TOL, "presolve": "off"}.items():
        h.setOptionValue(name, val)
    if time_limit:
        h.setOptionValue("time_limit", float(time_limit))
    Ac = A.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = nvar, A.shape[0]
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(nvar)
    lp.col_upper_ = np.ones(nvar)
    lp.row_lower_ = lo
    lp.row_upper_ = hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = Ac.indptr.astype(np.int32)
    lp.a_matrix_.index_ = Ac.indices.astype(np.int32)
    lp.a_matrix_.value_ = Ac.data.astype(np.float64)
    h.passModel(lp)
    cut_rows: list[tuple[np.ndarray, float]] = []

    def add_cut(members: np.ndarray, rhs: float) -> None:
        cut_rows.append((members, rhs))
        h.addRow(-highspy.kHighsInf, rhs, members.size, (W0 + members).astype(np.int32), np.ones(members.size))

    # seed: every prefix of the paths sorted by descending p(x)/q(x) (the order of the one-step
    # optimal selection law, which the optimum's w/q order resembles)
    ptar = np.array([np.prod([float(m.p(x[:t])[x[t]]) for t in range(L)]) for x in paths])
    seed_order = np.argsort(-(ptar / probs), kind="stable")
    qtail0 = np.concatenate([np.cumsum(probs[seed_order][::-1])[::-1][1:], [0.0]])
    for j in range(N - 1):
        add_cut(seed_order[:j + 1], float(1.0 - qtail0[j] ** k))
    status, x, dual, viol = "not run", None, None, np.inf
    for _ in range(max_cuts + 1):
        for opts in _ATTEMPTS:                           # other HiGHS settings on a numerical failure
            for name, val in {**{"presolve": "off", "solver": "choose", "simplex_strategy": 1}, **opts}.items():
                h.setOptionValue(name, val)
            h.run()
            if h.modelStatusToString(h.getModelStatus()) == "Optimal":
                break
        status = h.modelStatusToString(h.getModelStatus())
        sol = h.getSolution()
        if not sol.value_valid:
            break
        x = np.asarray(sol.col_value)
        dual = np.asarray(sol.row_dual) if sol.dual_valid else None
        w = np.clip(x[W0:W0 + N], 0.0, None)
        ratio = w / probs
        order = np.argsort(-ratio, kind="stable")
        Wc = np.cumsum(w[order])
        # 1 - (1 - q(A))^k with q(A^c) summed from the tail for accuracy
        qtail = np.concatenate([np.cumsum(probs[order][::-1])[::-1][1:], [0.0]])
        cover = 1.0 - qtail**k
        excess = Wc - cover
        viol = float(excess.max())
        if viol <= cut_tol:
            break
        # add up to 64 most violated prefix cuts (distinct prefixes)
        cand = np.argsort(-excess)[:64]
        for j in cand[excess[cand] > cut_tol].tolist():
            add_cut(order[:j + 1], float(cover[j]))
    solve = time.perf_counter() - t1
    # full constraint system including cuts (for the certificate)
    if cut_rows:
        Ccut = sparse.csr_matrix((np.concatenate([np.ones(mm.size) for mm, _ in cut_rows]),
                                  (np.concatenate([np.full(mm.size, i) for i, (mm, _) in enumerate(cut_rows)]),
                                   np.concatenate([W0 + mm for mm, _ in cut_rows]))),
                                 shape=(len(cut_rows), nvar))
        A_all = sparse.vstack([A, Ccut]).tocsr()
        lo_all = np.concatenate([lo, np.full(len(cut_rows), -np.inf)])
        hi_all = np.concatenate([hi, [rhs for _, rhs in cut_rows]])
    else:
        A_all, lo_all, hi_all = A, lo, hi
    return dict(x=x, dual=dual, status=status, viol=viol, A=A_all, lo=lo_all, hi=hi_all, cost=cost,
                build=build, solve=solve, col_x=col_x, col_y=col_y, N=N, nC=nC, nY=nY, n_vars=nvar,
                n_cuts=len(cut_rows))


# --------------------------------------------------------------------------- entry point
def sequence_optimum(target: Conditional, draft: Conditional, k: int = 2, L: int = 3, prefix: tuple = (),
                     backend: str = "highs", *, method: str = "auto", lossless: str = "local",
                     max_variables: int = MAX_VARIABLES, time_limit: float | None = None,
                     residual_tol: float = RESIDUAL_TOL, cut_tol: float = 1e-12,
                     max_cuts: int = 2000) -> SequenceOptimum:
    r"""The best ``E|Y|`` of any lossless verifier of ``k`` i.i.d. draft paths of length ``L``.

    Parameters
    ----------
    target, draft : callable
        ``prefix tuple -> length-V probabilities`` (e.g. :meth:`markov.MarkovLM.next_dist`),
        called with ``prefix + u`` for the tokens ``u`` after the fixed context.
    k, L : int
        number of draft paths and their length.
    prefix : tuple
        fixed context tokens prepended to every model call.
    backend : {"highs"}
        LP solver (HiGHS through highspy).
    method : {"auto", "states", "selection"}
        ``"states"``: the LP over (set of distinct drafted paths, emitted sequence) with the plan
        ``pi(S, y)``; ``"selection"``: the decomposition over (law of the selected path, single-path
        plan) with prefix cuts, which scales (``O(V^L (L+1) V)`` variables for any ``k``);
        ``"auto"``: ``"states"`` up to :data:`AUTO_STATES_MAX` variables.
    lossless : {"local", "full"}
        the form of the lossless constraints (equivalent; docs/theory/sequence_optimum.md).
    max_variables : int
        refuse (``ValueError``) before building when the estimated variable count is larger.
    time_limit : float, optional
        HiGHS time limit per solve, seconds.
    residual_tol : float
        a solution is accepted only if its draft-marginal and lossless residuals in original
        units are at most this.

    Returns
    -------
    SequenceOptimum
        ``.value`` (LP*), ``.upper_bound`` (``1 + sum_t alpha_t``), ``.dual_bound`` (certificate),
        ``.plan`` / ``.selection``, ``.success``/``.status``/``.message``, timings.

    Raises
    ------
    ValueError
        for a bad argument or a problem larger than ``max_variables``.

    Notes
    -----
    The optimum is over every verifier whose output is an accepted drafted prefix plus one token,
    whatever information it uses; ``k = 1`` gives block verification (Sun, Mendlovic, Leviathan,
    Aharoni, Ro, Beirami, Suresh, ICLR 2025, Alg. 2) and ``L = 1`` gives ``1 + alpha*``
    (docs/theory/sequence_optimum.md).
    """
    k, L = validate_k(k), validate_k(L, "L")
    time_limit = check_time_limit(time_limit)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if lossless not in LOSSLESS_FORMS:
        raise ValueError(f"lossless must be one of {LOSSLESS_FORMS}, got {lossless!r}")
    m = _Models(target, draft, tuple(prefix))
    V = m.V
    if lossless == "full" and V ** (L + 1) > 2_000_000:
        raise ValueError(f"lossless='full' needs V^(L+1) = {V ** (L + 1)} rows; use lossless='local'")
    if V**L > 5_000_000:
        raise ValueError(f"V^L = {V**L} draft paths is too many to enumerate (L={L}, V={V})")
    paths, probs, nodes = _draft_paths(m, L)
    if method == "auto":
        method = "states" if estimate_variables(len(paths), k, L, V, "states") <= AUTO_STATES_MAX else "selection"
    est = estimate_variables(len(paths), k, L, V, method)
    if est > max_variables:
        raise ValueError(f"the {method!r} LP for V={V}, L={L}, k={k} has ~{est:,} variables > "
                         f"max_variables={max_variables:,}; use method='selection' or raise max_variables")
    ub, alphas = depthwise_upper_bound(target, draft, k, L, prefix)
    out = _outputs(m, nodes)

    if method == "states":
        prob = _solve_states(m, k, L, lossless, paths, probs, nodes, out, time_limit)
        t1 = time.perf_counter()
        result = None
        tried = []
        for opts in _ATTEMPTS:
            sol = _highs(prob["cost"], prob["A"], prob["lo"], prob["hi"], time_limit, opts)
            tried.append(f"{opts or 'default'}: {sol.status}")
            if sol.x is None:
                continue
            M, r, marg = prob["unpack"](sol.x)
            res = max(marg, _lossless_residual(m, out, r, L, "local"))
            if lossless == "full" or V ** (L + 1) <= 200_000:
                res = max(res, _lossless_residual(m, out, r, L, "full"))
            result = (sol, M, r, res)
            if res <= residual_tol and sol.status == "Optimal":
                break
        solve = time.perf_counter() - t1
        if result is None:
            return _failed(ub, alphas, method, lossless, prob["n_vars"], prob["A"].shape[0], prob["build"],
                           solve, "HiGHS returned no solution: " + "; ".join(tried), paths)
        sol, M, r, res = result
        value = float(out.length @ r)
        bound, dinf = _certificate(prob["cost"], prob["A"], prob["lo"], prob["hi"], sol.row_dual)
        plan = SequencePlan(paths=paths, states=prob["states"], state_probs=prob["qs"], outputs=out.seqs, matrix=M)
        ok = res <= residual_tol and sol.status == "Optimal"
        msg = (f"optimal (HiGHS {sol.attempt or 'default settings'}); residual {res:.2e}, "
               f"certified gap {bound - value:.2e}") if ok else \
            f"not accepted: residual {res:.2e} > {residual_tol:g} or status {sol.status!r} ({'; '.join(tried)})"
        out_res = SequenceOptimum(value=value, upper_bound=ub, alphas=alphas, dual_bound=bound,
                                  dual_infeasibility=dinf, residual=res, success=ok, status=0 if ok else 1,
                                  message=msg, method=method, lossless=lossless, n_variables=prob["n_vars"],
                                  n_rows=prob["A"].shape[0], build_seconds=prob["build"], solve_seconds=solve,
                                  plan=plan, paths=paths,
                                  output_law={y: float(v) for y, v in zip(out.seqs, r) if v > 0})
    else:
        prob = _solve_selection(m, k, L, lossless, paths, probs, out, time_limit, cut_tol, max_cuts)
        x = prob["x"]
        if x is None:
            return _failed(ub, alphas, method, lossless, prob["n_vars"], prob["A"].shape[0], prob["build"],
                           prob["solve"], f"HiGHS returned no solution: {prob['status']}", paths)
        N, nC, nY = prob["N"], prob["nC"], prob["nY"]
        w = np.clip(x[:N], 0.0, None)
        pi = np.clip(x[N:N + nC], 0.0, None)
        tot = np.bincount(prob["col_x"], pi, minlength=N)
        pi = np.where(tot[prob["col_x"]] > 0, pi * w[prob["col_x"]] / np.where(tot > 0, tot, 1)[prob["col_x"]], 0.0)
        r = np.bincount(prob["col_y"], pi, minlength=nY)
        res = max(abs(w.sum() - 1.0), _lossless_residual(m, out, r, L, "local"))
        missing = float(w[tot <= 0].sum())                   # selected mass with no plan row
        res = max(res, missing)
        value = float(out.length @ r)
        bound, dinf = _certificate(prob["cost"], prob["A"], prob["lo"], prob["hi"], prob["dual"])
        ok = res <= residual_tol and prob["viol"] <= max(cut_tol, 1e-12) * 10 and prob["status"] == "Optimal"
        msg = (f"optimal after {prob['n_cuts']} prefix cuts; residual {res:.2e}, selection-law violation "
               f"{prob['viol']:.2e}, certified gap {bound - value:.2e}") if ok else \
            (f"not accepted: status {prob['status']!r}, residual {res:.2e}, selection-law violation "
             f"{prob['viol']:.2e} after {prob['n_cuts']} cuts")
        out_res = SequenceOptimum(value=value, upper_bound=ub, alphas=alphas, dual_bound=bound,
                                  dual_infeasibility=dinf, residual=res, success=ok, status=0 if ok else 1,
                                  message=msg, method=method, lossless=lossless, n_variables=prob["n_vars"],
                                  n_rows=prob["A"].shape[0], build_seconds=prob["build"],
                                  solve_seconds=prob["solve"], selection=w, paths=paths,
                                  output_law={y: float(v) for y, v in zip(out.seqs, r) if v > 0},
                                  cuts=prob["n_cuts"])
    if not out_res.success:
        warnings.warn(f"sequence_optimum: {out_res.message}", RuntimeWarning, stacklevel=2)
    return out_res


def _failed(ub, alphas, method, lossless, n_vars, n_rows, build, solve, msg, paths) -> SequenceOptimum:
    warnings.warn(f"sequence_optimum: {msg}", RuntimeWarning, stacklevel=3)
    return SequenceOptimum(value=float("nan"), upper_bound=ub, alphas=alphas, dual_bound=float("inf"),
                           dual_infeasibility=float("inf"), residual=float("inf"), success=False, status=2,
                           message=msg, method=method, lossless=lossless, n_variables=n_vars, n_rows=n_rows,
                           build_seconds=build, solve_seconds=solve, paths=paths)


# --------------------------------------------------------------------------- the plan as a verifier
from ot_coupling.sequence.base import SelectionRule, SelectThenBlockVerify  # noqa: E402


def _model_key(f) -> tuple:
    """Identity of a model callable that survives re-binding (``lm.next_dist`` is a new object each time)."""
    return (id(getattr(f, "__self__", f)), getattr(f, "__name__", ""))


class OptimalLPSelection(SelectionRule):
    r"""The path-selection rule read off the optimal LP plan (docs/theory/sequence_optimum.md).

    ``method="states"``: given ``D`` with set of distinct paths ``S``, draw ``y ~ pi(S, .)/Q(S)`` and
    select uniformly one of the distinct drafted paths that extend ``y_{1:|y|-1}`` (each copy of it
    equally): ``P(J = j | D) = sum_y pi(S, y)/Q(S) [X^j extends y_{1:|y|-1}] / (n_y(S) mult(X^j))``.
    ``method="selection"`` (large problems): the min-score layout (:mod:`solvers.min_score_layout`)
    over paths realising the decomposition's optimal selected-path law ``w``. Either way the
    selected path's law is known in closed form, and block verification against it attains LP*
    (the structure theorem).
    """

    name = "optimal_lp"
    closed_form = True

    def __init__(self, method: str = "auto", **lp_kwargs):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.lp_kwargs = lp_kwargs
        self._cache: dict = {}

    def solve(self, target, draft, k: int, L: int, prefix: tuple = ()) -> dict:
        """The LP optimum and the rule's pieces for ``(target, draft, k, L, prefix)`` (cached)."""
        prefix = tuple(int(v) for v in prefix)
        key = (_model_key(target), _model_key(draft), int(k), int(L), prefix,
               np.asarray(target(prefix)).tobytes(), np.asarray(draft(prefix)).tobytes())
        if key in self._cache:
            return self._cache[key]
        res = sequence_optimum(target, draft, k, L, prefix, method=self.method, **self.lp_kwargs)
        if not res.success:
            raise RuntimeError(f"optimal_lp: the LP was not solved ({res.message})")
        paths = res.paths
        qpaths = np.array([np.prod([float(np.asarray(draft(prefix + x[:t]))[x[t]]) for t in range(L)])
                           for x in paths])
        entry = {"result": res, "paths": paths, "path_id": {x: i for i, x in enumerate(paths)}, "q": qpaths}
        if res.plan is not None:
            entry["w"] = res.plan.selected_path_law()
            entry["plan"] = res.plan
        else:
            from .min_score_layout import greedy_layout

            layout = greedy_layout(res.selection, qpaths, k)
            entry["layout"] = layout
            entry["w"] = layout.marginal
        mass: dict[tuple, float] = {}
        for x, wx in zip(paths, entry["w"]):
            for t in range(L + 1):
                mass[x[:t]] = mass.get(x[:t], 0.0) + float(wx)
        entry["mass"] = mass
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def selection_probs(self, target, draft, drafts, prefix=()) -> np.ndarray:
        d = np.atleast_2d(np.asarray(drafts, dtype=np.int64))
        k, L = d.shape
        e = self.solve(target, draft, k, L, prefix)
        rows = [tuple(int(v) for v in row) for row in d]
        try:
            ids = np.array([e["path_id"][x] for x in rows])
        except KeyError:
            raise ValueError("drafts hold a path of zero draft probability") from None
        if "layout" in e:
            from .min_score_layout import selection_probabilities

            return selection_probabilities(e["layout"], ids, e["q"])
        plan: SequencePlan = e["plan"]
        i = plan.state_index(d)
        M = plan.matrix
        mult = {x: rows.count(x) for x in set(rows)}
        distinct = sorted(set(rows))
        out = np.zeros(k)
        for j, v in zip(M.indices[M.indptr[i]:M.indptr[i + 1]], M.data[M.indptr[i]:M.indptr[i + 1]]):
            u = plan.outputs[j][:-1]
            cand = [x for x in distinct if x[:len(u)] == u]
            for jj, x in enumerate(rows):
                if x[:len(u)] == u:
                    out[jj] += v / (len(cand) * mult[x])
        return out / out.sum()

    def selected_law(self, target, draft, k, L, prefix=()):
        e = self.solve(target, draft, k, L, prefix)
        mass = e["mass"]
        prefix = tuple(int(v) for v in prefix)

        def conditional(u: tuple) -> np.ndarray:
            u = tuple(int(v) for v in u)
            q = np.asarray(draft(prefix + u), dtype=np.float64)
            mu = mass.get(u, 0.0)
            if mu <= 0.0:
                return q
            out = np.array([mass.get(u + (z,), 0.0) for z in range(q.size)])
            return out / out.sum()

        return conditional


class OptimalLPSequenceVerifier(SelectThenBlockVerify):
    """Select a path with :class:`OptimalLPSelection`, then block-verify it against the selected
    path's law: a lossless verifier whose ``E|Y|`` is the sequence-level optimum LP*
    (registered as ``"optimal_lp"``; docs/theory/sequence_optimum.md). Small problems only: it
    solves :func:`sequence_optimum` for every new ``(target, draft, k, L, prefix)``.
    """

    def __init__(self, method: str = "auto", **lp_kwargs):
        super().__init__(OptimalLPSelection(method, **lp_kwargs))
        self.name = "optimal_lp"
