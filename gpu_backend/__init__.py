"""gpu_backend: torch implementations of the verification algorithms, batched on any device,
a speculative-decoding engine over Hugging Face causal LMs, and a real-model harness.

Requires the ``torch`` extra; attributes are imported lazily so ``import gpu_backend`` does not
import torch.
"""

from ot_coupling.lazy import lazy_exports

_EXPORTS = {
    "get_selector": "registry",
    "SELECTORS": "registry",
    "TorchSelector": "base",
    "kseq_rho": "kseq",
    "sample_drafts": "drafting",
    "SpeculativeDecoder": "engine",
    "Sampling": "engine",
    "verify_real_models": "harness",
    "block_efficiency_sweep": "harness",
    "load_pair": "models",
    "ModelPair": "models",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
