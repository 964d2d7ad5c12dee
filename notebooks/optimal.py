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
# # The optimal verifier vs K-SEQ and RRS at k = 2, 4, 8, 16
#
# The exact optimal k-draft verifier (selection law + speculative sampling) on a realistic pair, against
# SpecTr's K-SEQ and SpecInfer's RRS, next to Khisti et al.'s measured gaps on OPT models.
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only optimal`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("optimal")
