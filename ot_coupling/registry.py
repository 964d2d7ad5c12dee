"""Name -> class registries, loaded lazily, that upper layers extend without being named here.

``ot_coupling`` is the lowest layer of specot: it must not import (or name) :mod:`solvers`,
:mod:`markov`, :mod:`gpu_backend` or :mod:`specot`. Verifiers that live higher up (the exact
``"optimal"`` selector in :mod:`solvers`, say) join a registry through a Python entry point
(``[project.entry-points."specot.selectors"]`` in ``pyproject.toml``) or by calling
:meth:`Registry.register` at import time. Entries are ``"module:attribute"`` strings imported on
first use, so ``import ot_coupling`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from .base import Selector


class Registry(Mapping):
    """Read-only mapping ``name -> class`` that imports each entry on first access.

    Parameters
    ----------
    kind : str
        What the entries are, for error messages (``"selector"``, ``"sequence verifier"``).
    builtin : dict of str to str
        ``name -> "module:attribute"`` of the entries that live in the registry's own layer.
    group : str, optional
        Entry-point group scanned (once, on first lookup) for entries contributed by other
        installed packages.
    """

    def __init__(self, kind: str, builtin: dict[str, str], group: str | None = None):
        self.kind = kind
        self._paths: dict[str, str] = dict(builtin)
        self._group = group
        self._scanned = group is None
        self._cache: dict[str, Any] = {}

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self._group):
            self._paths.setdefault(ep.name, ep.value)

    def register(self, name: str, target: str | Any) -> None:
        """Add ``name``; ``target`` is a ``"module:attribute"`` string or the object itself."""
        self._scan()
        if isinstance(target, str):
            self._paths[name] = target
            self._cache.pop(name, None)
        else:
            self._paths[name] = f"{target.__module__}:{target.__qualname__}"
            self._cache[name] = target

    def __getitem__(self, name: str) -> Any:
        self._scan()
        if name not in self._cache:
            if name not in self._paths:
                raise KeyError(name)
            module, attr = self._paths[name].split(":")
            self._cache[name] = getattr(import_module(module), attr)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        self._scan()
        return iter(self._paths)

    def __len__(self) -> int:
        self._scan()
        return len(self._paths)

    def create(self, name: str, **kwargs) -> Any:
        """Instantiate the entry ``name`` (keyword arguments go to its constructor).

        Raises
        ------
        ValueError
            If ``name`` is not registered.
        """
        if not isinstance(name, str) or name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self)}")
        return self[name](**kwargs)


SELECTORS: Registry = Registry(
    "selector",
    {
        "speculative": "ot_coupling.speculative:SpeculativeSampling",
        "naive": "ot_coupling.naive:NaiveSampling",
        "kseq": "ot_coupling.kseq:KSeq",
        "rrs": "ot_coupling.rrs:RecursiveRejection",
        "rrs_wor": "ot_coupling.rrs:RecursiveRejectionWOR",
        "spechub": "ot_coupling.spechub:SpecHub",
        "greedy": "ot_coupling.greedy:GreedyDrafts",
        "gumbel": "ot_coupling.gumbel:GumbelCoupling",
    },
    group="specot.selectors",
)


def get_selector(name: str, **kwargs) -> Selector:
    """Instantiate the selector registered as ``name`` (keyword arguments go to its constructor)."""
    return SELECTORS.create(name, **kwargs)
