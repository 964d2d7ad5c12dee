"""markov: Markov-chain LMs, a vectorised speculative-decoding simulator, and the exact theory.

* :class:`MarkovLM` and builders (random pairs at a chosen TV gap, temperature/top-k, Bernoulli and
  uniform pairs, n-gram models fitted to CPython's offline help texts);
* :func:`simulate`: Monte Carlo of the SpecTr tree (``k`` drafts of length ``gamma``) with any
  ``ot_coupling`` selector, vectorised over runs;
* exact counterparts: :func:`expected_rejections` (Yin et al. Thm 1), :func:`rejection_lower_bound`
  (Thm 2), batch decoding with ``M`` drafts, :func:`expected_block_efficiency` (forward DP), the
  quality/rejection tradeoff (Thms 4-5) and Leviathan et al.'s speedup formulas.

Attributes are imported lazily so that ``import markov`` stays cheap.
"""

from ot_coupling.lazy import lazy_exports

_EXPORTS = {
    "MarkovLM": "model",
    "ModelPair": "pair",
    "random_pair": "builders",
    "with_temperature": "builders",
    "bernoulli_pair": "builders",
    "uniform_pair": "builders",
    "ngram_model": "builders",
    "ngram_pair": "builders",
    "build_vocabulary": "builders",
    "corpus_text": "builders",
    "Vocabulary": "builders",
    "simulate": "simulate",
    "SimulationResult": "simulate",
    "branch_law": "branch",
    "simulate_sequence": "sequence",
    "exact_sequence_efficiency": "sequence",
    "SequenceSimulation": "sequence",
    "SequenceExact": "sequence",
    "expected_block_efficiency": "exact",
    "ExactResult": "exact",
    "expected_rejections": "theory",
    "rejection_lower_bound": "theory",
    "expected_calls_unlimited": "theory",
    "prefix_tv": "theory",
    "unbiased_resampling": "theory",
    "batch_rejection_probability": "theory",
    "batch_improvement": "theory",
    "bernoulli_batch_improvement": "theory",
    "uniform_batch_improvement": "theory",
    "batch_expected_rejections": "theory",
    "rejection_probability": "tradeoff",
    "optimal_resampling": "tradeoff",
    "optimal_loss": "tradeoff",
    "quality_loss": "tradeoff",
    "uno_loss": "tradeoff",
    "over_acceptance": "tradeoff",
    "tradeoff_curve": "tradeoff",
    "pareto_line": "tradeoff",
    "CostModel": "speedup",
    "expected_tokens_per_step": "speedup",
    "walltime_improvement": "speedup",
    "ops_factor": "speedup",
    "optimal_gamma": "speedup",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

# Imported eagerly: the function shares its name with its module ``markov.simulate``, and binding
# it here keeps ``markov.simulate`` the function however the module is imported later.
from .simulate import simulate as simulate
