r"""The importance-weight fit of the optimal verifier and its quadrature: one kernel, any backend.

Tokens of one *level* ``L`` (``A = V \ H`` or the minimising prefix ``H``,
docs/theory/optimal_verifier.md) are picked, among the drafts in ``L``, with probability
proportional to weights ``lam``; the law of the pick is ``r_y = q_y phi_y`` with

.. math:: \varphi_y = k\lambda_y\int_0^\infty e^{-\lambda_y t} M_L(t)^{k-1}\,dt,\qquad
          M_L(t) = \sum_{x\in L} q_x e^{-\lambda_x t} + m_L,

(``m_A = q(H)``, ``m_H = 0``). ``r(e^z)`` is the gradient of a smooth convex function of
``z = log lam``, so fitting ``phi(lam) = ratio`` is Newton's method on a convex dual whose Hessian is
the weighted graph Laplacian ``D - A W A^T`` (``A[y, n] = q_y lam_y e^{-lam_y t_n}`` over the
quadrature nodes). All functions here take the namespace of their inputs
(``array_api_compat.array_namespace``) and run unchanged on numpy arrays and torch tensors; the fit
computes in float64 whatever the caller's dtype.

Quadrature (per level, ``lam`` in ``[l_min, l_max]``): Gauss-Legendre with ``head`` nodes in ``t`` on
``[0, t_1]``, ``t_1 = 1/(k l_max)``, then composite Gauss-Legendre in ``u = log t`` on
``[log t_1, log(TAIL / l_min)]`` with panels of width ``<= width`` and ``panel`` nodes each; the
tail beyond ``TAIL / l_min`` is dropped. :func:`quadrature_bound` bounds the error of ``phi`` per
group (Trefethen, *Approximation Theory and Approximation Practice*, SIAM 2013, Thm 19.3, on the
Bernstein ellipse of each panel; the derivation is in :mod:`solvers.importance_weights`).

Guards for extreme inputs (one-hot targets, confident drafts): a group whose target ratio is 0 (or
below ``exp(-MIN_LOG_WEIGHT)`` of the largest) starts and stays at ``log lam >= -MIN_LOG_WEIGHT``
relative to the largest weight, so ``l_min`` never underflows and the number of panels is finite.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import numpy as np

from ._array import array_namespace, clip_max, clip_min, device, one_minus_power, power_gap, take_at


class QuadRule(NamedTuple):
    """Nodes of the Gauss-Legendre rule on ``[0, t_1]`` (``head``) and per panel in ``log t``
    (``panel``), and the largest panel width (``width``)."""

    head: int
    panel: int
    width: float


#: the rule of the final fit and of the marginal (error bound ~1e-15)
FINE_RULE = QuadRule(8, 22, 3.0)
#: the rule of the first Newton phase (it only gives the fine phase its start)
COARSE_RULE = QuadRule(6, 10, 3.0)
#: L1 tolerance of the coarse phase
COARSE_TOL = 1e-10
#: the integral beyond ``TAIL / l_min`` is dropped (``e^-40 = 4e-18``)
TAIL = 40.0
#: weights are kept within ``exp(-MIN_LOG_WEIGHT)`` of the largest one in their level
MIN_LOG_WEIGHT = 60.0

#: damping of the Newton steps in ``log lam`` (largest change of one weight per step)
MAX_STEP = 2.0
#: damping of the mapped steps of the coarse phase (:func:`map_step`)
MAX_MAPPED_STEP = 6.0
#: a mapped step moves a group's ``phi`` at most this far towards an end of its range, in
#: ``log`` of the distance to the end (:func:`map_step`)
MAX_LOGIT_STEP = 4.0

#: ``LevelFit.status`` codes
STATUS_MESSAGES = {
    0: "converged: the L1 error of the selection law is within tol",
    1: "iteration limit reached before the L1 error reached tol",
    2: "stalled: four Newton steps in a row did not halve the L1 error (targets on the boundary "
       "of the level's polytope); the best iterate is returned",
}


@dataclass
class LevelProblems:
    """A batch of independent level problems, padded to ``G`` groups.

    ``mass[P, G]`` (q-mass of each group, 0 = padding), ``ratio[P, G]`` (target ``r*/q``),
    ``floor[P]`` (``m_L``), ``k``. Arrays of any array-API backend (numpy, torch).
    """

    mass: Any
    ratio: Any
    floor: Any
    k: int


@dataclass
class LevelFit:
    """Result of :func:`fit_levels` (scipy ``OptimizeResult`` protocol).

    Attributes
    ----------
    weights : array ``[P, G]``
        fitted ``lam`` (largest 1 per problem; 0 on padding).
    phi : array ``[P, G]``
        the rule's own marginal ratio ``phi(lam) = r(lam)/q`` per group (quadrature).
    iterations : int
        Newton steps (coarse and fine phases together).
    l1_error : array ``[P]``
        ``sum_g mass_g |phi_g - ratio_g|``: bounds the acceptance lost against the target.
    quad_bound : array ``[P]``
        bound on ``|phi_computed - phi_exact|`` per group.
    success : bool
        every problem met the tolerance (status 0).
    status : int
        worst status over the problems (:data:`STATUS_MESSAGES`).
    message : str
        human-readable status.
    value : float
        the largest ``l1_error`` of the batch.
    """

    weights: Any
    phi: Any
    iterations: int
    l1_error: Any
    quad_bound: Any
    success: bool = True
    status: int = 0
    message: str = STATUS_MESSAGES[0]
    value: float = 0.0
    converged: Any = field(default=None, repr=False)


class PlanStatus:
    """``success`` and ``value`` of an importance plan (numpy or torch), derived from its ``status``
    and per-row ``fit_error`` (the value bounds ``alpha* - acceptance``)."""

    @property
    def success(self) -> bool:
        return self.status == 0

    @property
    def value(self) -> float:
        """The largest ``fit_error`` of the batch (the acceptance lost against ``alpha*``, at most)."""
        return float(self.fit_error.max()) if math.prod(self.fit_error.shape) else 0.0


@cache
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``n``-point Gauss-Legendre rule on ``[-1, 1]`` (read-only numpy)."""
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


def _rule(xp, n: int, like):
    if xp is np and like.dtype == np.float64:
        return gauss_legendre(n)                       # read-only, never written: no copy
    x, w = (np.array(a) for a in gauss_legendre(n))   # writable copies (torch refuses read-only)
    dev = device(like)
    return xp.asarray(x, dtype=like.dtype, device=dev), xp.asarray(w, dtype=like.dtype, device=dev)


def n_panels(l_min, l_max, k: int, rule: QuadRule = FINE_RULE) -> int:
    """Number of ``log t`` panels of width ``<= rule.width`` for the widest weight range of the batch.

    ``l_max / l_min`` is capped at ``exp(MIN_LOG_WEIGHT)`` (the fit never lets weights spread
    further), so the count is finite even when a weight underflowed."""
    xp = array_namespace(l_min, l_max)
    span = xp.log(TAIL * k * l_max) - xp.log(clip_min(xp, l_min, xp.finfo(l_min.dtype).tiny))
    worst = min(float(xp.max(span)), math.log(TAIL * k) + MIN_LOG_WEIGHT)
    return max(1, math.ceil(worst / rule.width))


def quadrature_nodes(l_min, l_max, k: int, panels: int, rule: QuadRule = FINE_RULE):
    """Nodes ``t[P, N]`` and weights ``w[P, N]`` of the rule of the module docstring."""
    xp = array_namespace(l_min, l_max)
    x0, w0 = _rule(xp, rule.head, l_min)
    x1, w1 = _rule(xp, rule.panel, l_min)
    t1 = 1.0 / (k * l_max)                                             # [P]
    head_t = t1[:, None] * (1.0 + x0) / 2.0
    head_w = t1[:, None] * w0 / 2.0
    lo, hi = xp.log(t1), xp.log(TAIL / l_min)
    h = (hi - lo) / panels                                             # [P]
    steps = xp.arange(panels, dtype=l_min.dtype, device=device(l_min))
    starts = lo[:, None] + h[:, None] * steps                          # [P, panels]
    u = starts[:, :, None] + (h[:, None, None] / 2.0) * (1.0 + x1)     # [P, panels, n]
    tu = xp.exp(u)
    wu = tu * (h[:, None, None] / 2.0) * w1
    P = l_min.shape[0]
    return (xp.concat([head_t, xp.reshape(tu, (P, -1))], axis=1),
            xp.concat([head_w, xp.reshape(wu, (P, -1))], axis=1))


def quadrature_bound(k: int, m0, panel_width, panels: int, rule: QuadRule = FINE_RULE):
    """Bound on ``|phi_computed - phi|`` for every group of a level (exact arithmetic, to which
    floating point adds ~``N`` ulps); same backend as ``m0``."""
    xp = array_namespace(m0, panel_width)
    head = _head_bound(k, rule.head)
    b, strip = _strip_grid()
    hw = _host(panel_width).reshape(-1, 1)
    rb = 2 * b / hw + np.sqrt(1 + (2 * b / hw) ** 2)
    panel = np.min((hw / 2) * strip * rb ** (-2.0 * rule.panel) / (rb**2 - 1), axis=1)
    panel = xp.asarray(panel, dtype=m0.dtype, device=device(m0))
    scale = k * m0 ** (k - 1)
    return scale * (head + panels * xp.reshape(panel, m0.shape) + math.exp(-TAIL))


@cache
def _head_bound(k: int, head: int) -> float:
    """The ``[0, t_1]`` term of :func:`quadrature_bound` (minimised over ``rho`` on a grid)."""
    rho = np.linspace(1.05, 12.0, 400)
    a = (rho + 1.0 / rho) / 2.0
    return float(np.min(0.5 / k * (64 / 15) * np.exp((a - 1) / 2) * rho ** (-2.0 * head)
                        / (rho**2 - 1)))


@cache
def _strip_grid() -> tuple[np.ndarray, np.ndarray]:
    """The grid of strip half-widths ``b`` of :func:`quadrature_bound` and ``(64/15)/(e cos b)``."""
    b = np.linspace(0.05, 1.5, 300)[None, :]
    strip = (64 / 15) / (np.e * np.cos(b))
    b.flags.writeable = False
    strip.flags.writeable = False
    return b, strip


def _host(x) -> np.ndarray:
    """A float64 numpy copy of a (possibly device) array."""
    return np.asarray(x.cpu() if hasattr(x, "cpu") else x, dtype=np.float64)


def _bmv(A, x):
    """Batched matrix-vector product ``A[P, m, n] @ x[P, n] -> [P, m]``."""
    return (A @ x[:, :, None])[:, :, 0]


def _bvm(x, A):
    """Batched vector-matrix product ``x[P, m] @ A[P, m, n] -> [P, n]``."""
    return (x[:, None, :] @ A)[:, 0, :]


def evaluate(lam, mass, floor, k: int, t, w):
    """``E[P,G,N] = exp(-lam t)``, ``M[P,N] = sum_g mass_g E + floor`` and ``phi[P,G]``."""
    xp = array_namespace(lam, t)
    if xp is np:
        E = np.multiply(-lam[:, :, None], t[:, None, :])
        np.exp(E, out=E)                                # in place: one [P, G, N] buffer
    else:
        E = xp.exp(-lam[:, :, None] * t[:, None, :])
    M = _bvm(mass, E) + floor[:, None]
    phi = k * lam * _bmv(E, w * M ** (k - 1))
    return E, M, phi


def newton_step(lam, mass, grad, E, M, k: int, t, w):
    """Solve ``(D - A W A^T) x = -grad`` (the Laplacian Hessian) up to a constant; ``x`` per group.

    ``A W^{1/2} = diag(u) E diag(s)`` with ``u = mass * lam`` and ``s = W^{1/2}`` is never formed:
    its products are taken through ``E`` with the diagonal scalings applied to vectors, so a
    step costs two ``[G, N]`` passes besides its matrix-vector products and one Gram matrix. By
    Woodbury (an ``N x N`` system) when ``G > N``, else on the ``G x G`` normalised Laplacian; the
    gauge direction (constants) is deflated by adding its projector."""
    xp = array_namespace(lam, E)
    dev = device(lam)
    tiny = xp.finfo(lam.dtype).tiny
    Wn = w * t * (k * (k - 1)) * M ** (k - 2)                          # [P, N]
    s = xp.sqrt(Wn)
    u = mass * lam
    Eu = _bvm(u, E)                                                    # E^T u, [P, N]
    d = u * _bmv(E, Wn * Eu)                                           # row sums of A W A^T
    valid = (mass > 0) & (d > 0)
    dinv = xp.where(valid, 1.0 / xp.where(valid, d, 1.0), 0.0)
    b = xp.where(valid, -grad, 0.0)
    G, N = E.shape[1], E.shape[2]
    if G <= N:
        su = xp.sqrt(dinv) * u                                         # S = diag(su) E diag(s)
        Es = E * s[:, None, :]
        g = xp.where(valid, xp.sqrt(d), 0.0)
        g = g / clip_min(xp, xp.linalg.vector_norm(g, axis=1, keepdims=True), tiny)
        C = (xp.eye(G, dtype=E.dtype, device=dev)[None]
             - su[:, :, None] * (Es @ xp.matrix_transpose(Es)) * su[:, None, :]
             + g[:, :, None] * g[:, None, :])
        sq = xp.sqrt(dinv)
        step = sq * xp.linalg.solve(C, (sq * b)[:, :, None])[:, :, 0]
    else:
        v = s * Eu
        v = v / clip_min(xp, xp.linalg.vector_norm(v, axis=1, keepdims=True), tiny)
        Er = E * (xp.sqrt(dinv) * u)[:, :, None]                       # S^T S = diag(s) Er^T Er diag(s)
        C = (xp.eye(N, dtype=E.dtype, device=dev)[None]
             - s[:, :, None] * (xp.matrix_transpose(Er) @ Er) * s[:, None, :]
             + v[:, :, None] * v[:, None, :])
        y = xp.linalg.solve(C, (s * _bvm(u * dinv * b, E))[:, :, None])[:, :, 0]
        step = dinv * b + dinv * u * _bmv(E, s * y)
    return xp.where(xp.isfinite(step), step, dinv * b)


def fit_levels(problems: LevelProblems, *, tol: float = 1e-12, max_iter: int = 60,
               warn: bool = False) -> LevelFit:
    """Fit ``lam`` so that ``phi(lam) = ratio`` on every level problem (damped Newton on ``log lam``).

    Stops when ``sum_g mass_g |phi_g - ratio_g| <= tol + 2 |sum_g mass_g (phi_g - ratio_g)|`` (an
    L1 distance of selection laws, which bounds the acceptance lost; the second term is the part
    due to targets whose total is off by round-off) on every problem, when four steps in a row did
    not halve the error (status 2), or after ``max_iter`` steps (status 1). A level with ``m_L > 0``
    cannot go below ``phi = k m_L^{k-1}``; targets below it are raised to it, and ``log lam`` is kept
    above ``-MIN_LOG_WEIGHT`` (relative to the largest weight), from the start: targets 0 (tokens
    with ``p = 0`` in level ``A``) do not produce infinite weights ranges.

    Two phases: from ``log ratio``, Newton steps mapped by :func:`map_step` (a per-group logistic
    model of ``phi``: a target near an end of its group's range is reached in a few steps, where
    plain Newton in ``log lam`` creeps by ~1 per step) with :data:`COARSE_RULE` down to
    :data:`COARSE_TOL`; a problem whose mapped step does not lower the error continues with plain
    damped Newton. Then Newton with :data:`FINE_RULE`, which alone determines the result: the first
    step is solved with the coarse phase's last Hessian (it differs from the fine one by the coarse
    rule's quadrature error), usually the only one; the error is always re-evaluated on the fine
    rule, so ``success`` / ``status`` judge the returned weights.
    Computes in float64; the arrays of the result are float64 on the inputs' device.
    ``warn=True`` issues a ``RuntimeWarning`` when ``success`` is False.
    """
    xp = array_namespace(problems.mass, problems.ratio, problems.floor)
    f64 = xp.float64
    mass = xp.astype(problems.mass, f64)
    ratio = xp.astype(problems.ratio, f64)
    floor = xp.astype(problems.floor, f64)
    k = problems.k
    valid = mass > 0
    ratio = xp.maximum(ratio, (k * floor ** (k - 1))[:, None] * (1 + 1e-12))
    with np.errstate(divide="ignore"):
        z = xp.where(valid, xp.log(xp.where(valid, ratio, 1.0)), 0.0)
    it = 0
    hessian = None
    if k > 1:
        coarse, hessian = _newton(xp, z, mass, ratio, floor, k, COARSE_TOL, max_iter, COARSE_RULE,
                                  mapped=True)
        z = xp.where(valid, xp.log(xp.where(valid, coarse.weights, 1.0)), z)
        it = coarse.iterations
    fit, _ = _newton(xp, z, mass, ratio, floor, k, tol, max_iter, FINE_RULE, hessian=hessian)
    fit.iterations += it
    if warn and not fit.success:
        warnings.warn(f"importance-weight fit did not converge ({fit.message}); L1 error of the "
                      f"selection law {fit.value:.3g} > tol {tol:.3g}", RuntimeWarning, stacklevel=2)
    return fit


def _newton(xp, z, mass, ratio, floor, k: int, tol: float, max_iter: int, rule: QuadRule,
            mapped: bool = False, hessian: tuple | None = None) -> tuple[LevelFit, tuple]:
    """Damped Newton on ``log lam`` from ``z`` with the quadrature ``rule`` (targets already raised).

    ``mapped``: steps mapped by :func:`map_step` while they lower the error (per problem).
    ``hessian``: ``(lam, E, M, t, w)`` of an evaluation at (about) ``z`` with another rule, whose
    Hessian is used for the first step (the coarse phase hands it to the fine one: the two rules'
    Hessians differ by their quadrature errors, ~1e-6 relative, so the step from a ~1e-9 error is
    as good as a fresh Newton step, without its ``O(G N^2)`` on the fine nodes). Returns the fit and
    ``(lam, E, M, t, w)`` of its final evaluation."""
    valid = mass > 0
    if mapped:
        lo, hi = group_range(mass, floor, k)
    m0 = xp.sum(mass, axis=1) + floor
    P = z.shape[0]
    dev = device(z)
    it = 0
    best_z = z
    best_err = xp.full((P,), math.inf, dtype=z.dtype, device=dev)
    stall = xp.zeros((P,), dtype=xp.int64, device=dev)
    done = xp.zeros((P,), dtype=xp.bool, device=dev)
    status = xp.zeros((P,), dtype=xp.int64, device=dev)
    final = False
    mapped = xp.ones((P,), dtype=xp.bool, device=dev) if mapped else None
    prev_err = xp.full((P,), math.inf, dtype=z.dtype, device=dev)
    while True:
        top = xp.max(xp.where(valid, z, -math.inf), axis=1, keepdims=True)
        top = xp.where(xp.isfinite(top), top, 0.0)
        z = xp.where(valid, clip_min(xp, z - top, -MIN_LOG_WEIGHT), 0.0)
        lam = xp.exp(z)
        l_min = xp.min(xp.where(valid, lam, math.inf), axis=1)
        l_min = xp.where(xp.isfinite(l_min), l_min, 1.0)
        l_max = xp.ones_like(l_min)
        panels = n_panels(l_min, l_max, k, rule)
        t, w = quadrature_nodes(l_min, l_max, k, panels, rule)
        E, M, phi = evaluate(lam, mass, floor, k, t, w)
        grad = mass * (phi - ratio)                       # the gradient; |grad| = mass |phi - ratio|
        err = xp.sum(xp.abs(grad), axis=1)
        if not final and k > 1:
            # sum(mass phi) is the level's total whatever lam is: a target total off by round-off
            # (or by the raise above) leaves an L1 error no step can remove
            unreachable = xp.abs(xp.sum(grad, axis=1))
            stall = xp.where(err < 0.5 * best_err, 0, stall + 1)
            best_z = xp.where((err < best_err)[:, None], z, best_z)
            best_err = xp.minimum(err, best_err)
            met = err <= tol + 2 * unreachable
            done = met | (stall >= 4)
            if bool(xp.all(done)) or it >= max_iter:
                final = True
                status = xp.where(met, 0, xp.where(stall >= 4, 2, 1))
                if bool(xp.any(err > best_err)):
                    z = best_z
                    continue
        if final or k == 1:
            width = xp.log(TAIL * k * l_max / l_min) / panels
            bound = quadrature_bound(k, m0, width, panels, rule)
            if final:  # the best iterate may be better than the last: judge the returned one
                unreachable = xp.abs(xp.sum(grad, axis=1))
                status = xp.where(err <= tol + 2 * unreachable, 0, status)
            worst = int(xp.max(status)) if P else 0
            zero = xp.zeros_like(lam)
            return (LevelFit(xp.where(valid, lam, zero), xp.where(valid, phi, zero), it, err, bound,
                             success=worst == 0, status=worst, message=STATUS_MESSAGES[worst],
                             value=float(xp.max(err)) if P else 0.0, converged=status == 0),
                    (lam, E, M, t, w))
        if it == 0 and hessian is not None:
            step = newton_step(hessian[0], mass, grad, *hessian[1:3], k, *hessian[3:])
        else:
            step = newton_step(lam, mass, grad, E, M, k, t, w)
        # in the gauge where the top weight stays put, no weight is sent below its floor
        # -MIN_LOG_WEIGHT: a group pinned there (target 0) has a Newton step of order 1/curvature,
        # which would dominate the damping below and freeze every other group
        ref = take_at(xp, step, xp.argmax(xp.where(valid, z, -math.inf), axis=1))
        step = xp.maximum(step - ref[:, None], -MIN_LOG_WEIGHT - z)
        if mapped is not None:
            # a mapped step that did not lower the error switches its problem to plain Newton
            mapped = mapped & ~(err >= prev_err)
            prev_err = err
            step = xp.where(mapped[:, None], map_step(step, phi, mass, lo, hi), step)
            limit = MAX_STEP + (MAX_MAPPED_STEP - MAX_STEP) * xp.astype(mapped, z.dtype)[:, None]
        else:
            limit = MAX_STEP
        big = clip_min(xp, xp.max(xp.abs(step), axis=1, keepdims=True), 1e-300)
        step = step * clip_max(xp, limit / big, 1.0)   # damping: |dz| <= limit
        z = clip_min(xp, z + xp.where(done[:, None], 0.0, step), -MIN_LOG_WEIGHT)
        it += 1


def group_range(mass, floor, k: int):
    r"""The range ``(lo, hi)`` of ``phi`` of each group over its own weight, the others fixed.

    With ``M_L(t) = Q e^{-lam t} + R(t)`` (``Q`` the group's mass), ``phi = k int_0^inf e^{-s}
    M_L(s/lam)^{k-1} ds`` tends to ``((Q + m_L)^k - m_L^k) / Q`` as ``lam -> 0`` (only the floor
    ``m_L`` is left of the others) and to ``(M_L(0)^k - (M_L(0) - Q)^k) / Q`` as ``lam -> inf``
    (all of them are left): the probability that the group is drafted at all when it always loses,
    resp. always wins, divided by ``Q``.

    Parameters
    ----------
    mass : array ``[P, G]``
        q-mass of each group (0 = padding).
    floor : array ``[P]``
        ``m_L`` of each level problem.
    k : int
        number of drafts.

    Returns
    -------
    lo, hi : arrays ``[P, G]``
        the two limits (finite also on padding, where they are not used).
    """
    xp = array_namespace(mass, floor)
    tiny = xp.finfo(mass.dtype).tiny
    Q = clip_min(xp, mass, tiny)
    f = floor[:, None]
    m0 = xp.sum(mass, axis=1, keepdims=True) + f
    m0 = xp.where(m0 > 0, m0, 1.0)   # an empty level (padding) has no range to speak of
    lo = power_gap(xp, f, Q, k) / Q
    hi = m0 ** k * one_minus_power(xp, Q / m0, k) / Q
    return lo, hi


def map_step(step, phi, mass, lo, hi):
    r"""Map a Newton step ``s`` in ``z = log lam`` through a one-group model of ``phi``.

    Newton in ``z`` undershoots for a group whose ``phi`` is near an end of its range
    (:func:`group_range`): near the low end ``phi ~ lo + c lam`` (linear, with an offset when the
    level has a floor), near the high end ``phi ~ hi - c / lam``; a target close to the end takes
    ~1 step per unit of ``log`` distance. Modelling ``phi = lo + (hi - lo) sigma(z - c)`` (``sigma``
    the logistic function, ``u = (phi - lo)/(hi - lo)``), the linearised step predicts ``u + u (1 -
    u) s``, and the model's exact step is ``logit(u + u(1 - u) s) - logit(u)``: ``log(1 + s)`` near the
    low end, ``-log(1 - s)`` near the high end, ``s + O(s^2)`` for small steps (the local quadratic
    convergence is kept). ``s`` is taken in the gauge with zero mass-weighted mean (the weights
    that carry most of ``M_L`` stay put, as in the one-group model), and the predicted ``u`` moves
    at most by a factor ``exp(-MAX_LOGIT_STEP)`` towards either end.

    Parameters
    ----------
    step : array ``[P, G]``
        the Newton step in ``log lam`` (any gauge).
    phi : array ``[P, G]``
        the current ``phi`` per group.
    mass : array ``[P, G]``
        q-mass per group (0 = padding, mapped to 0).
    lo, hi : arrays ``[P, G]``
        :func:`group_range`.

    Returns
    -------
    array ``[P, G]``
        the mapped step (undamped; :func:`fit_levels` damps it to ``MAX_MAPPED_STEP``).
    """
    xp = array_namespace(step, phi)
    valid = mass > 0
    eps = 1e-12
    span = clip_min(xp, hi - lo, xp.finfo(phi.dtype).tiny)
    u = clip_max(xp, clip_min(xp, (phi - lo) / span, eps), 1 - eps)
    s = xp.where(valid, step, 0.0)
    total = clip_min(xp, xp.sum(mass, axis=1, keepdims=True), 1e-300)
    s = s - xp.sum(mass * s, axis=1, keepdims=True) / total         # zero mass-weighted mean
    shrink = math.exp(-MAX_LOGIT_STEP)
    un = xp.minimum(xp.maximum(u + u * (1 - u) * s, u * shrink), 1 - (1 - u) * shrink)
    dz = (xp.log(un) - xp.log1p(-un)) - (xp.log(u) - xp.log1p(-u))
    return xp.where(valid, dz, 0.0)
