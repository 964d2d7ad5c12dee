"""Sequence verifiers on Markov-chain LMs: exact round-level theory vs simulation."""

from __future__ import annotations

import numpy as np
import pytest

import markov
from markov import MarkovLM


def pair(V=3, seed=1):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(V), size=V)
    Q = 0.5 * rng.dirichlet(np.ones(V), size=V) + 0.5 * P
    return MarkovLM(P), MarkovLM(Q)


@pytest.mark.parametrize("name", ["bv", "gbv", "traversal", "optimal_lp"])
def test_simulation_within_4_se_of_exact(name):
    """Stated false-alarm level: 4 standard errors (two-sided ~6e-5 per verifier, normal approx.)."""
    t, d = pair()
    ex = markov.exact_sequence_efficiency(t, d, name, k=2, L=2)
    sim = markov.simulate_sequence(t, d, name, k=2, L=2, n_rounds=10, n_runs=40, rng=123)
    assert abs(sim.block_efficiency - ex.finite_horizon(10)) <= 4 * sim.block_efficiency_se
    lo, hi = sim.ci()
    assert lo < hi


def test_exact_per_state_matches_verifier_and_ordering():
    t, d = pair()
    from ot_coupling import get_sequence_verifier

    res = {n: markov.exact_sequence_efficiency(t, d, n, k=2, L=2) for n in ("bv", "gbv", "optimal_lp")}
    bv = get_sequence_verifier("bv")
    for s in range(3):
        assert res["bv"].per_state[s] == pytest.approx(bv.expected_length(t.next_dist, d.next_dist, 2, 2,
                                                                          prefix=(s,)), abs=1e-12)
    # the LP optimum is the best E|Y| in every context, hence in the long run
    for n in ("bv", "gbv"):
        assert np.all(res[n].per_state <= res["optimal_lp"].per_state + 1e-9)
    assert np.allclose(res["bv"].stationary @ res["bv"].transition, res["bv"].stationary, atol=1e-12)
    assert res["bv"].speedup == pytest.approx(res["bv"].block_efficiency)  # c = 0, unlimited capacity


def test_spectr_round_chain_matches_token_dp():
    """SpecTr's tree (K-SEQ per depth) as a sequence verifier vs markov's token-level forward DP:
    the long-run tokens per target call agree (the DP's finite horizon costs O(1/n_tokens))."""
    t, d = pair()
    ex = markov.exact_sequence_efficiency(t, d, "spectr", k=2, L=2)
    dp = markov.expected_block_efficiency(t, d, "kseq", k=2, gamma=2, n_tokens=4000)
    assert ex.block_efficiency == pytest.approx(dp.block_efficiency, abs=2e-3)


def test_bad_inputs():
    t, d = pair()
    with pytest.raises(ValueError, match="verifier"):
        markov.simulate_sequence(t, d, 3.0)
    with pytest.raises(ValueError, match="n_rounds"):
        markov.simulate_sequence(t, d, "bv", n_rounds=0)
