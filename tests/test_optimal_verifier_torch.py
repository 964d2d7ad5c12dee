"""Torch fast path of the optimal verifier (gpu_backend.optimal.TorchOptimal): acceptance against the
numpy reference and the closed form, bitwise batched == per-row with injected noise, sampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oracles import assert_law, random_cases

from gpu_backend.optimal import TorchOptimal
from solvers.closed_form import optimal_acceptance
from solvers.optimal_verifier import OptimalVerifier

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA not available")])]


def _padded_rows(seed: int, n: int, V: int = 8):
    """random_cases padded with zero-mass tokens to a common V (zeros in p and q included)."""
    P, Q = np.zeros((n, V)), np.zeros((n, V))
    for b, (p, q) in enumerate(random_cases(seed, n, v_range=(2, V))):
        P[b, : p.size], Q[b, : q.size] = p, q
    return P, Q


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_acceptance_matches_numpy_and_optimum(device, k):
    P, Q = _padded_rows(31 + k, 36)
    acc = TorchOptimal().acceptance(torch.tensor(P, device=device), torch.tensor(Q, device=device), k)
    assert acc.shape == (36,) and acc.dtype == torch.float64
    ref = np.array([OptimalVerifier("importance").acceptance(P[b], Q[b], k) for b in range(36)])
    opt = np.array([optimal_acceptance(P[b], Q[b], k) for b in range(36)])
    assert np.abs(acc.cpu().numpy() - ref).max() <= 1e-12  # one fit kernel (docs/backends.md)
    assert np.abs(acc.cpu().numpy() - opt).max() <= 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_float32_and_logits(device):
    rng = np.random.default_rng(3)
    P, Q = rng.dirichlet(np.ones(300), size=4), rng.dirichlet(np.ones(300), size=4)
    opt = np.array([optimal_acceptance(P[b], Q[b], 4) for b in range(4)])
    acc32 = TorchOptimal().acceptance(torch.tensor(P, dtype=torch.float32, device=device),
                                      torch.tensor(Q, dtype=torch.float32, device=device), 4)
    assert acc32.dtype == torch.float32
    assert np.abs(acc32.cpu().numpy() - opt).max() <= 1e-4
    acc_logits = TorchOptimal().acceptance(torch.log(torch.tensor(P, device=device)),
                                           torch.log(torch.tensor(Q, device=device)), 4, logits=True)
    assert np.abs(acc_logits.cpu().numpy() - opt).max() <= 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_batched_equals_per_row_bitwise(device):
    P, Q = _padded_rows(41, 24)
    k = 3
    sel = TorchOptimal()
    p, q = torch.tensor(P, device=device), torch.tensor(Q, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    drafts = sel.draft(q, k, gen)
    noise = sel.draw_noise(24, 8, k, generator=gen, device=device)
    tokens, accepted = sel.verify(p, q, drafts, noise=noise)
    for b in range(24):
        row_noise = {name: x[b : b + 1] for name, x in noise.items()}
        t_b, a_b = TorchOptimal().verify(p[b : b + 1], q[b : b + 1], drafts[b : b + 1], noise=row_noise)
        assert int(t_b) == int(tokens[b]) and bool(a_b) == bool(accepted[b])


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_law_and_acceptance(device):
    p = np.array([0.3, 0.0, 0.25, 0.05, 0.15, 0.25])
    q = np.array([0.1, 0.3, 0.2, 0.2, 0.0, 0.2])
    n, k = 40000, 3
    P = torch.tensor(np.tile(p, (n, 1)), device=device)
    Q = torch.tensor(np.tile(q, (n, 1)), device=device)
    gen = torch.Generator(device=device).manual_seed(1)
    tokens, accepted, drafts = TorchOptimal().sample(P, Q, k, gen)
    assert_law(tokens.cpu().numpy(), p)
    alpha = optimal_acceptance(p, q, k)
    rate = accepted.double().mean().item()
    assert abs(rate - alpha) <= 6 * np.sqrt(alpha * (1 - alpha) / n)
    assert torch.equal(accepted, (drafts == tokens[:, None]).any(1))


# The fit and the Newton solve are one kernel (ot_coupling.kernels.importance) run by numpy and
# torch alike: numpy == torch to 1e-12 is checked in tests/test_kernels.py.


def test_bad_input():
    sel = TorchOptimal()
    with pytest.raises(ValueError, match="p"):
        sel.acceptance(torch.tensor([[0.5, float("nan")]]), torch.tensor([[0.5, 0.5]]), 2)
    with pytest.raises(ValueError, match="k"):
        sel.acceptance(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.5, 0.5]]), 0)
    with pytest.raises(ValueError, match="drafts"):
        sel.verify(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[0, 2]]))


def test_registry():
    from gpu_backend.registry import get_selector

    assert isinstance(get_selector("optimal"), TorchOptimal)


def test_full_vocabulary_torch():
    """V = 49152, k = 8, peaked pairs; row 5 of 8 (after prepare_pair's renormalisation) has a target on
    the boundary of the H level's polytope, where the weights drift to 0: the fit must stop and
    keep its best iterate (it once ran away to an acceptance 0.04 below the optimum)."""
    rng = np.random.default_rng(1)
    P, Q = rng.dirichlet(np.full(49152, 0.05), size=8), rng.dirichlet(np.full(49152, 0.05), size=8)
    P, Q = P[4:6], Q[4:6]
    sel = TorchOptimal()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        acc = sel.acceptance(torch.tensor(P), torch.tensor(Q), 8).numpy()
    assert np.abs(acc - [optimal_acceptance(P[b], Q[b], 8) for b in range(2)]).max() <= 1e-9
    plan = sel.plan(torch.tensor(P), torch.tensor(Q), 8)
    assert float(plan.quad_error.max()) <= 1e-12
    # whether the boundary row converges or stalls (at an L1 error of 7e-10) depends on the last
    # bit of torch's row sums, i.e. on its thread count; a stall is always reported, never silent
    assert float(plan.fit_error.max()) <= 1e-9
    assert (plan.status != 0) == any(issubclass(w.category, RuntimeWarning) for w in caught)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 4, 16])
def test_full_vocabulary_torch_all_k(k):
    rng = np.random.default_rng(200 + k)
    P, Q = rng.dirichlet(np.ones(49152), size=4), rng.dirichlet(np.ones(49152), size=4)
    acc = TorchOptimal().acceptance(torch.tensor(P), torch.tensor(Q), k).numpy()
    assert np.abs(acc - [optimal_acceptance(P[b], Q[b], k) for b in range(4)]).max() <= 1e-6


@pytest.mark.parametrize("alpha", [1.0, 0.05])
def test_batched_device_path_on_a_cpu_matches_the_row_path(monkeypatch, alpha):
    """The batched path (padded groups, one fit over all rows: what runs on CUDA) run on CPU
    tensors agrees with the per-row host path: acceptance and selection law to 1e-12, same levels,
    and both reach alpha*. (The weights agree to ~1e-8 only: a group near an end of its range moves
    its law by far less than its weight, so the 1e-12 stopping rule leaves them that loose.)"""
    import gpu_backend.optimal as go

    rng = np.random.default_rng(7)
    V, B, k = 3000, 5, 8
    P = torch.tensor(rng.dirichlet(np.full(V, alpha), B))
    Q = torch.tensor(rng.dirichlet(np.full(V, alpha), B))
    Q[1, :9] = 0.0                                     # q = 0 tokens in one row
    Q = Q / Q.sum(1, keepdim=True)
    host = go.importance_plan(P, Q, k)
    monkeypatch.setattr(go, "_on_host", lambda x: False)
    batched = go.importance_plan(P, Q, k)
    assert host.status == 0 and batched.status == 0
    acc_h = torch.minimum(host.marginal, P).sum(1).numpy()
    acc_b = torch.minimum(batched.marginal, P).sum(1).numpy()
    opt = np.array([optimal_acceptance(P[b].numpy(), Q[b].numpy(), k) for b in range(B)])
    assert np.abs(acc_b - acc_h).max() <= 1e-12 and np.abs(acc_b - opt).max() <= 1e-12
    assert torch.equal(batched.top, host.top)
    assert (batched.marginal - host.marginal).abs().sum(1).max() <= 2e-12
    np.testing.assert_allclose(batched.weights.numpy(), host.weights.numpy(), rtol=1e-6, atol=1e-300)
