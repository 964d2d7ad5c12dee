"""The exact optimal k-draft verifier for i.i.d. drafts, at any vocabulary size (numpy).

docs/theory/optimal_verifier.md: every optimal verifier can be written as *select one draft ``Z``
with law ``r``, then single-draft speculative sampling of ``Z`` against ``p``* (sec. 2; Khisti et
al., ICLR 2025, arXiv 2410.18234): accept ``Z`` with probability ``min(1, p_Z / r_Z)``, else output a
token from the residual ``(p - r)^+`` normalised. The output is exactly ``p`` and the acceptance is
``sum_y min(r_y, p_y)``, which equals ``alpha* = min_H p(H) + 1 - q(H)^k`` (docs/theory/membership_ot.md#the-prefix-cut-for-iid-drafts) for
the selection rules implemented here:

``method="auto"`` (default)
    ``"layout"`` for ``V <= LAYOUT_MAX_V`` (2048) and ``"importance"`` above: both are exact, the
    layout is the reference, the importance rule is the one that is fast at full vocabulary size
    (about 20-40 ms per row at ``V = 49152``, ``k = 8`` on a shared 2-core CPU depending on its
    load, against 5-8 s for the layout; benchmarks/results/optimal.md).
``method="layout"`` (the exact reference)
    the greedy min-score layout of sec. 4 (:mod:`solvers.min_score_layout`): sets ``S_y`` of
    ``[0, 1]`` (exact interval arithmetic), scores ``U_i ~ Uniform(S_{X_i})``, the min-score draft
    is selected; ``r`` is the layout's own marginal ``int_{S_y} k (1 - u)^{k-1} du``. Selection
    probabilities given the drafts are integrated exactly. Sequential in ``V`` (about
    ``O(V * #free intervals)``): use it for exactness checks, not in a decoding loop at 49k tokens.
``method="importance"`` (the fast path)
    lexicographic importance sampling with two levels (sec. 5, :mod:`solvers.importance_weights`):
    weights fitted by Newton on the convex dual; ``r`` is the rule's own marginal computed by a
    quadrature with a stated error bound (:attr:`ImportancePlan.quad_error`), so the output law is
    ``p`` up to that bound (~1e-14) and the acceptance is ``alpha*`` up to the fit tolerance.
``method="lp"``
    delegates to :class:`solvers.plan_selector.LPPlanSelector` (the exact LP plan, small ``V``).

``accepted`` means membership (the output is one of the drafts). For both rules a rejection
happens only when every draft lies in the minimising prefix ``H`` while the residual lives outside
``H``, so the membership acceptance equals ``sum min(r, p)`` (for ``"importance"`` up to the fit
error). Plans are cached for the last ``(p, q, k)`` seen, so repeated ``verify`` calls on the same
distributions cost only the per-draft work.
"""

from __future__ import annotations

import warnings

import numpy as np

from ot_coupling.base import Selector
from ot_coupling.validation import SeedLike, as_generator, sample_categorical

from .importance_weights import ImportancePlan, importance_plan
from .min_score_layout import Layout, greedy_layout, sample_scores, selection_probabilities

METHODS = ("auto", "layout", "importance", "lp")
#: largest vocabulary for which ``method="auto"`` uses the min-score layout
LAYOUT_MAX_V = 2048
#: largest vocabulary for which ``method="auto"`` replaces a non-converged importance fit by the layout
LAYOUT_FALLBACK_V = 8192


def residual(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(p - r)^+`` normalised: the law of the output after a rejection in single-draft speculative
    sampling of a draft selected with law ``r`` (Leviathan et al. 2023; ``p`` itself if the residual
    is zero up to round-off, where no rejection can happen)."""
    res = np.clip(p - r, 0.0, None)
    total = res.sum()
    return res / total if total > 0 else p.copy()


class OptimalVerifier(Selector):
    """The exact optimal verifier for ``k`` i.i.d. drafts (registered as ``"optimal"``).

    Parameters
    ----------
    method: ``"auto"`` (default: layout up to ``V = 2048``, importance above), ``"layout"`` (exact
        min-score layout), ``"importance"`` (fast two-level importance sampling) or ``"lp"`` (the
        LP plan, small ``V``).
    tol, max_iter: Newton tolerance on ``||r(lam) - target||_1`` per level and iteration cap
        (``"importance"``).
    """

    name = "optimal"
    draft_law = "iid"

    def __init__(self, method: str = "auto", *, tol: float = 1e-12, max_iter: int = 60):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self._cache: tuple[bytes, Layout | ImportancePlan] | None = None
        self._lp = None
        self._memo: dict[tuple, dict[int, float]] = {}  # layout: draft multiset -> P(pick a copy of y)

    # ------------------------------------------------------------------ plans
    def plan(self, p, q, k: int) -> Layout | ImportancePlan:
        """The layout (``"layout"``) or fitted importance rule (``"importance"``) for ``(p, q, k)``."""
        p_arr, q_arr, k = self._check(p, q, k)
        if self.method == "lp":
            raise ValueError("method 'lp' has no layout or importance plan")
        return self._plan(p_arr, q_arr, k)

    def _plan(self, p_arr: np.ndarray, q_arr: np.ndarray, k: int) -> Layout | ImportancePlan:
        key = p_arr.tobytes() + q_arr.tobytes() + k.to_bytes(4, "little")
        if self._cache is None or self._cache[0] != key:
            if self.resolved_method(p_arr.size) == "layout":
                plan = greedy_layout(p_arr, q_arr, k)
            else:
                plan = importance_plan(p_arr[None], q_arr[None], k, tol=self.tol, max_iter=self.max_iter)
                if not plan.success:
                    plan = self._unconverged(plan, p_arr, q_arr, k)
            self._cache = (key, plan)
            self._memo = {}
        return self._cache[1]

    def _unconverged(self, plan: ImportancePlan, p_arr, q_arr, k: int) -> Layout | ImportancePlan:
        """A fit that missed its tolerance is never used silently: the output law is still exactly
        ``p`` (the rule uses its own marginal), but its acceptance may fall short of ``alpha*`` by up
        to ``plan.fit_error``. ``"auto"`` falls back to the exact layout where it is affordable
        (``V <= LAYOUT_FALLBACK_V``); otherwise the plan is kept with a ``RuntimeWarning``."""
        if self.method == "auto" and p_arr.size <= LAYOUT_FALLBACK_V:
            warnings.warn(f"OptimalVerifier: importance fit did not converge ({plan.message}); "
                          f"using the exact min-score layout instead", RuntimeWarning, stacklevel=4)
            return greedy_layout(p_arr, q_arr, k)
        warnings.warn(f"OptimalVerifier: importance fit did not converge ({plan.message}); the "
                      f"output law is exact but the acceptance may fall short of alpha* by up to "
                      f"{plan.value:.3g}", RuntimeWarning, stacklevel=4)
        return plan

    def marginal(self, p, q, k: int) -> np.ndarray:
        """The selection law ``r`` that the accept ratio and the residual use (the rule's own)."""
        return _marginal(self.plan(p, q, k))

    def resolved_method(self, vocab_size: int) -> str:
        """The method used for a vocabulary of ``vocab_size`` tokens (resolves ``"auto"``)."""
        if self.method != "auto":
            return self.method
        return "layout" if vocab_size <= LAYOUT_MAX_V else "importance"

    def _lp_selector(self):
        if self._lp is None:
            from .plan_selector import LPPlanSelector

            self._lp = LPPlanSelector()
        return self._lp

    # ------------------------------------------------------------------ Selector API
    def acceptance(self, p, q, k: int) -> float:
        """``sum_y min(r_y, p_y)`` for the rule's own ``r`` (``alpha*`` up to the method's error)."""
        if self.method == "lp":
            return self._lp_selector().acceptance(p, q, k)
        p_arr, q_arr, k = self._check(p, q, k)
        return float(np.minimum(_marginal(self._plan(p_arr, q_arr, k)), p_arr).sum())

    def selection_probabilities(self, p, q, drafts) -> np.ndarray:
        """``P(draft i is selected | drafts)``, exact, for ``"layout"`` and ``"importance"``."""
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        return self._selection(p_arr, q_arr, d)

    def _selection(self, p_arr: np.ndarray, q_arr: np.ndarray, d: np.ndarray) -> np.ndarray:
        if (q_arr[d] <= 0).any():
            raise ValueError("drafts hold a token with q = 0 (impossible under i.i.d. drafting from q)")
        plan = self._plan(p_arr, q_arr, d.size)
        if isinstance(plan, Layout):
            key = tuple(sorted(d.tolist()))  # the law depends on the multiset only
            if key not in self._memo:
                if len(self._memo) > 100_000:
                    self._memo.clear()
                srt = np.array(key, dtype=np.int64)
                self._memo[key] = dict(zip(key, selection_probabilities(plan, srt, q_arr).tolist()))
            per_copy = self._memo[key]
            return np.array([per_copy[y] for y in d.tolist()])
        lam = plan.weights[0, d]
        top = plan.top[0, d]
        w = lam * top if top.any() else lam  # lexicographic: drafts outside H preempt
        return w / w.sum()

    def conditional_law(self, p, q, drafts) -> np.ndarray:
        if self.method == "lp":
            return self._lp_selector().conditional_law(p, q, drafts)
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        sel = self._selection(p_arr, q_arr, d)
        r = _marginal(self._plan(p_arr, q_arr, d.size))
        with np.errstate(divide="ignore", invalid="ignore"):
            # r = 0 on a drafted token is a null event (float round-off): accept only if p allows it
            accept = np.where(r[d] > 0, np.minimum(1.0, p_arr[d] / np.where(r[d] > 0, r[d], 1.0)),
                              (p_arr[d] > 0).astype(np.float64))
        out = max(0.0, 1.0 - float(np.dot(sel, accept))) * residual(p_arr, r)
        np.add.at(out, d, sel * accept)
        return out

    def verify(self, p, q, drafts, rng: SeedLike = None) -> tuple[int, bool]:
        if self.method == "lp":
            return self._lp_selector().verify(p, q, drafts, rng)
        p_arr, q_arr, d = self._check_drafts(p, q, drafts)
        gen = as_generator(rng)
        plan = self._plan(p_arr, q_arr, d.size)
        if isinstance(plan, Layout):
            z = int(d[np.argmin(sample_scores(plan, d, q_arr, gen))])
        else:
            z = int(d[sample_categorical(self._selection(p_arr, q_arr, d), gen)])
        r = _marginal(plan)
        accept = min(1.0, p_arr[z] / r[z]) if r[z] > 0 else float(p_arr[z] > 0)
        token = z if gen.random() < accept else sample_categorical(residual(p_arr, r), gen)
        return token, bool(np.isin(token, d))

    def __repr__(self) -> str:
        return f"OptimalVerifier(method={self.method!r})"


def _marginal(plan: Layout | ImportancePlan) -> np.ndarray:
    return plan.marginal if isinstance(plan, Layout) else plan.marginal[0]
