"""Torch selectors, statistical tier: with fixed seeds, the output tokens of ``sample`` follow the
target ``p`` and the membership-acceptance frequency follows the exact acceptance (chi-square and
binomial tests at false-alarm rate 1e-6, 100 000 draws), and the torch draft samplers follow the
exact tuple laws of :mod:`ot_coupling.draft_laws`. The tests can fail: the first draft, used as an
output, is rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import assert_law, gof_pvalue
from scipy import stats
from torch_cases import DEVICES, KS, P_SMALL, Q_SMALL

from gpu_backend import get_selector
from gpu_backend.drafting import sample_drafts
from ot_coupling import get_draft_law

N = 100_000
ALPHA = 1e-6


def _binomial_ok(successes: int, n: int, prob: float) -> bool:
    return stats.binomtest(successes, n, min(max(prob, 0.0), 1.0)).pvalue > ALPHA


#: the statistical tier runs the two largest k of every selector (time budget; at k = 1 every
#: rule but naive is speculative sampling, itself tested here)
STAT_CASES = [(name, k) for name, ks in KS.items() for k in ks[-2:]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, k", STAT_CASES)
def test_output_law_and_acceptance(name, k, device):
    sel = get_selector(name)
    P = torch.from_numpy(P_SMALL).to(device).expand(N, -1)
    Q = torch.from_numpy(Q_SMALL).to(device).expand(N, -1)
    gen = torch.Generator(device=device).manual_seed(1000 + 10 * k + len(name))
    tokens, accepted, drafts = sel.sample(P, Q, k, gen)
    assert_law(tokens.cpu().numpy(), P_SMALL, alpha=ALPHA)
    alpha = float(sel.acceptance(P[:1], Q[:1], k))
    assert _binomial_ok(int(accepted.sum()), N, alpha), (accepted.double().mean().item(), alpha)
    # power: the first draft is distributed as q (or the draft law's marginal), not p
    assert gof_pvalue(np.bincount(drafts[:, 0].cpu().numpy(), minlength=6), P_SMALL) < ALPHA


@pytest.mark.parametrize("law, k", [("iid", 1), ("iid", 3), ("without_replacement", 2),
                                    ("without_replacement", 3), ("hub", 2), ("greedy", 2),
                                    ("greedy", 3)])
def test_draft_samplers_follow_the_tuple_law(law, k):
    V = Q_SMALL.size
    tuples, probs = get_draft_law(law).enumerate(Q_SMALL, k)
    codes = tuples @ (V ** np.arange(k))
    expected = np.zeros(V ** k)
    np.add.at(expected, codes, probs)
    drafts = sample_drafts(torch.from_numpy(Q_SMALL).expand(N, -1), k, law,
                           generator=torch.Generator().manual_seed(7))
    assert_law(drafts.numpy() @ (V ** np.arange(k)), expected, alpha=ALPHA)


def test_residual_law_after_rejection():
    """Speculative sampling: given rejection, the token follows norm((p - q)^+) (Leviathan et al., ICML 2023, Algorithm 1)."""
    sel = get_selector("speculative")
    P = torch.from_numpy(P_SMALL).expand(N, -1)
    Q = torch.from_numpy(Q_SMALL).expand(N, -1)
    tokens, accepted, _ = sel.sample(P, Q, 1, torch.Generator().manual_seed(3))
    residual = np.clip(P_SMALL - Q_SMALL, 0, None)
    assert_law(tokens[~accepted].numpy(), residual / residual.sum(), alpha=ALPHA)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gumbel_verify_path_is_exact(k):
    """Draft then verify (noise sampled given the ordered drafts) has the coupling's laws too."""
    sel = get_selector("gumbel")
    P = torch.from_numpy(P_SMALL).expand(N, -1)
    Q = torch.from_numpy(Q_SMALL).expand(N, -1)
    gen = torch.Generator().manual_seed(77 + k)
    tokens, accepted = sel.verify(P, Q, sel.draft(Q, k, gen), gen)
    assert_law(tokens.numpy(), P_SMALL, alpha=ALPHA)
    assert _binomial_ok(int(accepted.sum()), N, float(sel.acceptance(P[:1], Q[:1], k)))
