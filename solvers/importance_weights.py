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
(sec. 6), so when the caps/floors have slack the targets are rounded to a geometric grid
(:func:`coarse_ratios`, reachability checked exactly): at ``V = 49152`` this cuts tens of
thousands of groups to hundreds while the acceptance stays ``alpha*``. The Newton iteration needs
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

from ot_coupling.kernels.selection import selection_scan


@dataclass
class ImportancePlan(PlanStatus):
    """The fitted lexicographic importance rule for ``[B, V]`` rows.

    ``weights[B, V]`` (``lam``; 0 where ``q = 0``), ``top[B, V]`` (token in level ``A = V \\ H``),
    ``marginal[B, V]`` (the rule's own selection law ``r(lam)`` by quadrature), ``target[B, V]``
    (the law aimed at: ``r*``, or the coarse targets of :func:`coarse_ratios`), ``quad_error[B]`` (bound
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



def _ascending(x: np.ndarray) -> bool:
    """Whether ``x`` is non-decreasing (the levels arrive in ascending ``p/q``: sorts can be skipped)."""
    return bool(np.all(x[1:] >= x[:-1]))


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


#: the reachability checks first look at this many prefixes (the high ratios, where the
#: constraints are tight and a violation is usually found)
_FIRST_PREFIXES = 2048


def _prefixes_reachable(q_l: np.ndarray, ratio: np.ndarray, cap, need, ascending: bool,
                        q_prefix: np.ndarray | None = None) -> bool:
    """Whether the target ``r = q_l ratio`` of a level lies in its polytope: for every proper set
    ``S`` of the ``j`` highest ratios, ``r(S) <= cap(q(S))``, equivalently for its complement
    ``T`` (the lowest ratios) ``r(T) >= need(q(T))`` (the level's total ``r(L)`` fixed;
    docs/theory/optimal_verifier.md#reachable-selection-laws).

    ``cap`` is concave and the prefix sums are linear within a run of equal ratios, so only the
    ends of the runs matter and the order inside a run is free (an ascending ``ratio`` is used as
    it is, reversed for the high end). Each constraint is checked in the form whose sums are the
    smaller (``S`` while ``q(S) <= q(L)/2``, else ``T``): the other form compares two numbers
    close to the total, where the round-off of a cumulative sum over ``~V`` tokens (~1e-15) would
    decide. The first :data:`_FIRST_PREFIXES` high-ratio prefixes are checked on their own first (a
    failing target then costs no full pass). ``q_prefix``: the caller's ``cumsum(q_l[:m])`` for its
    first ``m`` entries, used instead of summing again where it reaches (the same sums)."""
    if not ascending:
        o = np.argsort(ratio, kind="stable")
        q_l, ratio = q_l[o], ratio[o]
    n = q_l.size
    if n < 2:
        return True
    qd, rd = q_l[::-1], ratio[::-1]
    half = 0.5 * q_l.sum()
    for m in ((_FIRST_PREFIXES, n - 1) if n - 1 > 2 * _FIRST_PREFIXES else (n - 1,)):
        Qs = np.cumsum(qd[:m])
        s = int(np.searchsorted(Qs, half, side="right"))   # S-form for the first s prefixes
        if not np.all(np.cumsum(qd[:s] * rd[:s]) <= cap(Qs[:s])):
            return False
    t = n - 1 - s                                           # the remaining sets, by their complements
    if t > 0:
        qa = q_l[:t]
        Qa = q_prefix[:t] if q_prefix is not None and ascending and t <= q_prefix.size else np.cumsum(qa)
        if not np.all(np.cumsum(qa * ratio[:t]) >= need(Qa)):
            return False
    return True


def _top_prefixes_fit(q_l: np.ndarray, lower: np.ndarray, cap, m: int) -> bool:
    """``False`` only if every target ``q_l ratio`` with ``ratio >= lower`` entrywise and ascending
    in the same order (as ``max(grid, theta)`` is) fails one of the first ``m`` high-ratio
    constraints that :func:`_prefixes_reachable` checks in the ``S`` form: the same sums in the
    same order of entries no larger (rounding is monotone), so that check fails too."""
    qd = q_l[:-m - 1:-1]
    Qs = np.cumsum(qd)
    s = int(np.searchsorted(Qs, 0.5 * q_l.sum(), side="right"))
    return bool(np.all(np.cumsum(qd[:s] * lower[:-m - 1:-1][:s]) <= cap(Qs[:s])))


def coarse_floor_ratios(p_h: np.ndarray, q_h: np.ndarray, k: int, resolution: float) -> np.ndarray | None:
    """Level-``H`` target ratios with few distinct values, or ``None`` if none is found reachable.

    On ``H`` only the floors ``r_y >= p_y`` matter for the acceptance
    (docs/theory/optimal_verifier.md#fitting-the-weights), so instead of ``max(p/q, theta_B)`` we may aim at ``max(up(p/q), theta')`` with ``up``
    rounding up to the geometric grid ``(1 + resolution)^n`` and ``theta'`` fixed by the level's
    total ``sum_H q max(up(p/q), theta') = q(H)^k``. That keeps every floor and has at most
    ``log(range)/log(1 + resolution)`` distinct ratios (groups) besides the tokens kept exact, but
    it must lie in the level's polytope ``r(S) <= q(H)^k - (q(H) - q(S))^k``: checked on the
    prefixes in descending ratio (as in :func:`solvers.selection_law.selection_law_violation`).
    The highest ratios of ``H`` sit next to the cut, where these constraints are nearly tight, so
    the ``n`` highest-ratio tokens keep ``up = p/q`` for ``n = 0, 64, 512, 4096``, first reachable
    target wins. Linear time (no sort) when the tokens come in ascending ``p/q``.
    """
    q_total = q_h.sum()
    total = q_total**k
    delta = np.log1p(resolution)
    pi = p_h / q_h
    n = pi.size
    with np.errstate(divide="ignore"):
        grid = np.maximum(np.where(pi > 0, np.exp(np.ceil(np.log(pi) / delta) * delta), 0.0), pi)
    # ascending p/q: grid is ascending and so is every target below after sorting a short window
    ascending = _ascending(pi)
    if ascending:
        Q0 = np.cumsum(q_h)
        U0 = np.cumsum(q_h * grid)

    def cap(Qc):
        return total - _ipow(np.maximum(q_total - Qc, 0.0), k)

    def need(Qc):
        return _ipow(Qc, k)

    for n_exact in (0, 64, 512, 4096):
        if n_exact >= n:
            return None
        if n_exact == 0:
            up = grid
            if ascending and n > 1 and not _top_prefixes_fit(q_h, grid, cap, min(64, n - 1)):
                continue  # the all-grid target fails on its highest ratios: skip building it
        else:  # the n_exact highest ratios stay exact
            up = grid.copy()
            top = slice(n - n_exact, None) if ascending else np.argpartition(-pi, n_exact)[:n_exact]
            up[top] = pi[top]
        qu = q_h * up
        qu_total = qu.sum()
        if qu_total > total:
            continue
        if ascending:
            # tokens before w keep their place; the window [w, n) (the exact tokens and the grid
            # values above the lowest of them) is sorted on its own
            w = 0 if n_exact == 0 else int(np.searchsorted(grid[:n - n_exact], pi[n - n_exact],
                                                           side="right"))
            if n_exact == 0:
                u_s, q_s, Qc, U = up, q_h, Q0, U0
            else:
                o = w + np.argsort(up[w:], kind="stable")
                u_s, q_s = np.concatenate([up[:w], up[o]]), np.concatenate([q_h[:w], q_h[o]])
                q0, u0 = (Q0[w - 1], U0[w - 1]) if w else (0.0, 0.0)
                Qc = np.concatenate([Q0[:w], q0 + np.cumsum(q_s[w:])])
                U = np.concatenate([U0[:w], u0 + np.cumsum(qu[o])])
        else:
            order = np.argsort(up, kind="stable")
            u_s, q_s = up[order], q_h[order]
            Qc, U = np.cumsum(q_s), np.cumsum(qu[order])
        tail = qu_total - U
        i = int(np.sum(u_s * Qc + tail <= total)) - 1  # last breakpoint not above the total
        theta = (total - tail[i]) / Qc[i] if i >= 0 else 0.0
        known = Qc if n_exact == 0 or not ascending else Q0[:w]   # = cumsum(q_s[:m]) so far
        if _prefixes_reachable(q_s, np.maximum(u_s, theta), cap, need, True, known):
            return np.maximum(up, theta)
    return None


def coarse_cap_ratios(p_a: np.ndarray, q_a: np.ndarray, k: int, resolution: float) -> np.ndarray | None:
    """Level-``A`` target ratios with few distinct values, or ``None`` if not reachable.

    On ``A = V \\ H`` optimality needs the caps ``r_y <= p_y`` and the level's total
    ``g(q(A)) = 1 - (1 - q(A))^k``. Aim at ``min(down(p/q), theta')`` with ``down`` rounding down to
    the grid ``(1 + resolution)^n`` and ``theta'`` fixed by the total (possible when the caps have
    slack, ``sum_A q down(p/q) >= g(q(A))``); reachable iff its prefix sums in descending ratio
    stay below ``g`` of the ``q``-prefix sums (docs/theory/optimal_verifier.md#reachable-selection-laws).
    Linear time (no sort) when the tokens come in ascending ``p/q``.
    """
    s_a = q_a.sum()
    total = -np.expm1(k * np.log1p(-min(s_a, 1.0))) if s_a < 1 else 1.0
    delta = np.log1p(resolution)
    pi = p_a / q_a
    with np.errstate(divide="ignore"):
        down = np.minimum(np.exp(np.floor(np.log(pi) / delta) * delta), pi)
    qd = q_a * down
    if qd.sum() < total:
        return None
    ascending = _ascending(down)
    if ascending:
        d_s, q_s = down, q_a
    else:
        order = np.argsort(down, kind="stable")
        d_s, q_s = down[order], q_a[order]
    before = np.cumsum(q_s * d_s) - q_s * d_s           # sum_{< i} q down
    Q_s = np.cumsum(q_s)
    after = s_a - (Q_s - q_s)                           # q-mass of the tokens >= i
    i = int(np.argmax(before + d_s * after >= total))   # first breakpoint reaching the total
    theta = (total - before[i]) / after[i]
    ratio = np.minimum(down, theta)

    def cap(Qc):
        with np.errstate(divide="ignore"):
            return -np.expm1(k * np.log1p(-np.minimum(Qc, 1.0)))

    m = max(1.0 - s_a, 0.0)   # q(H): drafts there never preempt

    def need(Qc):             # g(q(A)) - g(q(A) - Qc) = (m + Qc)^k - m^k, no cancellation
        if m == 0.0:
            return _ipow(Qc, k)
        small = Qc <= m       # expm1 form where the difference would cancel, direct elsewhere
        return np.where(small, m**k * np.expm1(k * np.log1p(np.where(small, Qc, 0.0) / m)),
                        _ipow(m + Qc, k) - m**k)

    return ratio if _prefixes_reachable(q_a, ratio, cap, need, ascending, Q_s if ascending else None) else None


def _ascending_order(x: np.ndarray) -> np.ndarray | None:
    """The stable ascending order of ``x``, or ``None`` when ``x`` is already ascending. Only the
    tail after the longest prefix that is ascending and not above the tail's minimum is sorted: the
    coarse targets of :func:`coarse_floor_ratios` are ascending except for a short window of exact
    ratios among the grid values near the top."""
    desc = np.flatnonzero(x[1:] < x[:-1])
    if desc.size == 0:
        return None
    d = int(desc[0]) + 1
    w = int(np.searchsorted(x[:d], x[d:].min(), side="right"))
    return np.concatenate([np.arange(w), w + np.argsort(x[w:], kind="stable")])


def _groups(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(target, return_inverse=True)`` by runs of the sorted target (:func:`_ascending_order`:
    linear time when ``target`` is ascending, a short window sorted otherwise)."""
    if not target.size:
        return np.unique(target, return_inverse=True)
    order = _ascending_order(target)
    xs = target if order is None else target[order]
    new = np.empty(xs.size, dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    gid = np.cumsum(new) - 1
    if order is not None:
        inv = np.empty_like(gid)
        inv[order] = gid
        gid = inv
    return xs[new], gid


def n_distinct(x: np.ndarray) -> int:
    """Number of distinct values of ``x`` (linear time when ``x`` is ascending, as the levels of the
    selection scan's order are, or nearly so: :func:`_ascending_order`)."""
    if not x.size:
        return 0
    order = _ascending_order(x)
    xs = x if order is None else x[order]
    return int(np.count_nonzero(xs[1:] != xs[:-1])) + 1


def coarse_ratios(p_l: np.ndarray, q_l: np.ndarray, k: int, top: bool, resolution: float,
                  exact: np.ndarray) -> np.ndarray:
    """Coarse targets of a level (:func:`coarse_cap_ratios` on ``A``, :func:`coarse_floor_ratios` on
    ``H``) at ``resolution``, 10x and 100x finer; ``exact`` if none is reachable or none has fewer
    distinct values."""
    make = coarse_cap_ratios if top else coarse_floor_ratios
    for res in (resolution, resolution / 10, resolution / 100):
        coarse = make(p_l, q_l, k, res)
        if coarse is not None:
            return coarse if n_distinct(coarse) < n_distinct(exact) else exact
    return exact


@dataclass
class SortedRowFit:
    """:func:`fit_sorted_row`'s result: ``weights``, ``phi`` (``r(lam)/q``) and ``aim`` (target
    ratio) ``[V]`` in the row's ascending-ratio order; ``top_start, top_end`` (level ``A`` is
    ``[top_start, top_end)``, level ``H`` is ``[0, top_start)``); ``l1_error`` and ``quad`` summed
    over the levels, ``iterations`` (largest), ``converged``, worst ``status`` / ``message``."""

    weights: np.ndarray
    phi: np.ndarray
    aim: np.ndarray
    top_start: int
    top_end: int
    l1_error: float
    quad: float
    iterations: int
    converged: bool
    status: int
    message: str

    def in_token_order(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``weights, phi, aim, top`` ``[V]`` in token order, for the row's ascending-ratio
        ``order`` (``top``: membership of level ``A``)."""
        V = order.size
        weights, phi, aim, top = np.zeros(V), np.zeros(V), np.zeros(V), np.zeros(V, dtype=bool)
        weights[order] = self.weights
        phi[order] = self.phi
        aim[order] = self.aim
        top[order[self.top_start:self.top_end]] = True
        return weights, phi, aim, top


def fit_sorted_row(ps: np.ndarray, qs: np.ndarray, ratio: np.ndarray, cut: int, q_cut: float, k: int,
                   *, tol: float = 1e-12, max_iter: int = 60,
                   resolution: float | None = 1e-2, with_aim: bool = True) -> SortedRowFit:
    """Fit the two levels of one row given in ascending ``p/q``, without another sort.

    The inputs are :func:`ot_coupling.kernels.selection.selection_scan`'s ``ps, qs, ratio, cut,
    q_cut`` of the row (``q = 0`` tokens last).

    Both levels are contiguous in that order: ``H = [0, cut)`` and ``A = [cut, n)`` with ``n`` the
    number of tokens with ``q > 0``. Each level aims at :func:`coarse_ratios` (``resolution``) or
    the exact ``r*/q``, ascending, so its groups are the runs of equal target (:func:`_groups`).
    Shared by :func:`importance_plan` and the torch verifier's CPU path
    (:func:`gpu_backend.optimal.importance_plan`; ``with_aim=False``: ``aim`` left at 0).
    """
    V = ps.size
    n = int(np.count_nonzero(qs > 0))          # q = 0 tokens (ratio inf) come last
    h_end = min(int(cut), n)
    weights, phi, aim = np.zeros(V), np.zeros(V), np.zeros(V)
    l1 = quad = 0.0
    iterations, converged, status, message = 0, True, 0, STATUS_MESSAGES[0]
    for is_top, lo, hi in ((True, h_end, n), (False, 0, h_end)):
        if hi <= lo:
            continue
        q_l = qs[lo:hi]
        target = ratio[lo:hi]
        if resolution is not None and k > 1:
            target = coarse_ratios(ps[lo:hi], q_l, k, is_top, resolution, target)
        ratios, inv = _groups(target)
        masses = np.bincount(inv, q_l, ratios.size)
        floor = float(q_cut) if is_top else 0.0
        fit = fit_levels(LevelProblems(masses[None], ratios[None], np.array([floor]), k),
                         tol=tol, max_iter=max_iter)
        weights[lo:hi] = fit.weights[0, inv]
        phi[lo:hi] = fit.phi[0, inv]
        if with_aim:
            aim[lo:hi] = ratios[inv]
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
    levels aim at the coarse targets of :func:`coarse_cap_ratios` (``A``) and
    :func:`coarse_floor_ratios` (``H``) when they are reachable (``None``: always the exact ``r*``);
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
