"""The exact i.i.d. plan read off the min-score layout (solvers.iid_plan) against the LP and the closed form."""

import numpy as np
import pytest

from solvers.closed_form import optimal_acceptance
from solvers.iid_plan import _combinations_array, count_iid_multisets, iid_layout_plan
from solvers.membership_lp import solve_membership_ot


def _pair(rng, V, zeros):
    p, q = rng.dirichlet(np.full(V, 0.4)), rng.dirichlet(np.full(V, 0.4))
    if zeros:
        p[rng.integers(V)] = 0.0
        q[rng.integers(V)] = 0.0
    return p / p.sum(), q / q.sum()


@pytest.mark.parametrize("seed", range(40))
def test_layout_plan_is_an_optimal_complete_plan(seed):
    rng = np.random.default_rng(seed)
    V, k = int(rng.integers(2, 8)), int(rng.integers(1, 5))
    p, q = _pair(rng, V, zeros=seed % 2 == 1)
    res = iid_layout_plan(p, q, k)
    alpha = optimal_acceptance(p, q, k)
    assert abs(res.value - alpha) <= 1e-12
    assert abs(res.certificate_value - res.value) <= 1e-12              # certificate closes the gap
    plan = res.plan
    assert np.abs(plan.output_law() - p).max() <= 1e-12                # target marginal
    rows = np.bincount(plan.edge_set, plan.edge_flow, minlength=plan.n_sets) + plan.set_leftover
    assert np.abs(rows - plan.set_probs).max() <= 1e-12                # draft-set marginal
    lp = solve_membership_ot(p, q, k, backend="highs")
    assert abs(lp.value - res.value) <= 1e-9
    assert plan.n_sets == lp.plan.n_sets
    assert np.abs(plan.set_probs - lp.plan.set_probs).max() <= 1e-12   # same set law, other route
    for s in range(plan.n_sets):
        law = plan.conditional_law_by_index(s)
        assert abs(law.sum() - 1.0) <= 1e-12 and law.min() >= 0.0


@pytest.mark.parametrize("k", [23, 24, 30, 64])
def test_large_k_has_no_count_overflow(k):
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    res = iid_layout_plan(p, q, k)
    assert abs(res.value - optimal_acceptance(p, q, k)) <= 1e-12
    assert abs(res.plan.set_probs.sum() - 1.0) <= 1e-12
    assert np.abs(res.plan.output_law() - p).max() <= 1e-12


def test_extreme_masses_one_hot_and_tiny():
    p = np.array([1.0, 0.0, 0.0])
    q = np.array([1 - 1e-3, 5e-4, 5e-4])
    res = iid_layout_plan(p, q, 8)
    assert abs(res.value - optimal_acceptance(p, q, 8)) <= 1e-12
    p = np.array([1e-300, 0.5, 0.3, 0.2])
    q = np.array([0.3, 1e-300, 0.3, 0.4])
    res = iid_layout_plan(p / p.sum(), q / q.sum(), 2)
    assert abs(res.value - optimal_acceptance(p / p.sum(), q / q.sum(), 2)) <= 1e-12


def test_refuses_before_work_and_counts_exactly():
    q = np.full(64, 1 / 64)
    assert count_iid_multisets(q, 4) == 766_480                    # C(64 + 3, 4)
    with pytest.raises(ValueError, match="max_multisets"):
        iid_layout_plan(q, q, 4, max_multisets=1000)
    with pytest.raises(ValueError, match="same length"):
        iid_layout_plan([0.5, 0.5], [1.0], 1)


def test_combinations_array_matches_itertools():
    from itertools import combinations
    items = np.array([2, 3, 5, 7, 11, 13])
    for m in range(1, 7):
        assert _combinations_array(items, m).tolist() == [list(c) for c in combinations(items.tolist(), m)]
