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
of width ``<= 3`` in ``log t``, typically 100-150). From the start ``lam = r*/q`` the weights of
the lowest groups drift by ~1 in ``log lam`` per step (their ``phi`` is affine in ``lam`` with an
offset, so Newton in ``log lam`` undershoots) for 5-8 steps; those steps run on a coarse rule
(:data:`COARSE_RULE`, ~2x fewer nodes), and only the last 1-3 on the fine one, which alone
determines the result and its error bound.

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
from functools import cache
from typing import NamedTuple

import numpy as np

from .selection_law import selection_law


class QuadRule(NamedTuple):
    """Nodes of the Gauss-Legendre rule on ``[0, t_1]`` (``head``) and per panel in ``log t``
    (``panel``), and the largest panel width (``width``)."""

    head: int
    panel: int
    width: float


#: the rule of the final fit and of the marginal (error bound ~1e-15, module docstring)
FINE_RULE = QuadRule(8, 22, 3.0)
#: the rule of the first Newton phase (bound ~1e-5 relative: it only gives the fine phase its start)
COARSE_RULE = QuadRule(6, 10, 3.0)
#: L1 tolerance of the coarse phase
COARSE_TOL = 1e-10
#: the integral beyond ``TAIL / l_min`` is dropped (``e^-40 = 4e-18``)
TAIL = 40.0
#: weights are kept within ``exp(-MIN_LOG_WEIGHT)`` of the largest one in their level
MIN_LOG_WEIGHT = 60.0


@dataclass
class LevelProblems:
    """A batch of independent level problems, padded to ``G`` groups.

    ``mass[P, G]`` (q-mass of each group, 0 = padding), ``ratio[P, G]`` (target ``r*/q``),
    ``floor[P]`` (``m_L``), ``k``.
    """

    mass: np.ndarray
    ratio: np.ndarray
    floor: np.ndarray
    k: int


@dataclass
class LevelFit:
    """Fitted weights and the rule's own marginal ratio ``phi = r(lam)/q`` per group.

    ``weights[P, G]`` (``lam``, max 1 per problem), ``phi[P, G]``, ``iterations``,
    ``l1_error`` (``sum mass |phi - ratio|`` per problem) and ``quad_bound`` (bound on
    ``|phi_computed - phi_exact|`` per group, per problem).
    """

    weights: np.ndarray
    phi: np.ndarray
    iterations: int
    l1_error: np.ndarray
    quad_bound: np.ndarray


@cache
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``n``-point Gauss-Legendre rule on ``[-1, 1]`` (computed once per
    ``n``; read-only)."""
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def n_panels(l_min: np.ndarray, l_max: np.ndarray, k: int, rule: QuadRule = FINE_RULE) -> int:
    """Number of ``log t`` panels of width ``<= rule.width`` needed for the widest weight range of
    the batch."""
    span = np.log(TAIL * k * l_max / l_min)
    return max(1, int(np.ceil(np.max(span) / rule.width)))


def quadrature_nodes(l_min: np.ndarray, l_max: np.ndarray, k: int, panels: int,
                     rule: QuadRule = FINE_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t[P, N]`` and weights ``w[P, N]`` of the rule described in the module docstring."""
    x0, w0 = gauss_legendre(rule.head)
    x1, w1 = gauss_legendre(rule.panel)
    t1 = 1.0 / (k * l_max)                                        # [P]
    head_t = t1[:, None] * (1.0 + x0) / 2.0
    head_w = t1[:, None] * w0 / 2.0
    lo, hi = np.log(t1), np.log(TAIL / l_min)
    h = (hi - lo) / panels                                          # [P], <= rule.width
    starts = lo[:, None] + h[:, None] * np.arange(panels)           # [P, panels]
    u = starts[:, :, None] + (h[:, None, None] / 2.0) * (1.0 + x1)   # [P, panels, n]
    tu = np.exp(u)
    wu = tu * (h[:, None, None] / 2.0) * w1
    P = l_min.size
    return (np.concatenate([head_t, tu.reshape(P, -1)], 1),
            np.concatenate([head_w, wu.reshape(P, -1)], 1))


def quadrature_bound(k: int, m0: np.ndarray, panel_width: np.ndarray, panels: int,
                     rule: QuadRule = FINE_RULE) -> np.ndarray:
    """Bound on ``|phi_computed - phi|`` for every group of a level (module docstring; exact
    arithmetic, to which floating point adds ~``N`` ulps)."""
    m0 = np.asarray(m0, dtype=np.float64)
    scale = k * m0 ** (k - 1)
    rho = np.linspace(1.05, 12.0, 400)
    a = (rho + 1.0 / rho) / 2.0
    head = np.min(0.5 / k * (64 / 15) * np.exp((a - 1) / 2) * rho ** (-2.0 * rule.head) / (rho**2 - 1))
    b = np.linspace(0.05, 1.5, 300)[None, :]
    hw = np.asarray(panel_width, dtype=np.float64).reshape(-1, 1)
    rb = 2 * b / hw + np.sqrt(1 + (2 * b / hw) ** 2)
    panel = np.min((hw / 2) * (64 / 15) / (np.e * np.cos(b)) * rb ** (-2.0 * rule.panel) / (rb**2 - 1),
                   axis=1)
    return scale * (head + panels * panel.reshape(m0.shape) + np.exp(-TAIL))


def _evaluate(lam, mass, floor, k, t, w):
    """``E[P,G,N] = exp(-lam t)``, ``M[P,N]``, ``phi[P,G]``."""
    E = np.exp(-lam[:, :, None] * t[:, None, :])
    M = np.einsum("pg,pgn->pn", mass, E) + floor[:, None]
    phi = k * lam * np.einsum("pgn,pn->pg", E, w * M ** (k - 1))
    return E, M, phi


def _newton_step(lam, mass, grad, E, M, k, t, w):
    """Solve ``(D - A W A^T) x = -grad`` (the Laplacian Hessian), up to a constant; ``x`` per group.

    By Woodbury (``N x N``) when ``G > N``, else directly on the normalised Laplacian ``G x G``."""
    Wn = w * t * k * (k - 1) * M ** (k - 2)                       # [P, N]
    At = (mass * lam)[:, :, None] * E * np.sqrt(Wn)[:, None, :]   # A W^{1/2}, [P, G, N]
    d = np.einsum("pgn,pn->pg", At, At.sum(axis=1))               # row sums of A W A^T
    valid = (mass > 0) & (d > 0)
    dinv = np.where(valid, 1.0 / np.where(valid, d, 1.0), 0.0)
    b = -grad * valid
    if At.shape[1] <= At.shape[2]:
        # D^{-1/2} (D - A W A^T) D^{-1/2} = I - S S^T is singular along D^{1/2} 1 (the gauge);
        # adding that direction's projector only adds a constant to x = D^{-1/2} y
        sq = np.sqrt(dinv)
        S = sq[:, :, None] * At
        g = np.sqrt(d) * valid
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), np.finfo(float).tiny)
        C = np.eye(At.shape[1])[None] - np.matmul(S, S.transpose(0, 2, 1)) + g[:, :, None] * g[:, None, :]
        step = sq * np.linalg.solve(C, (sq * b)[:, :, None])[:, :, 0]
        return np.where(np.isfinite(step), step, dinv * b)
    # C = I - A^T D^-1 A is singular along v = A^T 1 (constants are the gauge of log lam); adding
    # v v^T / |v|^2 makes it invertible and only adds a constant to the step
    v = At.sum(axis=1)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(float).tiny)
    C = (np.eye(t.shape[1])[None] - np.matmul(At.transpose(0, 2, 1), dinv[:, :, None] * At)
         + v[:, :, None] * v[:, None, :])
    y = np.linalg.solve(C, np.einsum("pgn,pg->pn", At, dinv * b)[:, :, None])[:, :, 0]
    step = dinv * b + dinv * np.einsum("pgn,pn->pg", At, y)
    return np.where(np.isfinite(step), step, dinv * b)


def fit_levels(problems: LevelProblems, *, tol: float = 1e-12, max_iter: int = 60) -> LevelFit:
    """Fit ``lam`` so that ``phi(lam) = ratio`` on every level problem (damped Newton on ``log lam``).

    Stops when ``sum_g mass_g |phi_g - ratio_g| <= tol + 2 |sum_g mass_g (phi_g - ratio_g)|`` (an
    L1 distance of selection laws, which bounds the acceptance lost; the second term is the part
    due to targets whose total is off by round-off) on every problem, or after ``max_iter`` steps. A level with
    ``m_L > 0`` cannot go below ``phi = k m_L^{k-1}`` (a token is picked whenever the other drafts
    are all in ``H``); targets below it (round-off in the cut) are raised to it, and ``log lam``
    is kept above ``-MIN_LOG_WEIGHT``.

    Two phases: Newton from ``log ratio`` with :data:`COARSE_RULE` (about 2x fewer nodes) down to
    :data:`COARSE_TOL`, which crosses the slow damped phase (weights of the lowest groups drift
    by ~1 in ``log lam`` per step) cheaply, then Newton with :data:`FINE_RULE` from there (1-3
    quadratic steps). Only the fine phase determines the result and its error bound.
    """
    mass, ratio, floor, k = problems.mass, problems.ratio, problems.floor, problems.k
    valid = mass > 0
    ratio = np.maximum(ratio, (k * floor ** (k - 1))[:, None] * (1 + 1e-12))
    z = np.where(valid, np.log(np.where(valid, ratio, 1.0)), 0.0)
    it = 0
    if k > 1:
        coarse = _newton(z, mass, ratio, floor, k, COARSE_TOL, max_iter, COARSE_RULE)
        z = np.where(valid, np.log(np.where(valid, coarse.weights, 1.0)), z)
        it = coarse.iterations
    fit = _newton(z, mass, ratio, floor, k, tol, max_iter, FINE_RULE)
    fit.iterations += it
    return fit


def _newton(z, mass, ratio, floor, k: int, tol: float, max_iter: int, rule: QuadRule) -> LevelFit:
    """Damped Newton on ``log lam`` from ``z`` with the quadrature ``rule`` (targets already raised)."""
    valid = mass > 0
    m0 = mass.sum(axis=1) + floor
    it = 0
    best_z, best_err = z.copy(), np.full(z.shape[0], np.inf)
    stall = np.zeros(z.shape[0], dtype=np.int64)
    final = False
    while True:
        z = np.where(valid, z - np.max(np.where(valid, z, -np.inf), axis=1, keepdims=True), 0.0)
        lam = np.exp(z)
        l_min = np.min(np.where(valid, lam, np.inf), axis=1)
        l_min = np.where(np.isfinite(l_min), l_min, 1.0)
        l_max = np.ones_like(l_min)
        panels = n_panels(l_min, l_max, k, rule)
        t, w = quadrature_nodes(l_min, l_max, k, panels, rule)
        E, M, phi = _evaluate(lam, mass, floor, k, t, w)
        err = np.sum(mass * np.abs(phi - ratio), axis=1)
        if not final and k > 1:
            # sum(mass phi) is the level's total whatever lam is: a target total off by round-off
            # (or by the raise above) leaves an L1 error no step can remove
            unreachable = np.abs(np.sum(mass * (phi - ratio), axis=1))
            stall = np.where(err < 0.5 * best_err, 0, stall + 1)
            best_z = np.where((err < best_err)[:, None], z, best_z)
            best_err = np.minimum(err, best_err)
            # stop on the tolerance, or when 4 steps in a row did not halve the error (targets on
            # the boundary of the level's polytope, where weights drift to 0): keep the best iterate
            done = (err <= tol + 2 * unreachable) | (stall >= 4)
            if done.all() or it >= max_iter:
                final = True
                if np.any(err > best_err):
                    z = best_z
                    continue
        if final or k == 1:
            width = np.log(TAIL * k * l_max / l_min) / panels
            bound = quadrature_bound(k, m0, width, panels, rule)
            return LevelFit(lam * valid, phi * valid, it, err, bound)
        step = _newton_step(lam, mass, mass * (phi - ratio), E, M, k, t, w)
        big = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 2.0 / np.maximum(big, 1e-300))       # damping: |dz| <= 2
        z = np.maximum(z + np.where(done[:, None], 0.0, step), -MIN_LOG_WEIGHT)
        it += 1


@dataclass
class ImportancePlan:
    """The fitted lexicographic importance rule for ``[B, V]`` rows.

    ``weights[B, V]`` (``lam``; 0 where ``q = 0``), ``top[B, V]`` (token in level ``A = V \\ H``),
    ``marginal[B, V]`` (the rule's own selection law ``r(lam)`` by quadrature), ``target[B, V]``
    (the law aimed at: ``r*``, or the coarse targets of :func:`coarse_ratios`), ``quad_error[B]`` (bound
    on ``||marginal - r(lam)||_1``), ``fit_error[B]`` (``||marginal - target||_1``, which bounds
    ``alpha* - acceptance`` up to the quadrature error), ``iterations``.
    """

    weights: np.ndarray
    top: np.ndarray
    marginal: np.ndarray
    target: np.ndarray
    quad_error: np.ndarray
    fit_error: np.ndarray
    iterations: int


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
    target wins.
    """
    q_total = q_h.sum()
    total = q_total**k
    delta = np.log1p(resolution)
    pi = p_h / q_h
    with np.errstate(divide="ignore"):
        grid = np.maximum(np.where(pi > 0, np.exp(np.ceil(np.log(pi) / delta) * delta), 0.0), pi)
    for n_exact in (0, 64, 512, 4096):
        if n_exact >= pi.size:
            return None
        if n_exact == 0:
            up = grid
        else:  # the n_exact highest ratios stay exact
            up = grid.copy()
            top = np.argpartition(-pi, n_exact)[:n_exact]
            up[top] = pi[top]
        qu = q_h * up
        if qu.sum() > total:
            continue
        order = np.argsort(up, kind="stable")
        Qc = np.cumsum(q_h[order])
        tail = qu.sum() - np.cumsum(qu[order])
        i = int(np.sum(up[order] * Qc + tail <= total)) - 1  # last breakpoint not above the total
        theta = (total - tail[i]) / Qc[i] if i >= 0 else 0.0
        ratio = np.maximum(up, theta)
        desc = np.argsort(-ratio, kind="stable")
        R = np.cumsum(q_h[desc] * ratio[desc])
        cap = total - np.maximum(q_total - np.cumsum(q_h[desc]), 0.0) ** k
        if np.all(R[:-1] <= cap[:-1]):
            return ratio
    return None


def coarse_cap_ratios(p_a: np.ndarray, q_a: np.ndarray, k: int, resolution: float) -> np.ndarray | None:
    """Level-``A`` target ratios with few distinct values, or ``None`` if not reachable.

    On ``A = V \\ H`` optimality needs the caps ``r_y <= p_y`` and the level's total
    ``g(q(A)) = 1 - (1 - q(A))^k``. Aim at ``min(down(p/q), theta')`` with ``down`` rounding down to
    the grid ``(1 + resolution)^n`` and ``theta'`` fixed by the total (possible when the caps have
    slack, ``sum_A q down(p/q) >= g(q(A))``); reachable iff its prefix sums in descending ratio
    stay below ``g`` of the ``q``-prefix sums (docs/theory/optimal_verifier.md#reachable-selection-laws).
    """
    s_a = q_a.sum()
    total = -np.expm1(k * np.log1p(-min(s_a, 1.0))) if s_a < 1 else 1.0
    delta = np.log1p(resolution)
    pi = p_a / q_a
    down = np.minimum(np.exp(np.floor(np.log(pi) / delta) * delta), pi)
    qd = q_a * down
    if qd.sum() < total:
        return None
    order = np.argsort(down, kind="stable")
    d_s, q_s = down[order], q_a[order]
    before = np.cumsum(q_s * d_s) - q_s * d_s           # sum_{< i} q down
    after = s_a - (np.cumsum(q_s) - q_s)                # q-mass of the tokens >= i
    i = int(np.argmax(before + d_s * after >= total))   # first breakpoint reaching the total
    theta = (total - before[i]) / after[i]
    ratio = np.minimum(down, theta)
    desc = np.argsort(-ratio, kind="stable")
    R = np.cumsum(q_a[desc] * ratio[desc])
    with np.errstate(divide="ignore"):
        cap = -np.expm1(k * np.log1p(-np.minimum(np.cumsum(q_a[desc]), 1.0)))
    return ratio if np.all(R[:-1] <= cap[:-1]) else None


def n_distinct(x: np.ndarray) -> int:
    """Number of distinct values of ``x`` (linear time when ``x`` is already sorted, as the levels
    of the torch fast path are)."""
    d = np.diff(x)
    if np.all(d >= 0):
        return int(np.count_nonzero(d)) + min(x.size, 1)
    return np.unique(x).size


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


def importance_plan(p: np.ndarray, q: np.ndarray, k: int, *, tol: float = 1e-12,
                    max_iter: int = 60, resolution: float | None = 1e-2) -> ImportancePlan:
    """Fit the two-level importance rule of docs/theory/optimal_verifier.md#the-importance-rule on validated rows.

    ``p, q``: ``[B, V]`` row-stochastic float64 arrays (already validated). ``resolution``: the
    levels aim at the coarse targets of :func:`coarse_cap_ratios` (``A``) and
    :func:`coarse_floor_ratios` (``H``) when they are reachable (``None``: always the exact ``r*``);
    either keeps the acceptance at ``alpha*`` and cuts the number of distinct weights.
    """
    law = selection_law(p, q, k)
    B, V = p.shape
    top = ~law.in_cut & (q > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.where(q > 0, p / np.where(q > 0, q, 1.0), np.inf)
    levels = []  # (row, is_top, token ids, group index per token, group ratios, group masses)
    for b in range(B):
        # each level in ascending p/q: the sorts in the coarse targets then take linear time
        order = np.argsort(pi[b], kind="stable")
        for is_top in (True, False):
            mask = top[b] if is_top else law.in_cut[b] & (q[b] > 0)
            ids = order[mask[order]]
            target = law.ratio[b, ids]
            if resolution is not None and ids.size and k > 1:
                target = coarse_ratios(p[b, ids], q[b, ids], k, is_top, resolution, target)
            ratios, inv = np.unique(target, return_inverse=True)
            levels.append((b, is_top, ids, inv, ratios, np.bincount(inv, q[b, ids], ratios.size)))
    weights = np.zeros((B, V))
    phi = np.zeros((B, V))
    aim = np.zeros((B, V))
    quad = np.zeros(B)
    iterations = 0
    for b, is_top, ids, inv, ratios, masses in levels:  # one level at a time: no padding
        if ids.size == 0:
            continue
        floor = q[b, law.in_cut[b]].sum() if is_top else 0.0
        fit = fit_levels(LevelProblems(masses[None], ratios[None], np.array([floor]), k),
                         tol=tol, max_iter=max_iter)
        weights[b, ids] = fit.weights[0, inv]
        phi[b, ids] = fit.phi[0, inv]
        aim[b, ids] = ratios[inv]
        quad[b] += masses.sum() * fit.quad_bound[0]
        iterations = max(iterations, fit.iterations)
    marginal = q * phi
    return ImportancePlan(weights, top, marginal, q * aim, quad, np.abs(marginal - q * aim).sum(axis=1),
                          iterations)
