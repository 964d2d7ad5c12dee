"""Batched chain verifier (ot_coupling.kernels.chain): exact output law by enumeration with the coins
integrated out, agreement with the numpy references, numpy == torch with the same noise, sampling."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from scipy import stats

from ot_coupling.kernels.chain import chain_plan, final_weights, verify_chain
from ot_coupling.registry import get_selector
from ot_coupling.sequence import (block_conditional_law, complete_law, target_law,
                                  tree_conditional_law)

torch = pytest.importorskip("torch")

RULES = ("speculative", "block")


def random_conditional(V: int, seed: int, zero_prob: float = 0.3):
    """A prefix -> distribution model with random (memoised) rows holding some zeros."""
    memo: dict = {}

    def model(prefix: tuple) -> np.ndarray:
        if prefix not in memo:
            g = np.random.default_rng([seed, len(prefix), *prefix])
            p = g.dirichlet(np.full(V, 0.7))
            p[g.random(V) < zero_prob] = 0.0
            if p.sum() == 0:
                p[g.integers(V)] = 1.0
            memo[prefix] = p / p.sum()
        return memo[prefix]

    return model


def flatten(target, draft, drafts: list[tuple]):
    """Flattened layout of one request per draft tuple (lengths may differ, 0 allowed)."""
    P, Q, X, n = [], [], [], []
    for d in drafts:
        for j in range(len(d)):
            P.append(target(d[:j]))
            Q.append(draft(d[:j]))
            X.append(d[j])
        n.append(len(d))
        P.append(target(tuple(d)))
    V = P[0].size
    T = len(X)
    return (np.array(P), np.array(Q).reshape(T, V), np.array(X, dtype=np.int64),
            np.cumsum(n).astype(np.int64))


def plan_laws(P, Q, X, cu, rule):
    """Exact law of every request's emitted sequence from the kernel's own plan (coins integrated)."""
    lay, stop, w = chain_plan(P, Q, X, cu, rule)
    B, m = lay.n.shape[0], lay.m
    laws = [dict() for _ in range(B)]
    for t in range(m + 1):
        tau = np.minimum(t, lay.n)
        W, Prow = final_weights(P, Q, cu, tau, w[np.arange(B), tau], lay)
        W = np.where(W.sum(axis=1, keepdims=True) > 0, W, Prow)
        W = W / W.sum(axis=1, keepdims=True)
        for b in range(B):
            n = int(lay.n[b])
            if t > n:
                continue
            if rule == "speculative":
                pr = np.prod(stop[b, :t]) * (1.0 - (stop[b, t] if t < n else 0.0))
            else:
                pr = stop[b, t] * np.prod(1.0 - stop[b, t + 1: n + 1])
            prefix = tuple(int(v) for v in X[lay.start[b]: lay.start[b] + t])
            for y in np.flatnonzero(W[b] > 0):
                key = prefix + (int(y),)
                laws[b][key] = laws[b].get(key, 0.0) + pr * W[b, y]
    return laws


@pytest.mark.parametrize("rule", RULES)
def test_exact_law_by_enumeration(rule):
    """Every draft of lengths 0..3 over V = 3 as one batch of requests: each request's law equals
    the numpy reference's, and the completed law over all drafts equals the target's (1e-12)."""
    for seed in range(8):
        V = 3
        target, draft = random_conditional(V, seed), random_conditional(V, 1000 + seed)
        for gamma in (1, 2, 3):
            drafts = [d for d in product(range(V), repeat=gamma)
                      if np.prod([draft(d[:j])[d[j]] for j in range(gamma)]) > 0]
            P, Q, X, cu = flatten(target, draft, drafts + [()])
            laws = plan_laws(P, Q, X, cu, rule)
            total: dict = {}
            for d, law in zip(drafts, laws):
                if rule == "block":
                    ref = block_conditional_law(target, draft, np.array(d))
                else:
                    ref = tree_conditional_law(target, draft, np.array([d]), get_selector("speculative"))
                keys = set(ref) | set(law)
                assert max(abs(ref.get(s, 0) - law.get(s, 0)) for s in keys) < 1e-12
                wd = np.prod([draft(d[:j])[d[j]] for j in range(gamma)])
                for s, pr in law.items():
                    total[s] = total.get(s, 0.0) + wd * pr
            got = complete_law(target, total, gamma + 1)
            assert np.abs(got - target_law(target, gamma + 1)).max() < 1e-12
            # the empty draft: a plain target sample
            assert laws[-1] == {(y,): pytest.approx(target(())[y], abs=1e-15)
                                for y in np.flatnonzero(target(()) > 0)}


def _batch(rng, B, V, max_n, dtype=np.float64):
    n = rng.integers(0, max_n + 1, B)
    n[0] = max_n
    T = int(n.sum())
    P = rng.dirichlet(np.full(V, 0.3), T + B).astype(dtype)
    Q = rng.dirichlet(np.full(V, 0.3), T).astype(dtype)
    P[rng.random(P.shape) < 0.2] = 0
    P[:, 0] += 1e-3
    P /= P.sum(1, keepdims=True)
    X = np.array([rng.choice(V, p=q / q.sum()) for q in Q], dtype=np.int64)
    return P, Q, X, np.cumsum(n).astype(np.int64)


@pytest.mark.parametrize("rule", RULES)
def test_numpy_equals_torch(rule):
    rng = np.random.default_rng(5)
    P, Q, X, cu = _batch(rng, 24, 300, 5)
    T, B = X.size, cu.size
    noise = {"uniform": rng.random(T), "sample": rng.random(B)}
    a = verify_chain(P, Q, X, cu, rule=rule, noise=noise)
    b = verify_chain(*(torch.from_numpy(v) for v in (P, Q, X, cu)), rule=rule,
                     noise={k: torch.from_numpy(v) for k, v in noise.items()})
    np.testing.assert_array_equal(a.output_token_ids, b.output_token_ids.numpy())
    np.testing.assert_array_equal(a.num_accepted, b.num_accepted.numpy())
    la, sa, wa = chain_plan(P, Q, X, cu, rule)
    lb, sb, wb = chain_plan(*(torch.from_numpy(v) for v in (P, Q, X, cu)), rule)
    np.testing.assert_allclose(sa, sb.numpy(), rtol=0, atol=1e-15)
    # the sampler's stop position follows the full plan (block: the lazy backward scan)
    for r in range(B):
        n, st = int(la.n[r]), int(la.start[r])
        uu = noise["uniform"][st: st + n]
        if rule == "speculative":
            rej = [j for j in range(n) if not uu[j] < sa[r, j]]
            tau = rej[0] if rej else n
        else:
            tau = max([i for i in range(1, n + 1) if uu[i - 1] < sa[r, i]], default=0)
        assert int(a.num_accepted[r]) == tau
    # structure: accepted prefix equals the drafts, then exactly one emitted token
    for r in range(B):
        t = int(a.num_accepted[r])
        s = int(cu[r] - (cu[r] - (cu[r - 1] if r else 0)))
        assert (a.output_token_ids[r, :t] == X[s: s + t]).all()
        assert a.output_token_ids[r, t] >= 0 and (a.output_token_ids[r, t + 1:] == -1).all()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_sampling_matches_exact_law(rule, backend):
    """One draft repeated over 40 000 requests: chi-square of the emitted sequences against the
    kernel's exact conditional law (false alarm 1e-6)."""
    V = 4
    target, draft = random_conditional(V, 7, zero_prob=0.1), random_conditional(V, 8, zero_prob=0.0)
    d = (1, 2, 0)
    P, Q, X, cu = flatten(target, draft, [d])
    law = plan_laws(P, Q, X, cu, rule)[0]
    N = 40_000
    Pb, Qb = np.tile(P, (N, 1)), np.tile(Q, (N, 1))
    Xb, cub = np.tile(X, N), np.arange(1, N + 1) * len(d)
    # rows of request b: its n+1 target rows are contiguous in the tiled layout
    if backend == "torch":
        g = torch.Generator().manual_seed(11)
        out = verify_chain(*(torch.from_numpy(v) for v in (Pb, Qb, Xb, cub)), rule=rule, rng=g)
        toks, acc = out.output_token_ids.numpy(), out.num_accepted.numpy()
    else:
        out = verify_chain(Pb, Qb, Xb, cub, rule=rule, rng=np.random.default_rng(11))
        toks, acc = out.output_token_ids, out.num_accepted
    keys = sorted(s for s, pr in law.items() if pr > 0)
    index = {s: i for i, s in enumerate(keys)}
    counts = np.zeros(len(keys))
    for row, t in zip(toks, acc):
        counts[index[tuple(int(v) for v in row[: t + 1])]] += 1  # KeyError = a probability-0 output
    expected = N * np.array([law[s] for s in keys])
    assert expected.min() > 5
    assert stats.chisquare(counts, expected).pvalue > 1e-6


def test_validation():
    P, Q, X, cu = _batch(np.random.default_rng(0), 3, 10, 2)
    with pytest.raises(ValueError, match="rule"):
        verify_chain(P, Q, X, cu, rule="nope")
    with pytest.raises(ValueError, match="target_probs"):
        verify_chain(P[:-1], Q, X, cu)
    with pytest.raises(ValueError, match="cu_num_draft_tokens"):
        verify_chain(P, Q, X, cu[::-1].copy())
    with pytest.raises(ValueError, match="draft_token_ids"):
        verify_chain(P, Q, X + 100, cu)
    with pytest.raises(ValueError, match="noise"):
        verify_chain(P, Q, X, cu, noise={"uniform": np.zeros(1)})
