"""Torch selectors, bad input: ValueErrors naming the argument (NaN, all -inf logits, negative
mass, sums, shapes, k, drafts, injected noise), never a NaN or an out-of-range token."""

from __future__ import annotations

import pytest
import torch
from torch_cases import NAMES

from gpu_backend import get_selector
from gpu_backend.drafting import sample_drafts

P = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
Q = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p, logits, match", [
    (torch.tensor([[0.5, float("nan"), 0.5, 0.0]] * 2), False, "p contains NaN in row 0"),
    (torch.tensor([[float("nan")] * 4] * 2), True, "p contains NaN"),
    (torch.tensor([[0.0, 0.0, 0.0, 0.0], [-float("inf")] * 4]), True, "p logits are all -inf in row 1"),
    (torch.tensor([[1.2, -0.2, 0.0, 0.0]] * 2), False, "p has negative mass in row 0"),
    (torch.tensor([[0.5, 0.4, 0.0, 0.0]] * 2), False, "p row 0 must sum to 1"),
    (torch.tensor([[0.5, 0.5, 0.0]] * 2), False, "must have the same shape"),
    (torch.ones(2, 2, 4) / 4, False, r"p must have shape \[B, V\]"),
])
def test_bad_distributions(name, p, logits, match):
    sel = get_selector(name)
    k = 2 if name == "spechub" else 1
    q = torch.log(Q) if logits else Q
    with pytest.raises(ValueError, match=match):
        sel.acceptance(p, q, k, logits=logits)
    with pytest.raises(ValueError, match=match):
        sel.sample(p, q, k, logits=logits)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k(name, k):
    with pytest.raises(ValueError, match="k must be"):
        get_selector(name).acceptance(P, Q, k)


@pytest.mark.parametrize("name, k", [("speculative", 2), ("spechub", 3)])
def test_k_above_max_k(name, k):
    sel = get_selector(name)
    with pytest.raises(ValueError, match=f"supports k <= {sel.max_k}"):
        sel.acceptance(P, Q, k)
    with pytest.raises(ValueError, match=f"supports k <= {sel.max_k}"):
        sel.verify(P, Q, torch.zeros(2, k, dtype=torch.long))


def test_spechub_needs_k2_and_hub_pairs():
    sel = get_selector("spechub")
    with pytest.raises(ValueError, match="needs k=2"):
        sel.acceptance(P, Q, 1)
    one_hot = torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least k tokens with q > 0"):
        sel.acceptance(P, one_hot, 2)
    with pytest.raises(ValueError, match="at least k tokens with q > 0"):
        sel.verify(P, one_hot, torch.tensor([[1, 0], [1, 2]]))
    sel.verify(P, Q, torch.tensor([[0, 1], [3, 0]]))  # the hubs are 0 and 3: valid pairs
    with pytest.raises(ValueError, match="hub pairs"):
        sel.verify(P, Q, torch.tensor([[1, 2], [3, 0]]))  # row 0 misses its hub


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("drafts, match", [
    (torch.tensor([[0, 4], [1, 1]]), "outside"),
    (torch.tensor([[0, -1], [1, 1]]), "outside"),
    (torch.tensor([[0.0, 1.0], [1.0, 1.0]]), "integer token ids"),
    (torch.tensor([[0, 1]]), r"shape \[B, k\]"),
])
def test_bad_drafts(name, drafts, match):
    with pytest.raises(ValueError, match=match):
        get_selector(name).verify(P, Q, drafts)


@pytest.mark.parametrize("name", NAMES)
def test_bad_noise(name):
    sel = get_selector(name)
    k = 2 if name == "spechub" else 1
    drafts = sel.draft(Q, k, torch.Generator().manual_seed(0))
    noise = sel.draw_noise(2, 4, k)
    key = next(iter(noise))
    with pytest.raises(ValueError, match=f"noise is missing {key!r}"):
        sel.verify(P, Q, drafts, noise={kk: v for kk, v in noise.items() if kk != key})
    with pytest.raises(ValueError, match=rf"noise\[{key!r}\] must have shape"):
        sel.verify(P, Q, drafts, noise={**noise, key: noise[key][:1]})


def test_draft_laws_check_support_and_names():
    one_hot = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    for law, k in [("without_replacement", 2), ("hub", 2), ("greedy", 2)]:
        with pytest.raises(ValueError, match="at least k tokens with q > 0"):
            sample_drafts(one_hot, k, law)
    for name in ("rrs_wor", "greedy", "gumbel", "spechub"):
        with pytest.raises(ValueError, match="at least k tokens with q > 0"):
            get_selector(name).acceptance(one_hot, one_hot, 2)
    with pytest.raises(ValueError, match="hub-pair drafts need k=2"):
        sample_drafts(Q, 3, "hub")
    with pytest.raises(ValueError, match="unknown|no torch sampler"):
        sample_drafts(Q, 2, "beam")
    with pytest.raises(ValueError, match="unknown selector"):
        get_selector("nope")


def test_gumbel_verify_needs_distinct_drafts_and_cost_guard():
    sel = get_selector("gumbel")
    with pytest.raises(ValueError, match="distinct tokens with q > 0"):
        sel.verify(P, Q, torch.tensor([[1, 1], [0, 2]]))
    big = torch.full((4, 1000), 1e-3, dtype=torch.float64)
    with pytest.raises(ValueError, match="exact gumbel acceptance for k=2"):
        sel.acceptance(big, big, 2)
