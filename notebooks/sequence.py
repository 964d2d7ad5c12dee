# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The sequence-level optimum vs every multi-path verifier
#
# Block verification (Sun et al., ICLR 2025), greedy multi-path block verification (Thomas & Pal, 2026),
# traversal verification (Weng et al., NeurIPS 2025), SpecTr's and SpecInfer's draft trees, held against the
# exact sequence-level LP optimum LP* (docs/theory/sequence_optimum.md) on random Markov pairs: each method's
# exact share of the achievable gain (E|Y| - 1) / (LP* - 1). Checked: block verification is optimal for one
# path (LP*(k = 1) = BV), LP* bounds every verifier, the LP plan read as "select a path, then block-verify"
# attains LP*, and the direction of GBV's and traversal's claimed gains.
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only sequence`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0`.

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("sequence")
