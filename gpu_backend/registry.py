"""Name -> torch selector registry (same names as :mod:`ot_coupling`), loaded lazily."""

from __future__ import annotations

from collections.abc import Mapping

from ot_coupling.registry import _LazySelectors

from .base import TorchSelector

_PATHS: dict[str, str] = {
    "speculative": "gpu_backend.speculative:TorchSpeculative",
    "naive": "gpu_backend.naive:TorchNaive",
    "kseq": "gpu_backend.kseq:TorchKSeq",
    "rrs": "gpu_backend.rrs:TorchRRS",
    "rrs_wor": "gpu_backend.rrs:TorchRRSWOR",
    "spechub": "gpu_backend.spechub:TorchSpecHub",
    "greedy": "gpu_backend.greedy:TorchGreedy",
    "gumbel": "gpu_backend.gumbel:TorchGumbel",
    "optimal": "gpu_backend.optimal:TorchOptimal",
}

SELECTORS: Mapping[str, type[TorchSelector]] = _LazySelectors(_PATHS)


def get_selector(name: str, **kwargs) -> TorchSelector:
    """Instantiate the torch selector registered as ``name``."""
    if name not in _PATHS:
        raise ValueError(f"unknown selector {name!r}; known: {', '.join(_PATHS)}")
    return SELECTORS[name](**kwargs)
