"""SpeculativeDecoder over tiny randomly initialised Llama models (no download): the law of the
generated continuation equals the target's exact autoregressive law (chi-square, false alarm 1e-6,
with a power check against the draft's law), KV-cache consistency, the Sampling transform, and
input validation."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from oracles import gof_pvalue

from gpu_backend.engine import CachedLM, Sampling, SpeculativeDecoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_llama(seed: int, vocab: int = 5, init: float = 0.6):
    """A 1-layer Llama with random weights; a large init range gives peaked, seed-dependent laws."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      initializer_range=init, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return LlamaForCausalLM(cfg).eval()


@torch.no_grad()
def perturbed(model, sigma: float, seed: int):
    """A draft made from the target by adding N(0, sigma^2) noise to every weight (a stand-in for a
    quantised copy)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for w in out.parameters():
        w.add_(sigma * torch.randn(w.shape, generator=gen))
    return out


@torch.no_grad()
def exact_law(model, prompt: list[int], n: int, sampling: Sampling, vocab: int) -> np.ndarray:
    """Probability of every continuation of length ``n`` (index = base-``vocab`` number), computed
    from one uncached forward pass over all ``vocab**n`` sequences."""
    seqs = torch.tensor([prompt + list(c) for c in itertools.product(range(vocab), repeat=n)])
    probs = sampling(model(input_ids=seqs).logits)  # [N, len, V]
    law = torch.ones(seqs.shape[0], dtype=torch.float64)
    for t in range(n):
        pos = len(prompt) - 1 + t
        law *= probs[torch.arange(seqs.shape[0]), pos, seqs[:, pos + 1]]
    return law.numpy()


def _index(tokens: list[int], vocab: int) -> int:
    return int(np.ravel_multi_index(tokens, (vocab,) * len(tokens)))


@pytest.mark.parametrize("selector,k,gamma,sampling,n_runs,verifier", [
    ("kseq", 2, 2, Sampling(), 1200, None),                           # SpecTr tree, iid drafts
    ("rrs_wor", 3, 2, Sampling(temperature=0.8, top_k=3), 800, None),  # non-iid first depth, filtered laws
    ("speculative", 1, 3, Sampling(), 500, None),                     # k = 1: the chain kernel
    ("speculative", 1, 3, Sampling(temperature=0.8, top_k=3), 500, "block"),
    ("kseq", 2, 2, Sampling(), 500, "gbv"),
    ("kseq", 3, 2, Sampling(), 500, "traversal"),
])
def test_generated_law_equals_target_law(selector, k, gamma, sampling, n_runs, verifier):
    """Chi-square of the 125 continuations against the exact law. Power, measured once: with 1200
    runs, an engine that samples drafts at T=1.5 but verifies with the T=1 draft law (the DeepSpec
    #31 bug class) gets p = 3e-34, the correct engine p = 0.70."""
    vocab, prompt, n_new = 5, [1, 3], 3
    target = tiny_llama(2, vocab, init=0.3)
    draft = perturbed(target, 0.2, seed=9)
    p_law = exact_law(target, prompt, n_new, sampling, vocab)
    q_law = exact_law(draft, prompt, n_new, sampling, vocab)
    # the pair differs (first-token TV ~0.3, sequence TV ~0.6): every path of the engine is exercised
    assert 0.5 * np.abs(p_law - q_law).sum() > 0.5
    dec = SpeculativeDecoder(target, draft, selector, k, gamma, sampling.temperature, sampling.top_k,
                             sampling.top_p, track_predicted=True, verifier=verifier)
    gen = torch.Generator().manual_seed(1234)
    counts = np.zeros(vocab ** n_new)
    measured = predicted = variance = 0.0
    for _ in range(n_runs):
        res = dec.generate(prompt, n_new, generator=gen)
        assert len(res.tokens) == n_new
        assert sum(s.accepted + 1 for s in res.steps) == n_new
        assert res.target_calls == len(res.steps)
        counts[_index(res.tokens, vocab)] += 1
        for s in res.steps:
            measured += sum(s.accepted_at)
            predicted += sum(s.predicted)
            variance += sum(a * (1 - a) for a in s.predicted)
    assert gof_pvalue(counts, p_law) > 1e-6
    # power: the same samples reject the draft's own law
    assert gof_pvalue(counts, q_law) < 1e-6
    # accepted drafts match the selector's exact acceptance at the verified depths (6 sigma)
    if dec.verifier is not None:  # sequence verifiers: no per-depth prediction
        return
    assert abs(measured - predicted) <= 6 * np.sqrt(variance) + 1


def test_kv_cache_matches_uncached_forward():
    model = tiny_llama(3, vocab=16, init=0.2)
    lm = CachedLM(model)
    seq = [3, 1, 4, 1, 5]
    lm.start(seq)
    branches = torch.tensor([[9, 2, 6], [5, 3, 5], [8, 9, 7]])
    logits = lm.extend(torch.cat([torch.tensor([[seq[-1]]] * 3), branches], dim=1))
    with torch.no_grad():
        full = model(input_ids=torch.cat([torch.tensor([seq] * 3), branches], dim=1)).logits
    assert torch.allclose(logits, full[:, len(seq) - 1:], atol=1e-5)
    # keep branch 1 with two of its tokens, then continue with pending tokens [5, 7]
    lm.commit(1, lm.cache_length - 1, [5, 7])
    assert lm.batch == 1
    new = lm.extend(torch.tensor([[5, 7, 2]]))
    whole = seq + [5, 3, 5, 7, 2]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([whole])).logits
    assert torch.allclose(new[0], ref[0, -3:], atol=1e-5)


def test_engine_cache_stays_consistent_over_steps():
    """After many steps the target's cached logits equal an uncached forward of the whole text."""
    target, draft = tiny_llama(4, vocab=16, init=0.2), tiny_llama(5, vocab=16, init=0.2)
    dec = SpeculativeDecoder(target, draft, "rrs", 3, 3)
    prompt = [1, 2, 3]
    res = dec.generate(prompt, 12, generator=torch.Generator().manual_seed(0))
    text = prompt + res.tokens
    lm = CachedLM(target)
    lm.start(prompt)
    step_logits = []
    for y in res.tokens:  # one token at a time through the same cache machinery
        step_logits.append(lm.extend(torch.tensor([lm.pending]))[0, -1])
        lm.commit(0, lm.cache_length, [y])
    with torch.no_grad():
        ref = target(input_ids=torch.tensor([text])).logits[0, len(prompt) - 1:-1]
    assert torch.allclose(torch.stack(step_logits), ref, atol=1e-5)
    s = res.summary()
    assert s["tokens"] == 12 and s["block_efficiency"] == pytest.approx(12 / s["target_calls"])


def test_sampling_transform_matches_definition():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.5, -1.0, -torch.inf]])
    x = logits[0].double().numpy()
    soft = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(Sampling()(logits)[0].numpy(), soft(x), atol=1e-15)
    np.testing.assert_allclose(Sampling(temperature=0.5)(logits)[0].numpy(), soft(x / 0.5), atol=1e-15)
    # top-k = 3 keeps the tie with the 3rd largest logit
    kept = np.where(x >= 0.5, x, -np.inf)
    np.testing.assert_allclose(Sampling(top_k=3)(logits)[0].numpy(), soft(kept), atol=1e-15)
    # top-p: smallest prefix (by probability) whose mass reaches top_p
    pr = soft(x)
    top_p = pr[0] + 1e-3
    expect = np.where(np.arange(6) <= 1, pr, 0.0)
    np.testing.assert_allclose(Sampling(top_p=top_p)(logits)[0].numpy(), expect / expect.sum(), atol=1e-15)
    np.testing.assert_array_equal(Sampling(temperature=0)(logits)[0].numpy(), [1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        Sampling()(torch.tensor([[0.0, float("nan")]]))


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
])
def test_sampling_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampling(**kwargs)


def test_greedy_decoding_is_the_target_argmax():
    """At temperature 0 (one-hot p and q) the output is the target's greedy continuation."""
    target, draft = tiny_llama(6, vocab=8), tiny_llama(7, vocab=8)
    res = SpeculativeDecoder(target, draft, "kseq", 2, 3, temperature=0).generate([2, 5], 6)
    ids = [2, 5]
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(target(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert res.tokens == ids[2:]


def test_bad_arguments_raise_value_error():
    target, draft = tiny_llama(0), tiny_llama(1)
    with pytest.raises(ValueError, match="k must"):
        SpeculativeDecoder(target, draft, "kseq", 0, 2)
    with pytest.raises(ValueError, match="gamma must"):
        SpeculativeDecoder(target, draft, "kseq", 2, 0)
    with pytest.raises(ValueError, match="supports k <= 1"):
        SpeculativeDecoder(target, draft, "speculative", 2, 2)
    with pytest.raises(ValueError, match="verifier must"):
        SpeculativeDecoder(target, draft, "kseq", 2, 2, verifier="nope")
    with pytest.raises(ValueError, match="one draft"):
        SpeculativeDecoder(target, draft, "kseq", 2, 2, verifier="block")
    with pytest.raises(ValueError, match="i.i.d."):
        SpeculativeDecoder(target, draft, "rrs_wor", 2, 2, verifier="gbv")
    with pytest.raises(ValueError, match="unknown selector"):
        SpeculativeDecoder(target, draft, "nope", 2, 2)
    dec = SpeculativeDecoder(target, draft, "kseq", 2, 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        dec.generate([1], 0)
    with pytest.raises(ValueError, match="input_ids"):
        dec.generate([], 3)
    with pytest.raises(ValueError, match="input_ids"):
        dec.generate(torch.tensor([[1, 2], [3, 4]]), 3)


def test_eos_stops_generation():
    target, draft = tiny_llama(0), tiny_llama(1)
    dec = SpeculativeDecoder(target, draft, "kseq", 2, 2)
    full = dec.generate([1, 3], 20, generator=torch.Generator().manual_seed(5)).tokens
    eos = full[4]
    cut = dec.generate([1, 3], 20, generator=torch.Generator().manual_seed(5), eos_token_id=eos).tokens
    assert cut == full[: full.index(eos) + 1]
