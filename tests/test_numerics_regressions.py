"""Regression tests for issue 11's numeric failures (items 1, 3, 4, 5); see docs/numerics.md.

Each test failed on main before the fix it guards.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ot_coupling.gumbel import _joint, joint_set_law
from ot_coupling.registry import get_selector
from solvers import optimal_acceptance, solve_membership_ot
from solvers.membership_lp import _iid_sets


def _norm(x):
    x = np.asarray(x, dtype=np.float64)
    return x / x.sum()


# item 3/4: a drafted token with 0 < q below float resolution (relative to 1)
P_TINY = _norm([0.5, 0.5 - 1e-17, 1e-17, 0.0])
Q_TINY = _norm([0.2, 0.3, 0.5 - 1e-17, 1e-17])


# ----------------------------------------------------------------------------- item 1
@pytest.mark.parametrize("k", [23, 24, 30, 64])
def test_iid_lp_agrees_with_closed_form_at_large_k(k):
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    res = solve_membership_ot(p, q, k, backend="highs")
    alpha = optimal_acceptance(p, q, k)
    assert res.value == pytest.approx(alpha, abs=1e-9)
    assert res.certificate_value == pytest.approx(alpha, abs=1e-9)
    assert res.success and res.status == 0


def test_iid_set_law_is_a_probability_law_at_large_k():
    q = np.array([0.2, 0.3, 0.5])
    for k in (21, 22, 23, 40, 100):
        sets, probs = _iid_sets(q, k)
        assert (probs >= 0).all() and (probs <= 1).all()
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        # Q({i}) = q_i^k exactly
        singles = (sets[:, 1:] == -1).all(axis=1)
        assert np.allclose(probs[singles], q[sets[singles, 0]] ** k, rtol=1e-13, atol=0)
    # Q({0, 1}) = (q0 + q1)^k - q0^k - q1^k (exact rational check at k = 23)
    sets, probs = _iid_sets(q, 23)
    row = int(np.flatnonzero((sets[:, 0] == 0) & (sets[:, 1] == 1) & (sets[:, 2] == -1))[0])
    a, b = Fraction(0.2), Fraction(0.3)
    assert probs[row] == pytest.approx(float((a + b) ** 23 - a ** 23 - b ** 23), rel=1e-13)


@pytest.mark.parametrize("k", [24, 28])
def test_optimal_lp_output_law_at_large_k(k):
    p, q = [0.3, 0.7], [0.9, 0.1]
    sel = get_selector("optimal_lp")
    law, acc = sel.enumerate(p, q, k)
    assert np.allclose(law, p, atol=1e-12)
    assert acc == pytest.approx(optimal_acceptance(p, q, k), abs=1e-9)
    # sampling: P(Y = 1) = 0.7; 4000 draws, 5.3 sigma band (false alarm ~1e-7)
    rng = np.random.default_rng(k)
    ys = np.array([sel.sample(p, q, k, rng)[0] for _ in range(4000)])
    assert abs(ys.mean() - 0.7) < 5.3 * np.sqrt(0.21 / 4000)


# ----------------------------------------------------------------------------- item 3
def test_optimal_layout_verify_with_draft_below_float_resolution():
    sel = get_selector("optimal")
    for seed in range(20):
        token, accepted = sel.verify(P_TINY, Q_TINY, [0, 3], rng=seed)
        assert token in (0, 1, 2) and P_TINY[token] > 0
    law, acc = sel.enumerate(P_TINY, Q_TINY, 2)
    assert np.allclose(law, P_TINY, atol=1e-15)
    assert acc == pytest.approx(optimal_acceptance(P_TINY, Q_TINY, 2), abs=1e-12)


# ----------------------------------------------------------------------------- item 4
def test_gumbel_tiny_draft_sets_no_nan_no_negative():
    sel = get_selector("gumbel")
    law, acc = sel.enumerate(P_TINY, Q_TINY, 3)
    assert np.isfinite(law).all() and (law >= 0).all()
    assert np.allclose(law, P_TINY, atol=1e-15)
    assert acc == pytest.approx(sel.acceptance(P_TINY, Q_TINY, 3), abs=1e-12)
    cond = sel.conditional_law(P_TINY, Q_TINY, [1, 2, 3])
    assert np.isfinite(cond).all() and (cond >= 0).all() and cond.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("S", [(1, 2, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2)])
def test_gumbel_joint_law_matches_exact_rational(S):
    joint = joint_set_law(P_TINY, Q_TINY, S)
    exact = _joint(P_TINY, Q_TINY, S, exact=True)
    for f, e in zip(joint, exact):
        assert f >= 0
        if e == 0:
            assert f == 0
        else:
            assert abs(Fraction(f) - e) <= Fraction(1, 10**12) * e


# ----------------------------------------------------------------------------- item 5
def test_optimal_lp_enumerate_with_underflowed_sets():
    p = _norm([1e-300, 0.5, 0.3, 0.2])
    q = _norm([0.3, 1e-300, 0.3, 0.4])
    sel = get_selector("optimal_lp")
    law, acc = sel.enumerate(p, q, 2)
    assert np.allclose(law, p, atol=1e-15)
    assert acc == pytest.approx(optimal_acceptance(p, q, 2), abs=1e-12)
    # the tuple (1, 1) has probability 1e-600 = 0 in float64 but is a possible draw
    cond = sel.conditional_law(p, q, [1, 1])
    assert np.isfinite(cond).all() and cond.sum() == pytest.approx(1.0)
    # the base-class tuple enumeration visits (1, 1) too and must not raise
    from ot_coupling.base import Selector

    law2, acc2 = Selector.enumerate(sel, p, q, 2)
    assert np.allclose(law2, p, atol=1e-15) and acc2 == pytest.approx(acc, abs=1e-12)


def test_lp_refuses_huge_k_before_building():
    with pytest.raises(ValueError, match="too large"):
        solve_membership_ot([0.5, 0.5], [0.5, 0.5], 1_000_000)


# ----------------------------------------------------------------------------- refusals up front
def test_gumbel_exact_acceptance_refuses_huge_vocabulary_before_work():
    import time

    V = 10**6
    p = np.full(V, 1.0 / V)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="MAX_PAIRS"):
        get_selector("gumbel").acceptance(p, p, 2)
    assert time.perf_counter() - start < 30


def test_complex_input_is_refused_not_truncated():
    p = np.array([0.5 + 0.1j, 0.5])
    with pytest.raises(ValueError, match="real"):
        optimal_acceptance(p, [0.5, 0.5], 2)


def test_reduced_precision_inputs_are_accepted():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(500)).astype(np.float32)
    q = rng.dirichlet(np.ones(500)).astype(np.float16)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    assert optimal_acceptance(p, q, 3) == optimal_acceptance(p64 / p64.sum(), q64 / q64.sum(), 3)


def test_lp_time_limit_is_success_false_with_warning_not_an_exception():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(30)), rng.dirichlet(np.ones(30))
    with pytest.warns(RuntimeWarning, match="status 1"):
        res = solve_membership_ot(p, q, 3, backend="highs", time_limit=1e-6)
    assert not res.success and res.status == 1 and "limit" in res.message.lower()
    alpha = optimal_acceptance(p, q, 3)
    # the returned plan is still a valid coupling: its value and certificate bracket alpha*
    assert res.value <= alpha + 1e-12 <= res.certificate_value + 2e-12
    np.testing.assert_allclose(res.plan.output_law(), p, atol=1e-12)


def test_optimal_never_outputs_zero_target_token():
    # found by tests/test_fuzz.py: a drafted token whose min-score set is empty in floating point
    # (r = 0) was accepted with ratio 1 although p = 0
    from ot_coupling.registry import get_selector
    p = np.array([0.5, 0.5 - 1e-17, 1e-17, 0.0])
    q = np.array([0.2, 0.3, 0.5 - 1e-17, 1e-17])
    p, q = p / p.sum(), q / q.sum()
    sel = get_selector("optimal")
    law = sel.conditional_law(p, q, [3, 3])       # drafts (3, 3): probability 1e-34 > 0
    assert law[3] == 0.0                           # p_3 = 0: token 3 must never be output
    token, _ = sel.verify(p, q, [3, 3], rng=0)
    assert p[token] > 0


def test_torch_spechub_hub_mass_rounding_to_one_is_not_nan():
    # found by tests/test_fuzz.py: q(a) rounds to 1 with a 1e-16 second token: 1 - q(a) = 0 gave NaN
    torch = pytest.importorskip("torch")
    from gpu_backend.registry import get_selector as get_torch_selector

    p = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0, 1e-16]], dtype=torch.float64)
    acc = get_torch_selector("spechub").acceptance(p, q / q.sum(), 2)
    ref = get_selector("spechub").acceptance(p[0].numpy(), (q / q.sum())[0].numpy(), 2)
    assert torch.isfinite(acc).all() and abs(float(acc[0]) - ref) <= 1e-12


def test_enumerate_refuses_huge_tuple_counts_before_work():
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="draft tuples"):
        get_selector("kseq").enumerate([0.5, 0.5], [0.5, 0.5], 64)       # 2^64 i.i.d. tuples
    with pytest.raises(ValueError, match="draft tuples"):
        get_selector("rrs_wor").enumerate(np.full(40, 1 / 40), np.full(40, 1 / 40), 5)   # 40!/35! tuples
    assert time.perf_counter() - start < 5


def test_draft_ratio_beyond_the_float_range():
    """A token with q = 4.9e-322 and p = 0.52 has p/q = inf (overflow). The selection scan's cap
    search multiplied that ratio by the empty q-mass after it (inf * 0 = NaN), found no cap and
    returned theta_A = inf, so r* put p = 0.52 on a token drafted with probability 1e-321 and the
    importance fit returned NaN weights and a NaN acceptance (status 2). Found by a stress run."""
    import warnings

    torch = pytest.importorskip("torch")
    from gpu_backend.optimal import TorchOptimal
    from ot_coupling.kernels.selection import selection_scan
    from solvers.importance_weights import importance_plan

    p = np.array([1.480045390869322e-310, 1.480045390869322e-310, 0.4768090373856822,
                  0.5231909626143177, 1.480045390869322e-310])
    q = np.array([0.031334969835247264, 0.010130205418123019, 0.35898973095896858,
                  4.9406564584124654e-322, 0.59954509378766119])
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no overflow / invalid warnings either
        for k in (2, 8, 64):
            scan = selection_scan(p[None], q[None], k)
            assert np.isfinite(scan.theta_a).all() and scan.r[0, -1] <= k * q[3] * (1 + 1e-12)
            want = optimal_acceptance(p, q, k)
            plan = importance_plan(p[None], q[None], k)
            assert plan.status == 0 and abs(np.minimum(plan.marginal[0], p).sum() - want) <= 1e-15
            acc = TorchOptimal().acceptance(torch.tensor(p), torch.tensor(q), k)
            assert abs(float(acc) - want) <= 1e-15
