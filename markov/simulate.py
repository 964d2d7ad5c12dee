"""Vectorised Monte Carlo simulation of speculative decoding on Markov-chain LMs.

One *step* (one target call) of the SpecTr tree algorithm (Sun et al., NeurIPS 2023;
docs/theory/token_verifiers.md#trees-of-drafts) with ``k`` draft sequences of length ``gamma``:

* depth 0: a draft tuple of ``k`` tokens from the selector's draft law at the accepted prefix;
* at each depth, the token selector verifies the ``k_t`` drafts that agree with the accepted prefix
  (``k_t`` = surviving drafts); if its output is one of them the drafts equal to it survive, else
  the output came from the residual (a *rejection*) and the step ends;
* after ``gamma`` accepted tokens, a bonus token from the target.

Given the accepted prefix, the continuations of the surviving drafts are i.i.d. draws from
``q(. | prefix)``, so deeper draft tokens are sampled lazily, only for surviving drafts; this is
equal in law to drafting the whole tree first. ``gamma=None`` is the unlimited lookahead of Yin et
al. (docs/theory/markov.md#decoding-as-a-markov-chain): a step runs until a rejection or the horizon. ``follow="one"`` keeps
only the accepted draft after each acceptance (Yin et al.'s batch Algorithm B, docs/theory/markov.md#batch-speculative-decoding)
instead of every agreeing draft.

Everything is vectorised over the ``R`` runs: the Python loops are over steps, depths and the
number of surviving drafts (runs with the same ``k_t`` are verified together by
``selector.verify_batch``), never over runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ot_coupling.base import Selector
from ot_coupling.draft_laws import get_draft_law
from ot_coupling.registry import get_selector
from ot_coupling.validation import SeedLike, as_generator, validate_k

from .model import MarkovLM
from .pair import ModelPair
from .sampling import RowSampler
from .speedup import CostModel


def resolve_selector(selector: str | Selector, **kwargs) -> Selector:
    """A :class:`~ot_coupling.base.Selector` from a registry name or an instance."""
    if isinstance(selector, Selector):
        return selector
    if isinstance(selector, str):
        return get_selector(selector, **kwargs)
    raise ValueError(f"selector must be a registry name or a Selector, got {type(selector).__name__}")


def inner_selector(selector: Selector) -> Selector:
    """The rule used at depth >= 1 of the tree.

    Deeper draft tokens are i.i.d. ``q`` draws, so the selector itself is used when its draft law
    is ``"iid"`` or reduces to a single ``q`` draw at ``k = 1`` (without replacement, greedy).
    Laws with distinct tokens leave at most one survivor; when such a law is undefined at ``k = 1``
    (SpecHub's hub pairs) the single-draft maximal coupling ``"speculative"`` verifies it.
    """
    law = get_draft_law(selector.draft_law)
    if selector.draft_law == "iid":
        return selector
    try:
        tuples, probs = law.enumerate(np.array([0.25, 0.75]), 1)
        single = np.array_equal(tuples.ravel(), [0, 1]) and np.allclose(probs, [0.25, 0.75])
    except ValueError:
        single = False
    return selector if single else get_selector("speculative")


#: largest number of (context, draft) pairs tabulated automatically, and of table entries
MAX_KERNEL_PAIRS = 2**14
MAX_TABLE_ENTRIES = 2**24


def _table_sampler(model: MarkovLM) -> RowSampler | None:
    """A :class:`RowSampler` over every row of ``model`` (all positions), if not too large."""
    table = model.table
    return RowSampler(table.reshape(-1, model.vocab_size)) if table.size <= MAX_TABLE_ENTRIES else None


def tabulate_kernel(pair: ModelPair, selector: Selector, force: bool = False) -> RowSampler | None:
    """Sampler of ``K(y | s, x)``, rows ``s V + x``, from ``selector.conditional_law`` with one draft.

    Only for stationary pairs; ``None`` when the table would exceed :data:`MAX_KERNEL_PAIRS` pairs
    (unless ``force``) or :data:`MAX_TABLE_ENTRIES` entries. Rows of undraftable ``x`` (``q = 0``)
    are never used and hold a point mass.
    """
    S, V = pair.n_states, pair.V
    if not pair.stationary or S * V * V > MAX_TABLE_ENTRIES or (S * V > MAX_KERNEL_PAIRS and not force):
        return None
    P, Q = pair.tables(0)
    K = np.zeros((S, V, V))
    K[:, np.arange(V), np.arange(V)] = 1.0
    for s in range(S):
        for x in np.flatnonzero(Q[s] > 0):
            K[s, x] = selector.conditional_law(P[s], Q[s], np.array([x]))
    return RowSampler(K.reshape(S * V, V))


def validate_gamma(gamma) -> int | None:
    return None if gamma is None else validate_k(gamma, "gamma")


@dataclass
class SimulationResult:
    """Monte Carlo estimates of ``n_runs`` independent generations of ``n_tokens`` tokens.

    Per-run arrays: ``rejections_per_run`` (tokens from a residual), ``target_calls_per_run``
    (steps), ``accepted_per_run`` (draft tokens accepted). ``acceptance_by_position[t]`` is the
    fraction of runs whose token ``t`` is an accepted draft token. ``block_efficiency`` is
    ``n_tokens / mean(target calls)`` (tokens per target call, pooled over runs) with a delta-method
    standard error. ``speedup`` is the wall-clock improvement under :attr:`cost`.
    """

    selector: str
    k: int
    gamma: int | None
    n_tokens: int
    n_runs: int
    follow: str
    rejections_per_run: np.ndarray
    target_calls_per_run: np.ndarray
    accepted_per_run: np.ndarray
    acceptance_by_position: np.ndarray
    cost: CostModel
    wall_seconds: float
    sequences: np.ndarray | None = field(default=None, repr=False)

    @staticmethod
    def _se(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")

    @property
    def rejections(self) -> float:
        """Mean number of rejections per run."""
        return float(self.rejections_per_run.mean())

    @property
    def rejections_se(self) -> float:
        return self._se(self.rejections_per_run)

    @property
    def target_calls(self) -> float:
        """Mean number of target calls per run."""
        return float(self.target_calls_per_run.mean())

    @property
    def target_calls_se(self) -> float:
        return self._se(self.target_calls_per_run)

    @property
    def block_efficiency(self) -> float:
        return self.n_tokens / self.target_calls

    @property
    def block_efficiency_se(self) -> float:
        return self.n_tokens * self.target_calls_se / self.target_calls**2

    @property
    def acceptance_rate(self) -> float:
        """Fraction of all emitted tokens that are accepted draft tokens."""
        return float(self.accepted_per_run.mean() / self.n_tokens)

    @property
    def speedup(self) -> float:
        return self.cost.speedup(self.block_efficiency, self.gamma, self.k)

    @property
    def tokens_per_second(self) -> float:
        """Simulated tokens per second of wall-clock time of this simulation."""
        return self.n_tokens * self.n_runs / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        out = {
            "selector": self.selector, "k": self.k, "gamma": self.gamma, "n_tokens": self.n_tokens,
            "n_runs": self.n_runs, "follow": self.follow,
            "rejections": self.rejections, "rejections_se": self.rejections_se,
            "target_calls": self.target_calls, "target_calls_se": self.target_calls_se,
            "block_efficiency": self.block_efficiency, "block_efficiency_se": self.block_efficiency_se,
            "acceptance_rate": self.acceptance_rate, "speedup": self.speedup,
            "cost": {"c": self.cost.c, "capacity": None if np.isinf(self.cost.capacity) else self.cost.capacity},
            "acceptance_by_position": self.acceptance_by_position,
            "wall_seconds": self.wall_seconds, "tokens_per_second": self.tokens_per_second,
        }
        if self.sequences is not None:
            out["sequences"] = self.sequences
        return out


def simulate(target: MarkovLM, draft: MarkovLM, selector: str | Selector = "speculative", k: int = 1,
             gamma: int | None = 4, n_tokens: int = 100, n_runs: int = 1000, seed: SeedLike = None,
             cost: CostModel | None = None, follow: str = "tree", return_sequences: bool = False,
             selector_kwargs: dict | None = None, tabulate: bool | None = None) -> SimulationResult:
    """Simulate ``n_runs`` independent speculative generations of ``n_tokens`` tokens.

    Parameters
    ----------
    target, draft : MarkovLM
        Target ``p`` and draft ``q`` on the same vocabulary.
    selector : str or Selector
        Token-level verification rule (``ot_coupling.get_selector`` name or instance).
    k : int
        Number of draft sequences.
    gamma : int or None
        Draft length per step; ``None`` drafts to the horizon (Yin et al.'s unlimited lookahead).
    cost : CostModel, optional
        Draft/target cost ratio and verification capacity for :attr:`SimulationResult.speedup`.
    follow : {"tree", "one"}
        After an acceptance keep every draft equal to the accepted token (SpecTr tree) or only one
        (Yin et al.'s batch Algorithm B, docs/theory/markov.md#batch-speculative-decoding).
    return_sequences : bool
        Keep the emitted tokens ``[n_runs, n_tokens]``.
    tabulate : bool or None
        With ``k = 1`` on a stationary pair, tabulate the selector's exact kernel
        ``K(y | context, x)`` (``selector.conditional_law``) once and sample from it instead of
        calling ``verify_batch`` at every depth (equal in law, much faster). ``None``: when the
        table is small (at most 2^14 context-draft pairs); ``False``: never; ``True``: always.
    """
    pair = ModelPair(target, draft, n_tokens)
    k = validate_k(k)
    gamma = validate_gamma(gamma)
    R = validate_k(n_runs, "n_runs")
    if follow not in ("tree", "one"):
        raise ValueError(f"follow must be 'tree' or 'one', got {follow!r}")
    sel = resolve_selector(selector, **(selector_kwargs or {}))
    if sel.max_k is not None and k > sel.max_k:
        raise ValueError(f"selector {sel.name!r} supports k <= {sel.max_k}, got k={k}")
    deep = inner_selector(sel)
    first_law = get_draft_law(sel.draft_law)
    iid = get_draft_law("iid")
    cost = CostModel() if cost is None else cost
    rng = as_generator(seed)
    T, V = pair.n_tokens, pair.V
    start = time.perf_counter()

    draft_sampler = _table_sampler(draft)
    target_sampler = _table_sampler(target)
    kernel = None
    if k == 1 and deep is sel and tabulate is not False:
        kernel = tabulate_kernel(pair, sel, force=bool(tabulate))

    state = pair.sample_prompts(R, rng)
    pos = np.zeros(R, dtype=np.int64)
    calls = np.zeros(R, dtype=np.int64)
    rejections = np.zeros(R, dtype=np.int64)
    accepted_total = np.zeros(R, dtype=np.int64)
    accepted_at = np.zeros(T, dtype=np.int64)
    seqs = np.empty((R, T), dtype=np.int64) if return_sequences else None

    def emit(idx, tokens, accepted):
        """Record one token for runs ``idx`` (all with ``pos < T``) and advance them."""
        if seqs is not None:
            seqs[idx, pos[idx]] = tokens
        acc_idx = idx[accepted]
        accepted_at[:] += np.bincount(pos[acc_idx], minlength=T)
        accepted_total[acc_idx] += 1
        state[idx] = pair.advance(state[idx], tokens)
        pos[idx] += 1

    def draw(model, sampler, idx, n):
        """``[len(idx), n]`` i.i.d. tokens from ``model`` at the runs' current contexts."""
        if sampler is not None:
            rows = pair.row_ids(model, state[idx], pos[idx])
            return np.stack([sampler.sample(rows, rng) for _ in range(n)], axis=1)
        return iid.sample_batch(model.rows(state[idx] % model.n_states, pos[idx]), n, rng)

    while True:
        live = np.flatnonzero(pos < T)  # runs starting a step
        if live.size == 0:
            break
        calls[live] += 1
        alive = np.full(live.size, k, dtype=np.int64)  # surviving drafts per run in the step
        depth = 0
        while live.size and (gamma is None or depth < gamma):
            if kernel is not None:  # k = 1: sample from the tabulated K(y | state, x)
                x = draw(draft, draft_sampler, live, 1)[:, 0]
                tokens = kernel.sample(state[live] * V + x, rng)
                survivors = (tokens == x).astype(np.int64)
            else:
                P = pair.target_rows(state[live], pos[live])
                Q = pair.draft_rows(state[live], pos[live])
                tokens = np.empty(live.size, dtype=np.int64)
                survivors = np.zeros(live.size, dtype=np.int64)
                if depth == 0:
                    if sel.draft_law == "iid" or (k == 1 and deep is sel):
                        drafts = draw(draft, draft_sampler, live, k)
                    else:
                        drafts = first_law.sample_batch(Q, k, rng)
                    groups = [(np.arange(live.size), k, sel)]
                else:
                    drafts = draw(draft, draft_sampler, live, int(alive.max()))
                    groups = [(np.flatnonzero(alive == kk), kk, deep) for kk in np.unique(alive)]
                for g, kk, rule in groups:
                    d = drafts[g, :kk]
                    tok, acc = rule.verify_batch(P[g], Q[g], d, rng)
                    tokens[g] = tok
                    if follow == "tree":
                        survivors[g] = np.where(acc, (d == tok[:, None]).sum(axis=1), 0)
                    else:
                        survivors[g] = acc.astype(np.int64)
            accepted = survivors > 0
            emit(live, tokens, accepted)
            rejections[live[~accepted]] += 1
            keep = accepted & (pos[live] < T)
            live, alive = live[keep], survivors[keep]
            depth += 1
        if live.size:  # every draft position accepted: bonus token from the target
            emit(live, draw(target, target_sampler, live, 1)[:, 0], np.zeros(live.size, bool))

    return SimulationResult(
        selector=sel.name or type(sel).__name__, k=k, gamma=gamma, n_tokens=T, n_runs=R, follow=follow,
        rejections_per_run=rejections, target_calls_per_run=calls, accepted_per_run=accepted_total,
        acceptance_by_position=accepted_at / R, cost=cost, wall_seconds=time.perf_counter() - start,
        sequences=seqs)
