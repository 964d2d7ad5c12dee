"""Name -> selector class registry, loaded lazily so that importing ``ot_coupling`` stays cheap
and the ``"optimal"`` selector (which lives in :mod:`solvers`) is imported only on demand."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module

from .base import Selector

# name -> "module:Class"
_PATHS: dict[str, str] = {
    "speculative": "ot_coupling.speculative:SpeculativeSampling",
    "naive": "ot_coupling.naive:NaiveSampling",
    "kseq": "ot_coupling.kseq:KSeq",
    "rrs": "ot_coupling.rrs:RecursiveRejection",
    "rrs_wor": "ot_coupling.rrs:RecursiveRejectionWOR",
    "spechub": "ot_coupling.spechub:SpecHub",
    "greedy": "ot_coupling.greedy:GreedyDrafts",
    "gumbel": "ot_coupling.gumbel:GumbelCoupling",
    "optimal": "solvers.optimal_verifier:OptimalVerifier",
    "optimal_lp": "solvers.plan_selector:LPPlanSelector",
}


class _LazySelectors(Mapping):
    """Read-only mapping ``name -> Selector subclass`` that imports each class on first access."""

    def __init__(self, paths: dict[str, str]):
        self._paths = paths
        self._cache: dict[str, type[Selector]] = {}

    def __getitem__(self, name: str) -> type[Selector]:
        if name not in self._cache:
            module, cls = self._paths[name].split(":")
            self._cache[name] = getattr(import_module(module), cls)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


SELECTORS: Mapping[str, type[Selector]] = _LazySelectors(_PATHS)


def get_selector(name: str, **kwargs) -> Selector:
    """Instantiate the selector registered as ``name`` (keyword arguments go to its constructor)."""
    if name not in _PATHS:
        raise ValueError(f"unknown selector {name!r}; known: {', '.join(_PATHS)}")
    return SELECTORS[name](**kwargs)
