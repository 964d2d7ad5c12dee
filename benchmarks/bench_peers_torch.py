"""Chain verification (k = 1, gamma draft tokens per request) against its peers, in one run.

Contenders, all on the same batch (``B`` requests, vocabulary ``V``, ``gamma`` drafts each):

* ``ours``: :func:`ot_coupling.kernels.chain.verify_chain` (rule ``"speculative"``), flattened
  layout, probabilities in (what the engine's sampling transform hands over);
* ``ours_logits``: the same after a softmax of the logits (the work HF's function includes);
* ``ours_block``: the same kernel with rule ``"block"`` (block verification, probabilities in);
* ``hf``: ``transformers.generation.utils._speculative_sampling`` (logits in, batch size 1 by
  design) looped over the ``B`` rows;
* ``vllm``: a straightforward torch reimplementation of vLLM v1's rejection-sampler semantics (not
  its code): flattened ``draft_token_ids [T]`` / ``draft_probs [T, V]`` / ``target_probs [T, V]`` /
  ``cu_num_draft_tokens [B]``; accept while ``target_prob / draft_prob >= u`` (``draft_prob > 0``);
  a recovered token for *every* draft position by the exponential race
  ``argmax_x (p - q)^+(x) / E_x``; bonus tokens sampled from the bonus rows by the ordinary sampler;
  output ``[B, gamma + 1]`` padded with -1.

Timing: ``--repeats`` interleaved rounds (every contender once per round, order rotated), min and
median per contender, one torch thread by default. Ratios are computed from the same run.

``python benchmarks/bench_peers_torch.py [--device cpu|cuda] [--gammas 1,4] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ot_coupling.kernels.chain import verify_chain


def vllm_style(draft_token_ids, cu_num_draft_tokens, draft_probs, target_probs, bonus_probs, generator=None):
    """vLLM v1 rejection-sampler semantics, written from its documented behaviour (see module doc)."""
    T, V = draft_probs.shape
    B = cu_num_draft_tokens.numel()
    start = torch.cat([cu_num_draft_tokens.new_zeros(1), cu_num_draft_tokens[:-1]])
    n = cu_num_draft_tokens - start
    m = int(n.max())
    dp = draft_probs.gather(1, draft_token_ids[:, None])[:, 0]
    tp = target_probs.gather(1, draft_token_ids[:, None])[:, 0]
    u = torch.rand(T, generator=generator, device=draft_probs.device, dtype=draft_probs.dtype)
    accepted = (dp > 0) & (tp / dp >= u)
    # recovered token at every draft position (exponential race on the residual)
    e = torch.empty_like(draft_probs).exponential_(generator=generator)
    recovered = ((target_probs - draft_probs).clamp_min(0) / e).argmax(dim=1)
    bonus = torch.multinomial(bonus_probs, 1, generator=generator)[:, 0]
    # padded per-request view and the first rejection
    j = torch.arange(m, device=draft_probs.device)
    pos = (start[:, None] + j[None, :]).clamp_max(T - 1)
    valid = j[None, :] < n[:, None]
    acc = accepted[pos] & valid
    n_acc = torch.cumprod(acc.to(torch.int64), dim=1).sum(dim=1)
    out = torch.full((B, m + 1), -1, dtype=torch.int64, device=draft_probs.device)
    cols = torch.arange(m + 1, device=draft_probs.device)[None, :]
    toks = torch.cat([draft_token_ids[pos], bonus[:, None]], dim=1)
    out = torch.where(cols < n_acc[:, None], toks, out)
    final = torch.where(n_acc < n, recovered[pos.gather(1, n_acc.clamp_max(m - 1)[:, None])[:, 0]], bonus)
    out.scatter_(1, n_acc[:, None], final[:, None])
    return out, n_acc


def hf_looped(draft_ids, logits_q, logits_p):
    """HF's function over rows: ``logits_q [B, gamma, V]``, ``logits_p [B, gamma + 1, V]``."""
    from transformers.generation.utils import _speculative_sampling

    gamma = draft_ids.shape[1]
    out = []
    for b in range(draft_ids.shape[0]):
        out.append(_speculative_sampling(draft_ids[b:b + 1], logits_q[b:b + 1], gamma, logits_p[b:b + 1]))
    return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, device, repeats: int) -> dict:
    """``{name: [seconds...]}``: one warm-up, then ``repeats`` rounds with rotated order."""
    times = {k: [] for k in fns}
    names = list(fns)
    for f in fns.values():
        f()
    _sync(device)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def run(batch: int, vocab: int, gamma: int, device, dtype, repeats: int, seed: int = 0) -> dict:
    gen = torch.Generator(device=device).manual_seed(seed)
    logits_p = 2 * torch.randn(batch, gamma + 1, vocab, generator=gen, device=device, dtype=dtype)
    noise = torch.randn(batch, gamma, vocab, generator=gen, device=device, dtype=dtype)
    logits_q = logits_p[:, :gamma] + noise
    p, q = torch.softmax(logits_p, -1), torch.softmax(logits_q, -1)
    drafts = torch.multinomial(q.reshape(-1, vocab), 1, generator=gen).reshape(batch, gamma)
    # flattened layout
    target_flat = p.reshape(batch * (gamma + 1), vocab)                   # [T + B, V], bonus rows included
    draft_flat = q.reshape(batch * gamma, vocab)
    ids = drafts.reshape(-1)
    cu = torch.arange(1, batch + 1, device=device) * gamma
    vllm_target = p[:, :gamma].reshape(-1, vocab)
    bonus_rows = p[:, gamma]

    fns = {
        "ours": lambda: verify_chain(target_flat, draft_flat, ids, cu, rng=gen),
        "ours_logits": lambda: verify_chain(torch.softmax(logits_p, -1).reshape(-1, vocab),
                                            torch.softmax(logits_q, -1).reshape(-1, vocab), ids, cu, rng=gen),
        "ours_block": lambda: verify_chain(target_flat, draft_flat, ids, cu, rule="block", rng=gen),
        "vllm": lambda: vllm_style(ids, cu, draft_flat, vllm_target, bonus_rows, gen),
    }
    try:
        import transformers.generation.utils as tgu

        if hasattr(tgu, "_speculative_sampling"):
            fns["hf"] = lambda: hf_looped(drafts, logits_q, logits_p)  # draws with the global RNG
    except ImportError:
        pass
    times = interleaved(fns, device, repeats)
    return {name: {"min_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t)}
            for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--gammas", default="1,4")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    print(f"bench_peers_torch: B={args.batch} V={args.vocab} dtype={args.dtype} device={device} "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{args.repeats} interleaved repeats")
    print(f"{'gamma':>5} {'contender':<12} {'min ms':>9} {'median ms':>10} "
          f"{'HF/this (min)':>14} {'HF/this (med)':>14}")
    results = {}
    for gamma in (int(g) for g in args.gammas.split(",")):
        res = run(args.batch, args.vocab, gamma, device, dtype, args.repeats)
        results[gamma] = res
        hf = res.get("hf")
        for name, r in res.items():
            ratio = (f"{hf['min_ms'] / r['min_ms']:>13.2f}x {hf['median_ms'] / r['median_ms']:>13.2f}x"
                     if hf else "")
            print(f"{gamma:>5} {name:<12} {r['min_ms']:>9.2f} {r['median_ms']:>10.2f} {ratio}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"batch": args.batch, "vocab": args.vocab, "dtype": args.dtype, "device": str(device),
                       "threads": torch.get_num_threads(), "repeats": args.repeats, "results": results},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
