"""The quality-vs-rejection Pareto front of one speculative step, by linear programming.

Yin et al. (NeurIPS 2024) Theorems 4-5 (research/theory.md 1.5), specot letters (``p`` target,
``q`` draft). A rejection-based rule accepts a drafted ``x`` with probability ``b(x)`` and otherwise
resamples from ``P``; it emits ``A = q b + r P`` with ``r = 1 - sum q b``. With ``a = q b`` and
``w = r P`` the problem is linear: for a rejection level ``rho``

    minimise    sum_x t(x)                              (= TV(A, p), since A and p both sum to 1)
    subject to  0 <= a <= q,  w >= 0,  sum_x a(x) = 1 - rho,  sum_x w(x) = rho,
                t >= a + w - p,  t >= 0.

Theorem 5 says the optimum is ``max(TV(p, q) - rho, 0)``: the front is the segment from
``(0, TV)`` to ``(TV, 0)``. The LP computes it without using the theorem (HiGHS via
``scipy.optimize.linprog``), with the optimal ``(b, P)`` of every point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from ot_coupling.validation import tv_distance, validate_k, validate_pair

from .result import SolverResult, warn_if_failed


@dataclass(frozen=True, kw_only=True)
class ParetoFront(SolverResult):
    """Points ``(rejection[i], loss[i])`` of the front with the optimal rules ``acceptance[i]``
    (``b``) and ``resampling[i]`` (``P``; ``p`` where ``rejection = 0``).

    Solver result protocol (:class:`solvers.result.SolverResult`): ``value`` is the array of
    optimal losses (the same array as ``loss``); ``success`` is false (with a
    :class:`RuntimeWarning`) when any level's LP was not solved to optimality (its loss is NaN
    then; ``status`` 2); ``point_status[i]`` is HiGHS' message for level ``i``.
    """

    rejection: np.ndarray
    loss: np.ndarray
    acceptance: np.ndarray
    resampling: np.ndarray
    tv: float
    point_status: list[str]
    solve_seconds: float

    def line_gap(self) -> float:
        """``max_i |loss_i - max(TV - rejection_i, 0)|``: distance to Theorem 5's line."""
        return float(np.max(np.abs(self.loss - np.maximum(self.tv - self.rejection, 0.0))))

    def to_dict(self) -> dict:
        return {"rejection": self.rejection, "loss": self.loss, "tv": self.tv, "success": self.success,
                "status": self.status, "message": self.message, "point_status": self.point_status,
                "line_gap": self.line_gap(), "solve_seconds": self.solve_seconds}


def pareto_front(p, q, rejections=None, n_points: int = 11) -> ParetoFront:
    """Minimal quality loss ``TV(A, p)`` at each rejection level, by LP (HiGHS).

    ``rejections`` defaults to ``n_points`` levels evenly spaced in ``[0, TV(p, q)]``; levels must
    lie in ``[0, 1]``.
    """
    p, q = validate_pair(p, q)
    V = p.size
    tv = tv_distance(p, q)
    if rejections is None:
        levels = np.linspace(0.0, tv, validate_k(n_points, "n_points"))
    else:
        levels = np.atleast_1d(np.asarray(rejections, dtype=np.float64))
        if levels.ndim != 1 or np.isnan(levels).any() or (levels < 0).any() or (levels > 1).any():
            raise ValueError("rejections must be a 1-D array of levels in [0, 1]")
    # variables [a (V), w (V), t (V)]
    c = np.concatenate([np.zeros(2 * V), np.ones(V)])
    eye = np.eye(V)
    A_ub = np.hstack([eye, eye, -eye])  # a + w - t <= p
    A_eq = np.zeros((2, 3 * V))
    A_eq[0, :V] = 1.0
    A_eq[1, V : 2 * V] = 1.0
    bounds = [(0.0, float(qx)) for qx in q] + [(0.0, None)] * (2 * V)
    loss, acc, res, status = [], [], [], []
    start = time.perf_counter()
    for rho in levels:
        sol = linprog(c, A_ub=A_ub, b_ub=p, A_eq=A_eq, b_eq=[1.0 - rho, rho], bounds=bounds, method="highs")
        status.append(sol.message if sol.status else "optimal")
        if sol.status != 0:
            loss.append(np.nan)
            acc.append(np.full(V, np.nan))
            res.append(np.full(V, np.nan))
            continue
        a = np.clip(sol.x[:V], 0.0, q)  # clip the solver's round-off (|error| <= its tolerance)
        w = np.maximum(sol.x[V : 2 * V], 0.0)
        loss.append(float(sol.fun))
        acc.append(np.divide(a, q, out=np.ones(V), where=q > 0).clip(0.0, 1.0))
        res.append(w / w.sum() if w.sum() > 0 else p.copy())
    failed = [i for i, s in enumerate(status) if s != "optimal"]
    message = "optimal" if not failed else (f"{len(failed)} of {len(status)} levels not solved "
                                            f"(first: rejection {levels[failed[0]]:g}: {status[failed[0]]})")
    losses = np.array(loss)
    return warn_if_failed(ParetoFront(
        value=losses, success=not failed, status=2 if failed else 0, message=message,
        rejection=levels, loss=losses, acceptance=np.array(acc), resampling=np.array(res), tv=tv,
        point_status=status, solve_seconds=time.perf_counter() - start))
