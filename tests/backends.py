"""The array backends of the shared-kernel tests (POT's backend-fixture pattern): numpy, torch on
the CPU and torch on CUDA (skipped without a device)."""

from __future__ import annotations

import numpy as np
import torch


class Backend:
    """Moves numpy arrays onto one backend and back (``nx.of`` / ``nx.np``)."""

    def __init__(self, name: str):
        self.name = name
        self.device = "cuda" if name == "torch-cuda" else "cpu"

    def of(self, a, dtype=None):
        a = np.asarray(a)
        if self.name == "numpy":
            return a if dtype is None else a.astype(dtype)
        t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        if dtype is not None:
            t = t.to(getattr(torch, np.dtype(dtype).name))
        return t

    @staticmethod
    def np(x):
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    def __repr__(self):
        return self.name
