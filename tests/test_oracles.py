"""The shared oracles must themselves be able to fail."""

import numpy as np
from oracles import assert_law, brute_force_optimum, gof_pvalue

from ot_coupling import enumerate_drafts


def test_brute_force_optimum_k1_is_one_minus_tv():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
        val, _ = brute_force_optimum(p, *enumerate_drafts(q, 1))
        assert abs(val - np.minimum(p, q).sum()) < 1e-12


def test_gof_detects_a_biased_sampler():
    rng = np.random.default_rng(0)
    probs = np.array([0.5, 0.3, 0.2])
    biased = rng.choice(3, size=20000, p=[0.48, 0.32, 0.2])
    assert gof_pvalue(np.bincount(biased, minlength=3), probs) < 1e-6
    fair = rng.choice(3, size=20000, p=probs)
    assert_law(fair, probs)
    assert gof_pvalue(np.array([10, 1, 5]), np.array([0.5, 0.0, 0.5])) == 0.0
