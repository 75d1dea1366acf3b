"""The lag search of scoring.align on one interpolation (scoring/lagfit.py) against its NumPy twin and against the
per-lag interpolation it replaces."""

from __future__ import annotations

import numpy as np
import pytest

import scoring.reference_align as align_ref
from scoring import lagfit
from scoring.lagfit import lag_fit, lag_fit_exact, lag_scan_kernel
from scoring.reference_batch import lag_scan_reference
from tests import realdata
from ubi.common.config import ScoringConfig
from ubi.stages import score_file

CFG = ScoringConfig()


@pytest.mark.parametrize("seed", range(8))
def test_lag_scan_kernel_equals_reference(seed):
    rng = np.random.default_rng(seed)
    g = int(rng.choice([3, 10, 200, 5000]))
    shift, nlag = int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 31]))
    m = g + (nlag - 1) * shift
    y1 = rng.normal(0.3, 1.0, m)
    y2 = 0.5 * y1 + rng.normal(-0.2, 0.7, m) if seed % 3 else np.full(m, 0.7)  # a constant axis: singular
    d = 0.8 * y1[(nlag - 1) * shift - shift * (nlag // 2) :][:g] + rng.normal(0, 0.3, g)
    d = d - d.mean()
    dd = float(d @ d)
    out = np.empty((nlag, 3))
    lag_scan_kernel(y1, y2, d, dd, shift, nlag, out)
    want = lag_scan_reference(y1, y2, d, dd, shift, nlag)
    assert np.array_equal(out[:, 0] < 0, want[:, 0] < 0)
    np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-12)


def test_lag_fit_finds_the_lag_and_agrees_with_the_per_lag_interpolation():
    """A GPS that lags the IMU by 1.3 s: both searches find it, with the same R and direction."""
    rng = np.random.default_rng(3)
    t_imu = 1_790_000_000.0 + np.arange(0, 600, 0.1)
    a = np.convolve(rng.normal(0, 1, t_imu.shape[0]), np.ones(20) / 20, mode="same")
    h1, h2 = 0.8 * a + rng.normal(0, 0.05, a.shape[0]), -0.6 * a + rng.normal(0, 0.05, a.shape[0])
    grid = np.arange(t_imu[0] + 3.0, t_imu[-1], 0.1)
    d = np.interp(grid - 1.3, t_imu, a)
    d = d - d.mean()
    dd = float(d @ d)
    fast = lag_fit(grid, t_imu, h1, h2, d, dd, 3.0, 0.1)
    slow = lag_fit_exact(grid, t_imu, h1, h2, d, dd, 3.0, 0.1)
    assert round(fast[1], 3) == round(slow[1], 3) == 1.3
    assert fast[0] == pytest.approx(slow[0], rel=1e-6) and fast[0] > 0.9
    np.testing.assert_allclose(fast[2], slow[2], rtol=1e-5)
    # a step that is not a whole number of grid steps: the per-lag interpolation itself
    a, b = lag_fit(grid, t_imu, h1, h2, d, dd, 3.0, 0.15), lag_fit_exact(grid, t_imu, h1, h2, d, dd, 3.0, 0.15)
    assert a[:2] == b[:2] and np.array_equal(a[2], b[2])


def _alignments(monkeypatch, trips, exact: bool):
    monkeypatch.setattr(align_ref, "lag_fit", lagfit.lag_fit_exact if exact else lagfit.lag_fit)
    out = []
    for trip in trips:
        if trip.imu_t_ms.shape[0] == 0:
            continue
        t_s = trip.t_ms / 1000.0
        out.append(
            align_ref.align_reference(
                trip.imu_t_ms / 1000.0, trip.acc_lon, trip.acc_lat, trip.acc_vert, t_s, trip.speed
            )
        )
    return out


@pytest.mark.skipif(not realdata.available(), reason=f"no real recordings at {realdata.RD}")
def test_real_recordings_align_as_with_the_per_lag_interpolation(monkeypatch):
    """Every real trip with an IMU: the same status, gravity, lag and reason, R to 1e-6, the same rotated axes to
    1e-5 m/s^2 (the shifted grid points differ by microseconds)."""
    n = 0
    for name in realdata.RECORDINGS:
        gps, imu = realdata.frames(name)
        if imu is None:
            continue
        trips, _ = score_file.cut_frames(gps, imu, CFG)
        for a, b in zip(_alignments(monkeypatch, trips, False), _alignments(monkeypatch, trips, True), strict=True):
            n += 1
            assert (a.status, a.gravity, a.lag_s, a.reason) == (b.status, b.gravity, b.lag_s, b.reason)
            assert a.r == pytest.approx(b.r, rel=1e-6, nan_ok=True)
            np.testing.assert_allclose(a.lon, b.lon, atol=1e-5)
            np.testing.assert_allclose(a.lat, b.lat, atol=1e-5)
    assert n >= 30
