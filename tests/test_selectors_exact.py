"""Exact tier for every per-token verifier: output law == p by enumeration, acceptance == its
closed form, optimality bounds against brute force, worked examples, internals and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from oracles import brute_force_optimum, random_cases
from selector_cases import CONFIGS, make, supported_ks

from ot_coupling import enumerate_drafts, get_selector, set_law
from ot_coupling.gumbel import joint_set_law
from ot_coupling.kseq import KSeq, kseq_rho
from ot_coupling.race import STEP, gumbel_nodes
from ot_coupling.rrs import rrs_wor_acceptance

CASES = random_cases(seed=20261123, n=100)
EXTRA_CASES = random_cases(seed=7, n=20)  # for the selectors limited to one k


@pytest.mark.parametrize("label", [c[0] for c in CONFIGS])
def test_output_law_is_target_and_acceptance_matches(label):
    sel = make(label)
    checked = 0
    for p, q in CASES + EXTRA_CASES:
        if checked >= 100 and (p, q) is EXTRA_CASES[0]:
            break
        for k in supported_ks(sel, q):
            assert abs(1.0 - sel.draft_tuples(q, k)[1].sum()) < 1e-13  # the oracle itself is exact
            law, acc = sel.enumerate(p, q, k)
            assert np.abs(law - p).max() < 1e-12, (label, p, q, k)
            assert sel.acceptance(p, q, k) == pytest.approx(acc, abs=1e-12)
            checked += 1
    assert checked >= 100


@pytest.mark.parametrize("label", ["naive", "kseq", "rrs", "speculative", "naive_wor", "rrs_wor",
                                   "gumbel", "spechub", "greedy"])
def test_never_above_the_optimum_of_its_own_law(label):
    sel = make(label)
    for p, q in CASES if label == "kseq" else CASES[:60]:
        for k in supported_ks(sel, q):
            opt, _ = brute_force_optimum(p, *enumerate_drafts(q, k, sel.draft_law))
            acc = sel.acceptance(p, q, k)
            assert acc <= opt + 1e-9
            if label in ("spechub", "greedy", "speculative"):
                assert acc == pytest.approx(opt, abs=1e-9)  # optimal for their own draft law
            if label == "kseq":
                assert acc >= (1 - 1 / math.e) * opt - 1e-12  # SpecTr's guarantee


def test_k1_reductions_to_speculative_sampling():
    spec = get_selector("speculative")
    for p, q in CASES[:40]:
        tv1 = 1.0 - 0.5 * np.abs(p - q).sum()
        for name in ("kseq", "rrs", "rrs_wor", "greedy"):
            sel = get_selector(name)
            assert sel.acceptance(p, q, 1) == pytest.approx(tv1, abs=1e-12)
            for x in np.flatnonzero(q > 0):
                np.testing.assert_allclose(sel.conditional_law(p, q, [x]), spec.conditional_law(p, q, [x]),
                                           atol=1e-12)
        assert kseq_rho(p, q, 1) == 1.0


# ---------------------------------------------------------------------------- worked examples
A = ([0.5, 0.3, 0.15, 0.05], [0.2, 0.2, 0.3, 0.3])
B = ([0.5, 0.5], [0.7, 0.3])
C = ([1 / 3] * 3, [1 / 3, 0.2, 1 - 1 / 3 - 0.2])

# docs/theory/membership_ot.md#worked-examples (p = target, q = draft); (pair, k, selector, kwargs, value)
FIXTURES = [
    (A, 2, "kseq", {}, 0.785330), (A, 3, "kseq", {}, 0.858519),
    (A, 2, "rrs", {}, 0.760000), (A, 3, "rrs", {}, 0.828000),
    (A, 2, "naive", {}, 0.390000), (A, 3, "naive", {}, 0.521800),
    (A, 2, "rrs_wor", {}, 0.814286), (A, 3, "rrs_wor", {}, 0.905714),
    (A, 2, "naive", {"drafts": "without_replacement"}, 0.452857),
    (A, 3, "naive", {"drafts": "without_replacement"}, 0.707143),
    (A, 2, "spechub", {}, 0.771429),
    (B, 2, "kseq", {}, 0.896510), (B, 2, "rrs", {}, 0.860000), (B, 2, "naive", {}, 0.710000),
    (B, 1, "speculative", {}, 0.8),
    (C, 2, "kseq", {}, 0.922385), (C, 2, "rrs", {}, 0.893333), (C, 2, "rrs_wor", {}, 0.916667),
    (C, 2, "spechub", {}, 1.0), (C, 3, "kseq", {}, 0.959211), (C, 3, "rrs", {}, 0.914667),
]


@pytest.mark.parametrize("pair,k,name,kwargs,value", FIXTURES)
def test_worked_examples(pair, k, name, kwargs, value):
    assert get_selector(name, **kwargs).acceptance(*pair, k) == pytest.approx(value, abs=5e-7)


@pytest.mark.parametrize("pair,k,rho", [(A, 2, 1.463325), (A, 3, 1.792593), (B, 2, 1.321699), (C, 2, 1.278594)])
def test_rho_star_examples(pair, k, rho):
    assert kseq_rho(*pair, k) == pytest.approx(rho, abs=5e-7)
    assert kseq_rho(*pair, k, method="bisect") == pytest.approx(rho, abs=5e-7)


# ---------------------------------------------------------------------------- K-SEQ internals
def test_kseq_rho_root_and_methods_agree():
    rng = np.random.default_rng(7)
    for i in range(60):
        V = int(rng.integers(2, 200))
        p, q = rng.dirichlet(np.full(V, 0.3)), rng.dirichlet(np.full(V, 0.3))
        k = int(rng.integers(2, 17))
        rho, rho_b = kseq_rho(p, q, k), kseq_rho(p, q, k, method="bisect")
        assert 1.0 <= rho <= k
        assert rho == pytest.approx(rho_b, rel=1e-13, abs=1e-13)
        beta = np.minimum(q, p / rho).sum()
        if rho > 1.0:
            assert 1 - (1 - beta) ** k == pytest.approx(rho * beta, abs=1e-12)
        assert KSeq().acceptance(p, q, k) == pytest.approx(np.minimum(p, rho * q).sum(), abs=1e-12)


def test_kseq_user_rho():
    p, q = np.array(A[0]), np.array(A[1])
    rho_star = kseq_rho(p, q, 2)
    with pytest.raises(ValueError, match="rho=1.2 is invalid"):
        KSeq(rho=1.2).acceptance(p, q, 2)
    with pytest.raises(ValueError, match="rho"):
        KSeq(rho=-1.0)
    # a valid larger rho: still exact, lower acceptance; the residual may then redraw a drafted token
    sel = KSeq(rho=1.9)
    law, acc = sel.enumerate(p, q, 2)
    assert np.abs(law - p).max() < 1e-12
    assert sel.acceptance(p, q, 2) == pytest.approx(acc, abs=1e-12)
    assert acc < KSeq().acceptance(p, q, 2)
    assert KSeq(rho=rho_star + 1e-9).acceptance(p, q, 2) == pytest.approx(0.785330, abs=1e-6)


# ---------------------------------------------------------------------------- RRS-wor, Gumbel internals
def test_rrs_wor_exact_acceptance_budget():
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(40)), rng.dirichlet(np.ones(40))
    assert 0 < rrs_wor_acceptance(p, q, 2) < 1  # O(V log V) path
    with pytest.raises(ValueError, match="rejection histories"):
        rrs_wor_acceptance(p, q, 6, max_histories=1000)


def test_gumbel_joint_law_sums_to_draft_set_probability():
    for p, q in CASES[:30]:
        for k in range(1, min(3, int((q > 0).sum())) + 1):
            tuples, probs = enumerate_drafts(q, k, "without_replacement")
            if abs(1.0 - probs.sum()) > 1e-13:  # draft_laws' enumeration lost mass (see above)
                continue
            for S, w in set_law(tuples, probs).items():
                assert joint_set_law(p, q, S).sum() == pytest.approx(w, abs=1e-12)


def test_gumbel_k1_closed_form_and_quadrature_step():
    rng = np.random.default_rng(11)
    sel = get_selector("gumbel")
    for _ in range(20):
        V = int(rng.integers(2, 30))
        p, q = rng.dirichlet(np.full(V, 0.5)), rng.dirichlet(np.full(V, 0.5))
        closed = sum(1.0 / np.maximum(p / p[x], q / q[x]).sum() for x in range(V))
        assert sel.acceptance(p, q, 1) == pytest.approx(closed, abs=1e-14)
    # the trapezoidal rule has converged: halving the step changes nothing at 1e-13
    w1, c1 = gumbel_nodes(STEP)
    w2, c2 = gumbel_nodes(STEP / 2)
    f = lambda w: np.exp(-3.7 * w) * (1 - np.exp(-250.0 * w)) ** 2
    exact = 1 / 4.7 - 2 / 254.7 + 1 / 504.7
    assert abs(c1 @ f(w1) - exact) < 1e-13 and abs(c2 @ f(w2) - exact) < 1e-13


# ---------------------------------------------------------------------------- edge cases
def test_zero_coin_never_accepts_a_zero_target_token():
    p, q = np.array([0.0, 0.6, 0.4]), np.array([0.5, 0.25, 0.25])
    for name in ("speculative", "kseq", "rrs", "rrs_wor", "greedy"):
        sel = get_selector(name)
        k = 1 if name == "speculative" else 2
        drafts = np.array([0, 1] if k == 2 else [0])  # for greedy, token 0 is the top-1 draft
        u = np.zeros(k + 1)  # the smallest possible uniforms
        token, _ = sel.verify_uniforms(p, q, drafts, u)
        assert token != 0
        assert sel.conditional_law(p, q, drafts)[0] == 0.0


@pytest.mark.parametrize("label", [c[0] for c in CONFIGS])
def test_zero_residual_p_equals_q(label):
    sel = make(label)
    p = np.array([0.5, 0.3, 0.2, 0.0])
    for k in supported_ks(sel, p):
        law, acc = sel.enumerate(p, p, k)
        assert np.isfinite(law).all() and np.abs(law - p).max() < 1e-12
        if label in ("speculative", "kseq", "rrs", "rrs_wor", "spechub", "greedy"):
            assert acc == pytest.approx(1.0, abs=1e-12)
        for t in sel.draft_tuples(p, k)[0]:
            assert np.isfinite(sel.conditional_law(p, p, t)).all()
            token, _ = sel.verify(p, p, t, 0)
            assert p[token] > 0


def test_bad_input_names_the_argument():
    sel = get_selector("kseq")
    with pytest.raises(ValueError, match="p contains NaN"):
        sel.acceptance([np.nan, 1.0], [0.5, 0.5], 2)
    with pytest.raises(ValueError, match="q has negative"):
        sel.acceptance([0.5, 0.5], [1.5, -0.5], 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sel.acceptance([0.5, 0.5], [0.5, 0.5], 0)
    with pytest.raises(ValueError, match="same length"):
        sel.acceptance([0.5, 0.5], [0.2, 0.3, 0.5], 2)
    with pytest.raises(ValueError, match="supports k <= 1"):
        get_selector("speculative").acceptance([0.5, 0.5], [0.5, 0.5], 2)
    with pytest.raises(ValueError, match="hub pair"):
        get_selector("spechub").conditional_law([0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [1, 2])
    with pytest.raises(ValueError, match="unknown draft law"):
        get_selector("naive", drafts="nope")


@pytest.mark.parametrize("label", ["kseq", "rrs", "rrs_wor", "gumbel", "naive_wor", "greedy"])
def test_output_law_with_four_drafts(label):
    """k = 4 exercises the deeper recursion of the exact RRS-wor acceptance and 16-term
    inclusion-exclusion of the Gumbel law."""
    sel = make(label)
    rng = np.random.default_rng(44)
    for V in (4, 5):
        p, q = rng.dirichlet(np.full(V, 0.6)), rng.dirichlet(np.full(V, 0.6))
        law, acc = sel.enumerate(p, q, 4)
        assert np.abs(law - p).max() < 1e-12
        assert sel.acceptance(p, q, 4) == pytest.approx(acc, abs=1e-12)


def test_inclusion_probabilities_wor_sum_to_k_at_larger_vocabulary():
    from ot_coupling.race import inclusion_wor

    rng = np.random.default_rng(9)
    q = rng.dirichlet(np.full(300, 0.2))
    q[:5] = 0.0
    q /= q.sum()
    for k in (1, 3, 6):
        inc = inclusion_wor(q, k)
        assert inc.sum() == pytest.approx(k, abs=1e-11)
        assert (inc[:5] == 0).all() and (inc[5:] > 0).all() and (inc <= 1 + 1e-12).all()
    assert inclusion_wor(q, 1) == pytest.approx(q, abs=1e-14)


def test_poisson_binomial_below_against_enumeration():
    from itertools import product

    from ot_coupling.race import poisson_binomial_below

    probs = np.array([0.1, 0.7, 0.35, 0.9, 0.0])
    for k in range(1, 6):
        brute = sum(np.prod(np.where(b, probs, 1 - probs)) for b in product([0, 1], repeat=5) if sum(b) <= k - 1)
        assert poisson_binomial_below(probs, k) == pytest.approx(brute, abs=1e-15)
