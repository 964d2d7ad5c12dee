"""Exact theory of markov/: Yin et al. Theorems 1-5 and batch decoding (docs/theory/markov.md,
oracles 6.3-6.8), the branch laws behind the block-efficiency DP, and Leviathan's speedup formulas."""

import numpy as np
import pytest

from markov import (
    batch_expected_rejections,
    batch_improvement,
    batch_rejection_probability,
    bernoulli_batch_improvement,
    bernoulli_pair,
    expected_block_efficiency,
    expected_calls_unlimited,
    expected_rejections,
    expected_tokens_per_step,
    ngram_pair,
    ops_factor,
    optimal_gamma,
    random_pair,
    rejection_lower_bound,
    unbiased_resampling,
    uniform_batch_improvement,
    uniform_pair,
    walltime_improvement,
)
from markov import tradeoff as tr
from markov.branch import branch_law, has_closed_form
from ot_coupling import get_selector


@pytest.fixture(scope="module")
def chain():
    return random_pair(6, tv_gap=None, horizon=40, seed=7)


# ----------------------------------------------------------------------------- Theorems 1-2
def test_theorem1_equals_unlimited_lookahead_dp(chain):
    target, draft = chain
    ex = expected_block_efficiency(target, draft, "speculative", gamma=None, n_tokens=40)
    assert ex.expected_rejections == pytest.approx(expected_rejections(target, draft, 40), abs=1e-12)
    assert ex.expected_calls == pytest.approx(expected_calls_unlimited(target, draft, 40), abs=1e-12)
    assert rejection_lower_bound(target, draft, 40) == expected_rejections(target, draft, 40)


def test_theorem1_constant_tv_and_orders():
    target, draft = random_pair(5, order=2, tv_gap=0.25, seed=1)
    assert expected_rejections(target, draft, 30) == pytest.approx(30 * 0.25, abs=1e-12)
    # a draft of lower order than the target on real text: feasible and in (0, T)
    t3, d1, _ = ngram_pair(2, 1, vocab_size=24)
    e = expected_rejections(t3, d1, 20)
    assert 0 < e < 20


def test_theorem2_single_step_bound():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        tv = np.maximum(p - q, 0).sum()
        b = rng.random(6) * np.minimum(1.0, p / q)  # any unbiased-compatible acceptance
        P = unbiased_resampling(p, q, b)
        r = 1 - q @ b
        assert np.allclose(q * b + r * P, p, atol=1e-12)  # unbiased
        assert r >= tv - 1e-12  # never fewer rejections than speculative sampling
    with pytest.raises(ValueError, match="over-accepts"):
        unbiased_resampling(p, q, np.ones(6))


# ----------------------------------------------------------------------------- batch decoding
def test_batch_dp_equals_general_dp_and_is_monotone(chain):
    target, draft = chain
    vals = [batch_expected_rejections(target, draft, 40, M) for M in range(1, 6)]
    assert vals[0] == pytest.approx(expected_rejections(target, draft, 40), abs=1e-12)
    for M in (2, 3):
        ex = expected_block_efficiency(target, draft, "rrs", k=M, gamma=None, n_tokens=40, follow="one")
        assert ex.expected_rejections == pytest.approx(vals[M - 1], abs=1e-10)
    assert np.all(np.diff(vals) <= 1e-12)
    limit = batch_expected_rejections(target, draft, 40, None)
    assert 0 < limit <= vals[-1] + 1e-12  # saturates at a positive limit (oracle 6.7)


def test_batch_improvement_closed_forms():
    # docs/theory/markov.md#batch-improvement-closed-forms: a = .3, b = .6, M = 2..5
    assert np.allclose(bernoulli_batch_improvement(0.6, 0.3, [2, 3, 4, 5]), [0.09, 0.153, 0.1971, 0.228], atol=5e-5)
    t, d = bernoulli_pair(0.6, 0.3)
    for M in range(1, 9):
        assert batch_improvement(t.next_dist(), d.next_dist(), M) == pytest.approx(
            bernoulli_batch_improvement(0.6, 0.3, M), abs=1e-12)
    for V in (10, 100):
        t, d = uniform_pair(V, 3)
        for M in (1, 2, 5):
            assert batch_improvement(t.next_dist(), d.next_dist(), M) == pytest.approx(
                uniform_batch_improvement(V, 3, M), abs=1e-12)
    assert np.all(np.diff([uniform_batch_improvement(V, 1, 4) for V in (10, 50, 100)]) < 0)
    # the limit is the target's mass off the draft support
    assert batch_rejection_probability([0.5, 0.3, 0.2], [0.6, 0.4, 0.0], None) == pytest.approx(0.2)
    assert batch_rejection_probability([0.5, 0.5], [0.1, 0.9], None) == 0.0


# ----------------------------------------------------------------------------- branch laws
@pytest.mark.parametrize("name,kk", [("speculative", 1), ("rrs", 1), ("rrs", 2), ("rrs", 3), ("naive", 3),
                                     ("kseq", 1), ("kseq", 2), ("kseq", 3)])
def test_closed_form_branch_laws_equal_enumeration(name, kk):
    rng = np.random.default_rng(kk)
    sel = get_selector(name)
    P = rng.dirichlet(np.ones(4), size=5)
    Q = rng.dirichlet(np.ones(4), size=5)
    P[0, 1] = 0.0
    P[0] /= P[0].sum()
    Q[1, 2] = 0.0
    Q[1] /= Q[1].sum()
    Q[2] = P[2]  # p == q
    assert has_closed_form(sel, kk)
    fast = branch_law(sel, P, Q, kk)
    slow = branch_law(sel, P, Q, kk, method="enumerate")
    assert np.allclose(fast, slow, atol=1e-12)
    assert np.allclose(fast.sum(axis=2), P, atol=1e-12)  # valid: the output law is p


def test_kseq_branch_law_is_valid():
    rng = np.random.default_rng(3)
    P, Q = rng.dirichlet(np.ones(4), size=3), rng.dirichlet(np.ones(4), size=3)
    W = branch_law(get_selector("kseq"), P, Q, 3)
    assert np.allclose(W.sum(axis=2), P, atol=1e-12)
    acc = np.array([get_selector("kseq").acceptance(P[s], Q[s], 3) for s in range(3)])
    assert np.allclose(W[:, :, 1:].sum(axis=(1, 2)), acc, atol=1e-12)


def test_block_efficiency_dp_limits():
    # order-0 pair: i.i.d. acceptance alpha = 1 - TV, so BE -> (1 - alpha^(g+1)) / (1 - alpha) (Leviathan Thm 3.1)
    t, d = bernoulli_pair(0.6, 0.3)
    alpha = 1 - 0.3
    for g in (1, 3, 6):
        ex = expected_block_efficiency(t, d, "speculative", gamma=g, n_tokens=4000)
        assert ex.block_efficiency == pytest.approx(expected_tokens_per_step(alpha, g), rel=2e-3)
    same, _ = random_pair(5, tv_gap=0.0, seed=0)
    assert expected_block_efficiency(same, same, gamma=4, n_tokens=50).block_efficiency == pytest.approx(5.0)
    # more drafts never hurt RRS in the tree
    t, d = random_pair(6, tv_gap=0.4, seed=2)
    be = [expected_block_efficiency(t, d, "rrs", k=k, gamma=3, n_tokens=50).block_efficiency for k in (1, 2, 4)]
    assert be[0] < be[1] < be[2]


# ----------------------------------------------------------------------------- Theorems 4-5
def test_optimal_resampling_and_pareto_line():
    rng = np.random.default_rng(1)
    for _ in range(30):
        p, q = rng.dirichlet(np.full(7, 0.7)), rng.dirichlet(np.full(7, 0.7))
        tv = np.maximum(p - q, 0).sum()
        b = rng.random(7)
        Pstar = tr.optimal_resampling(p, q, b)
        loss = tr.optimal_loss(p, q, b)
        assert tr.quality_loss(p, q, b, Pstar) == pytest.approx(loss, abs=1e-12)  # Thm 4 attained
        for _ in range(20):  # no resampling law does better
            assert tr.quality_loss(p, q, b, rng.dirichlet(np.ones(7))) >= loss - 1e-12
        assert tr.uno_loss(p, q, b) >= loss - 1e-12
        r = tr.rejection_probability(p, q, b)
        assert r + loss >= tv - 1e-12  # Thm 5
        over = np.maximum(b, np.minimum(1, p / q))
        assert tr.rejection_probability(p, q, over) + tr.optimal_loss(p, q, over) == pytest.approx(tv, abs=1e-12)
        under = np.minimum(1, p / q) * 0.5
        assert tr.rejection_probability(p, q, under) + tr.optimal_loss(p, q, under) > tv + 1e-9
        eps = np.linspace(0, 1, 11)
        rs, ls = tr.tradeoff_curve(p, q, eps)
        assert np.allclose(rs + ls, tv, atol=1e-12) and np.all(np.diff(rs) <= 1e-15)
        assert rs[-1] == pytest.approx(0, abs=1e-12)  # eps >= max(q - p): never reject
    with pytest.raises(ValueError, match="b must"):
        tr.optimal_loss(p, q, np.full(7, 1.5))


# ----------------------------------------------------------------------------- speedup (oracles 6.3-6.4)
def test_leviathan_numbers():
    for a, g, v in ((0.75, 7, 3.5995), (0.65, 5, 2.6417), (0.8, 4, 3.3616), (0.7, 3, 2.5330)):
        assert expected_tokens_per_step(a, g) == pytest.approx(v, abs=5e-5)
    assert expected_tokens_per_step(0.4, 0) == 1 and expected_tokens_per_step(1.0, 5) == 6
    for (a, c), (g, s) in {(0.8, 0.05): (8, 3.0921), (0.7, 0.1): (4, 1.9808), (0.9, 0.1): (10, 3.4309),
                           (0.6, 0.1): (3, 1.6738), (0.5, 0.2): (1, 1.25)}.items():
        g_star, s_star = optimal_gamma(a, c)
        assert g_star == g and s_star == pytest.approx(s, abs=5e-5)
    for a in (0.2, 0.5, 0.9):
        for c in (0.0, 0.1, 0.6):
            assert walltime_improvement(a, 1, c) == pytest.approx((1 + a) / (1 + c))
            assert (optimal_gamma(a, c)[1] > 1) == (a > c)  # Cor 3.9
            assert ops_factor(a, 3, c) >= 1
    with pytest.raises(ValueError, match="alpha"):
        expected_tokens_per_step(1.5, 2)
    with pytest.raises(ValueError, match="gamma"):
        expected_tokens_per_step(0.5, -1)
