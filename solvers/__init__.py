"""solvers: exact optima of multi-draft verification (membership-cost optimal transport).

Closed forms (min-cut over prefixes sorted by p/q), the membership LP (HiGHS, cvxpy, max-flow)
with certificates, the optimal selection law and verifier, and the quality/rejection Pareto front.
Attributes are imported lazily so that ``import solvers`` stays cheap.
"""

from ot_coupling.lazy import lazy_exports

_EXPORTS = {
    "optimal_acceptance": "closed_form",
    "optimal_cut": "closed_form",
    "CutResult": "closed_form",
    "solve_membership_ot": "membership_lp",
    "MembershipOT": "membership_lp",
    "MembershipPlan": "membership_lp",
    "optimal_selection_law": "selection_law",
    "selection_law_violation": "selection_law",
    "is_feasible_selection_law": "selection_law",
    "OptimalVerifier": "optimal_verifier",
    "LPPlanSelector": "plan_selector",
    "sequence_optimum": "sequence_lp",
    "SequenceOptimum": "sequence_lp",
    "pareto_front": "pareto",
    "ParetoFront": "pareto",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
