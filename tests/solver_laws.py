"""Draft-set laws for the solver tests, in the format of ``oracles.brute_force_optimum``.

They aggregate the ordered-tuple enumeration of :mod:`ot_coupling.draft_laws` (which sums the unseen
mass directly, so it stays exact on skewed Dirichlet(0.1) cases) into one row per draft *set*
(padded by repeating a member). This is independent of the solvers' own set-law code
(``solvers.membership_lp.draft_set_law``), which it cross-checks.
"""

from __future__ import annotations

import numpy as np

from ot_coupling.draft_laws import enumerate_drafts, set_law


def draft_sets(law: str, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [n_sets, k], probs [n_sets])`` of the set of drafted tokens under ``law``."""
    sets = set_law(*enumerate_drafts(q, k, law))
    rows = [sorted(s) + [min(s)] * (k - len(s)) for s in sets]
    return np.array(rows, dtype=np.int64).reshape(-1, k), np.array(list(sets.values()))


SET_LAWS = {law: (lambda q, k, law=law: draft_sets(law, q, k))
            for law in ("iid", "without_replacement", "hub", "greedy")}


def feasible(law: str, q: np.ndarray, k: int) -> bool:
    """Whether the draft law is defined for ``(q, k)``."""
    n = int((q > 0).sum())
    if law == "hub":
        return k == 2 and n >= 2
    if law in ("without_replacement", "greedy"):
        return k <= n
    return True
