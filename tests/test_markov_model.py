"""MarkovLM, the pair builders and the row sampler."""

import numpy as np
import pytest
from oracles import assert_law

from markov import (
    MarkovLM,
    bernoulli_pair,
    build_vocabulary,
    corpus_text,
    ngram_model,
    ngram_pair,
    random_pair,
    uniform_pair,
    with_temperature,
)
from markov.model import decode
from markov.sampling import RowSampler
from ot_coupling.draft_laws import get_draft_law


def test_shapes_orders_and_next_dist():
    rng = np.random.default_rng(0)
    t0 = MarkovLM(rng.dirichlet(np.ones(3)))
    assert (t0.order, t0.vocab_size, t0.n_states) == (0, 3, 1)
    t2 = MarkovLM(rng.dirichlet(np.ones(4), size=(4, 4)))
    assert t2.order == 2 and t2.stationary
    assert np.allclose(t2.next_dist([1, 3]), t2.table[0, 1 * 4 + 3])
    assert np.allclose(t2.next_dist([0, 0, 1, 3]), t2.next_dist([1, 3]))  # longer context: last 2 tokens
    ctx = rng.integers(0, 4, size=(7, 2))
    assert np.allclose(t2.next_dist_batch(ctx), np.stack([t2.next_dist(c) for c in ctx]))
    assert np.array_equal(decode(t2.encode(ctx), 4, 2), ctx)
    ns = MarkovLM(rng.dirichlet(np.ones(3), size=(5, 3)))  # (T, V, V) with T != V: inferred
    assert ns.horizon == 5 and ns.order == 1
    assert np.allclose(ns.next_dist([2], position=4), ns.table[4, 2])
    cube = rng.dirichlet(np.ones(3), size=(3, 3))
    assert MarkovLM(cube).order == 2 and MarkovLM(cube, nonstationary=True).horizon == 3


def test_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        MarkovLM([[0.5, 0.4], [0.5, 0.5]])
    with pytest.raises(ValueError, match="negative"):
        MarkovLM([[1.5, -0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="NaN"):
        MarkovLM([[np.nan, 1.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match="shape"):
        MarkovLM(np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="initial"):
        MarkovLM(np.full((2, 2), 0.5), initial=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="transitions"):
        MarkovLM("abc")
    m = MarkovLM(np.full((4, 2, 2), 0.5))
    with pytest.raises(ValueError, match="position"):
        m.next_dist([0], position=4)
    with pytest.raises(ValueError, match="context"):
        MarkovLM(np.full((2, 2, 2), 0.5)).next_dist([0])
    with pytest.raises(ValueError, match="tv_gap"):
        random_pair(4, tv_gap=0.9)
    with pytest.raises(ValueError, match="temperature"):
        with_temperature(m, -1.0)


def test_random_pair_tv_gap_and_zeros():
    for V, gap in ((2, 0.4), (8, 0.3), (16, 0.0), (5, 0.8)):
        t, d = random_pair(V, tv_gap=gap, seed=V)
        assert np.allclose(0.5 * np.abs(t.table - d.table).sum(-1), gap, atol=1e-12)
    t, d = random_pair(4, tv_gap=0.2, horizon=9, seed=0)
    assert t.horizon == d.horizon == 9


def test_temperature_and_top_k():
    t, _ = random_pair(6, tv_gap=0.2, seed=3)
    assert np.allclose(with_temperature(t, 1.0).table, t.table)
    greedy = with_temperature(t, 0.0)
    assert np.array_equal(greedy.table.argmax(-1), t.table.argmax(-1)) and np.all(greedy.table.max(-1) == 1)
    top = with_temperature(t, 0.7, top_k=2)
    assert np.all((top.table > 0).sum(-1) == 2)
    kept = np.argsort(-t.table, axis=-1)[..., :2]
    assert np.all(np.take_along_axis(top.table, kept, -1).sum(-1) == pytest.approx(1.0))


def test_pairs_of_the_theory_paper():
    t, d = bernoulli_pair(0.6, 0.3)
    assert np.allclose(t.next_dist(), [0.4, 0.6]) and np.allclose(d.next_dist(), [0.7, 0.3])
    t, d = uniform_pair(10, 2)
    assert np.allclose(t.next_dist(), [0.5, 0.5] + [0] * 8) and np.allclose(d.next_dist(), 0.1)


def test_ngram_models_on_offline_text():
    text = corpus_text()
    assert len(text) > 100_000
    vocab = build_vocabulary(text, 32)
    assert vocab.size == 32 and vocab.decode(vocab.encode("the ")) == "the "
    byte_vocab = build_vocabulary(text, 16, unit="byte")
    assert byte_vocab.size == 16
    t, d, v = ngram_pair(2, 1, vocab_size=32)
    assert (t.order, d.order, t.vocab_size) == (2, 1, 32)
    assert np.all(t.table > 0)  # Witten-Bell smoothing: every continuation possible
    x = t.sample(60, 40, rng=0)
    P = np.concatenate([t.next_dist_batch(np.stack([x[:, i], x[:, i + 1]], 1)) for i in range(58)])
    Q = np.concatenate([d.next_dist_batch(x[:, i + 1:i + 2]) for i in range(58)])
    acceptance = np.minimum(P, Q).sum(1).mean()
    assert 0.3 < acceptance < 0.9  # realistic single-draft acceptance on text
    uni = ngram_model(0, v)
    assert uni.order == 0 and np.all(uni.next_dist() > 0)


def test_ancestral_sampling_follows_marginals():
    t, _ = random_pair(4, tv_gap=0.1, seed=2)
    x = t.sample(3, 20000, rng=1)
    law = t.initial.copy()
    for i in range(3):
        law = law @ t.table[0]
        assert_law(x[:, i], law)


def test_row_sampler():
    rng = np.random.default_rng(0)
    table = rng.dirichlet(np.ones(5), size=3)
    table[1] = [0.0, 0.5, 0.0, 0.5, 0.0]
    table[2] = [0, 0, 0, 0, 1.0]
    s = RowSampler(table)
    for r in range(3):
        assert_law(s.sample(np.full(20000, r), rng), table[r])
    # bitwise equal to ot_coupling's "iid" inverse-CDF sampler given the same uniforms
    rows = rng.integers(0, 3, size=5000)
    ours = s.sample(rows, np.random.default_rng(9))
    ref = get_draft_law("iid").sample_batch(table[rows], 1, np.random.default_rng(9))[:, 0]
    assert np.array_equal(ours, ref)
    with pytest.raises(ValueError, match="without mass"):
        RowSampler(np.zeros((1, 3)))
