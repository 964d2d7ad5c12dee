"""The exact membership LP: value == closed form == brute force, complete plans with exact
marginals, certificates, every backend, explicit tuple laws, and the LP-plan selector."""

import numpy as np
import pytest
from oracles import assert_law, brute_force_optimum, random_cases
from solver_laws import SET_LAWS, feasible

from ot_coupling import enumerate_drafts, get_selector
from solvers.closed_form import optimal_acceptance
from solvers.membership_lp import solve_membership_ot
from solvers.plan_selector import LPPlanSelector

LAWS = ("iid", "without_replacement", "greedy", "hub")
CASES = random_cases(42, 90, v_range=(2, 7)) + random_cases(8, 30, v_range=(3, 6), concentrations=(0.1,))


def _ks(law):
    return (2,) if law == "hub" else (1, 2, 3, 4)


def _check_plan(res, p):
    plan = res.plan
    assert np.abs(plan.output_law() - p).max() < 1e-12                 # Y-marginal is p
    K = plan.conditional_matrix()
    assert np.abs(K.sum(axis=1) - 1).max() < 1e-12 and (K >= 0).all()   # a kernel on each set
    assert np.abs(plan.set_probs @ K - p).max() < 1e-12
    members = np.zeros_like(K, dtype=bool)
    for s, row in enumerate(plan.sets):
        members[s, row[row >= 0]] = True
    acceptance = float((plan.set_probs[:, None] * K * members).sum())
    assert acceptance == pytest.approx(res.value, abs=1e-12)


@pytest.mark.parametrize("law", LAWS)
def test_lp_equals_closed_form_and_brute_force(law):
    n = 0
    for p, q in CASES:
        for k in _ks(law):
            if not feasible(law, q, k) or (law == "without_replacement" and p.size == 7 and k == 4):
                continue
            res = solve_membership_ot(p, q, k, draft_law=law, backend="highs")
            best, _ = brute_force_optimum(p, *SET_LAWS[law](q, k))
            assert res.value == pytest.approx(best, abs=1e-7), (law, k, p, q)
            assert res.value == pytest.approx(optimal_acceptance(p, q, k, law), abs=1e-7)
            assert res.certificate_value == pytest.approx(res.value, abs=1e-7)
            assert res.certificate_value >= best - 1e-12                 # a cut value is an upper bound
            _check_plan(res, p)
            n += 1
    assert n >= (100 if law == "hub" else 150)


def test_maxflow_backend_is_certified():
    for p, q in CASES[:60]:
        for k in (1, 2, 3):
            res = solve_membership_ot(p, q, k, backend="maxflow")
            opt = optimal_acceptance(p, q, k)
            assert res.value <= opt + 1e-12 <= res.certificate_value + 2e-12    # lower <= alpha* <= upper
            assert res.tolerance < (res.n_sets + p.size + 1) / (2**31 - 2)
            assert np.abs(res.plan.output_law() - p).max() < 1e-12


@pytest.mark.parametrize("solver", [None, "HIGHS"])
def test_cvxpy_backend(solver):
    for p, q in CASES[:8]:
        res = solve_membership_ot(p, q, 2, backend="cvxpy", cvxpy_solver=solver)
        assert res.value == pytest.approx(optimal_acceptance(p, q, 2), abs=1e-7)
        assert res.certificate_value == pytest.approx(res.value, abs=1e-7)
        _check_plan(res, p)


def test_highspy_api_matches_linprog():
    p, q = CASES[3]
    a = solve_membership_ot(p, q, 3, backend="highs", highs_api="linprog")
    b = solve_membership_ot(p, q, 3, backend="highs", highs_api="highspy")
    assert a.value == pytest.approx(b.value, abs=1e-9)
    assert "linprog" in a.backend and "highspy" in b.backend


def test_worked_example_A_plan():
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])
    res = solve_membership_ot(p, q, 2, backend="highs")
    assert round(res.value, 6) == 0.84 and res.cut.tolist() == [2, 3]
    res = solve_membership_ot(p, q, 2, draft_law="without_replacement")
    assert round(res.value, 6) == 0.921429
    law = res.plan.conditional_law([3, 1])
    assert np.array_equal(law, res.plan.conditional_law([1, 3]))      # depends on the set only


def test_explicit_law_of_two_different_draft_models():
    rng = np.random.default_rng(1)
    for _ in range(15):
        V = int(rng.integers(2, 6))
        p, q1, q2 = (rng.dirichlet(np.full(V, 0.7)) for _ in range(3))
        tuples = np.array([(a, b) for a in range(V) for b in range(V)])
        probs = q1[tuples[:, 0]] * q2[tuples[:, 1]]
        res = solve_membership_ot(p, draft_law=(tuples, probs))
        best, _ = brute_force_optimum(p, tuples, probs)
        assert res.value == pytest.approx(best, abs=1e-7)
        assert res.certificate_value == pytest.approx(best, abs=1e-7)
        assert res.draft_law == "explicit" and res.k == 2
        _check_plan(res, p)


def test_too_large_and_bad_input():
    p = np.full(40, 1 / 40)
    with pytest.raises(ValueError, match="too large"):
        solve_membership_ot(p, p, 4, max_sets=10_000)
    with pytest.raises(ValueError, match="backend"):
        solve_membership_ot(p, p, 2, backend="gurobi")
    with pytest.raises(ValueError, match="q and k"):
        solve_membership_ot(p, None, 2)
    with pytest.raises(ValueError, match="p"):
        solve_membership_ot([0.5, 0.6], [0.5, 0.5], 2)
    with pytest.raises(ValueError, match="same length"):
        solve_membership_ot([0.5, 0.5], [0.2, 0.3, 0.5], 2)
    with pytest.raises(ValueError, match="drafts"):
        solve_membership_ot([0.5, 0.5], draft_law=(np.array([[0, 2]]), np.array([1.0])))
    with pytest.raises(ValueError, match="drafts probs"):
        solve_membership_ot([0.5, 0.5], draft_law=(np.array([[0, 1]]), np.array([0.5])))
    res = solve_membership_ot([0.5, 0.5, 0.0], [0.5, 0.5, 0.0], 2)
    with pytest.raises(ValueError, match="probability 0"):
        res.plan.conditional_law([2, 2])


@pytest.mark.parametrize("law", ["iid", "without_replacement", "hub", "greedy"])
def test_plan_selector_is_exact_and_optimal(law):
    sel = get_selector("optimal_lp", draft_law=law)
    assert isinstance(sel, LPPlanSelector) and sel.draft_law == law
    for p, q in CASES[:25]:
        for k in _ks(law)[:3]:
            if not feasible(law, q, k):
                continue
            out, acc = sel.enumerate(p, q, k)
            assert np.abs(out - p).max() < 1e-9
            assert acc == pytest.approx(optimal_acceptance(p, q, k, law), abs=1e-7)
            assert sel.acceptance(p, q, k) == pytest.approx(acc, abs=1e-9)


def test_plan_selector_sampling():
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])
    sel = LPPlanSelector()
    rng = np.random.default_rng(2026)
    n = 20000
    tokens, accepted = np.empty(n, dtype=np.int64), np.empty(n, dtype=bool)
    for i in range(n):
        tokens[i], accepted[i], _ = sel.sample(p, q, 2, rng)
    assert_law(tokens, p, alpha=1e-6)
    # acceptance 0.84: 6-sigma band of the binomial proportion
    assert abs(accepted.mean() - 0.84) < 6 * np.sqrt(0.84 * 0.16 / n)
    # the conditional law given one draft set, sampled through verify
    drafts = np.array([2, 3])
    law = sel.conditional_law(p, q, drafts)
    given = np.array([sel.verify(p, q, drafts, rng)[0] for _ in range(4000)])
    assert_law(given, law, alpha=1e-6)


def test_enumerate_drafts_matches_set_builders():
    # the LP's fast set-law builders agree with ot_coupling's tuple enumeration on benign inputs
    from ot_coupling import set_law
    from solvers.membership_lp import draft_set_law

    rng = np.random.default_rng(9)
    for law in LAWS:
        for _ in range(10):
            V = int(rng.integers(3, 6))
            p, q = rng.dirichlet(np.ones(V)), rng.dirichlet(np.ones(V))
            k = 2 if law == "hub" else int(rng.integers(1, 4))
            sets, probs, _ = draft_set_law(p, q, k, law)
            mine = {frozenset(r[r >= 0].tolist()): w for r, w in zip(sets, probs)}
            ref = set_law(*enumerate_drafts(q, k, law))
            assert mine.keys() == ref.keys()
            assert max(abs(mine[s] - ref[s]) for s in ref) < 1e-12
