"""Laws of the draft tuple ``(X_1, ..., X_k)`` given the draft distribution ``q``.

A draft law answers two questions: how to sample a draft tuple, and (for small vocabularies) the
exact probability of every ordered tuple. The second is what makes exact verification possible:
an algorithm's output law is ``sum_t Q(t) K(. | t)`` over all tuples ``t``.

Registered laws (see :data:`DRAFT_LAWS`):

``"iid"``
    ``k`` independent draws from ``q`` (with replacement): ``Q(t) = prod_i q(t_i)``.
``"without_replacement"``
    successive sampling from ``q`` renormalised over unseen tokens (equivalently Gumbel-top-k):
    ``Q(t) = prod_i q(t_i) / (1 - sum_{j<i} q(t_j))`` over ordered tuples of distinct tokens.
    Needs ``k <= |supp q|``.

Algorithm-specific laws (SpecHub's ``"hub"`` pairs, ``"greedy"`` top-(k-1) + 1) are defined in this
module too, so that the solvers can compute the optimum of any selector's own draft law.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations, product

import numpy as np

from .validation import validate_distribution, validate_k

EnumerateFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
SampleFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
SampleBatchFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class DraftLaw:
    """A named law of draft tuples.

    ``enumerate(q, k) -> (tuples [n, k] int64, probs [n] float64)`` lists every ordered tuple of
    positive probability; ``sample(q, k, rng) -> [k] int64`` draws one tuple;
    ``sample_batch(Q [B, V], k, rng) -> [B, k] int64`` draws one tuple per row (vectorised; the
    default loops over rows with ``sample``).
    """

    name: str
    enumerate: EnumerateFn
    sample: SampleFn
    description: str = ""
    sample_batch_fn: SampleBatchFn | None = None

    def sample_batch(self, q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """One draft tuple per row of the ``[B, V]`` row-stochastic matrix ``q``."""
        if self.sample_batch_fn is not None:
            return self.sample_batch_fn(q, k, rng)
        return np.stack([self.sample(row, k, rng) for row in q]).astype(np.int64)


def _enumerate_iid(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    support = np.flatnonzero(q > 0)
    tuples = np.array(list(product(support, repeat=k)), dtype=np.int64).reshape(-1, k)
    probs = np.prod(q[tuples], axis=1)
    return tuples, probs


def _sample_iid(q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(q.size, size=k, replace=True, p=q).astype(np.int64)


def _sample_iid_batch(q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF sampling of ``k`` tokens per row; never returns a token of zero mass."""
    cdf = np.cumsum(q, axis=1)
    u = rng.random((q.shape[0], k)) * cdf[:, -1:]
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    for j in range(k):  # k is small; each step is vectorised over rows
        idx[:, j] = (cdf <= u[:, j : j + 1]).sum(axis=1)
    # round-off at the top of the CDF: clamp to the last token with positive mass
    last = q.shape[1] - 1 - np.argmax(q[:, ::-1] > 0, axis=1)
    return np.minimum(idx, last[:, None])


def _enumerate_wor(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    support = np.flatnonzero(q > 0)
    if k > support.size:
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0, "
                         f"q has {support.size}")
    tuples = np.array(list(permutations(support, k)), dtype=np.int64).reshape(-1, k)
    # the unseen mass is summed directly (not 1 - cumsum), which keeps tiny q exact
    unseen = np.ones((len(tuples), q.size), dtype=bool)
    probs = np.ones(len(tuples))
    rows = np.arange(len(tuples))
    for i in range(k):
        probs *= q[tuples[:, i]] / (q * unseen).sum(axis=1)
        unseen[rows, tuples[:, i]] = False
    return tuples, probs


def _sample_wor(q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Gumbel-top-k: the k largest ``log q + G`` are successive sampling without replacement."""
    support = np.flatnonzero(q > 0)
    if k > support.size:
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0, "
                         f"q has {support.size}")
    keys = np.log(q[support]) + rng.gumbel(size=support.size)
    order = np.argsort(-keys, kind="stable")[:k]
    return support[order].astype(np.int64)


def _sample_wor_batch(q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Gumbel-top-k per row (tokens with q = 0 get key -inf and are never drawn)."""
    if k > int((q > 0).sum(axis=1).min()):
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0 in every row")
    with np.errstate(divide="ignore"):
        keys = np.log(q) + rng.gumbel(size=q.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k].astype(np.int64)


def hub_token(q: np.ndarray) -> int:
    """SpecHub's hub ``a = argmax q`` (lowest index among ties)."""
    return int(np.argmax(q))


def _enumerate_hub(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """SpecHub hub pairs (Sun et al., EMNLP 2024; docs/theory/membership_ot.md#hub-drafts), k = 2 only.

    ``a = argmax q``; first draft ``i ~ q``; if ``i != a`` the pair is ``(i, a)``, else a second
    draft ``j ~ q(. | j != a)`` gives ``(a, j)``: ``Q(i, a) = q(i)``, ``Q(a, j) = q(a) q(j) / (1 - q(a))``.
    """
    check_hub(q, k)
    a = hub_token(q)
    others = np.flatnonzero((q > 0) & (np.arange(q.size) != a))
    tuples = np.concatenate([np.stack([others, np.full_like(others, a)], 1),
                             np.stack([np.full_like(others, a), others], 1)]).astype(np.int64)
    probs = np.concatenate([q[others], q[a] * q[others] / q[others].sum()])
    return tuples, probs


def check_hub(q: np.ndarray, k: int) -> None:
    """Hub-pair drafts exist only for k = 2 and at least two tokens with q > 0."""
    if k != 2:
        raise ValueError(f"hub-pair drafts need k=2, got k={k}")
    if int((q > 0).sum()) < 2:
        raise ValueError("hub-pair drafts need at least 2 tokens with q > 0")


def _sample_hub(q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    check_hub(q, k)
    a = hub_token(q)
    i = int(rng.choice(q.size, p=q))
    if i != a:
        return np.array([i, a], dtype=np.int64)
    rest = q.copy()
    rest[a] = 0.0
    return np.array([a, int(rng.choice(q.size, p=rest / rest.sum()))], dtype=np.int64)


def greedy_top(q: np.ndarray, k: int) -> np.ndarray:
    """The ``k - 1`` most probable draft tokens (stable order: ties go to the lower index)."""
    return np.argsort(-q, kind="stable")[: k - 1].astype(np.int64)


def greedy_split(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, q')``: the top-(k-1) tokens and ``q`` restricted to the other tokens, renormalised."""
    if int((q > 0).sum()) < k:
        raise ValueError(f"greedy drafts need at least k={k} tokens with q > 0")
    top = greedy_top(q, k)
    rest = q.copy()
    rest[top] = 0.0
    return top, rest / rest.sum()


def _enumerate_greedy(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy drafts (Hu et al., ICLR 2025; docs/theory/membership_ot.md#greedy-drafts): the top-(k-1) tokens of ``q``
    (deterministic) followed by one draw from ``q`` restricted to the other tokens, renormalised."""
    top, rest = greedy_split(q, k)
    last = np.flatnonzero(rest > 0)
    tuples = np.concatenate([np.tile(top, (last.size, 1)), last[:, None]], axis=1).astype(np.int64)
    return tuples, rest[last]


def _sample_greedy(q: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    top, rest = greedy_split(q, k)
    return np.append(top, int(rng.choice(q.size, p=rest))).astype(np.int64)


DRAFT_LAWS: dict[str, DraftLaw] = {}


def register_draft_law(law: DraftLaw) -> DraftLaw:
    """Add ``law`` to :data:`DRAFT_LAWS` (idempotent for the same object)."""
    existing = DRAFT_LAWS.get(law.name)
    if existing is not None and existing is not law:
        raise ValueError(f"draft law {law.name!r} is already registered")
    DRAFT_LAWS[law.name] = law
    return law


register_draft_law(DraftLaw("iid", _enumerate_iid, _sample_iid, "k independent draws from q",
                            _sample_iid_batch))
register_draft_law(DraftLaw("without_replacement", _enumerate_wor, _sample_wor,
                            "successive sampling without replacement (Gumbel-top-k)", _sample_wor_batch))
register_draft_law(DraftLaw("hub", _enumerate_hub, _sample_hub, "SpecHub hub pairs around argmax q (k=2)"))
register_draft_law(DraftLaw("greedy", _enumerate_greedy, _sample_greedy,
                            "top-(k-1) tokens of q plus one draw from the rest"))


def get_draft_law(name: str) -> DraftLaw:
    """Look up a draft law by name; ``ValueError`` listing the known names otherwise."""
    try:
        return DRAFT_LAWS[name]
    except KeyError:
        raise ValueError(f"unknown draft law {name!r}; known: {', '.join(sorted(DRAFT_LAWS))}") from None


def enumerate_drafts(q, k: int, drafts: str = "iid") -> tuple[np.ndarray, np.ndarray]:
    """All ordered draft tuples of positive probability and their probabilities (small V only)."""
    q_arr = validate_distribution(q, "q")
    k = validate_k(k)
    return get_draft_law(drafts).enumerate(q_arr, k)


def set_law(tuples: np.ndarray, probs: np.ndarray) -> dict[frozenset, float]:
    """Aggregate an ordered-tuple law into the law of the *set* of distinct drafted tokens.

    Membership cost depends on the tuple only through its set ``S(t)``, which is the symmetry
    reduction used by the exact LP (a tuple law on V^k collapses to at most 2^V sets).
    """
    out: dict[frozenset, float] = {}
    for t, w in zip(tuples.tolist(), probs.tolist()):
        key = frozenset(t)
        out[key] = out.get(key, 0.0) + w
    return out
