"""Python's ``round`` for whole arrays (scored rows round their floats with it; NumPy's rounding differs)."""

from __future__ import annotations

import numpy as np


def pyround(x: np.ndarray, nd: int) -> np.ndarray:
    """Python's ``round(v, nd)`` of every float in ``x`` (``np.round`` is not it: it rounds x * 10**nd, whose
    own rounding can move a value across a half). ``rint(x * 10**nd) / 10**nd`` is Python's result wherever
    x * 10**nd is an exact enough integer-plus-fraction: its integer is below 2**52 and its fraction not within 1e-7
    of one half (the product's error is ~1e-16 relative), because the division of that integer by the exact
    power of ten is then the double nearest the rounded decimal, which is what Python returns. The rest (halves,
    huge, NaN, infinite values) go through Python's round one by one."""
    x = np.asarray(x, np.float64)
    s = 10.0**nd
    with np.errstate(invalid="ignore", over="ignore"):
        q = x * s
        out = np.rint(q) / s
        aq = np.abs(q)
        odd = ~(aq < 2.0**52) | (np.abs(np.abs(q - np.trunc(q)) - 0.5) < 1e-7 * np.maximum(1.0, aq))
    if odd.any():
        flat, xf = out.reshape(-1), x.reshape(-1)
        for i in np.flatnonzero(odd.reshape(-1)).tolist():
            flat[i] = round(float(xf[i]), nd)
    return out
