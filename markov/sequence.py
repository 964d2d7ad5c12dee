"""Every sequence verifier on Markov-chain LMs: simulated and exact block efficiency and speedup.

One *round* (one target call) drafts ``k`` i.i.d. paths of length ``L`` from the draft chain at the
current context and lets a sequence verifier (:func:`ot_coupling.get_sequence_verifier`: block
verification, GBV, traversal, SpecTr/SpecInfer trees, the LP optimum, ...) emit ``Y`` with
``1 <= |Y| <= L + 1``; the context then moves to the last ``order`` tokens of ``context + Y``.

Exact theory (stationary chains). For every context ``s`` the verifier's exact output law
(``verifier.output_law(..., prefix=s)``) gives ``E|Y| (s)`` and the round-level transition
``T[s, s']``. Rounds form a Markov chain on contexts, so after ``n`` rounds from the prompt law
``m_0`` the expected number of tokens is ``sum_{r < n} m_0 T^r e`` (``e = E|Y|(.)``), and in the long
run tokens per target call converge to ``pi . e`` with ``pi`` the stationary law of ``T`` (renewal
reward; unique when ``T`` is irreducible, else the Cesaro limit from ``m_0`` is reported).
Block efficiency = tokens per target call; speedup = block efficiency / step time
(:class:`markov.speedup.CostModel`, ``gamma = L``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ot_coupling.validation import SeedLike, as_generator, validate_k

from .model import MarkovLM, decode
from .pair import ModelPair
from .speedup import CostModel


def _resolve(verifier, verifier_kwargs):
    from ot_coupling import get_sequence_verifier
    from ot_coupling.sequence import SequenceVerifier

    if isinstance(verifier, SequenceVerifier):
        return verifier
    if isinstance(verifier, str):
        return get_sequence_verifier(verifier, **(verifier_kwargs or {}))
    raise ValueError(f"verifier must be a sequence-verifier name or a SequenceVerifier, got "
                     f"{type(verifier).__name__}")


def _pair(target: MarkovLM, draft: MarkovLM) -> ModelPair:
    pair = ModelPair(target, draft, 1)
    if not pair.stationary:
        raise ValueError("sequence verifiers on Markov LMs need stationary chains (no horizon)")
    return pair


def _contexts(pair: ModelPair) -> list[tuple]:
    """Context tuple (oldest first, ``order`` tokens) of every joint state."""
    if pair.order == 0:
        return [()]
    rows = decode(np.arange(pair.n_states), pair.V, pair.order)
    return [tuple(int(v) for v in r) for r in rows]


def _next_state(pair: ModelPair, state: int, y: tuple) -> int:
    s = np.array([state])
    for z in y:
        s = pair.advance(s, np.array([z]))
    return int(s[0])


@dataclass
class SequenceSimulation:
    """Monte Carlo of ``n_runs`` independent generations of ``n_rounds`` rounds each.

    ``tokens_per_run[i]``: tokens emitted by run ``i``; ``block_efficiency`` = tokens per target call
    (pooled), with the standard error of the per-run means (runs are independent).
    """

    verifier: str
    k: int
    L: int
    n_rounds: int
    n_runs: int
    tokens_per_run: np.ndarray
    cost: CostModel
    wall_seconds: float

    @property
    def block_efficiency(self) -> float:
        return float(self.tokens_per_run.mean() / self.n_rounds)

    @property
    def block_efficiency_se(self) -> float:
        x = self.tokens_per_run / self.n_rounds
        return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")

    def ci(self, z: float = 1.96) -> tuple[float, float]:
        """Normal-approximation confidence interval of the block efficiency."""
        return (self.block_efficiency - z * self.block_efficiency_se,
                self.block_efficiency + z * self.block_efficiency_se)

    @property
    def speedup(self) -> float:
        return self.cost.speedup(self.block_efficiency, self.L, self.k)

    def to_dict(self) -> dict:
        return {"verifier": self.verifier, "k": self.k, "L": self.L, "n_rounds": self.n_rounds,
                "n_runs": self.n_runs, "block_efficiency": self.block_efficiency,
                "block_efficiency_se": self.block_efficiency_se, "ci95": self.ci(), "speedup": self.speedup,
                "wall_seconds": self.wall_seconds}


def simulate_sequence(target: MarkovLM, draft: MarkovLM, verifier="bv", k: int = 2, L: int = 3,
                      n_rounds: int = 50, n_runs: int = 100, rng: SeedLike = None,
                      cost: CostModel | None = None, verifier_kwargs: dict | None = None) -> SequenceSimulation:
    """Simulate ``n_runs`` generations of ``n_rounds`` verification rounds with a sequence verifier.

    Each round drafts ``k`` i.i.d. paths of length ``L`` from ``draft`` at the run's context and
    calls ``verifier.sample`` (Python per round: for small studies and for checking the exact
    values of :func:`exact_sequence_efficiency`).
    """
    pair = _pair(target, draft)
    k, L = validate_k(k), validate_k(L, "L")
    n_rounds, n_runs = validate_k(n_rounds, "n_rounds"), validate_k(n_runs, "n_runs")
    v = _resolve(verifier, verifier_kwargs)
    gen = as_generator(rng)
    cost = CostModel() if cost is None else cost
    contexts = _contexts(pair)
    t0 = time.perf_counter()
    states = pair.sample_prompts(n_runs, gen)
    tokens = np.zeros(n_runs, dtype=np.int64)
    for i in range(n_runs):
        s = int(states[i])
        for _ in range(n_rounds):
            y, _ = v.sample(target.next_dist, draft.next_dist, k, L, gen, prefix=contexts[s])
            tokens[i] += len(y)
            s = _next_state(pair, s, tuple(y))
    return SequenceSimulation(verifier=v.name, k=k, L=L, n_rounds=n_rounds, n_runs=n_runs,
                              tokens_per_run=tokens, cost=cost, wall_seconds=time.perf_counter() - t0)


@dataclass
class SequenceExact:
    """Exact round-level theory of a sequence verifier on a stationary Markov pair.

    ``per_state[s]`` = ``E|Y|`` from context ``s``; ``transition[s, s']``; ``stationary`` (the long-run
    law of the round-start context from the prompt law); ``block_efficiency`` = ``stationary . per_state``
    (long run); ``finite_horizon`` = expected tokens per round over the first ``n_rounds`` rounds.
    """

    verifier: str
    k: int
    L: int
    per_state: np.ndarray
    transition: np.ndarray
    stationary: np.ndarray
    prompt_law: np.ndarray
    cost: CostModel

    @property
    def block_efficiency(self) -> float:
        return float(self.stationary @ self.per_state)

    def finite_horizon(self, n_rounds: int) -> float:
        """Exact ``E[tokens in n_rounds rounds] / n_rounds`` from the prompt law."""
        m, total = self.prompt_law.copy(), 0.0
        for _ in range(validate_k(n_rounds, "n_rounds")):
            total += float(m @ self.per_state)
            m = m @ self.transition
        return total / n_rounds

    @property
    def speedup(self) -> float:
        return self.cost.speedup(self.block_efficiency, self.L, self.k)

    def to_dict(self) -> dict:
        return {"verifier": self.verifier, "k": self.k, "L": self.L, "block_efficiency": self.block_efficiency,
                "speedup": self.speedup, "per_state": self.per_state.tolist()}


def _long_run(T: np.ndarray, m0: np.ndarray, tol: float = 1e-14, max_iter: int = 100_000) -> np.ndarray:
    """Cesaro limit of ``m0 T^r`` (the stationary law reached from ``m0``)."""
    S = T.shape[0]
    # solve pi (T - I) = 0, sum pi = 1 when unique; else average iterates
    A = np.vstack([(T - np.eye(S)).T, np.ones((1, S))])
    b = np.concatenate([np.zeros(S), [1.0]])
    pi, *_ = np.linalg.lstsq(A, b, rcond=None)
    if np.abs(A @ pi - b).max() <= 1e-12 and (pi >= -1e-12).all() and np.linalg.matrix_rank(A) == S:
        return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()
    m, acc = m0.copy(), np.zeros(S)
    for r in range(1, max_iter + 1):
        acc += m
        m = m @ T
        if r % 1000 == 0 and np.abs(acc / r - (acc + m) / (r + 1)).max() < tol:
            break
    return acc / acc.sum()


def exact_sequence_efficiency(target: MarkovLM, draft: MarkovLM, verifier="bv", k: int = 2, L: int = 3,
                              cost: CostModel | None = None,
                              verifier_kwargs: dict | None = None) -> SequenceExact:
    """Exact per-context ``E|Y|``, round transition, long-run block efficiency and speedup.

    Uses ``verifier.output_law`` once per context (exact enumeration: small ``V``, ``k``, ``L``).
    """
    pair = _pair(target, draft)
    k, L = validate_k(k), validate_k(L, "L")
    v = _resolve(verifier, verifier_kwargs)
    cost = CostModel() if cost is None else cost
    contexts = _contexts(pair)
    S = len(contexts)
    per_state = np.zeros(S)
    T = np.zeros((S, S))
    for s, ctx in enumerate(contexts):
        law = v.output_law(target.next_dist, draft.next_dist, k, L, prefix=ctx)
        for y, w in law.items():
            per_state[s] += w * len(y)
            T[s, _next_state(pair, s, y)] += w
    T /= T.sum(axis=1, keepdims=True)
    m0 = pair.prompt_law().astype(np.float64)
    return SequenceExact(verifier=v.name, k=k, L=L, per_state=per_state, transition=T,
                         stationary=_long_run(T, m0), prompt_law=m0, cost=cost)
