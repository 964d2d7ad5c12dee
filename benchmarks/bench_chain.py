"""Per-round cost of the batched sequence verifiers of :mod:`gpu_backend.tree` next to SpecTr's
K-SEQ tree, and of the chain kernel, on random ``[B, k, L + 1, V]`` inputs.

For each ``(k, L)``: ``B`` requests, ``k`` paths of length ``L``, vocabulary ``V`` (default 49152,
SmolLM2's); draft rows are a perturbation of the target rows (softmax of noisy logits), drafts are
sampled from them; paths are independent (no shared prefixes: the worst case for SpecTr's grouping).
Times are min / median of ``--repeats`` interleaved rounds; the ratio column is time / K-SEQ tree
time of the same run.

``python benchmarks/bench_chain.py [--device cpu|cuda] [--batch 8] [--ks 2,4] [--Ls 2,4]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gpu_backend.tree import verify_tree_batched

METHODS = ("spectr", "bv", "gbv", "blend", "traversal")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inputs(B, k, L, V, device, dtype, gen):
    logits = 2 * torch.randn(B, k, L + 1, V, generator=gen, device=device, dtype=dtype)
    target = torch.softmax(logits, -1)
    noise = torch.randn(B, k, L, V, generator=gen, device=device, dtype=dtype)
    draft = torch.softmax(logits[:, :, :L] + noise, -1)
    drafts = torch.multinomial(draft.reshape(-1, V), 1, generator=gen).reshape(B, k, L)
    return drafts, target, draft


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--ks", default="2,4")
    ap.add_argument("--Ls", default="2,4")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    methods = args.methods.split(",")
    gen = torch.Generator(device=device).manual_seed(0)
    print(f"bench_chain: B={args.batch} V={args.vocab} dtype={args.dtype} device={device}, "
          f"{torch.get_num_threads()} thread(s), {args.repeats} interleaved repeats")
    print(f"{'k':>2} {'L':>2} {'verifier':<10} {'min ms/round':>13} {'median ms':>10} {'/ spectr (min)':>15}")
    for k in (int(v) for v in args.ks.split(",")):
        for L in (int(v) for v in args.Ls.split(",")):
            d, P, Q = inputs(args.batch, k, L, args.vocab, device, dtype, gen)
            times = {m: [] for m in methods}
            for m in methods:  # warm-up
                verify_tree_batched(m, d, P, Q, generator=gen)
            for r in range(args.repeats):
                for m in methods[r % len(methods):] + methods[: r % len(methods)]:
                    _sync(device)
                    t0 = time.perf_counter()
                    verify_tree_batched(m, d, P, Q, generator=gen)
                    _sync(device)
                    times[m].append((time.perf_counter() - t0) / args.batch)
            base = min(times["spectr"]) if "spectr" in times else None
            for m in methods:
                ratio = f"{min(times[m]) / base:>14.2f}x" if base else ""
                print(f"{k:>2} {L:>2} {m:<10} {1e3 * min(times[m]):>13.3f} "
                      f"{1e3 * statistics.median(times[m]):>10.3f} {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
