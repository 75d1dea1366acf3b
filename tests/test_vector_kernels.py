"""The moving mean and the lag scan rewritten to vectorise (many windows / many lags side by side): bit for bit the
plain-Python references that add the same numbers in the same order, on random and edge-case input (scoring
results must not move by a bit)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numba import njit

from scoring import reference as R
from scoring.align import cross3, smooth
from scoring.filecut import median_diff_int_kernel, median_int, vehicle_imu_hz
from scoring.imukernels import (
    bin_means2_kernel,
    gradient,
    median_step,
    median_step_kernel,
    nan_to_num_kernel,
    nanmean_rows,
    np_interp_kernel,
)
from scoring.lagfit import lag_scan_kernel
from scoring.reference_batch import lag_scan_exact_reference
from scoring.reference_imu import bin_means_reference


def _same(got: np.ndarray, want: list[float]) -> bool:
    return [repr(x) for x in got.tolist()] == [repr(float(y)) for y in want]


@pytest.mark.parametrize("seed", range(6))
def test_window_mean_blocks_equal_the_reference(seed):
    """Long arrays (several blocks of 256 windows and a partial one), windows 1-60, NaN runs longer than a window,
    infinities, -0.0, an all-NaN stretch at either end."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.choice([255, 256, 257, 600, 3001]))
    a = rng.normal(0, 3, n)
    a[rng.random(n) < 0.08] = np.nan
    a[rng.random(n) < 0.02] = -0.0
    a[int(rng.integers(0, n - 80)) :][:70] = np.nan
    if seed % 2:
        a[:40] = np.nan
        a[-40:] = np.nan
        a[rng.integers(0, n, 2)] = np.inf
        a[rng.integers(0, n, 1)] = -np.inf
    for w in (1, 2, 3, 4, 5, 8, 10, 31, 60):
        assert _same(smooth(a, w), R.window_mean_reference(list(a), w)), (n, w)


@pytest.mark.parametrize("w", [1, 6, 17])
def test_window_mean_window_longer_than_the_array(w):
    for n in range(0, 2 * w + 2):
        a = np.linspace(-1.0, 2.0, n)
        if n > 2:
            a[1] = np.nan
        assert _same(smooth(a, w), R.window_mean_reference(list(a), w)), (n, w)


def _scan(y1, y2, d, shift, nlag):
    dd = float(d @ d)
    out = np.empty((nlag, 3))
    lag_scan_kernel(y1, y2, d, dd, shift, nlag, out)
    want = np.array(lag_scan_exact_reference(y1.tolist(), y2.tolist(), d.tolist(), dd, shift, nlag)).reshape(nlag, 3)
    return out, want


@pytest.mark.parametrize("seed", range(10))
def test_lag_scan_equals_the_ordered_reference(seed):
    """Grids of every length mod 4, lag steps of 1-3 grid steps (one grid step vectorises across lags, padded to
    a multiple of 8), lag counts around the padding, a constant axis (singular at every lag)."""
    rng = np.random.default_rng(seed)
    g = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 130, 2001]))
    shift = int(rng.choice([1, 1, 2, 3]))
    nlag = int(rng.choice([1, 2, 7, 8, 9, 16, 31, 33]))
    m = g + (nlag - 1) * shift
    y1 = rng.normal(0.3, 1.0, m) * 10.0 ** rng.integers(-3, 3)
    y2 = 0.5 * y1 + rng.normal(-0.2, 0.7, m) if seed % 4 else np.full(m, 0.7)
    d = rng.normal(0.0, 1.0, g)
    d = d - d.mean()
    out, want = _scan(y1, y2, d, shift, nlag)
    assert out.tobytes() == want.tobytes(), (g, shift, nlag)


def test_lag_scan_on_a_trip_sized_grid():
    """A 25-minute trip at the default 31 lags: the shapes score-file sees, exactly the reference."""
    rng = np.random.default_rng(7)
    g, nlag = 15_003, 31
    a = np.convolve(rng.normal(0, 1, g + nlag - 1), np.ones(10) / 10, mode="same")
    y1, y2 = 0.8 * a + rng.normal(0, 0.05, a.shape[0]), -0.6 * a + rng.normal(0, 0.05, a.shape[0])
    d = a[13 : 13 + g] + rng.normal(0, 0.1, g)
    d = d - d.mean()
    out, want = _scan(y1, y2, d, 1, nlag)
    assert out.tobytes() == want.tobytes()
    assert out[:, 0].max() > 0.9  # the fit finds the shifted signal


# -------------------------------------------- small exact kernels of the alignment (scoring/imukernels.py)


@pytest.mark.parametrize("seed", range(4))
def test_median_step_equals_numpy(seed):
    """Odd and even counts of intervals, repeated and jittered IMU times, random order, NaN and infinite times,
    two times."""
    rng = np.random.default_rng(seed)
    for n in (2, 3, 4, 5, 8, 9, 101, 2000):
        for k in range(12):
            t = 1.79e9 + np.cumsum(rng.choice([0.1, 0.1, 0.2, 0.05, 0.099, 0.101, 0.0], n))
            if k % 4 == 1:
                t = rng.normal(0, 1, n)
            if k % 4 == 2:
                t[rng.integers(0, n)] = np.nan if k % 8 == 2 else np.inf
            with np.errstate(invalid="ignore"):
                want = float(np.median(np.diff(t)))
            assert repr(median_step(t)) == repr(want), (n, k)
            assert repr(float(median_step_kernel(t))) == repr(want), (n, k)
    assert median_step(np.array([3, 5, 9], np.int64)) == 3.0  # other dtypes: NumPy itself


@pytest.mark.parametrize("seed", range(3))
def test_median_step_of_regular_clocks_equals_numpy(seed):
    """The counting path (a few distinct differences): epoch-second times of regular devices (the differences are
    the step +- a few ulps), with a few holes; 1..10 distinct differences around the 8 the kernel counts before it
    sorts them all; an infinite time among them."""
    rng = np.random.default_rng(seed)
    for n in (2, 3, 4, 7, 50, 11_000):
        for hz in (1, 10, 25, 30, 100):
            q = np.arange(n)
            if n > 10:
                q = np.sort(rng.choice(np.arange(n + n // 20), n, replace=False))  # holes
            t = (1_790_000_000_000 + np.rint(q * (1000.0 / hz))) / 1000.0
            want = float(np.median(np.diff(t)))
            assert repr(float(median_step_kernel(t))) == repr(want), (n, hz)
    for distinct in range(1, 11):
        d = rng.permutation(np.resize(np.arange(1, distinct + 1) * 0.01, 41 + seed))
        t = np.concatenate([[5.0], 5.0 + np.cumsum(d)])
        assert repr(float(median_step_kernel(t))) == repr(float(np.median(np.diff(t)))), distinct
    t = np.array([0.0, 0.1, 0.2, np.inf, 0.4, 0.5])
    with np.errstate(invalid="ignore"):
        assert repr(float(median_step_kernel(t))) == repr(float(np.median(np.diff(t))))


def test_nan_to_num_equals_numpy():
    rng = np.random.default_rng(5)
    for shape in ((0,), (1,), (7,), (3, 1000), (3, 0)):
        a = rng.normal(0, 5, shape)
        flat = a.reshape(-1)
        if flat.shape[0]:
            for v in (np.nan, np.inf, -np.inf, -0.0, 0.0):
                flat[rng.integers(0, flat.shape[0], 3)] = v
        out = np.full_like(a, 7.0)
        nan_to_num_kernel(a, out)
        assert [repr(x) for x in out.reshape(-1).tolist()] == [repr(x) for x in np.nan_to_num(a).reshape(-1).tolist()]


@pytest.mark.parametrize("seed", range(3))
def test_gradient_equals_numpy(seed):
    """Even and uneven steps (one step off makes it uneven), two and three samples, NaN and infinite values,
    repeated times (NumPy's division by zero), and NumPy itself for other dtypes."""
    rng = np.random.default_rng(seed)
    for n in (2, 3, 4, 10, 500):
        for k in range(30):
            x = 1.79e9 + (np.arange(n) * 1.0 if k % 3 == 0 else np.cumsum(rng.choice([1.0, 1.0, 2.0, 0.5, 1.001], n)))
            if k % 3 == 1 and n > 3:
                x = 1.79e9 + np.arange(n) * 1.0
                x[-1] += 1e-6
            f = rng.normal(10, 3, n)
            if k % 5 == 0:
                f[rng.integers(0, n)] = np.nan if k % 10 else np.inf
            if k % 13 == 0 and n > 2:
                x[1] = x[0]
            with np.errstate(all="ignore"):
                want = np.gradient(f, x)
                got = gradient(f, x)
            assert [repr(v) for v in got.tolist()] == [repr(v) for v in want.tolist()], (n, k)
    assert np.array_equal(gradient(np.array([1, 4, 9]), np.array([0, 1, 2])), np.gradient([1, 4, 9], [0, 1, 2]))


def test_cross3_equals_numpy():
    rng = np.random.default_rng(9)
    for k in range(500):
        a, b = rng.normal(0, 1, 3) * 10.0 ** rng.integers(-5, 5), rng.normal(0, 1, 3)
        if k % 50 == 0:
            a[0] = np.nan if k % 100 else -0.0
        want = [repr(v) for v in np.cross(a, b).tolist()]
        assert [repr(v) for v in cross3(a, b).tolist()] == want


def test_median_diff_int_kernel_equals_median_int():
    """The one-pass counting median of a vehicle's IMU intervals against median_int(np.diff(t)) (itself checked
    against np.median in tests/test_score_batch.py): repeats, odd and even counts, two times, day-long gaps (a
    minority, and a majority: then it hands over), wide ranges, unordered times."""
    rng = np.random.default_rng(5)
    for k in range(2000):
        n = int(rng.integers(1, 90))
        x = rng.choice(np.array([0, 1, 33, 34, 100, 100, 101, 5000, -3]), n)
        if k % 9 == 0:
            x = rng.integers(-(10**7), 10**7, n)
        elif k % 5 == 0:
            x[rng.random(n) < 0.3] = 86_400_000
        elif k % 7 == 0:
            x[rng.random(n) < 0.6] = 86_400_000
        t = np.concatenate([[1_790_000_000_000], 1_790_000_000_000 + np.cumsum(x)]).astype(np.int64)
        a, b = median_diff_int_kernel(t)
        want = median_int(np.diff(t))
        if a <= b:
            assert (float(a) if a == b else (float(a) + float(b)) / 2) == want, k
        else:
            assert want > min(np.diff(t)) + 65_536  # handed over only where the median lies beyond the counts
    assert vehicle_imu_hz(np.arange(0, 20_000, 100, dtype=np.int64)) == 10
    assert vehicle_imu_hz(np.array([5], np.int64)) == 10


@pytest.mark.parametrize("seed", range(4))
def test_bin_means2_equals_the_reference_per_series(seed):
    """Both axes in one pass, each exactly bin_means_reference (the NumPy twin of bin_means_kernel): NaN and
    infinite samples in either series only, holes longer than a bin, grid times before, after and between, an
    empty series."""
    rng = np.random.default_rng(seed)
    for n in (0, 1, 5, 400):
        ts = np.sort(rng.uniform(0, 60, n))
        x1, x2 = rng.normal(0, 2, n), rng.normal(0, 2, n)
        if n:
            x1[rng.random(n) < 0.1] = np.nan
            x2[rng.random(n) < 0.2] = np.nan
            x1[rng.integers(0, n)] = np.inf
            x2[(ts > 20) & (ts < 23)] = np.nan
        grid = np.arange(-2.0, 63.0, 1.0) + rng.uniform(-0.5, 0.5)
        o1, o2 = np.empty(grid.shape[0]), np.empty(grid.shape[0])
        bin_means2_kernel(ts, x1, x2, grid, o1, o2)
        for got, x in ((o1, x1), (o2, x2)):
            with np.errstate(invalid="ignore"):
                want = bin_means_reference(ts, x, grid)
            assert [repr(v) for v in got.tolist()] == [repr(v) for v in want.tolist()], n


@pytest.mark.parametrize("seed", range(3))
def test_nanmean_rows_equals_numpy(seed):
    """Row lengths around NumPy's pairwise blocks (8, 128) and its 8,192-value buffer, NaN here and there, a row of
    NaN only, infinities, a row of -0.0, no columns."""
    rng = np.random.default_rng(seed)
    for n in (0, 1, 7, 8, 9, 127, 128, 129, 8191, 8192, 8193, 14_600):
        for k in range(4):
            a = rng.normal(0, 3, (3, n)) + np.array([[0.1], [0.2], [9.8]])
            if n:
                a[rng.random((3, n)) < 0.05] = np.nan
                a[1] = np.nan if k == 1 else a[1]
                a[0, rng.integers(0, n)] = np.inf if k == 2 else a[0, 0]
                a[2] = -0.0 if k == 3 else a[2]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = np.nanmean(a, axis=1)
            assert [repr(x) for x in nanmean_rows(a).tolist()] == [repr(x) for x in want.tolist()], (n, k)


@njit(cache=False)
def _numba_interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    return np.interp(x, xp, fp)


@pytest.mark.parametrize("seed", range(4))
def test_np_interp_kernel_equals_numbas_interp(seed):
    """speed_events_kernel's 1 Hz resample now calls np_interp_kernel instead of numba's np.interp: the two agree
    bit for bit (each is NumPy's, tests/test_score_batch.py checks the kernel against NumPy) on what the kernel
    passes (a grid inside increasing fix times) and beyond it (points outside, NaN points, NaN, infinite and
    repeated speeds, one and two fixes)."""
    rng = np.random.default_rng(seed)
    for m in (1, 2, 3, 40, 1500):
        xp = 1.79e9 + np.cumsum(rng.choice([0.2, 1.0, 1.0, 1.0, 3.0, 9.5], m))
        fp = np.abs(np.cumsum(rng.normal(0, 1.5, m)))
        fp[rng.random(m) < 0.05] = np.nan
        if m > 2:
            fp[1] = np.inf
            fp[2] = fp[1 + (m > 3)]
        grid = xp[0] + 10.0 + np.arange(int(xp[-1] - xp[0]))  # the resample: whole seconds after the warm-up
        x = np.sort(np.concatenate([grid, rng.uniform(xp[0] - 5, xp[-1] + 5, m)]))
        x[rng.integers(0, x.shape[0], 2)] = np.nan
        got = np.empty(x.shape[0])
        np_interp_kernel(x, xp, fp, got)
        want = _numba_interp(x, xp, fp)
        assert [repr(v) for v in got.tolist()] == [repr(v) for v in want.tolist()], m
