"""The kernels the alignment (scoring.align.align_kernel) runs on for speed, against their references on random and
edge-case input: the prefix-sum moving mean against the window-by-window reference (to rounding), the two-series
interpolation against np.interp (bit for bit), the in-order lag scan against its plain-Python twin (bit for bit) and
the NumPy least squares (to 1e-9)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring import reference as R
from scoring.align import _increasing, horizontal_means_kernel
from scoring.kernels import moving_mean_kernel, window_mean_kernel
from scoring.lagfit import interp2_kernel, interp_kernel, lag_scan_kernel, lag_scan_seq_kernel, lag_scan_seq_sums
from scoring.reference_align import lag_scan_seq_reference
from scoring.reference_batch import lag_scan_reference


def _in_order(a: np.ndarray) -> float:
    """The sum of a, sample by sample from 0.0 (what the kernels return; Python's sum() compensates from 3.12)."""
    t = 0.0
    for v in a.tolist():
        t += v
    return t


def _moving_mean(a: np.ndarray, w: int) -> np.ndarray:
    out = np.full(a.shape[0], 7.0)
    moving_mean_kernel(np.ascontiguousarray(a, dtype=np.float64), w, out)
    return out


def _close_to_reference(got: np.ndarray, a: np.ndarray, w: int) -> None:
    """NaN exactly where the reference has it, elsewhere within rounding of the window sums: 1e-14 of the largest
    |value| in the array (a block's prefix sums, not the window's own sum)."""
    want = np.array(R.window_mean_reference(list(a), w), dtype=np.float64).reshape(-1)
    assert np.array_equal(np.isnan(got), np.isnan(want)), w
    fin = np.abs(a[np.isfinite(a)])
    scale = float(fin.max()) if fin.size else 1.0
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=0, atol=1e-14 * max(scale, 1e-300))


@pytest.mark.parametrize("seed", range(6))
def test_moving_mean_equals_the_window_reference(seed: int) -> None:
    """Arrays across block boundaries (512 windows), windows 1-300 (the 3 s blend at 100 Hz), NaN runs longer than
    a window, all-NaN ends, a large offset (cancellation in the prefix sums stays within the block)."""
    rng = np.random.default_rng(200 + seed)
    n = int(rng.choice([511, 512, 513, 1500, 4001]))
    a = rng.normal(0, 3, n) + (0.0 if seed % 3 else 9.81)
    a[rng.random(n) < 0.08] = np.nan
    a[int(rng.integers(0, n - 400)) :][:350] = np.nan
    if seed % 2:
        a[:40] = np.nan
        a[-40:] = np.nan
    for w in (1, 2, 3, 4, 10, 31, 100, 300, 600):
        _close_to_reference(_moving_mean(a, w), a, w)


@pytest.mark.parametrize("w", [1, 2, 6, 17])
def test_moving_mean_short_arrays_and_windows_longer_than_the_array(w: int) -> None:
    for n in range(0, 2 * w + 3):
        a = np.linspace(-1.0, 2.0, n)
        if n > 2:
            a[1] = np.nan
        _close_to_reference(_moving_mean(a, w), a, w)
    _close_to_reference(_moving_mean(np.full(9, np.nan), w), np.full(9, np.nan), w)  # no finite value at all


def test_moving_mean_takes_the_exact_sums_where_prefix_sums_cannot_carry() -> None:
    """Infinities and values beyond 1e100: window_mean_kernel's own means, bit for bit (the prefix-sum path would
    give NaN or swamp the small values)."""
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, 3000)
    for v in (np.inf, -np.inf, 1e200, -np.finfo(np.float64).max):
        b = a.copy()
        b[rng.integers(0, 3000, 3)] = v
        b[rng.random(3000) < 0.05] = np.nan
        for w in (1, 10, 300):
            want = np.empty(3000)
            window_mean_kernel(b, w, want)
            assert _moving_mean(b, w).tobytes() == want.tobytes(), (v, w)


def _interp2(x: np.ndarray, xp: np.ndarray, f1: np.ndarray, f2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """interp2_kernel's two series, checked against interp_kernel's and against the sums both return (the sum of
    each output in order, and interp_kernel's sum of squares)."""
    o1, o2 = np.full(x.shape[0], 7.0), np.full(x.shape[0], 7.0)
    t1, t2 = interp2_kernel(x, xp, f1, f2, o1, o2)
    for o, f, t in ((o1, f1, t1), (o2, f2, t2)):
        one = np.full(x.shape[0], 7.0)
        t_one, tt_one = interp_kernel(x, xp, f, one)
        assert one.tobytes() == o.tobytes()
        assert repr(t) == repr(t_one) == repr(_in_order(o))
        assert repr(tt_one) == repr(_in_order(o * o))
    return o1, o2


def _bits(a: np.ndarray) -> list[str]:
    return [repr(v) for v in a.tolist()]


@pytest.mark.parametrize("seed", range(6))
def test_interp2_equals_numpy(seed: int) -> None:
    """Sorted grids denser and sparser than xp (a division per point, or the slopes divided beforehand), points
    before, after and on the samples and on the last one, NaN points, unsorted points, NaN and infinite values
    (NumPy's fallbacks), repeated times, epoch-second times, one and two samples."""
    rng = np.random.default_rng(seed)
    for m in (1, 2, 3, 10, 700):
        xp = 1.79e9 + np.cumsum(rng.uniform(0.01, 0.3, m))
        f1, f2 = rng.normal(0, 2, m), rng.normal(0, 2, m)
        if m > 2 and seed % 3:  # else finite: the walk with the slopes divided beforehand gives every value
            f1[rng.integers(0, m, 2)] = np.nan
            f2[rng.integers(0, m)] = np.inf if seed % 2 else -np.inf
        for k in range(4):
            x = np.sort(rng.uniform(xp[0] - 1.0, xp[-1] + 1.0, int(rng.integers(0, 3 * m + 5))))
            if k == 1:
                x = np.concatenate([x, xp[rng.integers(0, m, min(m, 5))], [np.nan]])  # on the samples, NaN
            if k == 2:
                rng.shuffle(x)  # any order: the walk goes back too
            if k == 3:
                x = xp[0] + 0.1 * np.arange(int(10 * (xp[-1] - xp[0]) + 20)) - 1.0  # the alignment's grid
                x[-3:] = xp[-1]
            for xq in (x, x[: max(1, x.shape[0] // 8)]):  # dense, and sparse (fewer than half of xp)
                for xs in (xp, np.repeat(xp, 2)[1:] if m > 3 and seed % 2 else xp):  # repeated times too
                    g1, g2 = np.interp(xq, xs, np.interp(xs, xp, f1)), np.interp(xq, xs, np.interp(xs, xp, f2))
                    o1, o2 = _interp2(xq, xs, np.interp(xs, xp, f1), np.interp(xs, xp, f2))
                    assert _bits(o1) == _bits(g1), (m, k)
                    assert _bits(o2) == _bits(g2), (m, k)


@pytest.mark.parametrize("seed", range(4))
def test_horizontal_means_equal_the_projection_then_the_moving_mean(seed: int) -> None:
    """Bit for bit np.nan_to_num of the axes projected with NumPy's products, then moving_mean_kernel: with and
    without a vertical axis, NaN and infinite samples (projections beyond 1e100: the exact sums), windows 1-100,
    arrays shorter than a window and across blocks."""
    rng = np.random.default_rng(300 + seed)
    for n in (1, 5, 511, 513, 3000):
        a = rng.normal(0, 2, (3, n)) + np.array([[0.0], [0.0], [9.8]])
        a[:, rng.random(n) < 0.05] = np.nan
        if seed % 2 and n > 10:
            a[rng.integers(0, 3), rng.integers(0, n)] = np.inf if seed == 1 else 1e200
        u = rng.normal(size=3)
        e1 = u / np.linalg.norm(u)
        e2 = np.cross(e1, [0.0, 0.0, 1.0])
        e2 /= np.linalg.norm(e2)
        for has_vert in (True, False):
            a0 = np.nan_to_num(a)
            if not has_vert:
                a0[2] = 0.0
            for w in (1, 10, 100):
                h1, h2 = np.full(n, 7.0), np.full(n, 7.0)
                horizontal_means_kernel(a[0], a[1], a[2], has_vert, e1, e2, w, h1, h2)
                for e, h in ((e1, h1), (e2, h2)):
                    p = e[0] * a0[0] + e[1] * a0[1] + e[2] * a0[2]
                    want = np.empty(n)
                    moving_mean_kernel(p, w, want)
                    assert h.tobytes() == want.tobytes(), (n, w, has_vert)


def _seq(y1: np.ndarray, y2: np.ndarray, d: np.ndarray, shift: int, nlag: int) -> tuple[np.ndarray, np.ndarray]:
    dd = float(d @ d)
    out = np.empty((nlag, 3))
    lag_scan_seq_kernel(y1, y2, d, dd, shift, nlag, out)
    want = lag_scan_seq_reference(y1.tolist(), y2.tolist(), d.tolist(), dd, shift, nlag)
    return out, np.array(want).reshape(nlag, 3)


@pytest.mark.parametrize("seed", range(10))
def test_lag_scan_seq_equals_its_reference_and_the_least_squares(seed: int) -> None:
    """Grids of every length mod 8 (the kernel adds eight samples per pass), lag steps of 1-3 grid steps, lag
    counts around the padding to eight, a constant axis (singular at every lag); bit for bit its plain-Python twin,
    and to 1e-9 the NumPy least squares and lag_scan_kernel (four partial sums per lag)."""
    rng = np.random.default_rng(seed)
    g = int(rng.choice([1, 2, 3, 7, 8, 9, 15, 17, 130, 2001]))
    shift = int(rng.choice([1, 1, 2, 3]))
    nlag = int(rng.choice([1, 2, 7, 8, 9, 16, 31, 33]))
    m = g + (nlag - 1) * shift
    y1 = rng.normal(0.3, 1.0, m) * 10.0 ** rng.integers(-3, 3)
    y2 = 0.5 * y1 + rng.normal(-0.2, 0.7, m) if seed % 4 else np.full(m, 0.7)
    d = 0.8 * y1[(nlag - 1) * shift - shift * (nlag // 2) :][:g] + rng.normal(0, 0.3, g)
    d = d - d.mean()
    out, want = _seq(y1, y2, d, shift, nlag)
    assert out.tobytes() == want.tobytes(), (g, shift, nlag)
    given = np.empty((nlag, 3))  # the sums handed in, as the alignment does: the same fit
    lag_scan_seq_sums(y1, y2, _in_order(y1), _in_order(y2), d, _in_order(d), float(d @ d), shift, nlag, given)
    assert given.tobytes() == out.tobytes()
    dv = d + 0.7  # not centred, as the alignment hands it in (with the centred sum of squares): the same fit
    raw = np.empty((nlag, 3))
    lag_scan_seq_sums(y1, y2, np.nan, np.nan, dv, _in_order(dv), float(d @ d), shift, nlag, raw)
    if g > 2:
        assert np.array_equal(raw[:, 0] < 0, out[:, 0] < 0)
        np.testing.assert_allclose(raw, out, rtol=1e-9, atol=1e-9 * float(np.abs(out).max()))
    numpy_fit = lag_scan_reference(y1, y2, d, float(d @ d), shift, nlag)
    four = np.empty((nlag, 3))
    lag_scan_kernel(y1, y2, d, float(d @ d), shift, nlag, four)
    for other in (numpy_fit, four):
        assert np.array_equal(out[:, 0] < 0, other[:, 0] < 0)
        if g > 2:  # two samples fit any two regressors exactly: R and b are all rounding there
            # b of an ill-conditioned fit (a few samples) carries the conditioning: to 1e-9 of the largest number
            np.testing.assert_allclose(out, other, rtol=1e-9, atol=1e-9 * float(np.abs(other).max()))


def test_lag_scan_seq_on_a_trip_sized_grid() -> None:
    """A 25-minute trip at the default 31 lags: exactly its reference, the shifted signal found at its lag."""
    rng = np.random.default_rng(7)
    g, nlag = 15_003, 31
    a = np.convolve(rng.normal(0, 1, g + nlag - 1), np.ones(10) / 10, mode="same")
    y1, y2 = 0.8 * a + rng.normal(0, 0.05, a.shape[0]), -0.6 * a + rng.normal(0, 0.05, a.shape[0])
    d = a[13 : 13 + g] + rng.normal(0, 0.1, g)
    d = d - d.mean()
    out, want = _seq(y1, y2, d, 1, nlag)
    assert out.tobytes() == want.tobytes()
    assert int(np.argmax(out[:, 0])) == nlag - 1 - 13 and out[:, 0].max() > 0.9


def test_increasing_equals_the_plain_check() -> None:
    """align's time check (both ends finite, every step up, no early exit) against all-finite-and-strictly-up:
    NaN or an infinity anywhere, a repeated or a backward step anywhere, empty and one-sample arrays."""
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 3, 17, 300):
        base = 1.79e9 + np.cumsum(rng.uniform(0.01, 0.2, n))
        cases = [base]
        for v in (np.nan, np.inf, -np.inf):
            for at in {0, n // 2, n - 1} if n else set():
                c = base.copy()
                c[at] = v
                cases.append(c)
        for at in range(1, n, max(1, n // 5)):
            c = base.copy()
            c[at] = c[at - 1]
            cases.append(c)
            c = base.copy()
            c[at] = c[at - 1] - 0.5
            cases.append(c)
        for t in cases:
            want = bool(np.isfinite(t).all() and (np.diff(t) > 0).all())
            assert _increasing(t) == want, (n, t)
