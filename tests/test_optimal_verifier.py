"""The exact optimal k-draft verifier (numpy): selection law, min-score layout, importance rule.

Exact tier: output laws by enumerating every draft tuple (Selector.enumerate) with the selection
probabilities integrated exactly; acceptance against the closed-form min-cut optimum
(solvers.closed_form, itself tested against brute force). Statistical tier: chi-square at a 1e-6
false-alarm rate. docs/theory/optimal_verifier.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracles import assert_law, random_cases

from solvers.closed_form import optimal_acceptance
from solvers.importance_weights import importance_plan
from solvers.min_score_layout import Layout, greedy_layout
from solvers.optimal_verifier import OptimalVerifier
from solvers.selection_law import (
    is_feasible_selection_law,
    optimal_selection_law,
    selection_law,
    selection_law_violation,
)

# docs/theory/membership_ot.md#worked-examples, example A (OPT-wr = 0.84 at k = 2, 0.984 at k = 3)
PA = np.array([0.5, 0.3, 0.15, 0.05])
QA = np.array([0.2, 0.2, 0.3, 0.3])


def _exact_cases(seed: int, n: int, max_tuples: int = 600):
    """(p, q, k) with V <= 8, k <= 4 (k lowered while V^k > max_tuples to bound the enumeration)."""
    out = []
    for i, (p, q) in enumerate(random_cases(seed, n, v_range=(2, 8))):
        k = 1 + i % 4
        while k > 1 and p.size**k > max_tuples:
            k -= 1
        out.append((p, q, k))
    return out


# ---------------------------------------------------------------------------- selection law
def test_selection_law_is_optimal_and_feasible():
    for p, q in random_cases(11, 300, v_range=(2, 12)):
        for k in (1, 2, 3, 5, 16):
            r = optimal_selection_law(p, q, k)
            opt = optimal_acceptance(p, q, k)
            assert np.minimum(r, p).sum() == pytest.approx(opt, abs=1e-12)
            assert selection_law_violation(r, q, k) <= 1e-12
            # p itself is a feasible selection law iff the optimum is 1
            assert is_feasible_selection_law(p, q, k, atol=1e-9) == (opt > 1 - 1e-9)


def test_selection_law_structure_and_fixture():
    law = selection_law(PA, QA, 2)
    assert law.alpha == pytest.approx(0.84, abs=1e-12)                 # docs/theory/membership_ot.md#worked-examples
    assert sorted(np.flatnonzero(law.in_cut)) == [2, 3]                 # argmin H = {2, 3}
    ratio = PA / QA
    assert np.allclose(law.r, QA * np.clip(ratio, law.theta_b, law.theta_a), atol=1e-15)
    assert law.r[law.in_cut].sum() == pytest.approx(QA[law.in_cut].sum() ** 2, abs=1e-15)
    assert law.r[~law.in_cut].sum() == pytest.approx(1 - QA[law.in_cut].sum() ** 2, abs=1e-15)


def test_selection_law_rows_match_single_rows():
    rng = np.random.default_rng(5)
    P, Q = rng.dirichlet(np.full(50, 0.3), size=6), rng.dirichlet(np.full(50, 0.3), size=6)
    R = optimal_selection_law(P, Q, 4)
    for b in range(6):
        assert np.array_equal(R[b], optimal_selection_law(P[b], Q[b], 4))


def test_feasibility_checker_detects_violations():
    r = optimal_selection_law(PA, QA, 2)
    assert is_feasible_selection_law(r, QA, 2)
    bad = r.copy()
    bad[0] += 0.05
    bad[3] -= 0.05                                    # more on token 0 than g(q_0) = 0.36 allows
    assert selection_law_violation(bad, QA, 2) > 0.01
    assert selection_law_violation(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5]), 2) == np.inf


@pytest.mark.parametrize("bad, match", [
    ({"p": [0.5, np.nan], "q": [0.5, 0.5], "k": 2}, "p"),
    ({"p": [0.5, 0.5], "q": [0.5, 0.6], "k": 2}, "q"),
    ({"p": [0.5, 0.5], "q": [0.5, 0.5], "k": 0}, "k"),
    ({"p": [0.5, 0.5], "q": [1.0], "k": 2}, "shape"),
])
def test_selection_law_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        optimal_selection_law(**bad)


# ---------------------------------------------------------------------------- layout (exact tier)
def test_layout_output_law_and_acceptance_exact():
    sel = OptimalVerifier("layout")
    for p, q, k in _exact_cases(21, 200, max_tuples=400):
        out, acc = sel.enumerate(p, q, k)
        assert np.abs(out - p).max() <= 1e-12
        opt = optimal_acceptance(p, q, k)
        assert acc == pytest.approx(opt, abs=1e-12)                  # membership acceptance
        assert sel.acceptance(p, q, k) == pytest.approx(opt, abs=1e-12)


def test_layout_partitions_unit_interval_and_selection_is_exact():
    """|S_y| = q_y, the sets tile [0, 1], and the exactly integrated selection probabilities
    aggregate to the layout's marginal r_y = int_{S_y} w (the min-score rule's law)."""
    sel = OptimalVerifier("layout")
    for p, q, k in _exact_cases(22, 40, max_tuples=300):
        lay = greedy_layout(p, q, k)
        lengths = np.bincount(np.repeat(np.arange(p.size), np.diff(lay.ptr)), lay.ends - lay.starts,
                              minlength=p.size)
        assert np.allclose(lengths, q, atol=1e-15)
        order = np.argsort(lay.starts)
        assert np.allclose(lay.starts[order][1:], lay.ends[order][:-1], atol=1e-15)
        tuples, probs = sel.draft_tuples(q, k)
        law = np.zeros(p.size)
        for t, w in zip(tuples, probs):
            np.add.at(law, t, w * sel.selection_probabilities(p, q, t))
        assert np.abs(law - lay.marginal).max() <= 1e-13


def test_layout_fixture_example_a():
    for k, opt in ((2, 0.84), (3, 0.984)):                          # docs/theory/membership_ot.md#worked-examples
        assert OptimalVerifier("layout").acceptance(PA, QA, k) == pytest.approx(opt, abs=1e-12)


# ---------------------------------------------------------------------------- importance (exact tier)
def test_importance_output_law_within_quadrature_bound():
    sel = OptimalVerifier("importance")
    for p, q, k in _exact_cases(23, 120, max_tuples=300):
        out, acc = sel.enumerate(p, q, k)
        plan = sel.plan(p, q, k)
        assert plan.quad_error[0] <= 1e-12                           # the stated bound is tiny
        # the output law misses p by at most 2 ||r_computed - r(lam)||_1 (accept ratio + residual)
        assert np.abs(out - p).sum() <= 2 * plan.quad_error[0] + 1e-12
        opt = optimal_acceptance(p, q, k)
        assert plan.fit_error[0] <= 1e-9
        assert sel.acceptance(p, q, k) == pytest.approx(opt, abs=1e-9)
        assert acc == pytest.approx(opt, abs=1e-9)


def _phi_on_rule(lam, mass, floor, k, rule):
    """``phi = k lam int e^{-lam t} M(t)^{k-1} dt`` of one level (max weight 1) on ``rule``'s nodes."""
    from solvers.importance_weights import n_panels, quadrature_nodes

    l_min, l_max = np.array([lam.min()]), np.ones(1)
    panels = n_panels(l_min, l_max, k, rule)
    t, w = quadrature_nodes(l_min, l_max, k, panels, rule)
    E = np.exp(-lam[:, None] * t[0][None, :])
    M = mass @ E + floor
    return k * lam * (E @ (w[0] * M ** (k - 1))), panels


def test_quadrature_bound_holds_against_a_much_finer_rule():
    """At the fitted weights of V = 3000 levels, the marginal ratio ``phi`` of the fine rule (the one
    the verifier uses) against a rule with 4x the nodes per unit of log t: the difference stays
    within the stated per-group bound (Trefethen, ATAP Thm 19.3, module docstring)."""
    from solvers.importance_weights import FINE_RULE, TAIL, QuadRule, quadrature_bound

    ref_rule = QuadRule(40, 40, 1.0)
    rng = np.random.default_rng(31)
    for conc, k in ((1.0, 8), (0.05, 8), (1.0, 2), (0.3, 16)):
        p, q = rng.dirichlet(np.full(3000, conc)), rng.dirichlet(np.full(3000, conc))
        plan = importance_plan(p[None], q[None], k)
        law = selection_law(p, q, k)
        for top in (True, False):
            ids = np.flatnonzero((plan.top[0] if top else law.in_cut) & (q > 0))
            if ids.size == 0:
                continue
            lam, mass = plan.weights[0, ids], q[ids]
            lam = lam / lam.max()
            floor = np.array([q[law.in_cut].sum() if top else 0.0])
            fine, panels = _phi_on_rule(lam, mass, floor[0], k, FINE_RULE)
            ref, _ = _phi_on_rule(lam, mass, floor[0], k, ref_rule)
            width = np.log(TAIL * k / lam.min()) / panels
            bound = quadrature_bound(k, mass.sum() + floor, width, panels)[0]
            assert bound <= 1e-13
            assert np.abs(fine - ref).max() <= bound + 1e-13 * np.abs(ref).max()   # + round-off


def test_newton_step_solves_the_laplacian_system():
    """Both solvers of the Newton system (Woodbury when G > N, the G x G normalised Laplacian when
    G <= N) return a solution of (D - A W A^T) x = -grad up to a constant (the gauge), checked
    against a dense least-squares solve."""
    from solvers.importance_weights import FINE_RULE, evaluate, newton_step, quadrature_nodes

    rng = np.random.default_rng(32)
    k = 4
    t, w = quadrature_nodes(np.array([1e-3]), np.ones(1), k, 3, FINE_RULE)   # N = 74 nodes
    for G in (20, 150):                                            # direct, Woodbury
        mass = rng.dirichlet(np.ones(G))[None]
        lam = np.exp(rng.uniform(-6, 0, size=(1, G)))
        grad = rng.normal(size=(1, G)) * 1e-3
        grad -= grad.mean()                     # sum(grad) = 0 in exact arithmetic (level total)
        E, M, _ = evaluate(lam, mass, np.zeros(1), k, t, w)
        x = newton_step(lam, mass, grad, E, M, k, t, w)[0]
        At = (mass * lam)[0][:, None] * E[0] * np.sqrt(w * t * k * (k - 1) * M ** (k - 2))[0][None, :]
        H = np.diag(At @ At.sum(0)) - At @ At.T
        ref = np.linalg.lstsq(H, -grad[0], rcond=None)[0]
        diff = (x - ref) - (x - ref).mean()
        assert np.abs(diff).max() <= 1e-6 * np.abs(ref - ref.mean()).max()


def test_importance_selection_is_lexicographic():
    sel = OptimalVerifier("importance")
    plan = sel.plan(PA, QA, 2)
    top = np.flatnonzero(plan.top[0])
    low = np.flatnonzero(~plan.top[0])
    probs = sel.selection_probabilities(PA, QA, [low[0], top[0]])
    assert probs.tolist() == [0.0, 1.0]                              # a draft outside H preempts
    lam = plan.weights[0]
    probs = sel.selection_probabilities(PA, QA, [low[0], low[1]])
    assert probs == pytest.approx(lam[low[:2]] / lam[low[:2]].sum(), rel=1e-15)


def test_lp_plan_agrees():
    pytest.importorskip("solvers.plan_selector", reason="LPPlanSelector not available")
    lp = OptimalVerifier("lp")
    for p, q, k in _exact_cases(24, 12, max_tuples=100):
        a_lp = lp.acceptance(p, q, k)
        assert OptimalVerifier("layout").acceptance(p, q, k) == pytest.approx(a_lp, abs=1e-7)
        assert OptimalVerifier("importance").acceptance(p, q, k) == pytest.approx(a_lp, abs=1e-7)


# ---------------------------------------------------------------------------- statistical tier
@pytest.mark.parametrize("method", ["layout", "importance"])
def test_sampling_matches_target_and_acceptance(method):
    p = np.array([0.3, 0.0, 0.25, 0.05, 0.15, 0.25])
    q = np.array([0.1, 0.3, 0.2, 0.2, 0.0, 0.2])                     # zeros in p and q
    k, n = 3, 6000
    sel = OptimalVerifier(method)
    rng = np.random.default_rng(7)
    tokens = np.empty(n, dtype=np.int64)
    accepted = np.empty(n, dtype=bool)
    for i in range(n):
        tokens[i], accepted[i], _ = sel.sample(p, q, k, rng)
    assert_law(tokens, p)
    alpha = optimal_acceptance(p, q, k)
    assert abs(accepted.mean() - alpha) <= 6 * np.sqrt(alpha * (1 - alpha) / n)
    assert not np.any(tokens == 1)                                    # p = 0 is never output


def test_verify_never_accepts_zero_target_and_rejects_bad_input():
    p = np.array([0.0, 0.5, 0.5])
    q = np.array([0.8, 0.1, 0.1])
    for method in ("layout", "importance"):
        sel = OptimalVerifier(method)
        law = sel.conditional_law(p, q, [0, 0])
        assert law[0] == 0.0 and law.sum() == pytest.approx(1.0, abs=1e-15)
        with pytest.raises(ValueError, match="drafts"):
            sel.verify(p, q, [0, 3], 0)
        with pytest.raises(ValueError, match="p"):
            sel.acceptance([0.5, np.nan, 0.5], q, 2)
        with pytest.raises(ValueError, match="k"):
            sel.acceptance(p, q, 0)
    with pytest.raises(ValueError, match="method"):
        OptimalVerifier("simplex")


def test_registry_name():
    from ot_coupling import get_selector

    sel = get_selector("optimal")
    assert isinstance(sel, OptimalVerifier) and sel.method == "auto" and sel.draft_law == "iid"
    assert sel.resolved_method(8) == "layout" and sel.resolved_method(49152) == "importance"
    assert isinstance(sel.plan(PA, QA, 2), Layout)
    assert get_selector("optimal", method="importance").acceptance(PA, QA, 2) == pytest.approx(0.84, abs=1e-9)


# ---------------------------------------------------------------------------- at scale
def _pair(V: int, seed: int, conc: float = 1.0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(V, conc)), rng.dirichlet(np.full(V, conc))


@pytest.mark.parametrize("k", [2, 16])
def test_importance_at_full_vocabulary(k):
    p, q = _pair(49152, k, 0.5)
    plan = importance_plan(p[None], q[None], k)
    assert np.minimum(plan.marginal[0], p).sum() == pytest.approx(optimal_acceptance(p, q, k), abs=1e-9)
    assert plan.fit_error[0] <= 1e-9 and plan.quad_error[0] <= 1e-12


def test_layout_at_scale_fast():
    p, q = _pair(1500, 1, 0.5)
    for k in (2, 8):
        lay = greedy_layout(p, q, k)
        assert np.minimum(lay.marginal, p).sum() == pytest.approx(optimal_acceptance(p, q, k), abs=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_full_vocabulary(k):
    p, q = _pair(49152, 100 + k)
    plan = importance_plan(p[None], q[None], k)
    opt = optimal_acceptance(p, q, k)
    assert np.minimum(plan.marginal[0], p).sum() == pytest.approx(opt, abs=1e-6)
    if k == 8:
        lay = greedy_layout(p, q, k)
        assert np.minimum(lay.marginal, p).sum() == pytest.approx(opt, abs=1e-9)
