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
# # SpecTr: K-SEQ vs RRS vs naive vs the exact optimum
#
# Sun et al., *SpecTr: Fast Speculative Decoding via Optimal Transport* (NeurIPS 2023). Acceptance vs the number
# of drafts k, the ratio to the exact optimum against the (1 - 1/e) guarantee, block efficiency of k drafts x L
# tokens, and the wall-clock model behind "2.13x, 1.37x over speculative decoding".
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only spectr`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("spectr")
