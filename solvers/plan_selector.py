"""The optimal verifier for small vocabularies: sample from the exact LP plan.

:class:`LPPlanSelector` (registered as ``"optimal_lp"``) solves the membership-cost LP of
:mod:`solvers.membership_lp` for ``(p, q, k, draft law)`` and, given drafts, samples the output
from the plan's conditional law ``K(. | S(drafts))``. Because the plan is a complete coupling with
exact marginals, the output is distributed exactly as ``p`` and the acceptance equals the optimum
``alpha*`` (Sun et al., SpecTr, NeurIPS 2023, eq. (OTM); research/multidraft.md 1.3).
The LP is exponential in ``k``; use it for V up to a few dozen tokens.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ot_coupling.base import Selector
from ot_coupling.draft_laws import get_draft_law
from ot_coupling.validation import SeedLike, as_generator, sample_categorical

from .membership_lp import BACKENDS, MembershipOT, solve_membership_ot
from .result import _UNSET, renamed_argument


class LPPlanSelector(Selector):
    """Exact optimal k-draft verification by sampling the LP transport plan.

    Parameters
    ----------
    draft_law: draft law name (``"iid"``, ``"without_replacement"``, ``"hub"``, ``"greedy"``);
        ``drafts=`` is its deprecated old name.
    backend: LP backend of :func:`solvers.solve_membership_ot` (``"highs"`` by default).
    cache_size: number of solved ``(p, q, k)`` instances kept.
    **solver_options: passed on to :func:`solvers.solve_membership_ot`.
    """

    name = "optimal_lp"

    def __init__(self, draft_law: str = _UNSET, backend: str = "highs", cache_size: int = 64, *,
                 drafts: str = _UNSET, **solver_options):
        drafts = renamed_argument(draft_law, drafts, "drafts", "draft_law", "iid")
        get_draft_law(drafts)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.draft_law = drafts
        self.backend = backend
        self.solver_options = solver_options
        self._cache: OrderedDict[tuple, MembershipOT] = OrderedDict()
        self._cache_size = int(cache_size)

    def solve(self, p, q, k: int) -> MembershipOT:
        """The (cached) LP solution for ``(p, q, k)``."""
        p_arr, q_arr, k = self._check(p, q, k)
        return self._solve(p_arr, q_arr, k)

    def _solve(self, p: np.ndarray, q: np.ndarray, k: int) -> MembershipOT:
        key = (p.tobytes(), q.tobytes(), k)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = solve_membership_ot(p, q, k, self.draft_law, backend=self.backend,
                                     **self.solver_options)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    def acceptance(self, p, q, k: int) -> float:
        """The LP optimum ``alpha*`` (acceptance of the plan)."""
        return self.solve(p, q, k).value

    def enumerate(self, p, q, k: int) -> tuple[np.ndarray, float]:
        """Exact ``(output law, acceptance)`` by summing ``Q(S) K(. | S)`` over the LP's draft *sets*.

        The plan depends on a tuple only through its set, so this costs one row per set (the LP's
        size) instead of one per ordered tuple (``V^k``); sets whose probability underflows to 0
        are rows of the plan too (docs/numerics.md).
        """
        p_arr, q_arr, k = self._check(p, q, k)
        plan = self._solve(p_arr, q_arr, k).plan
        out = np.zeros_like(p_arr)
        acc = 0.0
        for s in range(plan.n_sets):
            law = plan.set_probs[s] * plan.conditional_law_by_index(s)
            out += law
            members = plan.sets[s][plan.sets[s] >= 0]
            acc += float(law[members].sum())
        return out, acc

    def conditional_law(self, p, q, drafts) -> np.ndarray:
        """``K(. | drafts)`` of the optimal plan (depends on the drafts through their set)."""
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        return self._solve(p_arr, q_arr, d.size).plan.conditional_law(d)

    def verify(self, p, q, drafts, rng: SeedLike = None) -> tuple[int, bool]:
        """Sample ``Y ~ K(. | drafts)``; accepted iff ``Y`` is one of the drafts."""
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        law = self._solve(p_arr, q_arr, d.size).plan.conditional_law(d)
        token = sample_categorical(law, as_generator(rng))
        return token, bool(np.isin(token, d))

    def __repr__(self) -> str:
        return f"LPPlanSelector(draft_law={self.draft_law!r}, backend={self.backend!r})"
