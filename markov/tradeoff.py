"""Output quality vs number of rejections: Yin et al. Theorems 4 and 5 (docs/theory/markov.md#quality-and-rejections).

One step of a rejection-based rule with target ``p``, draft ``q`` (specot letters; the paper swaps
them), acceptance ``b(x) in [0, 1]`` of a drafted ``x`` (over-acceptance ``b > min(1, p/q)`` allowed)
and resampling law ``P``:

* output ``A = q b + r P`` with rejection probability ``r = 1 - sum_x q(x) b(x)``;
* Theorem 4: ``min_P TV(A, p)`` is attained by ``P* = (p - q b)^+ / sum (p - q b)^+`` and equals
  ``Loss*(b) = sum_x (q(x) b(x) - p(x))^+``;
* Theorem 5: ``r + Loss*(b) = 1 - sum_x min(q b, p) >= TV(p, q)``, with equality iff
  ``b >= min(1, p/q)``: the Pareto front is the segment from ``(0, TV)`` to ``(TV, 0)``;
* the over-acceptance family ``b_eps = min(1, (p + eps) / q)`` sweeps the front;
* "Decoding-UNO" resamples from ``P = p`` and loses ``sum (q b - (1 - r) p)^+ >= Loss*``.
"""

from __future__ import annotations

import numpy as np

from ot_coupling.validation import tv_distance, validate_pair


def check_acceptance(b, V: int) -> np.ndarray:
    """Validate an acceptance function ``b``: shape ``(V,)``, values in ``[0, 1]``."""
    arr = np.asarray(b, dtype=np.float64)
    if arr.shape != (V,):
        raise ValueError(f"b must have shape ({V},), got {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any():
        raise ValueError("b must hold acceptance probabilities in [0, 1]")
    return arr


def rejection_probability(p, q, b) -> float:
    """``r = 1 - sum_x q(x) b(x)``."""
    p, q = validate_pair(p, q)
    return float(1.0 - q @ check_acceptance(b, p.size))


def optimal_resampling(p, q, b) -> np.ndarray:
    """Theorem 4: ``P* = (p - q b)^+ / sum (p - q b)^+`` (``p`` itself when nothing is left)."""
    p, q = validate_pair(p, q)
    rest = np.maximum(p - q * check_acceptance(b, p.size), 0.0)
    total = rest.sum()
    return rest / total if total > 0 else p.copy()


def output_law(p, q, b, resampling) -> np.ndarray:
    """``A = q b + r P``: the law of the emitted token."""
    p, q = validate_pair(p, q)
    b = check_acceptance(b, p.size)
    P, _ = validate_pair(resampling, p, "resampling", "p")
    return q * b + (1.0 - q @ b) * P


def quality_loss(p, q, b, resampling) -> float:
    """``TV(A, p)`` for the rule ``(b, resampling)``."""
    p_arr, _ = validate_pair(p, q)
    return float(0.5 * np.abs(output_law(p, q, b, resampling) - p_arr).sum())


def optimal_loss(p, q, b) -> float:
    """Theorem 4: ``Loss*(b) = min_P TV(A, p) = sum_x (q(x) b(x) - p(x))^+``."""
    p, q = validate_pair(p, q)
    return float(np.maximum(q * check_acceptance(b, p.size) - p, 0.0).sum())


def uno_loss(p, q, b) -> float:
    """Loss of Decoding-UNO (resample from ``p``): ``sum (q b - (1 - r) p)^+ >= Loss*(b)``."""
    return quality_loss(p, q, b, p)


def over_acceptance(p, q, eps: float) -> np.ndarray:
    """``b_eps(x) = min(1, (p(x) + eps) / q(x))`` (1 where ``q = 0``); ``eps = 0`` is speculative
    sampling, ``eps >= max(q - p)`` accepts every draft (``r = 0``, ``Loss* = TV``)."""
    p, q = validate_pair(p, q)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q > 0, np.minimum(1.0, (p + eps) / np.where(q > 0, q, 1.0)), 1.0)


def tradeoff_curve(p, q, eps) -> tuple[np.ndarray, np.ndarray]:
    """``(r(eps), Loss*(eps))`` along the over-acceptance family; every point lies on the line
    ``r + Loss* = TV(p, q)`` (Theorem 5)."""
    eps = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    pts = [(rejection_probability(p, q, over_acceptance(p, q, e)), optimal_loss(p, q, over_acceptance(p, q, e)))
           for e in eps]
    r, loss = np.array(pts).T
    return r, loss


def pareto_line(p, q, n_points: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 5's front: ``rejection`` from 0 to ``TV`` and ``loss = TV - rejection``."""
    p, q = validate_pair(p, q)
    tv = tv_distance(p, q)
    r = np.linspace(0.0, tv, n_points)
    return r, tv - r
