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
# # The multi-draft optimum: with vs without replacement, and Khisti et al.'s toy
#
# Hu et al. (ICLR 2025): the optimal acceptance is a min-cut, and drafting without replacement beats drafting
# with replacement. Khisti et al. (ICLR 2025) Fig. 2: p uniform on 3 tokens, q = [1/3, q2, 2/3 - q2], K = 2.
# Every claim is a theorem check: closed forms and selectors against independent computations (the LP over
# draft sets, textbook formulas), on instances at the boundary of perfect acceptance.
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only multidraft`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("multidraft")
