"""Name -> torch selector registry (same names as :mod:`ot_coupling`), loaded lazily."""

from __future__ import annotations

from ot_coupling.registry import Registry

from .base import TorchSelector

SELECTORS: Registry = Registry(
    "selector",
    {
        "speculative": "gpu_backend.speculative:TorchSpeculative",
        "naive": "gpu_backend.naive:TorchNaive",
        "kseq": "gpu_backend.kseq:TorchKSeq",
        "rrs": "gpu_backend.rrs:TorchRRS",
        "rrs_wor": "gpu_backend.rrs:TorchRRSWOR",
        "spechub": "gpu_backend.spechub:TorchSpecHub",
        "greedy": "gpu_backend.greedy:TorchGreedy",
        "gumbel": "gpu_backend.gumbel:TorchGumbel",
        "optimal": "gpu_backend.optimal:TorchOptimal",
    },
)


def get_selector(name: str, **kwargs) -> TorchSelector:
    """Instantiate the torch selector registered as ``name``."""
    return SELECTORS.create(name, **kwargs)
