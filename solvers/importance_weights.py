r"""Lexicographic importance weights that realise the optimal selection law (numpy).

docs/theory/optimal_verifier.md#the-importance-rule. Tokens are split into two *levels*: ``A = V \ H`` (high
``p/q``) and ``H`` (the minimising prefix of the min-cut). Given the drafts, if some draft lies in
``A`` one of those is picked with probability proportional to ``lam(X_i)``; otherwise one of all
drafts (all in ``H``) is picked proportionally to ``lam``. The law of the pick is, for ``y`` in a
level ``L``,

.. math:: r_y(\lambda) = q_y\,\varphi_y,\qquad
          \varphi_y = k\lambda_y\int_0^\infty e^{-\lambda_y t} M_L(t)^{k-1}\,dt,\qquad
          M_L(t) = \sum_{x\in L} q_x e^{-\lambda_x t} + m_L,

with ``m_A = q(H)`` (drafts in ``H`` never preempt) and ``m_H = 0``. ``r(e^z) = grad Phi_L(z)`` for
the convex ``Phi_L(z) = int [(1 - m^k) e^{-t} - (M_L^k - m^k)] / t dt`` (Frullani), so fitting
``r(lam) = r*`` is the smooth convex problem ``min Phi_L(z) - <r*, z>`` (sec. 5, end). Its Hessian
is the weighted graph Laplacian ``D - A W A^T`` with ``A[y, n] = q_y lam_y e^{-lam_y t_n}`` over the
quadrature nodes; Newton steps are solved exactly, the gauge direction deflated: through the
Woodbury identity (one ``N x N`` linear solve per level, ``N`` = number of nodes) when there are
more groups than nodes, else directly on the ``G x G`` normalised Laplacian.

Tokens with equal target ratio ``r*/q`` get equal weights (``phi`` is strictly increasing in
``lam`` for a fixed ``M``), so each level is fitted over its *distinct* ratios only ("groups").
Optimality needs only ``r <= p`` on ``A`` and ``r >= p`` on ``H`` with the level totals fixed
(sec. 6), so the targets are rounded towards the cut on a grid that is fine next to the cut,
where the level's constraints are nearly tight, and coarse away from it (:func:`level_targets`,
reachability checked exactly): at ``V = 49152`` this cuts tens of thousands of groups to tens
while the acceptance stays ``alpha*``. The Newton iteration needs
``O(G min(G, N)^2)`` per step for ``G`` groups and ``N`` nodes (``N0 = 8`` plus ``n = 22`` per panel
of width ``<= 3`` in ``log t``, typically 100-150). From the start ``lam = r*/q`` the groups whose
target sits near an end of their range (:func:`ot_coupling.kernels.importance.group_range`: the
top groups near saturation, ``phi ~ hi - c/lam``; the low ones near the floor, ``phi ~ lo + c lam``)
would drift by ~1 in ``log lam`` per plain Newton step for 5-10 steps; the steps of the coarse
phase are therefore mapped through a one-group logistic model
(:func:`ot_coupling.kernels.importance.map_step`: ``log(1 + s)`` and ``-log(1 - s)`` at the two
ends), which reaches ``COARSE_TOL`` in 2-5 steps. Those steps run on a coarse rule
(:data:`COARSE_RULE`, ~2x fewer nodes); the fine rule, which alone determines the result and its
error bound, then needs one step (solved with the coarse phase's last Hessian) and is re-checked.

Quadrature and its error bound
------------------------------
Per level, with ``lam`` in ``[l_min, l_max]``: Gauss-Legendre with ``N0`` nodes in ``t`` on
``[0, t_1]``, ``t_1 = 1/(k l_max)``, then composite Gauss-Legendre in ``u = log t`` on
``[log t_1, log(T / l_min)]`` with panels of width ``h <= 3`` and ``n`` nodes each; the integral
beyond ``T / l_min`` (``T = 40``) is dropped. For one group the error of ``phi`` is at most
(Trefethen, *Approximation Theory and Approximation Practice*, Thm 19.3: ``n``-point
Gauss-Legendre on ``[-1, 1]`` errs by ``<= (64/15) C rho^{-2n} / (rho^2 - 1)`` for ``f`` analytic
with ``|f| <= C`` inside the Bernstein ellipse ``E_rho``):

* ``[0, t_1]``: on ``E_rho`` mapped to ``[0, t_1]``, ``Re t >= -t_1 (a_rho - 1)/2`` with
  ``a_rho = (rho + 1/rho)/2``, so ``|f| <= k l_max M_0^{k-1} exp((a_rho - 1)/2)``;
* a ``u``-panel of width ``h``: in the strip ``|Im u| <= b < pi/2``, ``|t lam e^{-lam t}| <=
  1/(e cos b)`` and ``|M_L| <= M_0 = M_L(0)``, and the strip contains ``E_rho`` with
  ``rho = 2b/h + sqrt(1 + (2b/h)^2)``;
* the dropped tail: ``<= k M_0^{k-1} e^{-T}``.

The strip argument does not depend on ``h``: the panel's ellipse has semi-minor axis
``(h/4)(rho - 1/rho) = b``. Per unit of ``log t``, ``n = 22`` nodes on ``h = 3`` err less than
``n = 10`` on ``h = 1`` (3.3e-17 against 4.8e-17 times ``k M_0^{k-1}``) with 27 % fewer nodes, and
``N0 = 8`` head nodes already give ``1e-18``.

:func:`quadrature_bound` evaluates the sum (minimised over ``rho`` and ``b`` on a grid); the
error of the computed marginal is ``||r_computed - r(lam)||_1 <= q(L) * bound`` per level. This is
the only error of the importance verifier's output law (the accept ratio and residual use the
computed marginal of the rule itself, sec. 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ot_coupling.kernels.importance import (  # noqa: F401  (the kernel layer; re-exported)
    COARSE_RULE,
    COARSE_TOL,
    FINE_RULE,
    MIN_LOG_WEIGHT,
    TAIL,
    LevelFit,
    PlanStatus,
    STATUS_MESSAGES,
    LevelProblems,
    QuadRule,
    evaluate,
    fit_levels,
    gauss_legendre,
    n_panels,
    newton_step,
    quadrature_bound,
    quadrature_nodes,
)

from ot_coupling.kernels._array import one_minus_power, power_gap
from ot_coupling.kernels.selection import selection_scan


@dataclass
class ImportancePlan(PlanStatus):
    """The fitted lexicographic importance rule for ``[B, V]`` rows.

    ``weights[B, V]`` (``lam``; 0 where ``q = 0``), ``top[B, V]`` (token in level ``A = V \\ H``),
    ``marginal[B, V]`` (the rule's own selection law ``r(lam)`` by quadrature), ``target[B, V]``
    (the law aimed at: ``r*``, or the coarse targets of :func:`level_targets`), ``quad_error[B]`` (bound
    on ``||marginal - r(lam)||_1``), ``fit_error[B]`` (``||marginal - target||_1``, which bounds
    ``alpha* - acceptance`` up to the quadrature error), ``iterations``, and the scipy-style
    ``success`` / ``status`` / ``message`` of the worst level fit (:class:`LevelFit`).
    """

    weights: np.ndarray
    top: np.ndarray
    marginal: np.ndarray
    target: np.ndarray
    quad_error: np.ndarray
    fit_error: np.ndarray
    iterations: int
    status: int = 0
    message: str = STATUS_MESSAGES[0]



def _ipow(x: np.ndarray, k: int) -> np.ndarray:
    """``x**k`` for an integer ``k >= 1`` by repeated squaring (several times faster than ``pow``)."""
    out = None
    base = x
    while True:
        if k & 1:
            out = base if out is None else out * base
        k >>= 1
        if not k:
            return out
        base = base * base


#: the roundings tried for a level's coarse targets, coarsest first: ``(d0, g, steps)`` of
#: :func:`_distance_grid` with the far step ``steps * resolution`` (:func:`level_targets`)
COARSE_GRIDS = ((1e-3, 1.5, 5.0), (1e-4, 1.25, 3.0), (1e-5, 1.1, 1.0), (1e-6, 1.05, 0.1),
                (1e-7, 1.02, 0.01))
#: the distance from the cut (in ``log`` ratio) up to which the grid is evenly spaced
#: (:func:`_distance_grid`)
_LINEAR_REACH = 60.0


class LevelTargets(NamedTuple):
    """A level's target as groups: runs of tokens in the level's ascending-ratio order.

    ``values[G]`` (ascending target ratios ``r/q``), ``counts[G]`` (tokens per run), ``masses[G]``
    (q-mass per run); ``exact``: whether these are the exact ``r*/q`` (else coarse targets)."""

    values: np.ndarray
    counts: np.ndarray
    masses: np.ndarray
    exact: bool


def _runs(x: np.ndarray) -> np.ndarray:
    """Start of every run of equal values of ``x`` (``x`` non-empty)."""
    starts = np.empty(1, dtype=np.intp)
    starts[0] = 0
    return np.concatenate([starts, np.flatnonzero(x[1:] != x[:-1]) + 1])


def _as_groups(values: np.ndarray, q_l: np.ndarray, starts: np.ndarray, exact: bool) -> LevelTargets:
    """Groups starting at ``starts`` (strictly increasing, first 0) with the given values."""
    counts = np.diff(starts, append=q_l.size)
    return LevelTargets(values, counts, np.add.reduceat(q_l, starts), exact)


def _exact_groups(q_l: np.ndarray, exact: np.ndarray) -> LevelTargets:
    """The exact target ``r*/q`` (ascending) as groups: its runs of equal ratio."""
    starts = _runs(exact)
    return _as_groups(exact[starts], q_l, starts, True)


def _distance_grid(d_max: float, d0: float, g: float, step: float, max_points: int) -> np.ndarray | None:
    """Distances ``e_0 = d0 < e_1 < ...`` in ``log`` ratio from the cut, up to the first one
    ``>= d_max``: geometric (factor ``g``) while the spacing is below ``step``, then spaced ``step``
    up to :data:`_LINEAR_REACH`, then doubling (ratios ``e^-60`` of the cut's and beyond, whose
    rounding moves the level's sums by less than ``e^-30`` of them). ``None`` if that takes more
    than ``max_points`` points (a grid finer than the tokens it groups)."""
    d_max = min(d_max, 2000.0)     # beyond any ratio of floats (1e-308 to 1e308: 1420)
    d1 = max(step / (g - 1.0), d0)
    geo = d0 * g ** np.arange(int(np.log(d1 / d0) / np.log(g)) + 1)
    if geo[-1] >= d_max:
        return geo[: int(np.searchsorted(geo, d_max)) + 1]
    reach = min(d_max, max(_LINEAR_REACH, geo[-1]))
    count = int(np.ceil((reach - geo[-1]) / step))
    if geo.size + count > max_points:
        return None
    lin = geo[-1] + step * np.arange(1, count + 1)
    if lin[-1] >= d_max:
        return np.concatenate([geo, lin])
    far = lin[-1] * 2.0 ** np.arange(1, int(np.ceil(np.log2(d_max / lin[-1]))) + 1)
    return np.concatenate([geo, lin, far])


def _reachable(masses: np.ndarray, values: np.ndarray, cap, need) -> bool:
    """Whether the target ``r = masses * values`` of a level (groups in ascending ``values``) lies in
    its polytope: for every proper set ``S`` of the highest groups ``r(S) <= cap(q(S))``,
    equivalently for its complement ``T`` (the lowest) ``r(T) >= need(q(T))``, the level's total
    ``r(L)`` fixed (docs/theory/optimal_verifier.md#reachable-selection-laws; ``cap`` is concave and
    the prefix sums are linear inside a group, so the group ends are the only breakpoints). Each
    constraint is checked in the form whose sums are the smaller (``S`` while ``q(S) <= q(L)/2``,
    else ``T``): the other form compares two numbers close to the total, where round-off would
    decide."""
    n = masses.size
    if n < 2:
        return True
    md, vd = masses[::-1], values[::-1]
    Qs = np.cumsum(md[:-1])
    s = int(np.searchsorted(Qs, 0.5 * masses.sum(), side="right"))   # S form for the first s
    if not np.all(np.cumsum(md[:s] * vd[:s]) <= cap(Qs[:s])):
        return False
    t = n - 1 - s                                                     # the rest by complements
    return t <= 0 or bool(np.all(np.cumsum(masses[:t] * values[:t]) >= need(np.cumsum(masses[:t]))))


def _rounded_floors(p_h: np.ndarray, q_h: np.ndarray, pi: np.ndarray, exact: np.ndarray, k: int,
                    d0: float, g: float, step: float) -> tuple[LevelTargets | None, bool]:
    """Level ``H``: ``max(up(p/q), theta')``, ``up`` rounding up towards the cut on the grid of
    :func:`_distance_grid`, for the tokens far from the cut whose raises the level's slack can
    take (the others aim at ``r*/q``). ``(None, _)`` if that target is not reachable; the flag
    says whether every token beyond ``d0`` was rounded."""
    c = pi[-1]                                    # the highest ratio of H, next to the cut
    if not 0 < c < np.inf:
        return None, True
    q_total = q_h.sum()
    total = q_total**k
    lowest = pi[np.searchsorted(pi, 0.0, side="right")]   # the smallest positive ratio
    e = _distance_grid(float(np.log(c) - np.log(lowest)), d0, g, step, 4 * pi.size)
    if e is None:
        return None, True
    a = c * np.exp(-e[::-1])                      # bucket values, ascending; the last is c e^-d0
    ends = np.searchsorted(pi, a, side="right")   # bucket i: a[i-1] < p/q <= a[i] (rounded up to a[i])
    starts = np.concatenate([[0], ends[:-1]])
    full = ends > starts
    near = int(ends[-1])                          # tokens within d0 of c keep r*/q
    # theta' exists iff sum q up(p/q) <= total, i.e. iff the raises q up - p add up to at most the
    # slack total - p(H): round whole buckets from the far end while they do
    raises = np.cumsum(q_h[:near] * np.repeat(a[full], (ends - starts)[full]) - p_h[:near])
    slack = total - p_h.sum()
    complete = not (near and raises[-1] > slack)
    if not complete:
        last = int(np.searchsorted(raises, slack, side="right"))       # tokens [0, last) fit
        near = int(starts[np.searchsorted(starts, last, side="right") - 1])
        ends = np.minimum(ends, near)
        full = ends > starts
    runs = near + _runs(exact[near:]) if near < pi.size else np.empty(0, dtype=np.intp)
    values = np.concatenate([a[full], exact[runs]])
    grp = _as_groups(values, q_h, np.concatenate([starts[full], runs]), False)
    mv = grp.masses * values
    if mv.sum() > total:
        return None, complete
    # theta': sum_g m_g max(v_g, theta') = total, piecewise linear and increasing in theta'; its
    # value at the breakpoint v_i is v_i M_i + (the sum above i)
    M = np.cumsum(grp.masses)
    above = np.cumsum(mv[::-1])[::-1] - mv
    i = int(np.sum(values * M + above <= total)) - 1
    if i >= 0:                                    # the groups up to i all aim at theta'
        theta = (total - above[i]) / M[i]
        grp = LevelTargets(np.concatenate([[theta], values[i + 1:]]),
                           np.concatenate([[grp.counts[:i + 1].sum()], grp.counts[i + 1:]]),
                           np.concatenate([[M[i]], grp.masses[i + 1:]]), False)

    def cap(Qc):
        return total - _ipow(np.maximum(q_total - Qc, 0.0), k)

    def need(Qc):
        return _ipow(Qc, k)

    return (grp if _reachable(grp.masses, grp.values, cap, need) else None), complete


def _rounded_caps(p_a: np.ndarray, q_a: np.ndarray, pi: np.ndarray, exact: np.ndarray, k: int,
                  d0: float, g: float, step: float) -> tuple[LevelTargets | None, bool]:
    """Level ``A``: ``min(down(p/q), theta')``, ``down`` rounding down towards the cut on the grid
    of :func:`_distance_grid`, for the tokens far from the cut whose cuts the level's slack can
    take (the others aim at ``r*/q``). ``(None, _)`` if that target is not reachable; the flag
    says whether every token beyond ``d0`` was rounded."""
    c = pi[0]                                     # the lowest ratio of A, next to the cut
    if not 0 < c < np.inf:
        return None, True
    s_a = q_a.sum()
    total = float(one_minus_power(np, s_a, k))
    e = _distance_grid(float(np.log(pi[-1]) - np.log(c)), d0, g, step, 4 * pi.size)
    if e is None:
        return None, True
    with np.errstate(over="ignore"):              # buckets beyond the largest float stay empty
        a = c * np.exp(e)                         # bucket values, ascending; the first is c e^d0
    starts = np.searchsorted(pi, a, side="left")  # bucket i: a[i] <= p/q < a[i+1] (rounded down)
    ends = np.append(starts[1:], pi.size)
    full = ends > starts
    near = int(starts[0])                         # tokens within d0 of c keep r*/q
    # theta' exists iff sum q down(p/q) >= total, i.e. iff the cuts p - q down add up to at most
    # the slack p(A) - total: round whole buckets from the far end while they do
    cuts = np.cumsum((p_a[near:] - q_a[near:] * np.repeat(a[full], (ends - starts)[full]))[::-1])
    slack = p_a.sum() - total
    complete = not (cuts.size and cuts[-1] > slack)
    if not complete:
        last = pi.size - int(np.searchsorted(cuts, slack, side="right"))   # tokens [last, n) fit
        i = int(np.searchsorted(starts, last, side="left"))
        near = int(starts[i]) if i < starts.size else pi.size
        starts = np.maximum(starts, near)
        ends = np.append(starts[1:], pi.size)
        full = ends > starts
    runs = _runs(exact[:near]) if near else np.empty(0, dtype=np.intp)
    values = np.concatenate([exact[runs], a[full]])
    grp = _as_groups(values, q_a, np.concatenate([runs, starts[full]]), False)
    mv = grp.masses * values
    if mv.sum() < total:
        return None, complete
    # theta': sum_g m_g min(v_g, theta') = total; at the breakpoint v_i it is (the sum below i) +
    # v_i (the mass from i on)
    below = np.cumsum(mv) - mv
    after = np.cumsum(grp.masses[::-1])[::-1]
    i = int(np.argmax(below + values * after >= total))   # the groups from i on all aim at theta'
    theta = (total - below[i]) / after[i]
    grp = LevelTargets(np.append(values[:i], theta), np.append(grp.counts[:i], grp.counts[i:].sum()),
                       np.append(grp.masses[:i], after[i]), False)

    def cap(Qc):
        return one_minus_power(np, Qc, k)

    m = max(1.0 - s_a, 0.0)   # q(H): drafts there never preempt

    def need(Qc):             # g(q(A)) - g(q(A) - Qc) = (m + Qc)^k - m^k
        return power_gap(np, m, Qc, k)

    return (grp if _reachable(grp.masses, grp.values, cap, need) else None), complete


def level_targets(p_l: np.ndarray, q_l: np.ndarray, exact: np.ndarray, k: int, top: bool,
                  resolution: float | None = 1e-2) -> LevelTargets:
    r"""The groups a level is fitted on: coarse targets when one is reachable, else the exact ``r*/q``.

    Optimality needs only the caps ``r <= p`` on ``A`` and the floors ``r >= p`` on ``H``, with
    the level totals ``1 - q(H)^k`` and ``q(H)^k``
    (docs/theory/optimal_verifier.md#fitting-the-weights). So a level may aim at ``p/q`` rounded
    *towards the cut* (down on ``A``, up on ``H``) on a grid of distances ``d = |log(p/(q c))|``
    from the ratio ``c`` of the level's token next to the cut, with a threshold ``theta'`` fixed
    by the total: ``min(down(p/q), theta')`` on ``A``, ``max(up(p/q), theta')`` on ``H``. The
    constraints of the level's polytope are nearly tight next to the cut (the cut is optimal, so
    ``p(S)`` there is within second order of the polytope's ``g``) and have slack growing with the
    distance from it, so the grid (:func:`_distance_grid`) keeps the tokens within ``d0`` of the cut
    exact and spaces the others geometrically (factor ``g``) in ``d`` up to a step of ``steps *
    resolution``. Only whole buckets from the end far from the cut are rounded, as many as the
    level's slack (``q(H)^k - p(H)`` on ``H``, ``p(A) - g(q(A))`` on ``A``) can absorb; the others
    aim at ``r*/q``. The grids of :data:`COARSE_GRIDS` are tried coarsest first, up to the first
    that rounds every token, and the reachable target (checked exactly at the group ends,
    :func:`_reachable`) with the fewest groups wins if it has fewer than ``r*``. At ``V = 49152``
    this leaves tens of groups per level (k = 8, flat Dirichlet: ~75 on ``H``, ~15 on ``A``) instead
    of thousands; language-model pairs at ``k >= 4`` have little slack and keep thousands.

    Parameters
    ----------
    p_l, q_l : arrays ``[n]``
        the level's tokens (``q > 0``) in ascending ``p/q``, as the selection scan orders them.
    exact : array ``[n]``
        the exact target ratios ``r*/q`` (ascending).
    k : int
        number of drafts.
    top : bool
        the level is ``A`` (else ``H``).
    resolution : float or None
        the finest far step of the grids; ``None``: the exact targets.

    Returns
    -------
    LevelTargets
        groups in ascending target, runs of the level's order: linear time, no sort.
    """
    if resolution is None or k == 1 or q_l.size < 2:
        return _exact_groups(q_l, exact)
    with np.errstate(over="ignore"):     # a ratio beyond the float range is inf: the top bucket
        pi = p_l / q_l
    make = _rounded_caps if top else _rounded_floors
    best = None
    for d0, g, steps in COARSE_GRIDS:       # coarse to fine; a grid that rounds every token ends it
        coarse, complete = make(p_l, q_l, pi, exact, k, d0, g, steps * resolution)
        if coarse is not None and (best is None or coarse.values.size < best.values.size):
            best = coarse
        if complete and coarse is not None:
            break
    if best is not None and best.values.size < np.count_nonzero(exact[1:] != exact[:-1]) + 1:
        return best
    return _exact_groups(q_l, exact)


@dataclass
class SortedRowFit:
    """:func:`fit_sorted_row`'s result: ``weights``, ``phi`` (``r(lam)/q``) and ``aim`` (target
    ratio, or ``None``) ``[V]`` in the row's ascending-ratio order; ``top_start, top_end`` (level ``A`` is
    ``[top_start, top_end)``, level ``H`` is ``[0, top_start)``); ``l1_error`` and ``quad`` summed
    over the levels, ``iterations`` (largest), ``converged``, worst ``status`` / ``message``."""

    weights: np.ndarray
    phi: np.ndarray
    aim: np.ndarray | None
    top_start: int
    top_end: int
    l1_error: float
    quad: float
    iterations: int
    converged: bool
    status: int
    message: str

    def in_token_order(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """``weights, phi, aim, top`` ``[V]`` in token order, for the row's ascending-ratio
        ``order`` (a permutation; ``top``: membership of level ``A``; ``aim`` is ``None`` when the
        fit was made without it)."""
        V = order.size
        weights, phi, top = np.empty(V), np.empty(V), np.zeros(V, dtype=bool)
        weights[order] = self.weights
        phi[order] = self.phi
        top[order[self.top_start:self.top_end]] = True
        if self.aim is None:
            return weights, phi, None, top
        aim = np.empty(V)
        aim[order] = self.aim
        return weights, phi, aim, top


def fit_sorted_row(ps: np.ndarray, qs: np.ndarray, ratio: np.ndarray, cut: int, q_cut: float, k: int,
                   *, tol: float = 1e-12, max_iter: int = 60,
                   resolution: float | None = 1e-2, with_aim: bool = True) -> SortedRowFit:
    """Fit the two levels of one row given in ascending ``p/q``, without another sort.

    The inputs are :func:`ot_coupling.kernels.selection.selection_scan`'s ``ps, qs, ratio, cut,
    q_cut`` of the row (``q = 0`` tokens last).

    Both levels are contiguous in that order: ``H = [0, cut)`` and ``A = [cut, n)`` with ``n`` the
    number of tokens with ``q > 0``. Each level is fitted on the groups of :func:`level_targets`
    (coarse targets at ``resolution``, or the exact ``r*/q``): runs of that order, so the fitted
    weights are spread back by ``np.repeat``. Shared by :func:`importance_plan` and the torch
    verifier's CPU path (:func:`gpu_backend.optimal.importance_plan`; ``with_aim=False``: ``aim``
    is ``None``).
    """
    V = ps.size
    n = int(np.count_nonzero(qs > 0))          # q = 0 tokens (ratio inf) come last
    h_end = min(int(cut), n)
    weights, phi = np.zeros(V), np.zeros(V)
    aim = np.zeros(V) if with_aim else None
    l1 = quad = 0.0
    iterations, converged, status, message = 0, True, 0, STATUS_MESSAGES[0]
    for is_top, lo, hi in ((True, h_end, n), (False, 0, h_end)):
        if hi <= lo:
            continue
        groups = level_targets(ps[lo:hi], qs[lo:hi], ratio[lo:hi], k, is_top, resolution)
        masses = groups.masses
        floor = float(q_cut) if is_top else 0.0
        fit = fit_levels(LevelProblems(masses[None], groups.values[None], np.array([floor]), k),
                         tol=tol, max_iter=max_iter)
        weights[lo:hi] = np.repeat(fit.weights[0], groups.counts)
        phi[lo:hi] = np.repeat(fit.phi[0], groups.counts)
        if with_aim:
            aim[lo:hi] = np.repeat(groups.values, groups.counts)
        l1 += float(fit.l1_error[0])
        quad += float(masses.sum() * fit.quad_bound[0])
        iterations = max(iterations, fit.iterations)
        converged &= bool(fit.converged[0])
        if fit.status > status:
            status, message = fit.status, fit.message
    return SortedRowFit(weights, phi, aim, h_end, n, l1, quad, iterations, converged, status, message)


def importance_plan(p: np.ndarray, q: np.ndarray, k: int, *, tol: float = 1e-12,
                    max_iter: int = 60, resolution: float | None = 1e-2) -> ImportancePlan:
    """Fit the two-level importance rule of docs/theory/optimal_verifier.md#the-importance-rule on validated rows.

    ``p, q``: ``[B, V]`` row-stochastic float64 arrays (already validated). ``resolution``: the
    levels aim at the coarse targets of :func:`level_targets` when they are reachable (``None``:
    always the exact ``r*``);
    either keeps the acceptance at ``alpha*`` and cuts the number of distinct weights. Each row is
    fitted in the ascending-ratio order of the selection scan (:func:`fit_sorted_row`) and put back
    in token order once.
    """
    scan = selection_scan(p, q, k, marginal=False)
    B, V = p.shape
    weights = np.zeros((B, V))
    phi = np.zeros((B, V))
    aim = np.zeros((B, V))
    top = np.zeros((B, V), dtype=bool)
    quad = np.zeros(B)
    iterations = 0
    status, message = 0, STATUS_MESSAGES[0]
    for b in range(B):
        row = fit_sorted_row(scan.ps[b], scan.qs[b], scan.ratio[b], int(scan.cut[b]),
                             float(scan.q_cut[b]), k, tol=tol, max_iter=max_iter, resolution=resolution)
        weights[b], phi[b], aim[b], top[b] = row.in_token_order(scan.order[b])
        quad[b] = row.quad
        iterations = max(iterations, row.iterations)
        if row.status > status:
            status, message = row.status, row.message
    marginal = q * phi
    return ImportancePlan(weights, top, marginal, q * aim, quad, np.abs(marginal - q * aim).sum(axis=1),
                          iterations, status, message)
