"""Speedup models of speculative decoding (docs/theory/markov.md#speedup-model).

Leviathan, Kalman, Matias (ICML 2023), with i.i.d. per-token acceptance ``alpha``:

* Thm 3.1 / eq. (1): ``E[tokens per step] = (1 - alpha^(gamma+1)) / (1 - alpha)``;
* Thm 3.8: walltime improvement ``(1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1))`` with
  ``c`` = draft/target cost ratio;
* Thm 3.11: arithmetic-operations factor ``(1 - alpha)(gamma c_hat + gamma + 1) / (1 - alpha^(gamma+1))``;
* the optimal ``gamma`` maximises Thm 3.8 over the integers.

:class:`CostModel` generalises Thm 3.8 to ``k`` drafts with a roofline for the target call
(docs/theory/markov.md#many-drafts-and-the-roofline): ``t_step = gamma c + max(1, nodes / capacity)`` target-call units, with
``nodes = k gamma + 1`` positions scored at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ot_coupling.validation import validate_k


def _check_alpha(alpha) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float64)
    if np.isnan(a).any() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    return a


def _check_gamma(gamma) -> np.ndarray:
    g = np.asarray(gamma)
    if not np.issubdtype(g.dtype, np.integer) or (g < 0).any():
        raise ValueError(f"gamma must be an integer >= 0, got {gamma!r}")
    return g


def _check_cost(c, name: str = "c") -> float:
    if not (isinstance(c, (int, float, np.floating, np.integer)) and np.isfinite(c) and c >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {c!r}")
    return float(c)


def expected_tokens_per_step(alpha, gamma):
    """``sum_{i=0}^{gamma} alpha^i = (1 - alpha^(gamma+1)) / (1 - alpha)`` (Leviathan Thm 3.1)."""
    a, g = _check_alpha(alpha), _check_gamma(gamma)
    out = np.where(a < 1, (1.0 - a ** (g + 1.0)) / np.where(a < 1, 1.0 - a, 1.0), g + 1.0)
    return float(out) if out.ndim == 0 else out


def walltime_improvement(alpha, gamma, c: float):
    """``(1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1))`` (Leviathan Thm 3.8)."""
    c = _check_cost(c)
    return expected_tokens_per_step(alpha, gamma) / (np.asarray(gamma) * c + 1.0)


def ops_factor(alpha, gamma, c_hat: float):
    """Increase in arithmetic operations ``(1 - alpha)(gamma c_hat + gamma + 1) / (1 - alpha^(gamma+1))``
    (Leviathan Thm 3.11); ``c_hat`` = draft/target operations per token."""
    c_hat = _check_cost(c_hat, "c_hat")
    return (np.asarray(gamma) * c_hat + np.asarray(gamma) + 1.0) / expected_tokens_per_step(alpha, gamma)


def optimal_gamma(alpha: float, c: float, max_gamma: int = 1000) -> tuple[int, float]:
    """``(gamma*, speedup)`` maximising :func:`walltime_improvement` over ``1..max_gamma``.

    Leviathan Cor. 3.9: some ``gamma`` gives a speedup > 1 iff ``alpha > c``.
    """
    _check_alpha(alpha)
    c = _check_cost(c)
    gammas = np.arange(1, validate_k(max_gamma, "max_gamma") + 1)
    s = walltime_improvement(alpha, gammas, c)
    i = int(np.argmax(s))
    return int(gammas[i]), float(s[i])


@dataclass(frozen=True)
class CostModel:
    """Wall-clock model of one step, in units of one target call.

    ``c``: cost of one draft forward pass relative to one target call (Leviathan Def. 3.7);
    ``capacity``: number of positions the target scores in parallel at the cost of one call
    (the roofline ``t_target(N) = max(1, N / capacity)``, docs/theory/markov.md#many-drafts-and-the-roofline). With ``gamma=None``
    (unlimited lookahead) a step costs one call (Yin et al.'s Assumption 1, docs/theory/markov.md#decoding-as-a-markov-chain).
    """

    c: float = 0.0
    capacity: float = math.inf

    def __post_init__(self):
        _check_cost(self.c)
        if not self.capacity > 0:
            raise ValueError(f"capacity must be > 0, got {self.capacity!r}")

    def step_time(self, gamma: int | None, k: int = 1) -> float:
        if gamma is None:
            return 1.0
        nodes = k * gamma + 1
        return gamma * self.c + max(1.0, nodes / self.capacity)

    def speedup(self, block_efficiency: float, gamma: int | None, k: int = 1) -> float:
        """Tokens per unit of target-call time relative to autoregressive decoding."""
        return float(block_efficiency) / self.step_time(gamma, k)
