"""Builders of target/draft :class:`~markov.model.MarkovLM` pairs.

* :func:`random_pair` -- Dirichlet target rows and draft rows at a chosen per-state TV gap;
* :func:`with_temperature` -- temperature and top-k applied to every row of a model;
* :func:`bernoulli_pair`, :func:`uniform_pair` -- the single-step pairs of Yin et al.'s Fig. 3
  (docs/theory/markov.md#batch-speculative-decoding, batch-improvement closed forms);
* :func:`ngram_model`, :func:`ngram_pair` -- Witten-Bell smoothed character/byte n-gram models
  fitted to an offline English corpus (CPython's ``pydoc_data.topics``), on a small vocabulary
  (the most frequent symbols plus one out-of-vocabulary token) so that exact DPs stay feasible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ot_coupling.validation import SeedLike, as_generator, validate_k

from .model import MarkovLM, tv_rows


def random_pair(vocab_size: int, *, order: int = 1, tv_gap: float | None = 0.3,
                concentration: float = 1.0, horizon: int | None = None,
                seed: SeedLike = None) -> tuple[MarkovLM, MarkovLM]:
    """A random ``(target, draft)`` pair with ``TV(p(.|c), q(.|c)) = tv_gap`` in every context.

    Target rows are ``Dirichlet(concentration)``. Each draft row is the mixture
    ``q = (1 - lam) p + lam r`` with ``r`` a sparse Dirichlet(0.3) row (or, if no draw is far
    enough, the point mass on ``argmin p``), and ``lam = tv_gap / TV(p, r)``, so that
    ``TV(p, q) = lam TV(p, r) = tv_gap`` exactly. ``tv_gap=None`` draws independent draft rows.
    ``horizon`` gives a non-stationary first-order pair of shape ``(horizon, V, V)``.
    """
    V = validate_k(vocab_size, "vocab_size")
    if V < 2:
        raise ValueError(f"vocab_size must be >= 2, got {V}")
    if order < 0 or int(order) != order:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    if horizon is not None and order != 1:
        raise ValueError("horizon (a non-stationary chain) needs order=1")
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration!r}")
    if tv_gap is not None and not 0.0 <= tv_gap <= 1.0 - 1.0 / V:
        raise ValueError(f"tv_gap must lie in [0, 1 - 1/V] = [0, {1 - 1 / V:.4g}], got {tv_gap!r}")
    rng = as_generator(seed)
    shape = ((validate_k(horizon, "horizon"),) if horizon is not None else ()) + (V,) * order
    n_rows = int(np.prod(shape)) if shape else 1
    p = rng.dirichlet(np.full(V, concentration), size=n_rows)
    if tv_gap is None:
        q = rng.dirichlet(np.full(V, concentration), size=n_rows)
    else:
        r = rng.dirichlet(np.full(V, 0.3), size=n_rows)
        far = tv_rows(p, r)
        short = far < max(tv_gap, 1e-12)
        point = np.zeros((n_rows, V))
        point[np.arange(n_rows), np.argmin(p, axis=1)] = 1.0
        r[short] = point[short]
        lam = np.where(tv_gap > 0, tv_gap / np.maximum(tv_rows(p, r), 1e-300), 0.0)
        q = (1.0 - lam[:, None]) * p + lam[:, None] * r
        q = np.maximum(q, 0.0)
        q /= q.sum(axis=1, keepdims=True)
    full = shape + (V,)
    ns = horizon is not None
    return (MarkovLM(p.reshape(full), nonstationary=ns), MarkovLM(q.reshape(full), nonstationary=ns))


def with_temperature(model: MarkovLM, temperature: float = 1.0, top_k: int | None = None) -> MarkovLM:
    """Rows ``p^(1/temperature)`` renormalised, restricted to the ``top_k`` most probable tokens.

    ``temperature=0`` gives the greedy (one-hot ``argmax``) chain; ties go to the lowest index.
    """
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    table = model.table.copy()  # [T or 1, S, V]
    V = model.vocab_size
    if top_k is not None:
        top_k = validate_k(top_k, "top_k")
        if top_k < V:
            order = np.argsort(-table, axis=-1, kind="stable")
            drop = order[..., top_k:]
            np.put_along_axis(table, drop, 0.0, axis=-1)
    if temperature == 0:
        hot = np.zeros_like(table)
        np.put_along_axis(hot, np.argmax(table, axis=-1)[..., None], 1.0, axis=-1)
        table = hot
    else:
        with np.errstate(divide="ignore"):
            logits = np.log(table) / temperature
        logits -= logits.max(axis=-1, keepdims=True)
        table = np.exp(logits)
    table /= table.sum(axis=-1, keepdims=True)
    return _rebuild(model, table)


def _rebuild(model: MarkovLM, table: np.ndarray) -> MarkovLM:
    V = model.vocab_size
    if model.stationary:
        return MarkovLM(table[0].reshape((V,) * (model.order + 1)), model.initial if model.order else None)
    return MarkovLM(table, model.initial, nonstationary=True)


def bernoulli_pair(target_prob: float, draft_prob: float) -> tuple[MarkovLM, MarkovLM]:
    """Order-0 pair over ``{0, 1}``: target ``Ber(b)``, draft ``Ber(a)`` (P(token 1) = b, a).

    Yin et al. Fig. 3 (upper); the batch improvement is ``BI(M) = (b - a)(1 - (1 - a)^(M-1))``
    for ``b > a`` (docs/theory/markov.md#batch-speculative-decoding; theory letters swap p and q).
    """
    rows = []
    for name, v in (("target_prob", target_prob), ("draft_prob", draft_prob)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {v!r}")
        rows.append(np.array([1.0 - v, v]))
    return MarkovLM(rows[0]), MarkovLM(rows[1])


def uniform_pair(vocab_size: int, support: int) -> tuple[MarkovLM, MarkovLM]:
    """Order-0 pair: target uniform on the first ``support`` tokens, draft uniform on all ``V``.

    Yin et al. Fig. 3 (lower); ``BI(M) = (1 - s/V) - (1 - s/V)^M`` (docs/theory/markov.md#batch-speculative-decoding).
    """
    V = validate_k(vocab_size, "vocab_size")
    s = validate_k(support, "support")
    if s > V:
        raise ValueError(f"support must be <= vocab_size={V}, got {s}")
    p = np.zeros(V)
    p[:s] = 1.0 / s
    return MarkovLM(p), MarkovLM(np.full(V, 1.0 / V))


# ---------------------------------------------------------------------------- n-gram models
@dataclass(frozen=True)
class Vocabulary:
    """Symbols of a small n-gram vocabulary; the last id is the out-of-vocabulary token."""

    symbols: tuple  # str (characters) or int (bytes)
    unit: str

    @property
    def size(self) -> int:
        return len(self.symbols) + 1

    @property
    def oov(self) -> int:
        return len(self.symbols)

    def encode(self, text) -> np.ndarray:
        units = text.encode("utf-8") if self.unit == "byte" and isinstance(text, str) else text
        index = {s: i for i, s in enumerate(self.symbols)}
        return np.fromiter((index.get(u, self.oov) for u in units), dtype=np.int64)

    def decode(self, ids) -> str:
        out = []
        for i in np.asarray(ids).tolist():
            s = self.symbols[i] if i < self.oov else "\ufffd"
            out.append(chr(s) if isinstance(s, int) else s)
        return "".join(out)


def corpus_text() -> str:
    """The offline English corpus: CPython's ``pydoc_data.topics.topics`` (help texts), joined."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def build_vocabulary(text, vocab_size: int = 48, unit: str = "char") -> Vocabulary:
    """The ``vocab_size - 1`` most frequent characters (or bytes) of ``text`` plus an OOV token."""
    if unit not in ("char", "byte"):
        raise ValueError(f"unit must be 'char' or 'byte', got {unit!r}")
    V = validate_k(vocab_size, "vocab_size")
    if V < 2:
        raise ValueError(f"vocab_size must be >= 2, got {V}")
    units = text.encode("utf-8") if unit == "byte" else text
    ranked = [s for s, _ in sorted(Counter(units).items(), key=lambda kv: (-kv[1], kv[0]))]
    return Vocabulary(tuple(ranked[: V - 1]), unit)


def ngram_model(order: int, vocab: Vocabulary, text: str | None = None) -> MarkovLM:
    """Witten-Bell interpolated n-gram model of the given ``order`` (context length) on ``text``.

    ``P(y | c) = (C(c, y) + N1(c) P(y | c')) / (C(c) + N1(c))`` where ``c'`` drops the oldest
    token, ``N1(c)`` counts distinct continuations of ``c``, and the base is the add-one unigram
    (Witten & Bell 1991; Chen & Goodman 1999, eq. 12). Every row is strictly positive. The start
    context law is the empirical frequency of ``order``-grams.
    """
    if order < 0 or int(order) != order:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    ids = vocab.encode(corpus_text() if text is None else text)
    V = vocab.size
    if ids.size <= order:
        raise ValueError(f"text is too short for an order-{order} model")
    dist = (np.bincount(ids, minlength=V) + 1.0) / (ids.size + V)
    for n in range(1, order + 1):
        grams = np.lib.stride_tricks.sliding_window_view(ids, n + 1) @ (V ** np.arange(n, -1, -1))
        counts = np.bincount(grams, minlength=V ** (n + 1)).reshape(-1, V).astype(np.float64)
        total = counts.sum(axis=1, keepdims=True)
        types = (counts > 0).sum(axis=1, keepdims=True)
        lower = np.tile(dist.reshape(-1, V), (V, 1))  # context c' = c without its oldest token
        with np.errstate(invalid="ignore", divide="ignore"):
            mixed = (counts + types * lower) / (total + types)
        dist = np.where(total > 0, mixed, lower)
    initial = None
    if order:
        grams = np.lib.stride_tricks.sliding_window_view(ids, order) @ (V ** np.arange(order - 1, -1, -1))
        init = np.bincount(grams, minlength=V**order).astype(np.float64)
        initial = (init / init.sum()).reshape((V,) * order)
    return MarkovLM(dist.reshape((V,) * (order + 1)), initial)


def ngram_pair(target_order: int = 3, draft_order: int = 1, vocab_size: int = 48, unit: str = "char",
               text: str | None = None) -> tuple[MarkovLM, MarkovLM, Vocabulary]:
    """``(target, draft, vocabulary)``: n-gram models of two orders fitted to the same corpus.

    The default (order 3 vs order 1 on 48 characters) is a realistic pair: the per-token acceptance
    of single-draft speculative sampling, ``1 - TV``, averages about 0.4 along target samples.
    """
    corpus = corpus_text() if text is None else text
    vocab = build_vocabulary(corpus, vocab_size, unit)
    return ngram_model(target_order, vocab, corpus), ngram_model(draft_order, vocab, corpus), vocab
