"""Batched torch selectors vs a per-row loop and vs Hugging Face's speculative sampling.

For every torch selector (``gpu_backend.get_selector``, all names but ``"optimal"``) and k, time
``verify`` on a ``[B, V]`` batch (B = 64, V = 49152: SmolLM2's vocabulary) against the same
algorithm called row by row (B calls with ``[1, V]``), with the same pre-drawn noise. For k = 1
also against ``transformers.generation.utils._speculative_sampling`` (batch size 1 only, logits
in), looped over the rows. On a CUDA device the achieved memory bandwidth of each batched call
(bytes of p, q and the noise read once) is reported against the measured device-to-device copy
bandwidth.

Run ``python benchmarks/bench_selectors.py [--quick] [--device cuda]``; numbers are the best of
``--repeats`` runs, ratios are baseline time / batched time (higher = batched is faster).
"""

from __future__ import annotations

import argparse
import inspect
import time

import torch

from gpu_backend import get_selector
from gpu_backend.registry import SELECTORS

NAMES = [n for n in SELECTORS if n != "optimal"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn()`` in seconds, after one warm-up call (the
    minimum is the least noisy statistic on a shared machine)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write of a 512 MiB buffer)."""
    src = torch.empty(128 * 2**20, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * src.element_size() / seconds


def hf_speculative(logits_p: torch.Tensor, logits_q: torch.Tensor, drafts: torch.Tensor):
    """Hugging Face's k = 1 rejection sampler, one row at a time (it supports batch size 1 only)."""
    from transformers.generation.utils import _speculative_sampling

    out = []
    for b in range(logits_p.shape[0]):
        # candidate logits [1, 1, V]; target logits [1, 2, V] (the drafted position + the bonus one)
        new_logits = torch.stack([logits_p[b], logits_p[b]]).unsqueeze(0)
        tokens, _ = _speculative_sampling(drafts[b:b + 1], logits_q[b:b + 1].unsqueeze(1), 1, new_logits)
        out.append(tokens[0, -1])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=16, V=8192, k in {1, 2, 4}, 1 repeat")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--ks", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.vocab, args.ks, args.repeats = 16, 8192, "1,2,4", 1
    ks = [int(k) for k in args.ks.split(",")]
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    logits_p = 2 * torch.randn(args.batch, args.vocab, generator=gen, device=device, dtype=dtype)
    logits_q = logits_p + torch.randn(args.batch, args.vocab, generator=gen, device=device, dtype=dtype)
    p, q = torch.softmax(logits_p, 1), torch.softmax(logits_q, 1)

    print(f"bench_selectors: B={args.batch} V={args.vocab} dtype={args.dtype} device={device} "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats}")
    if device.type == "cuda":
        bandwidth = copy_bandwidth(device, args.repeats)
        print(f"device-to-device copy bandwidth: {bandwidth / 1e9:.1f} GB/s")
    else:
        bandwidth = None
        print("no CUDA: bandwidth columns skipped")

    header = f"{'selector':<12} {'k':>2} {'batched ms':>11} {'per-row ms':>11} {'loop/batched':>12}"
    header += f" {'GB/s':>7} {'% copy':>7}" if bandwidth else ""
    print(header)
    for name in NAMES:
        sel = get_selector(name)
        for k in ks:
            if sel.max_k is not None and k > sel.max_k or (name == "spechub" and k != 2):
                continue
            drafts = sel.draft(q, k, gen)
            noise = sel.draw_noise(args.batch, args.vocab, k, rng=gen, device=device, dtype=dtype)
            batched = timed(lambda sel=sel, d=drafts, z=noise: sel.verify(p, q, d, noise=z),
                            device, args.repeats)

            def per_row(sel=sel, d=drafts, z=noise):
                for b in range(args.batch):
                    sel.verify(p[b:b + 1], q[b:b + 1], d[b:b + 1],
                               noise={key: v[b:b + 1] for key, v in z.items()})

            loop = timed(per_row, device, args.repeats)
            line = f"{name:<12} {k:>2} {1e3 * batched:>11.2f} {1e3 * loop:>11.2f} {loop / batched:>11.1f}x"
            if bandwidth:
                read = sum(t.numel() * t.element_size() for t in (p, q, *noise.values()))
                line += f" {read / batched / 1e9:>7.1f} {100 * read / batched / bandwidth:>6.1f}%"
            print(line)

    try:
        from transformers.generation.utils import _speculative_sampling
    except ImportError:
        print("transformers.generation.utils._speculative_sampling not found: HF comparison skipped")
        return 0
    params = list(inspect.signature(_speculative_sampling).parameters)
    print(f"\nk=1 vs transformers.generation.utils._speculative_sampling{tuple(params)} "
          "(batch size 1, logits in; looped over rows):")
    sel = get_selector("speculative")
    drafts = sel.draft(q, 1, gen)
    ours = timed(lambda: sel.verify(logits_p, logits_q, drafts, gen, logits=True), device, args.repeats)
    ours_rows = timed(lambda: [sel.verify(logits_p[b:b + 1], logits_q[b:b + 1], drafts[b:b + 1], gen,
                                          logits=True) for b in range(args.batch)], device, args.repeats)
    hf = timed(lambda: hf_speculative(logits_p, logits_q, drafts), device, args.repeats)
    print(f"  ours batched (logits in)  {1e3 * ours:9.2f} ms   HF/ours = {hf / ours:.1f}x")
    print(f"  ours per-row (logits in)  {1e3 * ours_rows:9.2f} ms   HF/ours = {hf / ours_rows:.2f}x")
    print(f"  HF per-row                {1e3 * hf:9.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
