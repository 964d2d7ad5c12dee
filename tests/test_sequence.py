"""Sequence level: SpecTr tree verification and block verification reproduce the target law over
whole sequences (exact enumeration and sampling), plus the dedup pitfall of docs/theory/token_verifiers.md#recursive-rejection-without-replacement."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import assert_law, random_cases

from ot_coupling import get_selector, verify_block, verify_tree
from ot_coupling.rrs import RecursiveRejection, RecursiveRejectionWOR
from ot_coupling.sequence import (
    block_conditional_law,
    block_output_law,
    complete_law,
    draft_tree,
    target_law,
    tree_output_law,
)

V = 3


def random_model(seed: int, concentration: float = 0.7, zeros: bool = True):
    """A random conditional model ``prefix -> distribution`` (memoised), some with exact zeros."""
    rng = np.random.default_rng(seed)
    table: dict[tuple, np.ndarray] = {}

    def model(ctx: tuple) -> np.ndarray:
        if ctx not in table:
            d = rng.dirichlet(np.full(V, concentration))
            if zeros and rng.random() < 0.3:
                d[rng.integers(V)] = 0.0
                d /= d.sum()
            table[ctx] = d
        return table[ctx]

    return model


TARGET, DRAFT = random_model(1), random_model(2)


@pytest.mark.parametrize("name,k,L", [(n, k, L) for n in ("kseq", "rrs", "naive") for k, L in ((2, 2), (2, 3), (3, 2))]
                         + [(n, 2, L) for n in ("rrs_wor", "gumbel") for L in (2, 3)])
def test_tree_reproduces_target_sequence_law(name, k, L):
    sel = get_selector(name)
    law = tree_output_law(TARGET, DRAFT, sel, k, L)
    assert sum(law.values()) == pytest.approx(1.0, abs=1e-12)
    assert np.abs(complete_law(TARGET, law, L + 1) - target_law(TARGET, L + 1)).max() < 1e-12


@pytest.mark.parametrize("gamma", [1, 2, 3])
def test_block_reproduces_target_sequence_law(gamma):
    for seed in range(4):
        target, draft = random_model(10 + seed), random_model(20 + seed)
        law = block_output_law(target, draft, gamma)
        assert np.abs(complete_law(target, law, gamma + 1) - target_law(target, gamma + 1)).max() < 1e-12


def _expected_accepted(law: dict) -> float:
    return sum(w * (len(s) - 1) for s, w in law.items())


def test_block_beats_token_verification_and_matches_at_gamma_1():
    """docs/theory/sequence_verifiers.md: E[tau_token] <= E[tau_block]; equal (1 - TV) for gamma = 1."""
    spec = get_selector("speculative")
    for seed in range(4):
        target, draft = random_model(30 + seed, zeros=False), random_model(40 + seed, zeros=False)
        for gamma in (1, 2, 3):
            block = _expected_accepted(block_output_law(target, draft, gamma))
            token = _expected_accepted(tree_output_law(target, draft, spec, 1, gamma))
            assert block >= token - 1e-12
            if gamma == 1:
                tv1 = np.minimum(target(()), draft(())).sum()
                assert block == pytest.approx(tv1, abs=1e-12) and token == pytest.approx(tv1, abs=1e-12)


class _DedupRRS(RecursiveRejection):
    """The buggy verifier of docs/theory/token_verifiers.md#recursive-rejection-without-replacement: i.i.d. drafts merged into distinct tree children,
    verified with the *with-replacement* residual."""

    def plan(self, p, q, drafts):
        _, first = np.unique(drafts, return_index=True)
        return super().plan(p, q, drafts[np.sort(first)])


class _DedupWOR(RecursiveRejectionWOR):
    """The correct fix: the distinct children (in order of first appearance) verified without replacement."""

    draft_law = "iid"

    def plan(self, p, q, drafts):
        _, first = np.unique(drafts, return_index=True)
        return super().plan(p, q, drafts[np.sort(first)])


def test_dedup_pitfall_is_detected():
    worst_bug, worst_fix = 0.0, 0.0
    for p, q in random_cases(seed=3, n=60):
        for k in (2, 3):
            worst_bug = max(worst_bug, np.abs(_DedupRRS().output_law(p, q, k) - p).max())
            worst_fix = max(worst_fix, np.abs(_DedupWOR().output_law(p, q, k) - p).max())
    assert worst_bug > 1e-2  # biased: the exact tier catches it
    assert worst_fix < 1e-12


def _sequence_counts(samples: list[tuple], law: dict):
    keys = list(law)
    index = {s: i for i, s in enumerate(keys)}
    return [index.get(s, len(keys)) for s in samples], np.array([law[s] for s in keys] + [0.0])


@pytest.mark.parametrize("name,law_name", [("rrs", "iid"), ("rrs_wor", "without_replacement")])
def test_tree_sampling_matches_exact_law(name, law_name):
    sel = get_selector(name)
    rng = np.random.default_rng(5)
    k, L = 2, 2
    samples = [tuple(verify_tree(TARGET, DRAFT, draft_tree(DRAFT, k, L, rng, law=law_name), sel, rng)[0])
               for _ in range(3000)]
    idx, probs = _sequence_counts(samples, tree_output_law(TARGET, DRAFT, sel, k, L))
    assert_law(idx, probs)


def test_block_sampling_matches_exact_law_and_accepted_length():
    rng = np.random.default_rng(6)
    gamma = 3
    runs = [verify_block(TARGET, DRAFT, draft_tree(DRAFT, 1, gamma, rng)[0], rng) for _ in range(4000)]
    law = block_output_law(TARGET, DRAFT, gamma)
    idx, probs = _sequence_counts([tuple(t) for t, _ in runs], law)
    assert_law(idx, probs)
    tau_law = np.zeros(gamma + 1)
    for s, w in law.items():
        tau_law[len(s) - 1] += w
    assert_law([tau for _, tau in runs], tau_law)
    # the conditional law given one draft is what verify_block samples
    x = np.array([0, 1, 2])
    cond = block_conditional_law(TARGET, DRAFT, x)
    idx, probs = _sequence_counts([tuple(verify_block(TARGET, DRAFT, x, rng)[0]) for _ in range(3000)], cond)
    assert_law(idx, probs)


def test_sequence_input_errors():
    with pytest.raises(ValueError, match="draft law"):
        verify_tree(TARGET, DRAFT, np.zeros((2, 2), dtype=int), get_selector("spechub"))
    with pytest.raises(ValueError, match=r"\[k, L\]"):
        verify_tree(TARGET, DRAFT, np.zeros(3, dtype=int), get_selector("rrs"))
    with pytest.raises(ValueError, match="outside"):
        verify_block(TARGET, DRAFT, [0, 5])
    with pytest.raises(ValueError, match="target"):
        verify_block(lambda ctx: np.array([0.5, 0.6, 0.1]), DRAFT, [0, 1])
