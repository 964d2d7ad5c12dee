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
# # Leviathan et al.: expected tokens per iteration and walltime improvement
#
# Leviathan, Kalman, Matias, *Fast Inference from Transformers via Speculative Decoding* (ICML 2023):
# Thm 3.1 (tokens per iteration) and Thm 3.8 (walltime improvement, the optimal draft length) checked against
# independent computations (exact enumeration of speculative decoding, brute-force argmax), and consistency
# checks on the papers' own numbers (their Table 2, Chen et al.'s Table 1).
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only leviathan`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("leviathan")
