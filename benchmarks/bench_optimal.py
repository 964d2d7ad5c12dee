"""The exact optimal k-draft verifier at full vocabulary size: time per row and fit quality.

Measured in one run (docs/theory/optimal_verifier.md):

1. per-row time at V = 49152, k = 8 on CPU of the torch fast path (``gpu_backend.optimal``, plan +
   acceptance), the numpy importance rule and the numpy min-score layout (the exact reference),
   next to the baseline K-SEQ (``gpu_backend.kseq.kseq_rho``: SpecTr's rho* per row, the shared kernel
   ``ot_coupling.kernels.kseq.kseq_rho``) and the
   closed-form optimum (``solvers.closed_form.optimal_acceptance``);
2. a ``[B, 49152]`` batch through the torch fast path (B = 64 on CUDA; smaller on CPU);
3. Newton iterations, fit status (``LevelFit.status``: 0 converged), fit error ``max |r(lam)/r* - 1|``, quadrature bound and acceptance minus the
   optimum against V and k.

Inputs: Dirichlet(1) pairs (the hard case: tens of thousands of distinct ratios ``p/q``) and
Dirichlet(0.05) pairs (peaked, closer to LLM next-token laws). Run
``python benchmarks/bench_optimal.py [--quick] [--device cuda]``; times are the best of
``--repeats`` runs (CPU time with one torch thread on a CPU, wall time on CUDA), ratios are
time / K-SEQ time measured in the same run.

``--base DIR`` instead times the per-row fast path of this tree against another checkout
(``git -C <repo> archive <commit> | tar -x -C DIR``) in one run: one worker process per tree
(``PYTHONPATH`` on that tree), the two alternating row by row, each timing ``--rows`` rows per input
law (``--alpha``: Dirichlet concentrations, or ``softmax3`` for softmax of N(0, 3^2) logits) with a
fresh verifier per call (plan + verify with drafts ~ q, or plan + acceptance; CPU time, one
thread), so a shared machine slows both sides alike. Per row the best of ``--rounds`` rounds is
kept; the table gives the minimum and median over rows and the ratio this/base of the medians.
"""

from __future__ import annotations

import os

# one BLAS thread, like torch below: on a shared machine OpenBLAS threads spin and a 200 x 200
# solve can take 100x longer with two threads than with one
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import math
import time

import numpy as np
import torch

from gpu_backend.kseq import kseq_rho
from gpu_backend.optimal import TorchOptimal
from solvers.closed_form import optimal_acceptance
from solvers.importance_weights import importance_plan
from solvers.min_score_layout import greedy_layout


CHILD = r"""
import os, sys, json, time
for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"
import warnings; warnings.simplefilter("ignore")
import numpy as np, torch
torch.set_num_threads(1)
from gpu_backend.optimal import TorchOptimal
from solvers.optimal_verifier import OptimalVerifier
V, k, rows = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def law_pairs(law):
    rng = np.random.default_rng(0)
    if law.startswith("softmax"):
        z = rng.normal(0.0, float(law[7:]), (2, rows, V))
        e = np.exp(z - z.max(-1, keepdims=True))
        e /= e.sum(-1, keepdims=True)
        P, Q = e[0], e[1]
    else:
        a = float(law)
        P, Q = rng.dirichlet(np.full(V, a), rows), rng.dirichlet(np.full(V, a), rows)
    D = np.stack([np.random.default_rng(b).choice(V, k, p=Q[b]) for b in range(rows)])  # drafts ~ q
    return P, Q, D

def clock(fn):
    t0 = time.process_time(); fn(); return time.process_time() - t0

data = {}
g = torch.Generator().manual_seed(0)
for line in sys.stdin:  # "<law> <row>": time the four paths on that row once, fresh verifiers
    law, b = line.split()
    b = int(b)
    if law not in data:
        data[law] = law_pairs(law)
        TorchOptimal().acceptance(torch.tensor(data[law][0][:1]), torch.tensor(data[law][1][:1]), k)
    P, Q, D = data[law]
    pt, qt, dt = torch.tensor(P[b:b + 1]), torch.tensor(Q[b:b + 1]), torch.tensor(D[b:b + 1])
    out = {"torch verify": clock(lambda: TorchOptimal().verify(pt, qt, dt, g)),
           "torch acceptance": clock(lambda: TorchOptimal().acceptance(pt, qt, k)),
           "numpy verify": clock(lambda: OptimalVerifier("importance").verify(P[b], Q[b], D[b], b)),
           "numpy acceptance": clock(lambda: OptimalVerifier("importance").acceptance(P[b], Q[b], k))}
    print(json.dumps(out), flush=True)
"""


def compare(base: str, V: int, k: int, rows: int, laws: list[str], rounds: int) -> None:
    """Same-run before/after table of the per-row fast path (see the module docstring)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    trees = {"base": Path(base).resolve(), "this": Path(__file__).resolve().parents[1]}
    workers = {name: subprocess.Popen([sys.executable, "-c", CHILD, str(V), str(k), str(rows)], cwd=tree,
                                      env=dict(os.environ, PYTHONPATH=str(tree)), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
               for name, tree in trees.items()}
    best: dict[tuple, float] = {}
    for r in range(rounds):
        for law in laws:
            for b in range(rows):
                # the two trees alternate row by row (and which goes first alternates by round)
                for name in (("base", "this") if (r + b) % 2 == 0 else ("this", "base")):
                    w = workers[name]
                    w.stdin.write(f"{law} {b}\n")
                    w.stdin.flush()
                    for path, t in json.loads(w.stdout.readline()).items():
                        key = (name, law, path, b)
                        best[key] = min(best.get(key, math.inf), t)
    for w in workers.values():
        w.stdin.close()
        w.wait()
    print(f"\n## per row, V={V}, k={k}, {rows} rows per law, best of {rounds} rounds per row (CPU ms, "
          f"one thread; the two trees alternate row by row)")
    print("| law | path | base min / median | this min / median | this/base (median) |")
    print("|---|---|---|---|---|")
    for law in laws:
        for path in ("torch verify", "torch acceptance", "numpy verify", "numpy acceptance"):
            a = np.array([best[("base", law, path, b)] for b in range(rows)]) * 1e3
            t = np.array([best[("this", law, path, b)] for b in range(rows)]) * 1e3
            name = f"softmax N(0, {law[7:]}^2)" if law.startswith("softmax") else f"Dirichlet({law})"
            print(f"| {name} | {path} | {a.min():.1f} / {np.median(a):.1f} | {t.min():.1f} / "
                  f"{np.median(t):.1f} | {np.median(t) / np.median(a):.2f} |")


def best_time(fn, repeats: int, device: str = "cpu") -> float:
    """Best time of ``repeats`` calls (after one warm-up when ``repeats > 1``): CPU time of this
    process on a CPU (robust on a machine shared with other jobs; torch runs one thread), wall
    time with synchronisation on CUDA."""
    clock = time.perf_counter if device == "cuda" else time.process_time
    if repeats > 1:
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return min(times)


def pairs(V: int, B: int, conc: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(V, conc), size=B), rng.dirichlet(np.full(V, conc), size=B)


def per_row(V: int, k: int, conc: float, repeats: int, layout: bool) -> None:
    P, Q = pairs(V, 1, conc, 0)
    p, q = P[0], Q[0]
    pt, qt = torch.tensor(P), torch.tensor(Q)
    t_kseq = best_time(lambda: kseq_rho(pt, qt, k), repeats)
    t_cf = best_time(lambda: optimal_acceptance(p, q, k), repeats)
    t_torch = best_time(lambda: TorchOptimal().acceptance(pt, qt, k), repeats)
    t_np = best_time(lambda: importance_plan(P, Q, k), repeats)
    print(f"\n## per row, V={V}, k={k}, Dirichlet({conc}) (CPU, float64)")
    print("| method | time | / K-SEQ |")
    print("|---|---|---|")
    rows = [("K-SEQ rho* (gpu_backend.kseq, baseline)", t_kseq),
            ("closed-form optimum alpha* (value only)", t_cf),
            ("optimal, torch fast path (plan + acceptance)", t_torch),
            ("optimal, numpy importance rule", t_np)]
    if layout:
        t_lay = best_time(lambda: greedy_layout(p, q, k), 1)
        rows.append(("optimal, numpy min-score layout (exact reference)", t_lay))
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.1f} ms | {t / t_kseq:.1f}x |")


def batch(V: int, B: int, k: int, conc: float, device: str, repeats: int) -> None:
    P, Q = pairs(V, B, conc, 1)
    pt, qt = torch.tensor(P, device=device), torch.tensor(Q, device=device)
    t = best_time(lambda: TorchOptimal().acceptance(pt, qt, k), repeats, device)
    t_kseq = best_time(lambda: kseq_rho(pt, qt, k), repeats, device)
    print(f"\n## batch [{B}, {V}], k={k}, Dirichlet({conc}) on {device}: optimal {t * 1e3:.1f} ms "
          f"({t / B * 1e3:.2f} ms per row), K-SEQ rho* {t_kseq * 1e3:.1f} ms ({t / t_kseq:.1f}x)")


def quality(Vs, ks, conc: float) -> None:
    print(f"\n## fit quality, Dirichlet({conc}) (numpy importance rule, tol 1e-12 in L1 per level)")
    print("| V | k | Newton steps | status | groups | fit error (L1) | quad. bound (L1) | acceptance - alpha* | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for V in Vs:
        for k in ks:
            P, Q = pairs(V, 1, conc, 2)
            t0 = time.process_time()
            plan = importance_plan(P, Q, k)
            dt = time.process_time() - t0
            gap = np.minimum(plan.marginal[0], P[0]).sum() - optimal_acceptance(P[0], Q[0], k)
            groups = np.unique(plan.weights[0][Q[0] > 0]).size
            print(f"| {V} | {k} | {plan.iterations} | {plan.status} | {groups} | {plan.fit_error[0]:.1e} | {plan.quad_error[0]:.1e} | "
                  f"{gap:+.1e} | {dt * 1e3:.0f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base", help="checkout to compare the per-row fast path against (same run)")
    ap.add_argument("--rows", type=int, default=8, help="rows per law with --base")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --base")
    ap.add_argument("--alpha", default="1,0.05,softmax3",
                    help="laws with --base: Dirichlet concentrations and/or softmax<sigma>")
    ap.add_argument("-k", type=int, default=8, help="drafts with --base")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.base:
        compare(args.base, 4096 if args.quick else 49152, args.k, args.rows, args.alpha.split(","),
                args.rounds)
        return
    V = 4096 if args.quick else 49152
    for conc in (1.0, 0.05):
        per_row(V, 8, conc, args.repeats, layout=True)
    B = 64 if args.device == "cuda" else 8
    batch(V, B, 8, 0.05, args.device, args.repeats)
    Vs = (1000, 4096) if args.quick else (1000, 10000, 49152)
    for conc in (1.0, 0.05):
        quality(Vs, (2, 8, 16), conc)


if __name__ == "__main__":
    main()
