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
# # Block verification vs token-by-token verification
#
# Sun et al., *Block Verification Accelerates Speculative Decoding* (ICLR 2025): the gain in tokens per
# iteration as the draft length gamma grows, exactly on tiny chains and simulated on a real-text n-gram pair.
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only block`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("block")
