"""Small helpers of the kernel layer over the Python array API (``array_api_compat``).

Every kernel of :mod:`ot_coupling.kernels` takes its namespace from its inputs,
``xp = array_namespace(x)``, as scipy does, so one function serves numpy arrays and torch tensors
(CPU or CUDA). The helpers below cover the few operations the array API spells awkwardly.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from array_api_compat import array_namespace as _compat_namespace
from array_api_compat import device, is_numpy_namespace, is_torch_namespace

#: numpy >= 2 implements the array API in its main namespace: use it directly (the compat wrappers
#: add several microseconds per call, which the fit's small arrays feel)
_NUMPY_IS_ARRAY_API = int(np.__version__.split(".")[0]) >= 2


def array_namespace(*xs):
    """The array-API namespace of ``xs`` (``array_api_compat.array_namespace``), with numpy >= 2
    returned as itself."""
    if _NUMPY_IS_ARRAY_API and all(type(x) is np.ndarray for x in xs):
        return np                                   # fast path: no compat lookup
    xp = _compat_namespace(*xs)
    if _NUMPY_IS_ARRAY_API and is_numpy_namespace(xp):
        return np
    return xp

__all__ = ["array_namespace", "device", "is_numpy_namespace", "is_torch_namespace", "full_like",
           "one_minus_power", "power_gap", "as_float64", "scalar", "stable_sort_rows", "take_rows", "take_at", "scratch",
           "SCRATCH_MAX_ELEMENTS", "SCRATCH_MIN_ELEMENTS"]


def full_like(xp, x, value):
    """``x``-shaped array of ``value`` (same dtype and device)."""
    return xp.full(x.shape, value, dtype=x.dtype, device=device(x))


def as_float64(xp, x):
    """``x`` as float64 (no copy when it already is)."""
    return x if x.dtype == xp.float64 else xp.astype(x, xp.float64)


def one_minus_power(xp, x, k: int, out=None):
    """``1 - (1 - x)^k`` without cancellation for small ``x`` (``-expm1(k log1p(-x))``, ``x`` clipped
    to ``[0, 1]``; ``x = 1`` gives 1). ``out``: a numpy buffer of ``x``'s shape to compute in (the
    same operations in place; e.g. a :func:`scratch` buffer), ignored by other backends."""
    if is_torch_namespace(xp):
        return -xp.expm1(k * xp.log1p(-x.clamp(0.0, 1.0)))   # log1p(-1) = -inf gives exactly 1
    if xp is np and out is not None:
        t = np.maximum(x, 0.0, out=out)
        np.minimum(t, 1.0, out=t)
        np.negative(t, out=t)
        with np.errstate(divide="ignore"):
            np.log1p(t, out=t)
        np.multiply(t, k, out=t)
        np.expm1(t, out=t)
        return np.negative(t, out=t)
    with np.errstate(divide="ignore"):
        return -xp.expm1(k * xp.log1p(-clip_max(xp, clip_min(xp, x, 0.0), 1.0)))


def power_gap(xp, m, x, k: int):
    """``(m + x)^k - m^k`` for ``m, x >= 0`` without cancellation: ``m^k expm1(k log1p(x/m))`` where
    ``0 < x <= m`` (the gap is small against the powers), the direct difference elsewhere."""
    small = (x <= m) & (m > 0)
    ms = xp.where(small, m, 1.0)
    return xp.where(small, ms ** k * xp.expm1(k * xp.log1p(xp.where(small, x, 0.0) / ms)),
                    (m + x) ** k - m ** k)


def scalar(x) -> float:
    """A 0-d array as a Python float (device to host)."""
    return float(x)


def clip_min(xp, x, lo: float):
    """``max(x, lo)`` elementwise (the compat ``clip`` is several times slower than these)."""
    return x.clamp(min=lo) if is_torch_namespace(xp) else xp.maximum(x, lo)


def clip_max(xp, x, hi: float):
    """``min(x, hi)`` elementwise."""
    return x.clamp(max=hi) if is_torch_namespace(xp) else xp.minimum(x, hi)


def positive(xp, x):
    """The positive part ``x^+``."""
    return clip_min(xp, x, 0.0)


def take_rows(xp, x, idx, out=None):
    """``x[b, idx[b, i]]`` (``take_along_axis`` on axis 1). torch uses ``gather`` directly (the compat
    wrapper adds a remainder and a where per call, 25% of the selection scan's time at V = 49152).
    numpy: one row by a flat ``take`` (3x faster than ``take_along_axis``), into ``out`` when given
    (a buffer of the result's shape; ``idx`` is then not bounds-checked, as numpy buffers a checked
    ``take`` into ``out``); long rows of a batch by one ``take`` per row (2x faster). Other cases
    ignore ``out`` and return a new array."""
    if is_torch_namespace(xp):
        return x.gather(1, idx)
    if x.shape[0] == 1:
        return x.reshape(-1).take(idx, out=out, mode="raise" if out is None else "clip")   # clip: unbuffered
    if idx.shape[1] >= 1024 and idx.shape[0] == x.shape[0]:   # long rows: a take each (2x faster)
        res = np.empty(idx.shape, dtype=x.dtype)
        for b in range(idx.shape[0]):
            x[b].take(idx[b], out=res[b])
        return res
    return xp.take_along_axis(x, idx, axis=1)


def take_at(xp, x, j):
    """``x[b, j[b]]`` per row, for ``j [B]``."""
    return take_rows(xp, x, j[:, None])[:, 0]


#: :func:`scratch` keeps intermediates of this many elements per thread (one row of a 256k vocabulary
#: at most; smaller ones than the minimum come from malloc's free lists without page faults anyway)
SCRATCH_MAX_ELEMENTS = 1 << 18
SCRATCH_MIN_ELEMENTS = 1 << 14


class _Scratch(threading.local):
    def __init__(self):
        self.buffers = {}


_SCRATCH = _Scratch()


def scratch(xp, slot: str, shape, dtype=np.float64):
    """A reusable numpy buffer of ``shape`` (2-d) for an intermediate that never leaves the calling
    kernel, or ``None`` (other backends, or a size outside ``SCRATCH_MIN_ELEMENTS`` to
    :data:`SCRATCH_MAX_ELEMENTS`: numpy's ``out=None`` then allocates as usual).

    One buffer per ``(slot, dtype)`` and thread, grown on demand and overwritten by the next use of
    the slot, so a kernel must not hand it out nor use one slot twice at once. Its pages stay
    mapped: a fresh 400 KB array (one row of ``V = 49152`` floats) is ~100 page faults on first
    touch, since glibc returns freed blocks of that size to the system, which cost the selection
    scan about as much time as its arithmetic (one CPU thread, 2-core VM).
    """
    if xp is not np:
        return None
    n = shape[0] * shape[1]
    if n > SCRATCH_MAX_ELEMENTS or n < SCRATCH_MIN_ELEMENTS:
        return None
    buffers = _SCRATCH.buffers
    key = (slot, dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))   # (np.float64 hashes apart)
    buf = buffers.get(key)
    if buf is None or buf.size < n:
        buf = buffers[key] = np.empty(n, dtype=dtype)
    return buf[:n].reshape(shape)


@functools.lru_cache(maxsize=8)
def _column_ids(V: int):
    """``arange(V)`` as int64, read-only (cached: the packed sort ors it into every row)."""
    ids = np.arange(V, dtype=np.int64)
    ids.flags.writeable = False
    return ids


def _packed_argsort(xn):
    """Stable-order candidate of each row of a float32/float64 ``[B, V]`` numpy array by one SIMD
    sort of int64 words ``(key bits, column)``, or ``None`` for other dtypes or too many columns.

    Each word holds the key's bit pattern (``x + 0`` first, so ``-0`` and ``+0`` share one) in its
    high bits and the column in its low ``ceil(log2 V)`` bits (float64 loses that many low mantissa
    bits; float32 keeps all 32). For non-negative keys, bit patterns order as the floats, so the
    words sort by (key, column) as long as no two distinct keys of a row share their truncated bits:
    :func:`stable_sort_rows` checks the result and finishes the rows where that fails.
    """
    B, V = xn.shape
    if xn.dtype == np.float64:
        nb = max(1, (V - 1).bit_length())
        if nb > 40:
            return None
        words = np.add(xn, 0.0).view(np.int64)
        np.bitwise_and(words, ~((1 << nb) - 1), out=words)
    elif xn.dtype == np.float32:
        if V > 2 ** 31:
            return None
        nb = 32
        words = np.add(xn, np.float32(0.0)).view(np.int32).astype(np.int64)
        np.left_shift(words, 32, out=words)
    else:
        return None
    np.bitwise_or(words, _column_ids(V), out=words)
    words.sort(axis=1)
    np.bitwise_and(words, (1 << nb) - 1, out=words)
    return words                                         # the columns, as int64 (numpy's argsort dtype)


_PACKED_MIN_SIZE = 2048


def stable_sort_rows(xp, x, *, keys_out=None):
    """``(order, x[order])`` with ``order`` the stable ascending argsort of each row of ``x [B, V]``
    (``argsort(x, axis=1, stable=True)``), computed by numpy's SIMD sort on the host.

    Float rows are sorted as int64 words ``(key bits, column)`` (:func:`_packed_argsort`), which
    orders ties by column as a stable sort does; the result is the stable order exactly when the
    sorted keys of the row do not decrease (checked with ``>=``, which also fails on NaN), and rows
    where it fails (two keys equal in their high bits, negative keys, NaN) are finished by a stable
    sort of their nearly sorted keys (a stable sort of the row for NaN).
    At ``V = 49152`` this takes about half the time of numpy's unstable argsort plus a tie check
    (0.7 against 1.4 ms, one CPU thread, same run) and needs no stable re-sort (4-6 ms) for ties;
    small arrays use numpy's stable sort directly. Numpy arrays and CPU tensors go through numpy
    (no copy); other devices use the backend's stable sort. ``keys_out``: a numpy buffer for the
    sorted keys of a one-row numpy ``x`` (e.g. from :func:`scratch`), else ignored.
    """
    if is_torch_namespace(xp) and x.device.type != "cpu":
        order = xp.argsort(x, axis=1, stable=True)
        return order, take_rows(xp, x, order)
    xn = x.numpy() if is_torch_namespace(xp) else x
    # small arrays: numpy's stable sort directly (as fast, fewer calls)
    order = _packed_argsort(xn) if xn.ndim == 2 and xn.size >= _PACKED_MIN_SIZE and xn.shape[1] > 1 else None
    if order is None:
        order = np.argsort(xn, axis=1, kind="stable")
        xs = take_rows(np, xn, order)
    else:
        xs = take_rows(np, xn, order, out=keys_out if xp is np else None)
        B, V = xs.shape
        rising = np.greater_equal(xs[:, 1:], xs[:, :-1], out=scratch(np, "sort_check", (B, V - 1), bool))
        bad = ~np.all(rising, axis=1)
        for b in np.flatnonzero(bad):
            # keys equal in their high bits but not in all (or negative, or NaN): the packed order is
            # sorted by (high bits, column), so a stable sort of its nearly sorted keys (fast on runs)
            # finishes it, ties staying in column order; NaN keys (their order is by their bits, not
            # by column) need a stable sort of the row
            fix = np.argsort(xs[b], kind="stable")
            if np.isnan(xs[b, fix[-1]]):
                order[b] = np.argsort(xn[b], kind="stable")
            else:
                order[b] = order[b, fix]
            xs[b] = xn[b, order[b]]
    if is_torch_namespace(xp):
        return xp.asarray(order, device=device(x)), xp.asarray(xs, device=device(x))
    return order, xs
