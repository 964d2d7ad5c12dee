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
# # The shared-Gumbel coupling: one draft and many
#
# Daliri, Musco, Suresh (arXiv 2408.07978): a communication-free coupling matches with probability between
# (1 - TV)/(1 + TV) and 1 - TV, both bounds checked where they are attained. GumbelSpec: Gumbel-top-k drafts
# accepted iff the target's Gumbel-max token is among them (its talk's 1.7-2.2x has no published setting and is
# not claimed; like-for-like ratios are in the notes).
#
# The numbers and figures come from `specot.reproduce` (the same code as `specot reproduce --only gumbel`).
# Quick mode (seconds) unless the environment sets `SPECOT_QUICK=0` (paper scale).

# %%
from specot.reproduce.notebook import run_and_show

result = run_and_show("gumbel")
