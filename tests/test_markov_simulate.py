"""The vectorised simulator against the exact theory (docs/theory/markov.md, docs/theory/token_verifiers.md#trees-of-drafts).

Monte Carlo means must lie within 4 standard errors of the exact expectations (false alarm about
6e-5 per check); emitted tokens must follow the target (chi-square at false alarm 1e-6).
"""

import numpy as np
import pytest
from oracles import assert_law

from markov import (
    CostModel,
    MarkovLM,
    expected_block_efficiency,
    expected_calls_unlimited,
    expected_rejections,
    random_pair,
    simulate,
)
from markov.pair import ModelPair


def within(mean, se, exact, n_se=4.0):
    assert abs(mean - exact) <= n_se * se, f"simulated {mean:.4f} +- {se:.4f} vs exact {exact:.4f}"


@pytest.fixture(scope="module")
def chain7():
    """A non-stationary V=7, T=50 pair with independent Dirichlet rows (Yin et al. Fig. 2 setting)."""
    return random_pair(7, tv_gap=None, horizon=50, seed=3)


def test_theorem1_unlimited_lookahead(chain7):
    target, draft = chain7
    res = simulate(target, draft, "speculative", gamma=None, n_tokens=50, n_runs=4000, seed=11)
    within(res.rejections, res.rejections_se, expected_rejections(target, draft, 50))
    within(res.target_calls, res.target_calls_se, expected_calls_unlimited(target, draft, 50))
    gap = res.target_calls_per_run - res.rejections_per_run
    assert set(np.unique(gap)) <= {0, 1}  # E[calls] - E[N_rej] in [0, 1] (docs/theory/markov.md#decoding-as-a-markov-chain)


@pytest.mark.parametrize("tabulate", [True, False])
def test_theorem1_stationary_both_paths(tabulate):
    target, draft = random_pair(6, tv_gap=0.25, seed=5)
    res = simulate(target, draft, "speculative", gamma=None, n_tokens=80, n_runs=3000, seed=2,
                   tabulate=tabulate)
    within(res.rejections, res.rejections_se, expected_rejections(target, draft, 80))


@pytest.mark.parametrize("selector,k,gamma,V,order", [
    ("speculative", 1, 1, 12, 1), ("speculative", 1, 4, 12, 1), ("speculative", 1, 3, 4, 2),
    ("rrs", 2, 2, 10, 1), ("rrs", 4, 5, 10, 1), ("kseq", 2, 3, 5, 1), ("kseq", 4, 2, 4, 1),
    ("naive", 2, 3, 6, 1), ("rrs_wor", 2, 3, 5, 1),
])
def test_block_efficiency_matches_exact_dp(selector, k, gamma, V, order):
    target, draft = random_pair(V, order=order, tv_gap=0.35, seed=V + k)
    res = simulate(target, draft, selector, k=k, gamma=gamma, n_tokens=60, n_runs=2500, seed=k * 10 + gamma)
    ex = expected_block_efficiency(target, draft, selector, k=k, gamma=gamma, n_tokens=60)
    within(res.block_efficiency, res.block_efficiency_se, ex.block_efficiency)
    within(res.rejections, res.rejections_se, ex.expected_rejections)
    # per-position acceptance: a binomial proportion at every position, 6-sigma bound
    sd = np.sqrt(np.maximum(ex.acceptance_by_position * (1 - ex.acceptance_by_position), 1e-12) / res.n_runs)
    assert np.all(np.abs(res.acceptance_by_position - ex.acceptance_by_position) <= 6 * sd + 1e-12)


def test_batch_algorithm_follow_one(chain7):
    target, draft = chain7
    res = simulate(target, draft, "rrs", k=3, gamma=None, n_tokens=50, n_runs=3000, seed=4, follow="one")
    ex = expected_block_efficiency(target, draft, "rrs", k=3, gamma=None, n_tokens=50, follow="one")
    within(res.rejections, res.rejections_se, ex.expected_rejections)


def _exact_marginals(target, draft, T):
    """Law of the joint context after each token (first-order pairs: the last token)."""
    pair = ModelPair(target, draft, T)
    law = pair.prompt_law()
    laws = []
    for t in range(T):
        P, _ = pair.tables(t)
        joint = law[:, None] * P  # (context, next token)
        laws.append(joint)
        law = pair.advance_mass(joint)
    return laws


@pytest.mark.parametrize("selector,k,gamma,tabulate", [
    ("speculative", 1, 4, True), ("speculative", 1, None, False), ("kseq", 3, 3, None), ("rrs_wor", 2, 2, None),
])
def test_sequences_follow_the_target(selector, k, gamma, tabulate):
    target, draft = random_pair(5, tv_gap=0.4, horizon=30, seed=21)
    res = simulate(target, draft, selector, k=k, gamma=gamma, n_tokens=30, n_runs=6000, seed=8,
                   return_sequences=True, tabulate=tabulate)
    seqs = res.sequences
    laws = _exact_marginals(target, draft, 30)
    for t in (0, 1, 4, 13, 29):  # per-position marginals
        assert_law(seqs[:, t], laws[t].sum(axis=0))
    for t in (2, 9, 20):  # joint law of consecutive tokens (x_t, x_{t+1})
        assert_law(seqs[:, t] * 5 + seqs[:, t + 1], laws[t + 1].ravel())


def test_p_equals_q_and_disjoint_supports():
    target, _ = random_pair(6, tv_gap=0.0, seed=1)
    res = simulate(target, target, "speculative", gamma=None, n_tokens=40, n_runs=200, seed=0)
    assert res.rejections == 0 and res.target_calls == 1
    res = simulate(target, target, "speculative", gamma=4, n_tokens=40, n_runs=200, seed=0)
    assert res.block_efficiency == 5.0
    p = MarkovLM(np.array([[0.5, 0.5, 0, 0]] * 4))
    q = MarkovLM(np.array([[0, 0, 0.5, 0.5]] * 4))
    res = simulate(p, q, "speculative", gamma=None, n_tokens=30, n_runs=100, seed=0)
    assert res.rejections == 30 and expected_rejections(p, q, 30) == 30


def test_reproducible_and_cost_model():
    target, draft = random_pair(8, tv_gap=0.3, seed=0)
    a = simulate(target, draft, "kseq", k=2, gamma=3, n_tokens=20, n_runs=50, seed=7, return_sequences=True)
    b = simulate(target, draft, "kseq", k=2, gamma=3, n_tokens=20, n_runs=50, seed=7, return_sequences=True)
    assert np.array_equal(a.sequences, b.sequences)
    cost = CostModel(c=0.1, capacity=4)
    r = simulate(target, draft, "kseq", k=2, gamma=3, n_tokens=20, n_runs=50, seed=7, cost=cost)
    assert r.speedup == pytest.approx(r.block_efficiency / (3 * 0.1 + 7 / 4))
    assert set(r.to_dict()) >= {"rejections", "rejections_se", "target_calls", "block_efficiency",
                                "block_efficiency_se", "acceptance_by_position", "speedup"}


def test_bad_input():
    target, draft = random_pair(4, tv_gap=0.2, seed=0)
    other, _ = random_pair(5, tv_gap=0.2, seed=0)
    ns, _ = random_pair(4, tv_gap=0.2, horizon=10, seed=0)
    with pytest.raises(ValueError, match="vocabulary"):
        simulate(target, other, n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="horizon"):
        simulate(ns, draft, n_tokens=11, n_runs=5)
    with pytest.raises(ValueError, match="k"):
        simulate(target, draft, k=0, n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="gamma"):
        simulate(target, draft, gamma=0, n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="follow"):
        simulate(target, draft, follow="all", n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="unknown selector"):
        simulate(target, draft, "nope", n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="k <= 1"):
        simulate(target, draft, "speculative", k=2, n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="target must be a MarkovLM"):
        simulate(np.eye(4), draft, n_tokens=5, n_runs=5)
    with pytest.raises(ValueError, match="n_runs"):
        simulate(target, draft, n_tokens=5, n_runs=0)


def test_mixed_orders_on_text():
    """Target of order 2 and draft of order 1 (character n-grams): the joint context is 2 tokens."""
    from markov import ngram_pair

    target, draft, _ = ngram_pair(2, 1, vocab_size=12)
    res = simulate(target, draft, "kseq", k=2, gamma=3, n_tokens=40, n_runs=2000, seed=5)
    ex = expected_block_efficiency(target, draft, "kseq", k=2, gamma=3, n_tokens=40)
    within(res.block_efficiency, res.block_efficiency_se, ex.block_efficiency)
    within(res.rejections, res.rejections_se, ex.expected_rejections)
