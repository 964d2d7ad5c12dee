"""The kernel layer: one implementation per algorithm of the batched array work, written once
against the Python array API (``array_api_compat.array_namespace``) and run by both the numpy
selectors (:mod:`ot_coupling`, :mod:`solvers`) and the torch selectors (:mod:`gpu_backend`).

See docs/backends.md for the layer, its dtype policy and the measured float32 tolerances.
"""
