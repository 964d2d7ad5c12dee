"""The per-row verify fast path of the torch selectors gives the same results as the plain code:
input checks (the same error for each kind of bad entry), the race on the residual's support (the
dense race's token), the lazily drawn race noise of ``TorchOptimal`` (the same values as
``draw_noise``; only the generator's state after an all-accept call differs), the plan cache and the
renormalisation that skips rows summing to exactly 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu_backend.optimal import TorchOptimal, _renormalise
from gpu_backend.ops import race_sample
from gpu_backend.validation import prepare_probs

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("x, logits, message", [
    ([[0.5, 0.5], [0.5, NAN]], False, "p contains NaN in row 1"),
    ([[0.5, INF], [0.5, -1.0]], False, "p contains inf"),
    ([[0.5, 0.5], [1.0, -INF]], False, "p contains inf"),
    ([[0.5, 0.5], [1.5, -0.5]], False, "p has negative mass in row 1"),
    ([[0.5, -0.5], [NAN, 0.5]], False, "p contains NaN in row 1"),
    ([[0.5, 0.5], [0.5, 0.6]], False, "p row 1 must sum to 1, sums to 1.1"),
    ([[0.0, 1.0], [0.0, INF]], True, "p logits contain +inf"),
    ([[0.0, -INF], [-INF, -INF]], True, "p logits are all -inf in row 1"),
    ([[INF, NAN]], True, "p contains NaN in row 0"),
])
def test_each_bad_entry_gives_its_error(x, logits, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        prepare_probs(torch.tensor(x, dtype=torch.float64), "p", logits=logits)


def test_float32_sum_overflow_and_empty_batch():
    with pytest.raises(ValueError, match="p row 0 must sum to 1, sums to inf"):
        prepare_probs(torch.tensor([[3e38, 3e38]], dtype=torch.float32))
    assert prepare_probs(torch.zeros(0, 3)).shape == (0, 3)
    assert prepare_probs(torch.zeros(0, 3), logits=True).shape == (0, 3)


@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prepared_rows_are_fresh_tensors(dtype, logits):
    """TorchOptimal's plan cache keeps prepared rows without a copy: they never share the input's memory."""
    x = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=dtype)
    out = prepare_probs(torch.log(x) if logits else x, logits=logits)
    assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)


def _dense_race(weights, exponentials, fallback=None):
    w = weights.clamp_min(0)
    if fallback is not None:
        w = torch.where((w > 0).any(dim=1, keepdim=True), w, fallback)
    return (torch.log(w) - torch.log(exponentials)).argmax(dim=1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 5])
def test_race_on_the_support_is_the_dense_race(batch, dtype):
    """Residual-like rows (mostly <= 0, some rows without mass, tied keys): same token as the dense race."""
    gen = torch.Generator().manual_seed(7)
    for trial in range(200):
        V = int(torch.randint(1, 40, (1,), generator=gen))
        w = (torch.rand(batch, V, generator=gen, dtype=torch.float64) - 0.7).to(dtype)
        if trial % 3 == 0:
            w[0] = torch.where(w[0] > 0, 0.0, w[0])  # a row without mass: the fallback races
        if trial % 5 == 0:  # ties: equal weights and equal exponentials
            w[:, : V // 2 + 1] = 0.125
        fallback = torch.rand(batch, V, generator=gen, dtype=torch.float64).to(dtype)
        fallback[fallback < 0.3] = 0
        fallback[:, -1] = 0.5  # every fallback row has mass
        exps = -torch.log(torch.rand(batch, V, generator=gen, dtype=torch.float64).clamp_min(1e-300)).to(dtype)
        if trial % 5 == 0:
            exps[:, : V // 2 + 1] = 1.0
        for fb in (fallback, None):
            assert torch.equal(race_sample(w, exps, fb, sparse=True), _dense_race(w, exps, fb))


@pytest.mark.parametrize("accept", [True, False])
def test_lazy_race_noise_has_the_eager_values(accept):
    """verify(rng) == verify(noise=draw_noise(rng)) from the same generator state; the race is
    drawn from the generator only when a row rejects."""
    rng = np.random.default_rng(3)
    P, Q = rng.dirichlet(np.ones(300), 2), rng.dirichlet(np.ones(300), 2)
    sel = TorchOptimal()
    p, q = torch.tensor(P), torch.tensor(Q)
    D = sel.draft(q, 3, torch.Generator().manual_seed(0))
    if accept:  # p = q: every coin accepts
        p = q
    seen = set()
    for seed in range(40):
        lazy, eager = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        tokens, accepted = sel.verify(p, q, D, lazy)
        noise = sel.draw_noise(2, 300, 3, rng=eager)
        ref = sel.verify(p, q, D, noise=noise)
        assert torch.equal(tokens, ref[0]) and torch.equal(accepted, ref[1])
        after_eager = torch.rand(1, generator=eager)
        if bool(accepted.all()):  # only select and coins were drawn: where two [B] draws leave it
            skip = torch.Generator().manual_seed(seed)
            torch.rand(2, generator=skip, dtype=torch.float64)
            torch.rand(2, generator=skip, dtype=torch.float64)
            nxt = torch.rand(1, generator=skip)
            assert torch.equal(torch.rand(1, generator=lazy), nxt) and not torch.equal(after_eager, nxt)
            seen.add(True)
        else:  # the race was drawn: the generator is where draw_noise leaves it
            assert torch.equal(torch.rand(1, generator=lazy), after_eager)
            seen.add(False)
    assert accept in seen

def test_sample_equals_draft_then_verify():
    rng = np.random.default_rng(4)
    p, q = (torch.tensor(rng.dirichlet(np.ones(50), 3)) for _ in range(2))
    sel = TorchOptimal()
    for seed in range(10):
        tokens, accepted, drafts = sel.sample(p, q, 4, torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed)
        D = sel.draft(q, 4, gen)
        assert torch.equal(D, drafts)
        assert all(torch.equal(a, b) for a, b in zip(sel.verify(p, q, D, gen), (tokens, accepted)))


def test_plan_cache_follows_the_values():
    """Cache hits on equal rows; a change of the caller's tensor in place refits."""
    rng = np.random.default_rng(5)
    p, q = torch.tensor(rng.dirichlet(np.ones(40), 1)), torch.tensor(rng.dirichlet(np.ones(40), 1))
    sel = TorchOptimal()
    first = sel.plan(p, q, 3)
    assert sel.plan(p.clone(), q.clone(), 3) is first
    p[0, :2] = p[0, :2].flip(0)
    second = sel.plan(p, q, 3)
    assert second is not first
    assert torch.equal(second.marginal, TorchOptimal().plan(p, q, 3).marginal)


def test_renormalise_skips_rows_summing_to_one_with_the_same_bits():
    rng = np.random.default_rng(6)
    hits = 0
    for _ in range(30):
        x = torch.tensor(rng.dirichlet(np.ones(1000), 1))
        x = x / x.sum(1, keepdim=True)
        hits += bool(x.sum() == 1)
        assert torch.equal(_renormalise(x), x / x.sum(1, keepdim=True))
    assert hits > 0  # the shortcut is taken


def test_batch_with_repeated_rows_equals_the_per_row_plans():
    """On a CPU each distinct row pair is fitted once, from its own rows: the plan of every row of a
    batch with repeats is the one-row call's, bit for bit (repeats were once fitted from rows
    renormalised twice, an ulp away in about a quarter of the rows)."""
    rng = np.random.default_rng(0)
    P, Q = rng.dirichlet(np.ones(300), 12), rng.dirichlet(np.ones(300), 12)
    order = [0, 1, 0, 2, 1, 3, 3, 4, 5, 0, 6, 7, 8, 9, 10, 11, 9]
    p, q = torch.tensor(P[order]), torch.tensor(Q[order])
    q[-1] = torch.tensor(Q[2])  # same p row as row 13, another q row: not a repeat
    plan = TorchOptimal().plan(p, q, 4)
    for b in range(len(order)):
        row = TorchOptimal().plan(p[b:b + 1], q[b:b + 1], 4)
        for name in ("weights", "top", "marginal", "fit_error", "quad_error", "converged"):
            assert torch.equal(getattr(plan, name)[b], getattr(row, name)[0]), (b, name)
