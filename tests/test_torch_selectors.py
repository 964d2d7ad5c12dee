"""Torch selectors, exact and bitwise tiers: acceptance equals the numpy reference (1e-12 in
float64: the array work is one kernel, docs/backends.md; 1e-4 in float32), batched verification equals a per-row loop bit for bit with injected
noise, logits equal probabilities, half precision works, and the regression fixtures hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_cases import DEVICES, NAME_K, P_SMALL, Q_SMALL, random_batch

import ot_coupling
from gpu_backend import get_selector
from gpu_backend.kseq import kseq_rho

#: (V, rows): vocabularies that are not a multiple of any block size
SIZES = [(7, 12), (1000, 6), (4099, 3)]


def _numpy_acceptance(name: str, P: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    ref = ot_coupling.get_selector(name)
    return np.array([ref.acceptance(p, q, k) for p, q in zip(P, Q)])


def _skip_costly(name: str, k: int, V: int, largest_wor: int = 1000) -> None:
    if V > 7 and k > 1 and name == "gumbel":
        pytest.skip("exact gumbel acceptance for k > 1 is O(V^2 k n_nodes); covered at V = 7")
    if V > largest_wor and k > 2 and name == "rrs_wor":
        pytest.skip("O(R V log V) rejection paths; covered at V = 1000 in float64 (time budget)")


@pytest.mark.parametrize("V, rows", SIZES)
@pytest.mark.parametrize("name, k", NAME_K)
def test_acceptance_matches_numpy_float64(name, k, V, rows):
    _skip_costly(name, k, V)
    P, Q = random_batch(10 * V + k, rows, V)
    got = get_selector(name).acceptance(torch.from_numpy(P), torch.from_numpy(Q), k)
    assert got.dtype == torch.float64 and got.shape == (rows,)
    np.testing.assert_allclose(got.numpy(), _numpy_acceptance(name, P, Q, k), rtol=0, atol=1e-12)


@pytest.mark.parametrize("V, rows", SIZES)
@pytest.mark.parametrize("name, k", NAME_K)
def test_acceptance_matches_numpy_float32(name, k, V, rows):
    _skip_costly(name, k, V, largest_wor=7)
    P, Q = random_batch(3 * V + k, rows, V)
    P32, Q32 = torch.from_numpy(P).float(), torch.from_numpy(Q).float()
    got = get_selector(name).acceptance(P32, Q32, k)
    assert got.dtype == torch.float32
    # the reference sees the same (float32-rounded, renormalised) inputs
    P64, Q64 = P32.double(), Q32.double()
    want = _numpy_acceptance(name, (P64 / P64.sum(1, keepdim=True)).numpy(),
                             (Q64 / Q64.sum(1, keepdim=True)).numpy(), k)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-4)


def test_worked_examples():
    """docs/theory/membership_ot.md#worked-examples, Example A (p = [.5,.3,.15,.05], q = [.2,.2,.3,.3]) and B."""
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.2, 0.2, 0.3, 0.3], [0.7, 0.3, 0.0, 0.0]], dtype=torch.float64)
    table = {("kseq", 2): 0.785330, ("kseq", 3): 0.858519, ("rrs", 2): 0.760000, ("rrs", 3): 0.828000,
             ("naive", 2): 0.390000, ("naive", 3): 0.521800, ("rrs_wor", 2): 0.814286,
             ("rrs_wor", 3): 0.905714, ("spechub", 2): 0.771429, ("speculative", 1): 0.6}
    for (name, k), want in table.items():
        assert get_selector(name).acceptance(p[:1], q[:1], k).item() == pytest.approx(want, abs=1e-6)
    rho = kseq_rho(p, q, 2)
    assert rho.tolist() == pytest.approx([1.463325, 1.321699], abs=1e-6)
    assert get_selector("kseq").acceptance(p[1:], q[1:], 2).item() == pytest.approx(0.896510, abs=1e-6)
    assert kseq_rho(p[:1], q[:1], 3).item() == pytest.approx(1.792593, abs=1e-6)


def test_kseq_rho_is_the_root_to_machine_precision():
    """f(rho*) = 1 - (1 - beta)^k - rho* beta: valid (<= 0) at rho*, invalid just below it, and
    rho* equals an independent algorithm (numpy bisection on the full beta) to 1e-13."""
    from ot_coupling.kseq import kseq_rho_batch

    P, Q = random_batch(5, 30, 50)
    def f(rho, k):
        beta = np.minimum(Q, P / rho[:, None]).sum(1)
        return 1 - (1 - beta) ** k - rho * beta

    def alpha(rho, k):
        return 1 - (1 - np.minimum(Q, P / rho[:, None]).sum(1)) ** k

    for k in (2, 3, 8):
        r = kseq_rho(torch.from_numpy(P), torch.from_numpy(Q), k).numpy()
        assert (r >= 1).all() and (r <= k).all()
        assert (f(r, k) <= 1e-14).all()  # valid side, up to the round-off of f
        inner = r > 1 + 1e-6
        assert (f(r * (1 - 1e-9), k)[inner] > 0).all()  # any visibly smaller rho is invalid
        ref = kseq_rho_batch(P, Q, k, method="bisect")
        np.testing.assert_allclose(r[inner], ref[inner], rtol=1e-13)
        # p == q rows: f = -(1 - 1/rho)^k + round-off, a k-fold root at 1 that is only located to
        # eps^(1/k); the acceptance 1 - (1 - beta)^k agrees to round-off
        np.testing.assert_allclose(alpha(r, k)[~inner], alpha(ref, k)[~inner], rtol=0, atol=1e-13)


def _per_row(sel, P, Q, D, noise):
    rows = [sel.verify(P[b:b + 1], Q[b:b + 1], D[b:b + 1],
                       noise={key: v[b:b + 1] for key, v in noise.items()}) for b in range(P.shape[0])]
    return torch.cat([t for t, _ in rows]), torch.cat([a for _, a in rows])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name, k", NAME_K)
def test_batched_equals_per_row_bitwise(name, k, dtype, device):
    P, Q = (torch.from_numpy(x).to(device=device, dtype=dtype) for x in random_batch(7, 24, 1000))
    sel = get_selector(name)
    gen = torch.Generator(device=device).manual_seed(11)
    D = sel.draft(Q, k, gen)
    noise = sel.draw_noise(P.shape[0], P.shape[1], k, generator=gen, device=device, dtype=dtype)
    tokens, accepted = sel.verify(P, Q, D, noise=noise)
    ref_tokens, ref_accepted = _per_row(sel, P, Q, D, noise)
    assert torch.equal(tokens, ref_tokens) and torch.equal(accepted, ref_accepted)
    assert tokens.dtype == torch.long and accepted.dtype == torch.bool
    assert torch.equal(accepted, (D == tokens[:, None]).any(1))  # membership
    assert (P.gather(1, tokens[:, None]) > 0).all()  # never a token of zero target mass


@pytest.mark.parametrize("name, k", NAME_K)
def test_seeded_runs_are_reproducible(name, k):
    P, Q = (torch.from_numpy(x) for x in random_batch(1, 12, 7))
    sel = get_selector(name)
    runs = [sel.sample(P, Q, k, torch.Generator().manual_seed(5)) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name, k", NAME_K)
def test_logits_input_equals_probability_input(name, k):
    P, Q = random_batch(2, 12, 9)
    P, Q = torch.from_numpy(P), torch.from_numpy(Q)
    shift = torch.linspace(-3.0, 5.0, P.shape[0], dtype=torch.float64)[:, None]
    lp, lq = torch.log(P) + shift, torch.log(Q) - shift  # -inf where the mass is 0
    assert torch.isneginf(lp).any() and torch.isneginf(lq).any()
    sel = get_selector(name)
    torch.testing.assert_close(sel.acceptance(lp, lq, k, logits=True), sel.acceptance(P, Q, k),
                               rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(3)
    D = sel.draft(Q, k, gen)
    noise = sel.draw_noise(P.shape[0], P.shape[1], k, generator=gen)
    assert all(torch.equal(a, b) for a, b in zip(sel.verify(lp, lq, D, noise=noise, logits=True),
                                                 sel.verify(P, Q, D, noise=noise)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, k", NAME_K)
def test_half_precision_inputs(name, k, dtype):
    """fp16/bf16 logits and probabilities are computed in float32 and agree with the reference."""
    logits = (3 * torch.randn(2, 4, 24, generator=torch.Generator().manual_seed(4))).to(dtype)
    P, Q = (torch.softmax(x.double(), 1) for x in logits)
    sel = get_selector(name)
    acc = sel.acceptance(logits[0], logits[1], k, logits=True)
    assert acc.dtype == torch.float32
    np.testing.assert_allclose(acc.numpy(), _numpy_acceptance(name, P.numpy(), Q.numpy(), k), atol=1e-4)
    acc_probs = sel.acceptance(P.to(dtype), Q.to(dtype), k)
    assert acc_probs.dtype == torch.float32
    np.testing.assert_allclose(acc_probs.numpy(), acc.numpy(), atol=2e-2)  # inputs rounded to half
    tokens, accepted, drafts = sel.sample(logits[0], logits[1], k, torch.Generator().manual_seed(0),
                                          logits=True)
    assert tokens.shape == (4,) and drafts.shape == (4, k)
    assert torch.equal(accepted, (drafts == tokens[:, None]).any(1))
    assert (P.gather(1, tokens[:, None]) > 0).all()


@pytest.mark.parametrize("name, k", NAME_K)
def test_coin_of_zero_never_accepts_a_zero_target_token(name, k):
    """All coins exactly 0 and a drafted token of zero target mass: it is never output."""
    P, Q = torch.from_numpy(P_SMALL[None]), torch.from_numpy(Q_SMALL[None])
    sel = get_selector(name)
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        D = sel.draft(Q, k, gen)
        if name not in ("spechub", "greedy") and not (D == 2).any():  # structured laws keep theirs
            D[:, 0] = 2  # p(2) = 0 < q(2)
        noise = sel.draw_noise(1, 6, k, generator=gen)
        noise = {key: torch.zeros_like(v) if key == "coins" else v for key, v in noise.items()}
        tokens, _ = sel.verify(P, Q, D, noise=noise)
        assert P[0, tokens[0]] > 0


@pytest.mark.parametrize("name, k", NAME_K)
def test_zero_residual_gives_no_nan(name, k):
    """p == q: the residual has zero mass; coins next to 1 still give valid tokens, no NaN."""
    _, P = random_batch(4, 6, 7)  # q rows keep >= 4 tokens of positive mass
    P = torch.from_numpy(P)
    sel = get_selector(name)
    D = sel.draft(P, k, torch.Generator().manual_seed(0))
    noise = sel.draw_noise(6, 7, k, generator=torch.Generator().manual_seed(2))
    noise = {key: torch.full_like(v, 1 - 2 ** -53) if key == "coins" else v for key, v in noise.items()}
    tokens, accepted = sel.verify(P, P, D, noise=noise)
    assert ((tokens >= 0) & (tokens < 7)).all()
    assert torch.equal(accepted, (D == tokens[:, None]).any(1))
    assert (P.gather(1, tokens[:, None]) > 0).all()
    assert torch.isfinite(sel.acceptance(P, P, k)).all()


@pytest.mark.parametrize("name, k", NAME_K)
def test_never_out_of_range_with_a_zero_tail(name, k):
    """Vocabulary 4099 whose last 1000 tokens have zero mass (the vLLM tail-tile bug)."""
    P, Q = random_batch(9, 4, 4099)
    P[:, 3099:] = 0
    P /= P.sum(1, keepdims=True)
    P, Q = torch.from_numpy(P), torch.from_numpy(Q)
    tokens, accepted, drafts = get_selector(name).sample(P, Q, k, torch.Generator().manual_seed(0))
    assert ((tokens >= 0) & (tokens < 3099)).all()
    assert torch.equal(accepted, (drafts == tokens[:, None]).any(1))


@pytest.mark.parametrize("law, k", [("hub", 2), ("greedy", 3), ("without_replacement", 2),
                                    ("without_replacement", 3)])
def test_naive_under_other_draft_laws(law, k):
    """``get_selector("naive", drafts=law)``: acceptance equals the numpy reference; its sampler
    uses that law; an unknown law is refused."""
    P, Q = random_batch(21 + k, 12, 7)
    sel = get_selector("naive", drafts=law)
    got = sel.acceptance(torch.from_numpy(P), torch.from_numpy(Q), k).numpy()
    want = np.array([ot_coupling.get_selector("naive", drafts=law).acceptance(p, q, k) for p, q in zip(P, Q)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert sel.draft_law == law and sel.sample(P, Q, k, torch.Generator().manual_seed(0))[2].shape == (12, k)
    with pytest.raises(ValueError, match="unknown draft law"):
        get_selector("naive", drafts="beam")
