"""A target/draft pair of Markov LMs on one joint state space (shared by the simulator and the DPs).

The joint state is the last ``m = max(target.order, draft.order)`` tokens, encoded base ``V``
(oldest first); each model reads its own context as the low ``order`` digits. The prompt (start
context) is drawn from the ``initial`` law of the model of larger order (the target on a tie), and
both models condition on it, as in Yin et al.'s Markov-chain setting (docs/theory/markov.md#decoding-as-a-markov-chain).
"""

from __future__ import annotations

import numpy as np

from ot_coupling.validation import validate_k

from .model import MarkovLM


class ModelPair:
    """Joint view of ``(target, draft)``; ``n_tokens`` is checked against non-stationary horizons."""

    def __init__(self, target: MarkovLM, draft: MarkovLM, n_tokens: int):
        for name, m in (("target", target), ("draft", draft)):
            if not isinstance(m, MarkovLM):
                raise ValueError(f"{name} must be a MarkovLM, got {type(m).__name__}")  # noqa: TRY004
        if target.vocab_size != draft.vocab_size:
            raise ValueError(f"target and draft must share the vocabulary, got V={target.vocab_size} "
                             f"and V={draft.vocab_size}")
        self.n_tokens = validate_k(n_tokens, "n_tokens")
        for name, m in (("target", target), ("draft", draft)):
            if m.horizon is not None and m.horizon < self.n_tokens:
                raise ValueError(f"n_tokens={self.n_tokens} exceeds the {name}'s horizon {m.horizon}")
        self.target, self.draft = target, draft
        self.V = target.vocab_size
        self.order = max(target.order, draft.order)
        self.n_states = self.V**self.order
        self._keep = self.n_states // self.V if self.order else 1
        self._tables: dict[str, np.ndarray] = {}

    @property
    def stationary(self) -> bool:
        return self.target.stationary and self.draft.stationary

    def prompt_law(self) -> np.ndarray:
        """Law ``[S]`` of the joint start state."""
        src = self.target if self.target.order >= self.draft.order else self.draft
        return src.initial.reshape(-1) if self.order else np.ones(1)

    def sample_prompts(self, n_runs: int, rng: np.random.Generator) -> np.ndarray:
        src = self.target if self.target.order >= self.draft.order else self.draft
        ctx = src.sample_contexts(n_runs, rng)
        return src.encode(ctx) if self.order else np.zeros(n_runs, dtype=np.int64)

    def _local(self, model: MarkovLM, states: np.ndarray) -> np.ndarray:
        return states % model.n_states

    def target_rows(self, states: np.ndarray, positions) -> np.ndarray:
        return self.target.rows(self._local(self.target, states), positions)

    def draft_rows(self, states: np.ndarray, positions) -> np.ndarray:
        return self.draft.rows(self._local(self.draft, states), positions)

    def row_ids(self, model: MarkovLM, states: np.ndarray, positions) -> np.ndarray:
        """Row indices into ``model.table.reshape(-1, V)`` for joint states at positions."""
        local = self._local(model, states)
        return local if model.stationary else np.asarray(positions) * model.n_states + local

    def advance(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Joint states after appending ``tokens``."""
        if not self.order:
            return states
        return (states % self._keep) * self.V + tokens

    def advance_mass(self, joint: np.ndarray) -> np.ndarray:
        """Push a mass ``[S, V]`` on (state, next token) to the next states ``[S]``."""
        if not self.order:
            return joint.sum(axis=1)
        return joint.reshape(self.V, self._keep, self.V).sum(axis=0).reshape(-1)

    def tables(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """``(P [S, V], Q [S, V])``: target and draft rows of every joint state at ``position``."""
        out = []
        for name, model in (("target", self.target), ("draft", self.draft)):
            if not model.stationary:
                out.append(model.rows(self._local(model, np.arange(self.n_states)), position))
                continue
            if name not in self._tables:  # stationary tables are cached
                self._tables[name] = model.rows(self._local(model, np.arange(self.n_states)), 0)
            out.append(self._tables[name])
        return out[0], out[1]
