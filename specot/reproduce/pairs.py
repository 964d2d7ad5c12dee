"""The (target, draft) next-token pairs the experiments sweep over.

* random Dirichlet pairs (small toy instances);
* "realistic" pairs: the next-token laws of an n-gram target and a lower-order n-gram draft fitted
  to real text (CPython's pydoc topics, :mod:`markov`'s n-gram builder) at contexts drawn from the
  target's own text, so that the pairs are weighted as a decoder meets them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .core import MissingPiece, require, require_optional


def dirichlet_pairs(rng: np.random.Generator, n: int, V: int | tuple[int, int], concentration: float = 1.0
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` independent pairs ``p, q ~ Dirichlet(concentration * 1_V)``; ``V`` fixed or a
    ``(low, high)`` range (inclusive) drawn per pair."""
    out = []
    for _ in range(n):
        v = V if isinstance(V, int) else int(rng.integers(V[0], V[1] + 1))
        out.append((rng.dirichlet(np.full(v, concentration)), rng.dirichlet(np.full(v, concentration))))
    return out


#: the realistic pair: an order-3 target and an order-2 draft, characters, 48 symbols
#: (single-draft acceptance 1 - TV about 0.72 on real text, like an LLM with a good drafter).
NGRAM = {"target_order": 3, "draft_order": 2, "vocab_size": 48}


@lru_cache(maxsize=2)
def _ngram_models(target_order: int, draft_order: int, vocab_size: int):
    ngram_pair, corpus_text = require("markov.builders", "ngram_pair", "corpus_text")
    target, draft, vocab = ngram_pair(target_order, draft_order, vocab_size)
    return target, draft, vocab, vocab.encode(corpus_text())


def ngram_pairs(rng: np.random.Generator, n: int, target_order: int = NGRAM["target_order"],
                draft_order: int = NGRAM["draft_order"], vocab_size: int = NGRAM["vocab_size"]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` next-token pairs ``(p, q)`` of :func:`markov.builders.ngram_pair` (character n-grams
    fitted to CPython's pydoc topics) at contexts taken from random positions of that real text."""
    target, draft, _, ids = _ngram_models(target_order, draft_order, vocab_size)
    order = max(target.order, draft.order)
    pos = rng.integers(order, ids.size, n)
    contexts = np.stack([ids[i - order:i] for i in pos])
    P = target.next_dist_batch(contexts)
    Q = draft.next_dist_batch(contexts)
    return [(P[i] / P[i].sum(), Q[i] / Q[i].sum()) for i in range(n)]


def ngram_description() -> str:
    return (f"character n-grams on CPython's pydoc topics (markov.builders.ngram_pair): order-"
            f"{NGRAM['target_order']} target, order-{NGRAM['draft_order']} draft, V = {NGRAM['vocab_size']}, "
            "contexts from random positions of the text")


def bytes_pair_cached() -> bool:
    """Whether the byte-level model pair of :func:`gpu_backend.models.load_pair` is already trained
    and cached (so loading it takes seconds, not the minute of training)."""
    try:
        models = require("gpu_backend.models")
    except MissingPiece:
        return False
    root = models.cache_dir() / models.BYTES_VERSION
    return all((root / role / "config.json").exists() for role in models.BYTE_MODELS)


def model_pairs(name: str, n: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """``n`` next-token pairs of a real model pair (:func:`gpu_backend.models.load_pair`), taken along
    a target sample from a pydoc prompt (:func:`gpu_backend.harness.collect_distributions`), and the
    pair's description. :class:`~specot.reproduce.core.OptionalMissing` when torch or transformers
    (declared optional dependencies) are absent; any other failure to load propagates."""
    require_optional("torch")
    require_optional("transformers")
    load_pair = require("gpu_backend.models", "load_pair")
    collect = require("gpu_backend.harness", "collect_distributions")
    import torch

    pair = load_pair(name)
    P, Q, _, _ = collect(pair, n, generator=torch.Generator().manual_seed(seed))
    P, Q = P.double().numpy(), Q.double().numpy()
    return [(P[i] / P[i].sum(), Q[i] / Q[i].sum()) for i in range(n)], pair.description
