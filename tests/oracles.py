"""Independent oracles shared by the test modules: brute-force optimum, instance generators, and a
statistical goodness-of-fit check with a fixed false-alarm rate."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy import stats


def brute_force_optimum(p: np.ndarray, tuples: np.ndarray, probs: np.ndarray) -> tuple[float, tuple]:
    """``min_H p(H) + 1 - Q(S(X) subset of H)`` over all 2^V subsets H (docs/theory/membership_ot.md#optimal-acceptance-by-min-cut).

    This is the max-flow/min-cut value of the membership-cost transport for any tuple law, computed
    without any structure (no prefix property); V <= ~12.
    """
    V = p.size
    sets = [frozenset(t.tolist()) for t in tuples]
    best, best_h = np.inf, ()
    for r in range(V + 1):
        for h in combinations(range(V), r):
            hs = set(h)
            inside = sum(w for s, w in zip(sets, probs) if s <= hs)
            val = p[list(h)].sum() + 1.0 - inside
            if val < best - 1e-15:
                best, best_h = val, h
    return float(best), best_h


def random_pair(rng: np.random.Generator, V: int, *, concentration: float = 1.0,
                zero_p: bool = False, zero_q: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A Dirichlet target/draft pair, optionally with exact zeros planted in p and/or q."""
    p = rng.dirichlet(np.full(V, concentration))
    q = rng.dirichlet(np.full(V, concentration))
    if zero_p and V > 1:
        p[rng.integers(V)] = 0.0
        p /= p.sum()
    if zero_q and V > 1:
        q[rng.integers(V)] = 0.0
        q /= q.sum()
    return p, q


def random_cases(seed: int, n: int, v_range=(2, 6), concentrations=(0.1, 0.5, 1.0, 3.0)):
    """``n`` varied (p, q) cases: Dirichlet of several concentrations, zeros in p and q, p == q,
    one-hot p. Deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        V = int(rng.integers(v_range[0], v_range[1] + 1))
        kind = i % 6
        p, q = random_pair(rng, V, concentration=concentrations[i % len(concentrations)],
                           zero_p=kind in (1, 3), zero_q=kind in (2, 3))
        if kind == 4:
            q = p.copy()
        if kind == 5:
            p = np.zeros(V)
            p[rng.integers(V)] = 1.0
        cases.append((p, q))
    return cases


def gof_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness-of-fit p-value of ``counts`` against ``probs``.

    Cells of zero expected mass must have zero counts (else p-value 0); cells with expected count
    below 5 are pooled into one cell so that the chi-square approximation holds.
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    if (counts[probs <= 0] > 0).any():
        return 0.0
    keep = probs > 0
    counts, probs = counts[keep], probs[keep] / probs[keep].sum()
    expected = n * probs
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
        if expected[-1] == 0:
            counts, expected = counts[:-1], expected[:-1]
    if counts.size < 2:
        return 1.0
    return float(stats.chisquare(counts, expected).pvalue)


def assert_law(samples, probs, *, alpha: float = 1e-6) -> None:
    """Assert that integer ``samples`` follow ``probs`` (chi-square, false alarm ``alpha``)."""
    counts = np.bincount(np.asarray(samples).ravel(), minlength=len(probs))
    if counts.size > len(probs):
        raise AssertionError(f"sample outside the support: max index {counts.size - 1}")
    pv = gof_pvalue(counts, probs)
    assert pv > alpha, f"chi-square p-value {pv:.3g} <= {alpha:g}; counts={counts}, probs={np.round(probs, 4)}"
