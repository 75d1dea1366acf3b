"""scoring/imukernels.py against its NumPy twins (scoring/reference_imu.py): bit for bit, on random input and the
edges (no sample, one sample, NaNs, gaps, repeated and unsorted times)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.features import gps_trust_speed
from scoring.imukernels import np_interp_kernel
from scoring.intensity import _bin_means
from scoring.reference_imu import bin_means_reference, gps_trust_speed_reference
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()
T0 = 1_790_000_000.0  # epoch seconds: the rounding of real trips


def gps_track(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Strictly increasing fix times with 1 s steps, short jitter and gaps above max_integration_gap_s."""
    step = rng.choice([1.0, 1.0, 1.0, 0.5, 2.7, 30.0, 120.0], m)
    t = T0 + np.cumsum(step)
    return t, np.abs(np.cumsum(rng.normal(0, 1.0, m)))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


@pytest.mark.parametrize("seed", range(8))
def test_trust_speed_kernel_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.choice([1, 2, 3, 50, 800]))
    gt, gv = gps_track(rng, m)
    span = gt[-1] - gt[0]
    # IMU clock around and beyond the GPS span, with a lag, some samples exactly on fixes
    it = np.sort(rng.uniform(gt[0] - 20, gt[-1] + 20, int(rng.integers(0, 5000))))
    if it.size:
        k = min(5, it.size, m)
        it[:k] = gt[:k]  # on fixes exactly (searchsorted's ties)
        it.sort()
    for lag in (0.0, 0.7, -1.3):
        x = it + lag
        for cfg in (CFG, ScoringConfig(event_warmup_s=0.0), ScoringConfig(max_integration_gap_s=span + 1)):
            got = gps_trust_speed(x, gt, gv, cfg)
            want = gps_trust_speed_reference(x, gt, gv, cfg.max_integration_gap_s, cfg.event_warmup_s)
            assert same(got, want), (seed, m, lag)


def test_trust_speed_kernel_edges():
    gt, gv = np.array([T0]), np.array([5.0])
    for it in (np.zeros(0), np.array([T0]), np.array([T0 - 1, T0, T0 + 1]), np.array([np.nan, T0 + 10.0])):
        for cfg in (CFG, ScoringConfig(event_warmup_s=0.0)):
            want = gps_trust_speed_reference(it, gt, gv, cfg.max_integration_gap_s, cfg.event_warmup_s)
            assert same(gps_trust_speed(it, gt, gv, cfg), want)
    # no fixes at all: nothing is trusted
    assert np.isnan(gps_trust_speed(np.array([T0, T0 + 1]), np.zeros(0), np.zeros(0), CFG)).all()
    # unsorted IMU times (the kernel walks both ways) and NaN speeds pass through as NumPy gives them
    rng = np.random.default_rng(3)
    gt, gv = gps_track(rng, 300)
    gv[::17] = np.nan
    it = rng.uniform(gt[0], gt[-1], 2000)
    want = gps_trust_speed_reference(it, gt, gv, CFG.max_integration_gap_s, CFG.event_warmup_s)
    assert same(gps_trust_speed(it, gt, gv, CFG), want)
    with pytest.raises(ValueError, match="strictly increase"):
        gps_trust_speed(it, gt[::-1], gv, CFG)


@pytest.mark.parametrize("seed", range(8))
def test_bin_means_kernel_equals_numpy(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.choice([0, 1, 2, 40, 20_000]))
    hz = float(rng.choice([1.0, 10.0, 25.0, 100.0]))
    ts = T0 + np.cumsum(rng.choice([1 / hz, 1 / hz, 1 / hz, 0.0, 5.0], n))  # repeats and holes
    x = rng.normal(0, 2, n)
    x[rng.random(n) < 0.1] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    lo = ts[0] if n else T0
    hi = ts[-1] if n else T0 + 10
    grid = np.arange(lo - 3.0, hi + 3.0, 1.0) + rng.uniform(-0.5, 0.5)
    grid = np.concatenate([grid[: grid.size // 2], grid[grid.size // 2 + 7 :]])  # a break in the grid
    assert same(_bin_means(ts, x, grid), bin_means_reference(ts, x, grid))


def test_bin_means_kernel_edges():
    g = np.array([T0, T0 + 1.0])
    for ts, x in (
        (np.zeros(0), np.zeros(0)),
        (np.array([T0]), np.array([np.nan])),
        (np.array([T0 - 0.5, T0 + 0.5]), np.array([1.0, 2.0])),  # on the bin edges: [g - 0.5, g + 0.5)
        (np.array([T0, T0, T0]), np.array([1.0, np.nan, 4.0])),
    ):
        assert same(_bin_means(ts, x, g), bin_means_reference(ts, x, g))
    assert same(_bin_means(np.array([T0]), np.array([1.0]), np.zeros(0)), np.zeros(0))
    with pytest.raises(ValueError):
        _bin_means(np.zeros(3), np.zeros(2), g)


def test_np_interp_kernel_equals_numpy_on_edges():
    xp, fp = np.array([1.0, 2.0, 2.5, 4.0]), np.array([0.0, np.inf, 3.0, -1.0])
    x = np.array([np.nan, -5.0, 1.0, 1.5, 2.0, 2.25, 4.0, 9.0, 3.0, 0.5])  # unsorted on purpose
    out = np.empty(x.shape[0])
    np_interp_kernel(x, xp, fp, out)
    assert same(out, np.interp(x, xp, fp))
    out1 = np.empty(3)
    np_interp_kernel(np.array([0.0, 1.0, 2.0]), np.array([1.0]), np.array([7.0]), out1)
    assert same(out1, np.interp(np.array([0.0, 1.0, 2.0]), np.array([1.0]), np.array([7.0])))
