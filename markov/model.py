"""Markov-chain language models: the setting of Yin et al.'s theory of speculative decoding.

Yin, Chen, Huang, Wang, "A Theoretical Perspective for Speculative Decoding Algorithm" (NeurIPS 2024,
docs/theory/markov.md#decoding-as-a-markov-chain) model decoding as a (possibly non-stationary) Markov chain on prefixes: the
next-token law is ``p_t(. | x_{1:t-1})``. :class:`MarkovLM` is such a chain over ``V`` tokens whose
law depends on the last ``n`` tokens (order ``n``) and, optionally, on the position ``t``.

Conventions used everywhere in :mod:`markov`:

* generated tokens are ``x_1 .. x_T``; token ``x_t`` is drawn at *position* ``t - 1`` (0-based);
* the *context* of a position is the last ``n`` tokens, taken from the prompt (the start context,
  drawn from ``initial``) and the tokens generated so far;
* a context ``(c_1, ..., c_n)`` (oldest first) is encoded as the integer ``sum_i c_i V^(n-i)``.
"""

from __future__ import annotations

import numpy as np

from ot_coupling.draft_laws import get_draft_law
from ot_coupling.validation import as_generator

_IID = get_draft_law("iid")

#: absolute tolerance on row sums of a transition table.
ROW_TOL = 1e-9


def _check_rows(table: np.ndarray, name: str) -> np.ndarray:
    """Validate that every slice along the last axis is a probability vector; renormalise."""
    if not np.isfinite(table).all():
        raise ValueError(f"{name} contains NaN or inf")
    if (table < 0).any():
        idx = tuple(int(i) for i in np.argwhere(table < 0)[0])
        raise ValueError(f"{name} has negative mass {table[idx]:.3g} at index {idx}")
    sums = table.sum(axis=-1)
    bad = np.abs(sums - 1.0) > ROW_TOL
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: every row must sum to 1 within {ROW_TOL:g}; row {idx} sums to "
                         f"{sums[idx]:.12g}")
    return table / sums[..., None]


class MarkovLM:
    """An order-``n`` Markov chain over ``V`` tokens, stationary or position-dependent.

    Parameters
    ----------
    transitions : array_like
        ``(V,)``: order 0 (i.i.d. tokens); ``(V, V)``: first order, ``transitions[a, y] = P(y | a)``;
        ``(V,)*n + (V,)``: order ``n``, ``transitions[c_1, ..., c_n, y]`` (oldest context token
        first); ``(T, V, V)`` with ``nonstationary=True``: a first-order chain whose position ``t``
        (0-based) uses ``transitions[t]`` (the non-stationary chains of Yin et al., docs/theory/markov.md#decoding-as-a-markov-chain).
    initial : array_like, optional
        Law of the start context (the prompt), shape ``(V,)*n``; uniform when omitted. Unused for
        order 0.
    nonstationary : bool, optional
        Read a 3-D table as ``(T, V, V)``. Inferred as ``True`` when ``shape[0] != shape[1]``; a
        ``(V, V, V)`` table is an order-2 chain unless ``nonstationary=True``.

    Raises
    ------
    ValueError
        naming ``transitions`` or ``initial`` when a shape is wrong or a row is not a distribution.
    """

    def __init__(self, transitions, initial=None, *, nonstationary: bool | None = None):
        try:
            table = np.array(transitions, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"transitions must be a numeric array ({exc})") from None
        if table.ndim == 0 or table.size == 0:
            raise ValueError(f"transitions must be a non-empty array, got shape {table.shape}")
        V = table.shape[-1]
        if nonstationary is None:
            nonstationary = table.ndim == 3 and table.shape[0] != table.shape[1]
        if nonstationary:
            if table.ndim != 3 or table.shape[1] != V:
                raise ValueError(f"non-stationary transitions must have shape (T, V, V), got {table.shape}")
            order, horizon = 1, table.shape[0]
        else:
            if any(d != V for d in table.shape):
                raise ValueError(f"transitions must have shape (V,)*n + (V,) (all axes equal), got "
                                 f"{table.shape}; pass nonstationary=True for a (T, V, V) table")
            order, horizon = table.ndim - 1, None
        table = _check_rows(table, "transitions")
        self._V = V
        self._order = order
        self._horizon = horizon
        n_states = V**order
        #: internal table ``[T or 1, V**order, V]``
        self._table = table.reshape(horizon or 1, n_states, V)
        if order == 0:
            self._initial = np.ones(1)
        elif initial is None:
            self._initial = np.full(n_states, 1.0 / n_states)
        else:
            init = np.array(initial, dtype=np.float64)
            if init.shape != (V,) * order:
                raise ValueError(f"initial must have shape {(V,) * order}, got {init.shape}")
            self._initial = _check_rows(init.reshape(1, -1), "initial")[0]

    # ------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        """Number of tokens ``V``."""
        return self._V

    @property
    def order(self) -> int:
        """Number of past tokens the next-token law depends on."""
        return self._order

    @property
    def horizon(self) -> int | None:
        """Number of positions of a non-stationary chain (``None`` when stationary)."""
        return self._horizon

    @property
    def stationary(self) -> bool:
        return self._horizon is None

    @property
    def n_states(self) -> int:
        """Number of contexts ``V**order``."""
        return self._table.shape[1]

    @property
    def initial(self) -> np.ndarray:
        """Law of the start context, shape ``(V,)*order`` (a scalar 1 for order 0)."""
        return self._initial.reshape((self._V,) * self._order)

    @property
    def table(self) -> np.ndarray:
        """Transition table ``[T or 1, V**order, V]`` (read-only view)."""
        view = self._table.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ queries
    def _check_position(self, position) -> np.ndarray:
        pos = np.asarray(position, dtype=np.int64)
        if (pos < 0).any():
            raise ValueError("position must be >= 0")
        if self._horizon is not None and (pos >= self._horizon).any():
            raise ValueError(f"position must be < {self._horizon} (the chain's horizon)")
        return pos

    def encode(self, contexts) -> np.ndarray:
        """Context rows ``[..., order]`` (oldest first; longer rows use their last ``order``
        tokens) -> integer state ids ``[...]``."""
        ctx = np.asarray(contexts, dtype=np.int64)
        if ctx.ndim == 0:
            ctx = ctx[None]
        if ctx.shape[-1] < self._order:
            raise ValueError(f"context must hold at least {self._order} tokens, got {ctx.shape[-1]}")
        if ((ctx < 0) | (ctx >= self._V)).any():
            raise ValueError(f"context holds token ids outside [0, {self._V})")
        ctx = ctx[..., ctx.shape[-1] - self._order:]
        weights = self._V ** np.arange(self._order - 1, -1, -1, dtype=np.int64)
        return ctx @ weights

    def next_dist(self, context=(), position: int = 0) -> np.ndarray:
        """``P(. | context)`` at ``position`` (0-based; used by non-stationary chains)."""
        ctx = np.asarray(context, dtype=np.int64).reshape(-1)
        return self.next_dist_batch(ctx[None, :], position)[0].copy()

    def next_dist_batch(self, contexts, positions=0) -> np.ndarray:
        """Next-token laws ``[R, V]`` for context rows ``[R, >= order]`` and positions (scalar or ``[R]``)."""
        ctx = np.asarray(contexts, dtype=np.int64)
        if ctx.ndim != 2:
            raise ValueError(f"contexts must have shape [R, order], got {ctx.shape}")
        states = self.encode(ctx) if self._order else np.zeros(ctx.shape[0], dtype=np.int64)
        pos = self._check_position(positions)
        return self.rows(states, pos)

    def rows(self, states: np.ndarray, positions=0) -> np.ndarray:
        """Next-token laws for encoded states (no validation: the simulator's hot path)."""
        if self._horizon is None:
            return self._table[0, states]
        return self._table[positions, states]

    def sample(self, n_tokens: int, n_runs: int = 1, rng=None) -> np.ndarray:
        """Ancestral sampling: ``[n_runs, n_tokens]`` tokens, each run from its own start context."""
        gen = as_generator(rng)
        ctx = self.sample_contexts(n_runs, gen)
        states = self.encode(ctx) if self._order else np.zeros(n_runs, dtype=np.int64)
        out = np.empty((n_runs, n_tokens), dtype=np.int64)
        mod = self.n_states // self._V if self._order else 1
        for t in range(n_tokens):
            out[:, t] = sample_rows(self.rows(states, t), gen)
            if self._order:
                states = (states % mod) * self._V + out[:, t]
        return out

    def sample_contexts(self, n_runs: int, rng=None) -> np.ndarray:
        """``[n_runs, order]`` start contexts drawn from :attr:`initial`."""
        gen = as_generator(rng)
        if self._order == 0:
            return np.zeros((n_runs, 0), dtype=np.int64)
        idx = sample_rows(np.broadcast_to(self._initial, (n_runs, self.n_states)), gen)
        return decode(idx, self._V, self._order)

    def __repr__(self) -> str:
        kind = "stationary" if self.stationary else f"non-stationary (T={self._horizon})"
        return f"MarkovLM(V={self._V}, order={self._order}, {kind})"


def tv_rows(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Row-wise ``TV(p, q) = sum_x (p(x) - q(x))^+`` of two row-stochastic arrays."""
    return np.maximum(P - Q, 0.0).sum(axis=-1)


def decode(states: np.ndarray, V: int, order: int) -> np.ndarray:
    """Integer state ids ``[R]`` -> context rows ``[R, order]`` (oldest first)."""
    states = np.asarray(states, dtype=np.int64)
    powers = V ** np.arange(order - 1, -1, -1, dtype=np.int64)
    return (states[:, None] // powers) % V


def sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of a row-stochastic ``[R, V]`` array (inverse CDF of the ``"iid"`` draft
    law, which never returns a token of zero mass)."""
    return _IID.sample_batch(probs, 1, rng)[:, 0]
