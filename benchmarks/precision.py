"""Reduced-precision error of every torch selector's exact acceptance (docs/numerics.md, table
"float32 and half precision").

Rows are rounded to the input dtype first and renormalised in float64; the error is
``|torch acceptance (computed from the rounded rows in that dtype) - numpy float64 acceptance of the
same rounded rows|``, so it measures the kernels' own error, not the rounding of the inputs.
Rows: V in {8, 50}, Dirichlet(0.1), Dirichlet(1), Dirichlet(10) pairs, every fourth row with masses
log-uniform on [1e-11, 1]; k = 1..4 (1..3 for ``rrs_wor`` and ``gumbel``; ``spechub`` k = 2,
``speculative`` k = 1).

    python benchmarks/precision.py [--rows 12] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import ot_coupling
from gpu_backend.registry import SELECTORS, get_selector

DTYPES = {"float32": torch.float32, "float16 input": torch.float16, "bfloat16 input": torch.bfloat16}


def rows(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        V = (8, 50)[i % 2]
        if i % 4 == 3:
            p, q = (10.0 ** rng.uniform(-11, 0, V) for _ in range(2))
        else:
            a = (0.1, 1.0, 10.0)[i % 3]
            p, q = rng.dirichlet(np.full(V, a)), rng.dirichlet(np.full(V, a))
        yield p / p.sum(), q / q.sum()


def ks(name: str) -> tuple[int, ...]:
    return {"speculative": (1,), "spechub": (2,), "rrs_wor": (1, 2, 3), "gumbel": (1, 2, 3)}.get(name, (1, 2, 3, 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| Selector | " + " | ".join(DTYPES) + " |")
    print("| --- |" + " --- |" * len(DTYPES))
    for name in SELECTORS:
        sel, ref = get_selector(name), ot_coupling.get_selector(name)
        worst = []
        for dt in DTYPES.values():
            err = 0.0
            for p, q in rows(args.rows, args.seed):
                pr = torch.tensor(p).to(dt).to(torch.float64)
                qr = torch.tensor(q).to(dt).to(torch.float64)
                pr, qr = pr / pr.sum(), qr / qr.sum()
                compute = torch.float32 if dt != torch.float64 else dt
                for k in ks(name):
                    if k > int((qr > 0).sum()):
                        continue
                    got = float(sel.acceptance(pr.to(compute)[None], qr.to(compute)[None], k)[0])
                    err = max(err, abs(got - ref.acceptance(pr.numpy(), qr.numpy(), k)))
            worst.append(err)
        print(f"| `{name}` | " + " | ".join(f"{e:.1e}" for e in worst) + " |")


if __name__ == "__main__":
    main()
