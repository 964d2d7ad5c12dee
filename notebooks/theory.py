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
# # Yin et al.: rejections, batch speculative decoding and the Pareto front
#
# Yin, Chen, Huang, Wang, *A Theoretical Perspective for Speculative Decoding Algorithm* (NeurIPS 2024):
# expected rejections = sum of expected TV distances (Thm 1), batch gains vs the number of drafts (Thm 3),
# and the straight-line quality-rejection Pareto front (Thms 4-5).
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only theory`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("theory")
