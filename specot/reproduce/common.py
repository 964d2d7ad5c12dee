"""Helpers shared by the experiments: exact acceptance of a list of methods on a pair, table claims,
goodness of fit and its power."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .core import Claim, require

#: pseudo-methods computed by :func:`solvers.optimal_acceptance` rather than a selector.
OPTIMA = {"optimum": "iid", "optimum (wor)": "without_replacement"}
#: largest k at which a method's exact acceptance is cheap (RRS without replacement enumerates
#: rejection histories, which grow combinatorially in k); larger k give NaN in sweeps.
MAX_K = {"rrs_wor": 4}


def acceptance(method: str, p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Exact acceptance ``P(Y in drafts)`` of ``method`` (a selector name of
    :func:`ot_coupling.get_selector`, or ``"optimum"`` / ``"optimum (wor)"`` for the min-cut optimum
    of :func:`solvers.optimal_acceptance` with i.i.d. / without-replacement drafts)."""
    if method in OPTIMA:
        optimal_acceptance = require("solvers.closed_form", "optimal_acceptance")
        return float(optimal_acceptance(p, q, k, OPTIMA[method]))
    get_selector = require("ot_coupling.registry", "get_selector")
    return float(get_selector(method).acceptance(p, q, k))


#: methods whose drafts are distinct tokens: undefined when k exceeds the draft's support.
DISTINCT_DRAFTS = {"optimum (wor)", "rrs_wor", "gumbel", "greedy"}


def acceptance_table(item) -> dict[str, list[float]]:
    """Task: ``item = (p, q, ks, methods)`` -> ``{method: [acceptance at each k]}``: NaN where the
    method is not defined (distinct drafts with k above the size of the support of q) or not computed (k above
    :data:`MAX_K`, marked on the figures); any other exception propagates."""
    p, q, ks, methods = item
    out = {}
    for m in methods:
        vals = []
        for k in ks:
            if k > MAX_K.get(m, k):
                vals.append(float("nan"))
                continue
            if m in DISTINCT_DRAFTS and k > int(np.count_nonzero(q)):
                vals.append(float("nan"))
                continue
            vals.append(acceptance(m, p, q, k))
        out[m] = vals
    return out


def table_claim(paper: str, statement: str, labels: Sequence[str], paper_values: Sequence[float],
                our_values: Sequence[float], atol: float, digits: int = 4, note: str = "", *,
                category: str, fails_if: str = "") -> Claim:
    """One claim for a row of numbers: holds when every ``|ours - paper| <= atol``."""
    fmt = f"{{:.{digits}f}}"
    diff = float(np.max(np.abs(np.asarray(our_values, float) - np.asarray(paper_values, float))))
    head = " / ".join(labels)
    text = f"({head}); max abs difference {diff:.1e} vs tolerance {atol:g}" + (f"; {note}" if note else "")
    return Claim(paper, statement,
                 " / ".join(fmt.format(v) for v in paper_values),
                 " / ".join(fmt.format(v) for v in our_values), bool(diff <= atol), text, category,
                 fails_if or f"any |ours - reference| > {atol:g}")


def goodness_of_fit(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Chi-square goodness-of-fit p-value of token ``counts`` against the law ``probs``; cells with
    an expected count below ``min_expected`` are pooled into one cell so the chi-square
    approximation holds."""
    from scipy.stats import chisquare

    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() * np.asarray(probs, dtype=np.float64)
    small = expected < min_expected
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    if obs.size < 2:
        return 1.0
    return float(chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def mean_curves(tables: list[dict[str, list[float]]], methods: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean over instances of each method's acceptance curve, ignoring NaN (a k the method skips;
    a k no instance covers stays NaN, silently)."""
    out = {}
    for m in methods:
        vals = np.array([t[m] for t in tables], dtype=np.float64)
        count = np.sum(~np.isnan(vals), axis=0)
        total = np.nansum(vals, axis=0)
        out[m] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def chi2_power(n: int, probs: np.ndarray, alt: np.ndarray, alpha: float = 1e-6) -> float:
    """Power of the chi-square goodness-of-fit test of level ``alpha`` with ``n`` draws against the
    alternative law ``alt`` (non-central chi-square with non-centrality ``n sum (alt - p)^2 / p`` on
    the cells with ``p > 0``)."""
    from scipy.stats import chi2, ncx2

    probs, alt = np.asarray(probs, float), np.asarray(alt, float)
    small = n * probs < 5.0  # pooled into one cell, as goodness_of_fit does
    p_c = np.append(probs[~small], probs[small].sum())
    a_c = np.append(alt[~small], alt[small].sum())
    cells = p_c > 0
    df = int(cells.sum()) - 1
    lam = n * float(np.sum((a_c[cells] - p_c[cells]) ** 2 / p_c[cells]))
    return float(ncx2.sf(chi2.isf(alpha, df), df, lam))


def worst_alternative(probs: np.ndarray, error: float = 0.01) -> np.ndarray:
    """The law at total-variation distance ``error`` from ``probs`` that the chi-square test detects
    least easily: ``error`` moved between the two most probable tokens (non-centrality
    ``n error^2 (1/p_a + 1/p_b)`` is smallest for the two largest cells)."""
    probs = np.asarray(probs, float)
    a, b = np.argsort(probs)[::-1][:2]
    alt = probs.copy()
    alt[a] -= error
    alt[b] += error
    return alt


def draws_for_power(probs: np.ndarray, alt: np.ndarray, power: float = 0.99, alpha: float = 1e-6) -> int:
    """The smallest ``n`` (to 1%) at which :func:`chi2_power` reaches ``power``."""
    n = 100
    while chi2_power(n, probs, alt, alpha) < power:
        n = int(n * 1.5)
    lo, hi = n // 1.5, n
    while hi - lo > max(1, 0.01 * hi):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if chi2_power(int(mid), probs, alt, alpha) < power else (lo, mid)
    return int(hi)


# ---------------------------------------------------------------------- independent references
def rrs_acceptance_reference(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """RRS (SpecInfer) acceptance with k i.i.d. drafts, computed independently of the selector:
    draft i is rejected with probability TV(p_i, q), where p_1 = p and p_{i+1} = norm((p_i - q)_+)
    (Miao et al. 2024, Algorithm 2); a rejected draft has no mass left in later residuals, so
    P(Y in drafts) = 1 - prod_i TV(p_i, q)."""
    r, reject = np.asarray(p, float).copy(), 1.0
    for _ in range(k):
        tv = 1.0 - float(np.minimum(r, q).sum())
        reject *= tv
        if tv <= 0:
            break
        r = np.maximum(r - q, 0.0)
        r /= r.sum()
    return 1.0 - reject


def naive_acceptance_reference(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Naive verification (Y ~ p independent of k i.i.d. drafts): sum_y p(y) (1 - (1 - q(y))^k)."""
    return float(np.sum(p * (1.0 - (1.0 - q) ** k)))


def lp_optimum_reference(p: np.ndarray, q: np.ndarray, k: int, law: str = "iid") -> float:
    """The optimum as the value of the membership-cost LP over draft sets solved by HiGHS
    (:func:`solvers.membership_lp.solve_membership_ot`), independent of the min-cut closed form."""
    solve = require("solvers.membership_lp", "solve_membership_ot")
    return float(solve(p, q, k, law, backend="highs").value)
