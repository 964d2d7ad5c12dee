"""The exact i.i.d. plan read off the min-score layout (solvers.iid_plan) against the LP and the closed form."""

import numpy as np
import pytest

from solvers.closed_form import optimal_acceptance
from solvers.iid_plan import count_iid_multisets, iid_layout_plan
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


def _check_exact(res, p, q, k):
    assert abs(res.value - optimal_acceptance(p, q, k)) <= 1e-12
    assert abs(res.certificate_value - res.value) <= 1e-12
    plan = res.plan
    assert np.abs(plan.output_law() - p).max() <= 1e-12
    rows = np.bincount(plan.edge_set, plan.edge_flow, minlength=plan.n_sets) + plan.set_leftover
    assert np.abs(rows - plan.set_probs).max() <= 1e-12


@pytest.mark.parametrize("seed", range(12))
def test_gather_path_matches_owner_tensor_path(seed, monkeypatch):
    """The per-set gathers (large problems) and the owner tensors (small ones) give the same plan."""
    import solvers.iid_plan as iid_plan

    rng = np.random.default_rng(100 + seed)
    V, k = int(rng.integers(3, 10)), int(rng.integers(2, 6))
    p, q = _pair(rng, V, zeros=seed % 3 == 0)
    tensor = iid_layout_plan(p, q, k)
    monkeypatch.setattr(iid_plan, "_TENSOR_ELEMENTS", 0)
    monkeypatch.setattr(iid_plan, "_BLOCK_ELEMENTS", 300)          # many chunks
    gathered = iid_layout_plan(p, q, k)
    _check_exact(gathered, p, q, k)
    assert np.array_equal(tensor.plan.edge_set, gathered.plan.edge_set)
    assert np.abs(tensor.plan.edge_flow - gathered.plan.edge_flow).max(initial=0.0) <= 1e-14


def test_huge_k_uses_log_coefficients():
    """k = 1100: multinomial coefficients overflow float64 (C(1100, 550) ~ 1e329); logs are used."""
    from solvers.iid_plan import _composition_table

    assert _composition_table(1100, 2)[2]
    p, q = np.array([0.6, 0.4]), np.array([0.3, 0.7])
    _check_exact(iid_layout_plan(p, q, 1100), p, q, 1100)


@pytest.mark.parametrize("seed", range(8))
def test_layout_walk_and_prefix_search_agree(seed, monkeypatch):
    """A slid chunk found by walking breakpoints equals the one found by the prefix-sum search."""
    import solvers.min_score_layout as msl

    rng = np.random.default_rng(200 + seed)
    V, k = int(rng.integers(5, 40)), int(rng.integers(1, 7))
    p, q = _pair(rng, V, zeros=seed % 2 == 0)
    walked = msl.greedy_layout(p, q, k)
    monkeypatch.setattr(msl, "_MAX_STEPS", 0)                      # always the prefix-sum search
    searched = msl.greedy_layout(p, q, k)
    alpha = optimal_acceptance(p, q, k)
    for lay in (walked, searched):
        assert abs(np.minimum(lay.marginal, p).sum() - alpha) <= 1e-12
        sizes = np.bincount(np.repeat(np.arange(V), np.diff(lay.ptr)), lay.ends - lay.starts, minlength=V)
        assert np.abs(sizes - q).max() <= 1e-15                      # |S_y| = q_y
        order = np.argsort(lay.starts)
        assert (lay.starts[order][1:] >= lay.ends[order][:-1]).all()  # disjoint
    assert np.abs(walked.marginal - searched.marginal).max() <= 1e-12


def test_solve_slide_root_is_accurate():
    """u^k - (u - d)^k = c to a few ulps, also when a Newton step lands on the exact root."""
    from solvers.min_score_layout import _solve_slide

    rng = np.random.default_rng(7)
    for _ in range(300):
        k = int(rng.integers(2, 12))
        d = float(rng.uniform(1e-6, 0.5))
        u_true = float(rng.uniform(d, 1.0))
        c = u_true ** k - (u_true - d) ** k
        u = _solve_slide(d, c, d, 1.0, k)
        assert abs((u ** k - (u - d) ** k) - c) <= 64 * np.finfo(float).eps * max(c, u ** k)
    # the case that made the old loop bisect ~50 times after hitting f == 0
    args = (0.037316510277252135, 0.02262252657406177, 0.037316510277252246, 0.968089640624877, 3)
    u = _solve_slide(*args)
    assert abs(u - 0.46805992488544157) <= 1e-15
