"""Shared fixtures of the torch-selector tests: selector names with their k values, random batches
with the regression cases (zeros in p and q, p == q, one-hot p), and the devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import random_pair

#: every torch selector of this area (``"optimal"`` is tested with its own module)
KS: dict[str, tuple[int, ...]] = {
    "speculative": (1,),
    "naive": (1, 2, 3),
    "kseq": (1, 2, 3),
    "rrs": (1, 2, 3),
    "rrs_wor": (1, 2, 3),
    "spechub": (2,),
    "greedy": (1, 2, 3),
    "gumbel": (1, 2, 3),
}
NAMES = tuple(KS)
NAME_K = [(name, k) for name, ks in KS.items() for k in ks]

#: ``cpu`` always; ``cuda`` when a GPU is present (marked ``gpu``, skipped cleanly otherwise)
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]),
]

#: a V = 6 pair with ``p = 0`` on a token q drafts (index 2) and ``q = 0`` where p > 0 (index 3)
P_SMALL = np.array([0.3, 0.25, 0.0, 0.2, 0.15, 0.1])
Q_SMALL = np.array([0.1, 0.3, 0.2, 0.0, 0.25, 0.15])


def random_batch(seed: int, batch: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """``[B, V]`` float64 target/draft rows cycling through Dirichlet pairs of several
    concentrations, zeros planted in p and/or q, ``p == q`` and one-hot ``p``. Every q row keeps at
    least 4 tokens of positive mass (so k <= 3 draft laws without replacement are defined)."""
    rng = np.random.default_rng(seed)
    ps, qs = [], []
    for i in range(batch):
        kind = i % 6
        while True:
            p, q = random_pair(rng, vocab, concentration=(0.3, 1.0, 3.0)[i % 3],
                               zero_p=kind in (1, 3), zero_q=kind in (2, 3))
            if (q > 0).sum() >= min(4, vocab):
                break
        if kind == 4:
            q = p.copy()
        if kind == 5:
            p = np.zeros(vocab)
            p[rng.integers(vocab)] = 1.0
        ps.append(p)
        qs.append(q)
    return np.stack(ps), np.stack(qs)
