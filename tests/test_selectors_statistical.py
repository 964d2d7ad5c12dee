"""Statistical tier (fixed seeds, chi-square at false-alarm 1e-6 via oracles.assert_law, binomial
6-sigma bounds): sampled output law and acceptance, the conditional law of the residual at each stop,
the verifier given fixed drafts, and the vectorised batch path (bit for bit with injected uniforms)."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import assert_law
from selector_cases import make

from ot_coupling import get_draft_law, get_selector
from ot_coupling.kseq import kseq_rho

# a pair with exact zeros: p(3) = 0 while q drafts it; q(4) = 0 while p wants it
P = np.array([0.35, 0.25, 0.15, 0.0, 0.25])
Q = np.array([0.10, 0.30, 0.30, 0.30, 0.0])
N = 30_000


def _binomial_ok(hits: int, n: int, prob: float) -> None:
    sd = np.sqrt(n * prob * (1 - prob))
    assert abs(hits - n * prob) <= 6 * sd + 1, f"{hits}/{n} vs expected rate {prob:.6f}"


def _batch(sel, k, seed, n=N, p=P, q=Q):
    rng = np.random.default_rng(seed)
    Pm, Qm = np.tile(p, (n, 1)), np.tile(q, (n, 1))
    D = get_draft_law(sel.draft_law).sample_batch(Qm, k, rng)
    tokens, accepted = sel.verify_batch(Pm, Qm, D, rng)
    return D, tokens, accepted


@pytest.mark.parametrize("label,k", [("speculative", 1), ("naive", 3), ("kseq", 2), ("kseq", 3),
                                     ("rrs", 3), ("rrs_wor", 2), ("rrs_wor", 3), ("naive_wor", 2),
                                     ("greedy", 3), ("gumbel", 3)])
def test_batch_output_law_and_acceptance(label, k):
    sel = make(label)
    D, tokens, accepted = _batch(sel, k, seed=100 + k)
    assert_law(tokens, P)
    _binomial_ok(int(accepted.sum()), N, sel.acceptance(P, Q, k))
    assert (accepted == (D == tokens[:, None]).any(axis=1)).all()


@pytest.mark.parametrize("label,k", [("spechub", 2), ("greedy", 3), ("gumbel", 2), ("kseq", 2), ("rrs_wor", 3)])
def test_per_row_sample_law_and_acceptance(label, k):
    sel = make(label)
    rng = np.random.default_rng(7 + k)
    n = 4000
    out = [sel.sample(P, Q, k, rng) for _ in range(n)]
    assert_law([t for t, _, _ in out], P)
    _binomial_ok(sum(a for _, a, _ in out), n, sel.acceptance(P, Q, k))


def test_rrs_residual_after_each_rejection():
    """Given that drafts 1..i were rejected (for RRS: Y not in {X_1..X_i}), Y ~ p_{i+1},
    computed here by SpecInfer's recursion p_{i+1} = norm((p_i - q)^+) (docs/theory/token_verifiers.md#recursive-rejection-with-replacement)."""
    k = 3
    D, tokens, _ = _batch(get_selector("rrs"), k, seed=5, n=60_000)
    p_i = P.copy()
    for i in range(1, k + 1):
        p_i = np.maximum(p_i - Q, 0.0)
        p_i /= p_i.sum()
        rejected = ~(D[:, :i] == tokens[:, None]).any(axis=1)
        assert_law(tokens[rejected], p_i)


def test_rrs_wor_and_kseq_residuals():
    # RRS-wor after the first rejection: p_2 = norm((p - q)^+) whatever X_1 was
    D, tokens, _ = _batch(get_selector("rrs_wor"), 3, seed=6, n=60_000)
    first_rejected = D[:, 0] != tokens
    assert_law(tokens[first_rejected], np.maximum(P - Q, 0) / np.maximum(P - Q, 0).sum())
    # K-SEQ: all rejected iff Y is not drafted; then Y ~ (p - rho* q)^+
    k = 3
    D, tokens, accepted = _batch(get_selector("kseq"), k, seed=8, n=60_000)
    res = np.maximum(P - kseq_rho(P, Q, k) * Q, 0.0)
    assert_law(tokens[~accepted], res / res.sum())


@pytest.mark.parametrize("label,drafts", [("kseq", [1, 2, 1]), ("rrs", [3, 3, 0]), ("rrs_wor", [2, 3, 0]),
                                          ("spechub", [0, 1]), ("spechub", [1, 0]), ("greedy", [1, 0]),
                                          ("gumbel", [3, 1]), ("gumbel", [0, 2, 1])])
def test_verify_follows_conditional_law(label, drafts):
    sel = make(label)
    q = np.array([0.10, 0.35, 0.25, 0.30, 0.0]) if label == "spechub" else Q
    rng = np.random.default_rng(11)
    tokens = [sel.verify(P, q, drafts, rng)[0] for _ in range(5000)]
    assert_law(tokens, sel.conditional_law(P, q, drafts))


def test_gumbel_coupling_conditional_on_draft_set():
    """With the noise drawn once (sample), Y given the draft set follows conditional_law."""
    sel = get_selector("gumbel")
    rng = np.random.default_rng(12)
    out = [sel.sample(P, Q, 2, rng) for _ in range(20_000)]
    sets = {}
    for t, _, d in out:
        sets.setdefault(frozenset(d.tolist()), []).append(t)
    for S, toks in sorted(sets.items(), key=lambda kv: -len(kv[1]))[:3]:
        assert_law(toks, sel.conditional_law(P, Q, sorted(S)))


@pytest.mark.parametrize("label,k", [("speculative", 1), ("naive", 2), ("kseq", 3), ("rrs", 3),
                                     ("rrs_wor", 3), ("greedy", 2), ("spechub", 2), ("gumbel", 3)])
def test_batch_equals_per_row_with_injected_uniforms(label, k):
    sel = make(label)
    rng = np.random.default_rng(21)
    B, V = 300, 7
    Pm = rng.dirichlet(np.full(V, 0.5), size=B)
    Qm = rng.dirichlet(np.full(V, 0.5), size=B)
    Pm[:, 0] = 0.0
    Pm /= Pm.sum(axis=1, keepdims=True)
    Qm[::3] = Pm[::3]  # zero residual rows
    D = np.stack([sel.draft(Qm[b], k, rng) for b in range(B)])
    n_u = sel.n_uniforms(k, V) if label == "gumbel" else sel.n_uniforms(k)
    U = rng.random((B, n_u))
    U[::5] = 0.0  # coins at the boundary
    tokens, accepted = sel.verify_batch_uniforms(Pm, Qm, D, U)
    for b in range(B):
        assert (tokens[b], accepted[b]) == sel.verify_uniforms(Pm[b], Qm[b], D[b], U[b])
    assert (Pm[np.arange(B), tokens] > 0).all()


def test_gumbel_order_given_set_follows_wor_tuple_law():
    from ot_coupling import enumerate_drafts
    from ot_coupling.gumbel import sample_order_given_set

    q = np.array([0.4, 0.25, 0.2, 0.1, 0.05])
    S = np.array([1, 3, 4])
    tuples, probs = enumerate_drafts(q, 3, "without_replacement")
    keep = [i for i, t in enumerate(tuples) if set(t.tolist()) == set(S.tolist())]
    index = {tuple(tuples[i].tolist()): j for j, i in enumerate(keep)}
    rng = np.random.default_rng(13)
    draws = [index[tuple(sample_order_given_set(q, S, rng).tolist())] for _ in range(6000)]
    assert_law(draws, probs[keep] / probs[keep].sum())
