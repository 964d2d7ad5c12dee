"""Torch selector interface: batched, device-agnostic k-draft verification.

Rows are independent problems: ``p, q`` are ``[B, V]`` (probabilities, or logits with
``logits=True``), drafts ``[B, k]`` int64. All randomness of :meth:`TorchSelector.verify` comes
from a dict of noise tensors (uniforms, exponentials, Gumbels) described by
:meth:`TorchSelector.noise_shapes`; passing the same noise makes the batched code equal a per-row
reference loop bit for bit, and with ``noise=None`` it is drawn from the ``torch.Generator`` (the
trailing entries a rule names in :attr:`TorchSelector.lazy_noise` only when it reads them, with
the values :meth:`TorchSelector.draw_noise` would give: ``TorchOptimal``'s ``[B, V]`` race only when
a row rejects).

The numpy reference of every rule is :mod:`ot_coupling`; acceptances agree to 1e-6 in float64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ot_coupling.validation import validate_k

from .drafting import sample_drafts
from .validation import prepare_pair

Noise = dict[str, torch.Tensor]


class TorchSelector(ABC):
    """Base class of a batched torch verification rule."""

    name: str = ""
    draft_law: str = "iid"
    max_k: int | None = None
    #: trailing entries of :meth:`noise_shapes` that :meth:`_verify` may not read: with
    #: ``noise=None`` they are drawn only when first read (:meth:`_draw_lazily`); empty by default
    lazy_noise: tuple[str, ...] = ()

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """Exact acceptance per row, ``[B]`` (no sampling)."""

    @abstractmethod
    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``name -> (shape, kind)`` of the noise :meth:`verify` consumes; kind in
        ``{"uniform", "exponential", "gumbel"}``."""

    @abstractmethod
    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        """Verify prepared inputs (``[B, V]`` probabilities in the compute dtype) with given noise."""

    # ------------------------------------------------------------------ derived
    def draw_noise(self, batch: int, vocab: int, k: int, *, rng: torch.Generator | None = None,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                   generator: torch.Generator | None = None) -> Noise:
        """Draw the noise dict of :meth:`noise_shapes` from ``rng`` (``generator``: former name)."""
        return _draw(self.noise_shapes(batch, vocab, k).items(), _rng(rng, generator), device, dtype)

    def _draw_lazily(self, batch: int, vocab: int, k: int, generator: torch.Generator | None,
                     device: torch.device, dtype: torch.dtype) -> Noise:
        """The noise of :meth:`draw_noise` for ``noise=None``, the trailing entries named in
        :attr:`lazy_noise` drawn from ``generator`` only when :meth:`_verify` first reads one of
        them. They are the last draws either way, so every value read equals the one
        :meth:`draw_noise` would give from the same generator state; only the generator's state
        after a call that reads none of them differs (it has not advanced past the eager entries).
        Each lazy draw is fresh output of the generator, independent of everything drawn before,
        so the output law is unchanged (a branch that needs a draw simply draws it)."""
        shapes = list(self.noise_shapes(batch, vocab, k).items())
        if not self.lazy_noise:
            return _draw(shapes, generator, device, dtype)
        n_eager = len(shapes)
        while n_eager and shapes[n_eager - 1][0] in self.lazy_noise:
            n_eager -= 1
        if any(name in self.lazy_noise for name, _ in shapes[:n_eager]):  # pragma: no cover
            raise TypeError(f"{type(self).__name__}.lazy_noise must name the last entries of noise_shapes")
        return _LazyNoise(_draw(shapes[:n_eager], generator, device, dtype),
                          lambda: _draw(shapes[n_eager:], generator, device, dtype))

    def verify(self, p, q, drafts, rng: torch.Generator | None = None, *,
               noise: Noise | None = None, logits: bool = False,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Verify drafts ``[B, k]``: returns ``(tokens [B], accepted [B] bool)``; tokens ~ p exactly.
        Randomness from ``rng`` (a ``torch.Generator``; ``generator=`` is its former name) unless
        ``noise`` is given."""
        generator = _rng(rng, generator)
        p_t, q_t = prepare_pair(p, q, logits=logits)
        d = _check_drafts(drafts, p_t, self.max_k, self.name)
        if noise is None:
            noise = self._draw_lazily(p_t.shape[0], p_t.shape[1], d.shape[1], generator,
                                      p_t.device, p_t.dtype)
        else:
            noise = self._check_noise(noise, p_t, d.shape[1])
        return self._verify(p_t, q_t, d, noise)

    def _prepare(self, p, q, k: int, *, logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Validate ``(p, q, k)`` for :meth:`acceptance`: checked ``[B, V]`` tensors and ``int`` k."""
        p_t, q_t = prepare_pair(p, q, logits=logits)
        k = validate_k(k)
        if self.max_k is not None and k > self.max_k:
            raise ValueError(f"selector {self.name!r} supports k <= {self.max_k}, got k={k}")
        return p_t, q_t, k

    def _check_noise(self, noise: Noise, p: torch.Tensor, k: int) -> Noise:
        """Injected noise: every entry of :meth:`noise_shapes` present, of that shape, on p's device,
        cast to p's compute dtype."""
        if not isinstance(noise, dict):
            raise ValueError(f"noise must be a dict of tensors, got {type(noise).__name__}")  # noqa: TRY004
        out: Noise = {}
        for key, (shape, _) in self.noise_shapes(p.shape[0], p.shape[1], k).items():
            if key not in noise:
                raise ValueError(f"noise is missing {key!r} (needs {sorted(self.noise_shapes(1, 1, k))})")
            t = torch.as_tensor(noise[key], device=p.device, dtype=p.dtype)
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"noise[{key!r}] must have shape {tuple(shape)}, got {tuple(t.shape)}")
            out[key] = t
        return out

    def draft(self, q, k: int, rng: torch.Generator | None = None, *,
              logits: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``[B, k]`` drafts from this rule's draft law."""
        generator = _rng(rng, generator)
        _, q_t = prepare_pair(q, q, logits=logits, names=("q", "q"))
        return sample_drafts(q_t, k, self.draft_law, generator=generator)

    def sample(self, p, q, k: int, rng: torch.Generator | None = None, *,
               logits: bool = False, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draft then verify: ``(tokens [B], accepted [B], drafts [B, k])``."""
        generator = _rng(rng, generator)
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        drafts = sample_drafts(q_t, k, self.draft_law, generator=generator)
        noise = self._draw_lazily(p_t.shape[0], p_t.shape[1], k, generator, p_t.device, p_t.dtype)
        tokens, accepted = self._verify(p_t, q_t, drafts, noise)
        return tokens, accepted, drafts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, draft_law={self.draft_law!r})"


def _draw(shapes, generator: torch.Generator | None, device, dtype: torch.dtype) -> Noise:
    """Draw ``name -> (shape, kind)`` entries in order: uniforms in ``(0, 1)``, exponentials
    ``-log u``, Gumbels ``-log(-log u)``."""
    out: Noise = {}
    for name, (shape, kind) in shapes:
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        # map to the open interval (0, 1) so logs stay finite; in place (the same values as
        # -log(u) and -log(-log(u)), without a [B, V] temporary per step)
        u.clamp_min_(torch.finfo(dtype).tiny)
        if kind == "uniform":
            out[name] = u
        elif kind == "exponential":
            out[name] = u.log_().neg_()
        elif kind == "gumbel":
            out[name] = u.log_().neg_().log_().neg_()
        else:  # pragma: no cover - programming error in a subclass
            raise ValueError(f"unknown noise kind {kind!r}")
    return out


class _LazyNoise(dict):
    """A noise dict whose remaining entries are drawn by ``pending()`` when one is first read."""

    def __init__(self, eager: Noise, pending):
        super().__init__(eager)
        self._pending = pending

    def __missing__(self, key: str) -> torch.Tensor:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.update(pending())
            if key in self:
                return self[key]
        raise KeyError(key)


def _rng(rng: torch.Generator | None, generator: torch.Generator | None) -> torch.Generator | None:
    """The randomness parameter is ``rng`` in every package; ``generator=`` (its former torch name)
    is still accepted."""
    if rng is not None and generator is not None:
        raise ValueError("pass rng or generator (its former name), not both")
    return rng if rng is not None else generator


def _check_drafts(drafts, p: torch.Tensor, max_k: int | None, name: str) -> torch.Tensor:
    d = torch.as_tensor(drafts, device=p.device)
    if d.ndim == 1:
        d = d.unsqueeze(0)
    if d.ndim != 2 or d.shape[0] != p.shape[0] or d.shape[1] < 1:
        raise ValueError(f"drafts must have shape [B, k] with B={p.shape[0]}, got {tuple(d.shape)}")
    if d.dtype.is_floating_point or d.dtype == torch.bool:
        raise ValueError(f"drafts must hold integer token ids, got {d.dtype}")
    if (d < 0).any() or (d >= p.shape[1]).any():
        raise ValueError(f"drafts hold token ids outside [0, {p.shape[1]})")
    if max_k is not None and d.shape[1] > max_k:
        raise ValueError(f"selector {name!r} supports k <= {max_k}, got k={d.shape[1]}")
    return d.long()
