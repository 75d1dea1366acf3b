"""Python's ``round`` for whole arrays (scored rows round their floats with it; NumPy's rounding differs)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _rint_kernel(x: np.ndarray, s: float, out: np.ndarray, odd: np.ndarray) -> int:
    """out = rint(x * s) / s; the indices where that may not be Python's round go into odd[:k], k returned (see
    ``pyround``: the product's integer 2**52 or more, NaN or infinite, or its fraction within 1e-7 of one half)."""
    k = 0
    for i in range(x.shape[0]):
        q = x[i] * s
        out[i] = np.rint(q) / s
        aq = abs(q)
        if not (aq < 4503599627370496.0) or abs(abs(q - np.trunc(q)) - 0.5) < 1e-7 * max(1.0, aq):
            odd[k] = i
            k += 1
    return k


def pyround(x: np.ndarray, nd: int) -> np.ndarray:
    """Python's ``round(v, nd)`` of every float in ``x`` (``np.round`` is not it: it rounds x * 10**nd, whose
    own rounding can move a value across a half). ``rint(x * 10**nd) / 10**nd`` is Python's result wherever
    x * 10**nd is an exact enough integer-plus-fraction: its integer is below 2**52 and its fraction not within 1e-7
    of one half (the product's error is ~1e-16 relative), because the division of that integer by the exact
    power of ten is then the double nearest the rounded decimal, which is what Python returns. The rest (halves,
    huge, NaN, infinite values) go through Python's round one by one. One numba pass (a score-file row batch calls
    this ~50 times, and the NumPy expression's ten array operations were ~20 us a call)."""
    x = np.asarray(x, np.float64)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape[0])
    odd = np.empty(flat.shape[0], np.int64)
    k = _rint_kernel(flat, 10.0**nd, out, odd)
    for i in odd[:k].tolist():
        out[i] = round(float(flat[i]), nd)
    return out.reshape(x.shape)
