"""Independent, numerically stable draft-set laws for the solver tests (slow Python, small V).

They use ``q(unseen tokens)`` summed from positive terms instead of ``1 - q(seen)``, so that they
stay accurate for the skewed Dirichlet(0.1) cases where the subtraction cancels. Each returns
``(tuples, probs)`` with one row per draft *set* (padded by repeating a member), the format of
``oracles.brute_force_optimum``.
"""

from __future__ import annotations

from itertools import permutations, product

import numpy as np

from ot_coupling.draft_laws import greedy_top, hub_token


def _as_rows(law: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = [sorted(s) + [min(s)] * (k - len(s)) for s in law]
    return np.array(rows, dtype=np.int64).reshape(-1, k), np.array(list(law.values()))


def iid_sets(q: np.ndarray, k: int):
    law: dict = {}
    support = np.flatnonzero(q > 0).tolist()
    for t in product(support, repeat=k):
        s = frozenset(t)
        law[s] = law.get(s, 0.0) + float(np.prod(q[list(t)]))
    return _as_rows(law, k)


def wor_sets(q: np.ndarray, k: int):
    law: dict = {}
    support = np.flatnonzero(q > 0).tolist()
    for t in permutations(support, k):
        w, seen = 1.0, np.zeros(q.size, dtype=bool)
        for x in t:
            w *= q[x] / q[~seen].sum()
            seen[x] = True
        s = frozenset(t)
        law[s] = law.get(s, 0.0) + w
    return _as_rows(law, k)


def hub_sets(q: np.ndarray, k: int = 2):
    a = hub_token(q)
    others = [j for j in np.flatnonzero(q > 0).tolist() if j != a]
    rest = q[others].sum()
    return _as_rows({frozenset((a, j)): q[j] / rest for j in others}, 2)


def greedy_sets(q: np.ndarray, k: int):
    top = greedy_top(q, k).tolist()
    last = [x for x in np.flatnonzero(q > 0).tolist() if x not in top]
    rest = q[last].sum()
    return _as_rows({frozenset(top + [x]): q[x] / rest for x in last}, k)


SET_LAWS = {"iid": iid_sets, "without_replacement": wor_sets, "hub": hub_sets, "greedy": greedy_sets}


def feasible(law: str, q: np.ndarray, k: int) -> bool:
    """Whether the draft law is defined for ``(q, k)``."""
    n = int((q > 0).sum())
    if law == "hub":
        return k == 2 and n >= 2
    if law in ("without_replacement", "greedy"):
        return k <= n
    return True
