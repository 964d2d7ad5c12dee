"""Helpers shared by the experiments: exact acceptance of a list of methods on a pair, table claims."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .core import Claim, MissingPiece, require

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
        return float(optimal_acceptance(p, q, k, drafts=OPTIMA[method]))
    get_selector = require("ot_coupling.registry", "get_selector")
    try:
        selector = get_selector(method)
    except (ImportError, AttributeError) as exc:
        raise MissingPiece(f"selector {method!r} ({exc})") from None
    return float(selector.acceptance(p, q, k))


def acceptance_table(item) -> dict[str, list[float]]:
    """Task: ``item = (p, q, ks, methods)`` -> ``{method: [acceptance at each k]}`` (NaN where a
    method does not support that k, e.g. without-replacement drafts with ``k > |supp q|``)."""
    p, q, ks, methods = item
    out = {}
    for m in methods:
        vals = []
        for k in ks:
            if k > MAX_K.get(m, k):
                vals.append(float("nan"))
                continue
            try:
                vals.append(acceptance(m, p, q, k))
            except ValueError:
                vals.append(float("nan"))
        out[m] = vals
    return out


def available(methods: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``methods`` into (importable, missing) so an experiment can run with what exists."""
    ok, missing = [], []
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.2, 0.3, 0.5])
    for m in methods:
        (ok if any(_usable(m, p, q, k) for k in (2, 1)) else missing).append(m)  # SpecHub needs k = 2
    return ok, missing


def _usable(method: str, p: np.ndarray, q: np.ndarray, k: int) -> bool:
    try:
        acceptance(method, p, q, k)
    except Exception:  # noqa: BLE001 - any failure means "not usable (yet)"
        return False
    return True


def table_claim(paper: str, statement: str, labels: Sequence[str], paper_values: Sequence[float],
                our_values: Sequence[float], atol: float, digits: int = 4, note: str = "") -> Claim:
    """One claim for a row of numbers: holds when every ``|ours - paper| <= atol``."""
    fmt = f"{{:.{digits}f}}"
    diff = float(np.max(np.abs(np.asarray(our_values, float) - np.asarray(paper_values, float))))
    head = " / ".join(labels)
    text = f"({head}); max abs difference {diff:.1e} vs tolerance {atol:g}" + (f"; {note}" if note else "")
    return Claim(paper, statement,
                 " / ".join(fmt.format(v) for v in paper_values),
                 " / ".join(fmt.format(v) for v in our_values), bool(diff <= atol), text)


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
