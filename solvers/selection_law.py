"""The optimal selection law of k i.i.d. drafts, and the feasibility test of any selection law.

A *selection rule* picks one draft ``Z`` among ``X_1..X_k ~ q`` (i.i.d.); single-draft speculative
sampling of ``Z`` against ``p`` then outputs exactly ``p`` and accepts with ``sum_y min(r_y, p_y)``,
where ``r`` is the law of ``Z`` (docs/theory/optimal_verifier.md#select-then-verify; Khisti et al., ICLR 2025,
arXiv 2410.18234, the canonical decomposition). The reachable ``r`` form the base polytope of the
coverage function ``f(A) = g(q(A))`` with ``g(s) = 1 - (1 - s)^k``.

This module gives the closed-form optimal law of docs/theory/optimal_verifier.md#the-optimal-selection-law::

    r*_y = q_y * clip(p_y / q_y, theta_B, theta_A)

with ``H`` the minimising prefix of ``alpha* = min_H p(H) + 1 - q(H)^k`` (docs/theory/membership_ot.md#the-prefix-cut-for-iid-drafts, tokens
sorted by ascending ``p/q``; :func:`solvers.closed_form.optimal_cut`), ``theta_A`` solving ``sum_{y not in H} min(p_y, theta_A q_y) = g(q(V\\H))``
and ``theta_B`` solving ``sum_{y in H} max(p_y, theta_B q_y) = q(H)^k``; ``sum_y min(r*_y, p_y) = alpha*``.
The exact prefix scans, vectorised over rows, are the array-API kernel
:func:`ot_coupling.kernels.selection.selection_scan` (shared with torch); this module validates,
restores token order and tests feasibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ot_coupling.kernels.selection import selection_scan
from ot_coupling.validation import validate_distribution, validate_k


def coverage(s, k: int):
    """``g(s) = 1 - (1 - s)^k``: probability that one of ``k`` i.i.d. drafts falls in a set of mass ``s``."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64)) ** k


@dataclass(frozen=True)
class SelectionLaw:
    """The optimal selection law and its certificate pieces (rows of a ``[B, V]`` problem, or one row).

    Attributes
    ----------
    r : ndarray
        the selection law ``r*`` (same shape as the input).
    ratio : ndarray
        ``r*/q`` = ``clip(p/q, theta_B, theta_A)`` on tokens with ``q > 0``; 0 where ``q = 0``.
    in_cut : ndarray of bool
        membership in the minimising prefix ``H`` (the low ``p/q`` tokens, "over-drafted").
    theta_a, theta_b : ndarray or float
        the thresholds (``inf`` for ``theta_a`` when no cap binds; ``theta_b`` is 0 when ``H`` is empty).
    alpha : ndarray or float
        ``alpha* = p(H) + 1 - q(H)^k``, equal to ``sum min(r*, p)``.
    """

    r: np.ndarray
    ratio: np.ndarray
    in_cut: np.ndarray
    theta_a: np.ndarray | float
    theta_b: np.ndarray | float
    alpha: np.ndarray | float


def _as_rows(x, name: str) -> tuple[np.ndarray, bool]:
    """Validate a ``[V]`` or ``[B, V]`` stack of distributions; return ``[B, V]`` and whether it was 1-D."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        return validate_distribution(arr, name)[None, :], True
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape [V] or [B, V], got {arr.shape}")
    return np.stack([validate_distribution(row, f"{name}[{b}]") for b, row in enumerate(arr)]), False


def selection_law(p, q, k: int) -> SelectionLaw:
    """The optimal selection law ``r*`` with thresholds and cut (docs/theory/optimal_verifier.md#the-optimal-selection-law).

    ``p, q``: ``[V]`` or ``[B, V]`` (rows solved independently). Cost ``O(V log V)`` per row.
    """
    k = validate_k(k)
    P, one_p = _as_rows(p, "p")
    Q, one_q = _as_rows(q, "q")
    if P.shape != Q.shape:
        raise ValueError(f"p and q must have the same shape, got {P.shape} and {Q.shape}")
    law = _selection_law_rows(P, Q, k)
    if one_p and one_q:
        return SelectionLaw(law.r[0], law.ratio[0], law.in_cut[0], float(law.theta_a[0]),
                            float(law.theta_b[0]), float(law.alpha[0]))
    return law


def optimal_selection_law(p, q, k: int) -> np.ndarray:
    """``r* = q * clip(p/q, theta_B, theta_A)``: an optimal law of the selected draft (``[V]`` or ``[B, V]``).

    Single-draft speculative sampling of a draft selected with law ``r*`` reaches the optimal
    acceptance ``alpha* = min_H p(H) + 1 - q(H)^k`` (docs/theory/optimal_verifier.md#the-optimal-selection-law).
    """
    return selection_law(p, q, k).r


def _selection_law_rows(p: np.ndarray, q: np.ndarray, k: int) -> SelectionLaw:
    """Core of :func:`selection_law` on validated ``[B, V]`` rows: the array-API kernel
    :func:`ot_coupling.kernels.selection.selection_scan` (shared with the torch optimal verifier),
    put back in token order."""
    scan = selection_scan(p, q, k)
    inv = np.empty_like(scan.order)                 # the inverse permutation, by one scatter
    np.put_along_axis(inv, scan.order, np.broadcast_to(np.arange(p.shape[1]), p.shape), axis=1)
    return SelectionLaw(
        r=np.take_along_axis(scan.r, inv, 1),
        ratio=np.take_along_axis(scan.ratio, inv, 1),
        in_cut=np.take_along_axis(np.arange(p.shape[1])[None, :] < scan.cut[:, None], inv, 1),
        theta_a=scan.theta_a,
        theta_b=scan.theta_b,
        alpha=scan.alpha,
    )


def selection_law_violation(r, q, k: int) -> float:
    """Largest violation of the base-polytope constraints ``r(A) <= g(q(A))``, ``r(V) = 1``.

    Because ``g`` is concave, the worst set of each ``q``-mass is a prefix in descending ``r/q``
    (fractional knapsack), and the gap between a piecewise-linear and a concave function is
    largest at a breakpoint, so checking the ``V`` prefixes is exact
    (docs/theory/optimal_verifier.md#reachable-selection-laws). Returns ``max(max_j R_j - g(Q_j), |sum r - 1|)`` (<= 0 up to round-off when feasible;
    ``inf`` if ``r`` puts mass on a token with ``q = 0``).
    """
    k = validate_k(k)
    r_arr = np.asarray(r, dtype=np.float64)
    q_arr = validate_distribution(q, "q")
    if r_arr.shape != q_arr.shape:
        raise ValueError(f"r and q must have the same shape, got {r_arr.shape} and {q_arr.shape}")
    if not np.isfinite(r_arr).all() or (r_arr < 0).any():
        raise ValueError("r must be finite and non-negative")
    if (r_arr[q_arr == 0] > 0).any():
        return float("inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(q_arr > 0, r_arr / q_arr, -np.inf)
    order = np.argsort(-ratio, kind="stable")
    R = np.cumsum(r_arr[order])
    Qs = np.minimum(np.cumsum(q_arr[order]), 1.0)
    return float(max(np.max(R - coverage(Qs, k)), abs(r_arr.sum() - 1.0)))


def is_feasible_selection_law(r, q, k: int, atol: float = 1e-12) -> bool:
    """Whether some rule selecting one of ``k`` i.i.d. drafts from ``q`` has selection law ``r``."""
    return selection_law_violation(r, q, k) <= atol

