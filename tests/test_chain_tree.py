"""Batched tree verifiers in torch (gpu_backend.tree): exact output laws by enumeration over every
draft tuple (coins integrated out), negative controls, and chi-square of the sampled sequences
against the exact conditional laws (and against the numpy reference for SpecTr's tree)."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")

from ot_coupling.registry import get_selector  # noqa: E402
from ot_coupling.sequence import complete_law, target_law, tree_conditional_law  # noqa: E402
from gpu_backend.tree import (blend_conditional_law, blend_plan, chain_laws, gbv_conditional_law,  # noqa: E402
                              gbv_select, traversal_law,
                              verify_tree_batched)

from test_chain import random_conditional  # noqa: E402


def tensors(target, draft, tuples):
    """``drafts [B, k, L]``, ``target [B, k, L + 1, V]``, ``draft [B, k, L, V]`` for draft tuples."""
    P = [[[target(tuple(path[:t])) for t in range(len(path) + 1)] for path in tup] for tup in tuples]
    Q = [[[draft(tuple(path[:t])) for t in range(len(path))] for path in tup] for tup in tuples]
    return (torch.tensor(np.array(tuples), dtype=torch.int64), torch.tensor(np.array(P)),
            torch.tensor(np.array(Q)))


def all_tuples(draft, V, k, L):
    paths = [(s, np.prod([draft(s[:t])[s[t]] for t in range(L)])) for s in product(range(V), repeat=L)]
    paths = [(s, w) for s, w in paths if w > 0]
    return [(tuple(s for s, _ in combo), float(np.prod([w for _, w in combo])))
            for combo in product(paths, repeat=k)]


def completed_error(target, tuples, weights, laws, L):
    total: dict = {}
    for w, law in zip(weights, laws):
        for s, pr in law.items():
            total[s] = total.get(s, 0.0) + w * pr
    return np.abs(complete_law(target, total, L + 1) - target_law(target, L + 1)).max()


@pytest.mark.parametrize("V,k,L", [(3, 2, 2), (2, 3, 2), (3, 2, 1)])
def test_gbv_and_traversal_exact(V, k, L):
    for seed in range(4):
        target, draft = random_conditional(V, 50 + seed, 0.2), random_conditional(V, 90 + seed, 0.2)
        tup = all_tuples(draft, V, k, L)
        tuples, weights = [t for t, _ in tup], [w for _, w in tup]
        D, P, Q = tensors(target, draft, tuples)
        assert completed_error(target, tuples, weights, gbv_conditional_law(D, P, Q), L) < 1e-12
        trav = [traversal_law(D[b], P[b], Q[b]) for b in range(len(tuples))]
        assert completed_error(target, tuples, weights, trav, L) < 1e-12
        if seed == 0 and k > 1:
            # negative control: GBV's selected path verified against the plain draft law is lossy
            j, _ = gbv_select(D, P, Q)
            ar = torch.arange(len(tuples))
            bad = chain_laws(D[ar, j], P[ar, j], Q[ar, j])
            assert completed_error(target, tuples, weights, bad, L) > 1e-3


def test_gbv_k1_is_bv_and_expected_length_order():
    """k = 1: GBV = traversal = BV exactly; the E|Y| of GBV and traversal exceed BV's for k = 2."""
    V, L = 3, 2
    target, draft = random_conditional(V, 3, 0.0), random_conditional(V, 4, 0.0)
    tup = all_tuples(draft, V, 1, L)
    D, P, Q = tensors(target, draft, [t for t, _ in tup])
    g = gbv_conditional_law(D, P, Q)
    tr = [traversal_law(D[b], P[b], Q[b]) for b in range(D.shape[0])]
    bv = chain_laws(D[:, 0], P[:, 0], Q[:, 0])
    for a, b, c in zip(g, tr, bv):
        for s in set(a) | set(b) | set(c):
            assert abs(a.get(s, 0) - c.get(s, 0)) < 1e-12 and abs(b.get(s, 0) - c.get(s, 0)) < 1e-12


@pytest.mark.parametrize("method", ["gbv", "blend", "traversal", "spectr", "bv"])
def test_sampling_matches_exact_law(method):
    """One draft tuple repeated over N requests: chi-square (false alarm 1e-6) against the exact
    conditional law (numpy reference for SpecTr's tree with K-SEQ)."""
    V, k, L = 3, 2, 2
    target, draft = random_conditional(V, 21, 0.0), random_conditional(V, 22, 0.0)
    tup = ((0, 1), (0, 2))
    D, P, Q = tensors(target, draft, [tup])
    if method == "gbv":
        law = gbv_conditional_law(D, P, Q)[0]
    elif method == "traversal":
        law = traversal_law(D[0], P[0], Q[0])
    elif method == "bv":
        law = chain_laws(D[:, 0], P[:, 0], Q[:, 0])[0]
    elif method == "blend":
        law = blend_conditional_law(D, P, Q)[0]
    else:
        law = tree_conditional_law(target, draft, np.array(tup), get_selector("kseq"))
    N = 3000 if method == "traversal" else 20_000
    g = torch.Generator().manual_seed(5)
    out, num = verify_tree_batched(method, D.expand(N, k, L), P.expand(N, -1, -1, -1),
                                   Q.expand(N, -1, -1, -1), generator=g)
    keys = sorted(s for s, pr in law.items() if pr > 0)
    index = {s: i for i, s in enumerate(keys)}
    counts = np.zeros(len(keys))
    for row, t in zip(out.tolist(), num.tolist()):
        counts[index[tuple(row[: t + 1])]] += 1
    expected = N * np.array([law[s] for s in keys])
    keep = expected > 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert stats.chisquare(obs, exp).pvalue > 1e-6


def test_bad_shapes():
    D = torch.zeros(2, 2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="target"):
        verify_tree_batched("gbv", D, torch.ones(2, 2, 3, 4), torch.ones(2, 2, 3, 4))
    with pytest.raises(ValueError, match="method"):
        verify_tree_batched("nope", D, torch.ones(2, 2, 4, 4) / 4, torch.ones(2, 2, 3, 4) / 4)


@pytest.mark.parametrize("name", ["gbv", "blend", "traversal"])
def test_conditional_laws_match_numpy_reference(name):
    """Per draft tuple, the torch verifier's exact law equals ot_coupling's sequence verifier's
    (1e-12), including tuples with repeated paths and shared prefixes."""
    from ot_coupling.sequence import get_sequence_verifier

    ref = get_sequence_verifier(name)
    V, k, L = 3, 3, 2
    target, draft = random_conditional(V, 31, 0.2), random_conditional(V, 32, 0.2)
    rng = np.random.default_rng(0)
    tup = all_tuples(draft, V, k, L)
    tuples = [tup[i][0] for i in rng.choice(len(tup), 40, replace=False)]
    D, P, Q = tensors(target, draft, tuples)
    if name == "traversal":
        mine = [traversal_law(D[b], P[b], Q[b]) for b in range(len(tuples))]
    elif name == "blend":
        mine = blend_conditional_law(D, P, Q)
    else:
        mine = gbv_conditional_law(D, P, Q, rule=name)
    for t, law in zip(tuples, mine):
        r = ref.conditional_law(target, draft, np.array(t))
        assert max(abs(r.get(s, 0) - law.get(s, 0)) for s in set(r) | set(law)) < 1e-12


def test_expected_length_equals_mean_of_exact_law():
    from gpu_backend.tree import expected_length

    target, draft = random_conditional(3, 1, 0.2), random_conditional(3, 2, 0.2)
    tup = all_tuples(draft, 3, 2, 2)[:30]
    D, P, Q = tensors(target, draft, [t for t, _ in tup])
    laws = {"bv": chain_laws(D[:, 0], P[:, 0], Q[:, 0]),
            "gbv": gbv_conditional_law(D, P, Q),
            "blend": blend_conditional_law(D, P, Q),
            "traversal": [traversal_law(D[b], P[b], Q[b]) for b in range(D.shape[0])]}
    for method, law in laws.items():
        ref = torch.tensor([sum(len(s) * pr for s, pr in lw.items()) for lw in law], dtype=torch.float64)
        assert float((expected_length(method, D, P, Q) - ref).abs().max()) < 1e-12


def close_pair(V: int, seed: int):
    """A target and a draft close to it (0.85 target + 0.15 other): the blend weight is in (0, 1)."""
    target, other = random_conditional(V, seed, 0.0), random_conditional(V, 100 + seed, 0.0)
    return target, (lambda u: 0.85 * target(u) + 0.15 * other(u))


def test_blend_with_interior_weight():
    """Pairs where blending is active (0 < lam < 1): completed law == target law over all draft
    tuples (1e-12), per-tuple laws == the numpy BlendVerifier, and sampled outputs follow the law."""
    from ot_coupling.sequence import get_sequence_verifier

    ref = get_sequence_verifier("blend")
    V, k, L = 3, 3, 2
    for seed in (3,):
        target, draft = close_pair(V, seed)
        tup = all_tuples(draft, V, k, L)
        tuples, weights = [t for t, _ in tup], [w for _, w in tup]
        D, P, Q = tensors(target, draft, tuples)
        lam = blend_plan(D, P, Q)[0]
        assert 0.05 < float(lam[0]) < 0.95                # interior: both components active
        laws = blend_conditional_law(D, P, Q)
        assert completed_error(target, tuples, weights, laws, L) < 1e-12
        for i in range(0, len(tuples), 37):
            r = ref.conditional_law(target, draft, np.array(tuples[i]))
            assert max(abs(r.get(s, 0) - laws[i].get(s, 0)) for s in set(r) | set(laws[i])) < 1e-12
    # sampling, one tuple with GBV's path != path 1
    i = next(i for i in range(len(tuples)) if int(gbv_select(D[i:i + 1], P[i:i + 1], Q[i:i + 1])[0]) != 0)
    N, g = 20_000, torch.Generator().manual_seed(3)
    out, num = verify_tree_batched("blend", D[i:i + 1].expand(N, k, L), P[i:i + 1].expand(N, -1, -1, -1),
                                   Q[i:i + 1].expand(N, -1, -1, -1), generator=g)
    law = laws[i]
    keys = sorted(s for s, pr in law.items() if pr * N > 5)
    index = {s: j for j, s in enumerate(keys)}
    counts = np.zeros(len(keys) + 1)
    for row, t in zip(out.tolist(), num.tolist()):
        counts[index.get(tuple(row[: t + 1]), len(keys))] += 1
    expected = N * np.array([law[s] for s in keys] + [1 - sum(law[s] for s in keys)])
    keep = expected > 0
    assert counts[~keep].sum() == 0
    assert stats.chisquare(counts[keep], expected[keep] * counts.sum() / expected[keep].sum()).pvalue > 1e-6
