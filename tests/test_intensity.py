"""Continuous measures (scoring/intensity.py): every kernel against its plain-Python twin on random and edge input,
then behaviour on synthetic trips whose answer is known from physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scoring.intensity as I
import scoring.reference_intensity as R
from scoring.align import Alignment
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()


def grid_1hz(rng: np.random.Generator, n: int) -> np.ndarray:
    """1 s steps with a few breaks (gaps of 2-30 s), starting at an epoch-sized time like real trips."""
    steps = np.where(rng.random(n) < 0.03, rng.uniform(2, 30, n), 1.0)
    return 1.79e9 + np.cumsum(steps)


def channel_input(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    t = grid_1hz(rng, n)
    v = np.abs(rng.normal(15, 10, n))
    v[rng.random(n) < 0.1] = 0.0
    alon = rng.normal(0, 1.5, n)
    alat = rng.normal(0, 2.0, n)
    alon[rng.random(n) < 0.05] = np.nan
    alat[rng.random(n) < 0.2] = np.nan
    return t, v, alon, alat


def kernel_intensity(t, v, alon, alat, *lv):
    b, a, la = (np.zeros(3) for _ in range(3))
    out = I.intensity_kernel(t, v, alon, alat, CFG.moving_mps, *lv, b, a, la)
    return [*out, *b, *a, *la]


def ref_intensity(t, v, alon, alat, *lv):
    *out, b, a, la = R.intensity_reference(list(t), list(v), list(alon), list(alat), CFG.moving_mps, *lv)
    return [*out, *b, *a, *la]


LEVELS = (np.array([1.2, 2.45, 3.13]), np.array([1.0, 1.96, 2.94]), np.array([1.5, 2.94, 3.92]), 1.0, 22.0, 1.0)


@pytest.mark.parametrize("seed", range(12))
def test_intensity_kernel_matches_reference(seed):
    t, v, alon, alat = channel_input(seed)
    got = kernel_intensity(t, v, alon, alat, *LEVELS)
    assert got == pytest.approx(ref_intensity(t, v, alon, alat, *LEVELS))


@pytest.mark.parametrize("seed", range(12))
def test_cruise_kernel_matches_reference(seed):
    t, v, _, alat = channel_input(seed)
    v = np.where(np.random.default_rng(seed).random(t.shape[0]) < 0.02, 5.0, v + 10.0)  # long fast runs, few dips
    for win in (1, 5, 30):
        got = I.cruise_kernel(t, v, alat, win, 50 / 3.6, 0.5)
        ref = R.cruise_reference(list(t), list(v), list(alat), win, 50 / 3.6, 0.5)
        assert got == pytest.approx(ref)


@pytest.mark.parametrize("seed", range(12))
def test_speeding_bands_and_longest_drive_match_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    t = np.cumsum(np.where(rng.random(n) < 0.05, rng.uniform(5, 2000, n), rng.uniform(0.2, 2, n)))
    v = np.abs(rng.normal(20, 8, n))
    v[rng.random(n) < 0.2] = 0.0
    lim = rng.choice([np.nan, 50 / 3.6, 80 / 3.6], n)
    edges = np.array([0.0, 10.0, 20.0]) / 3.6
    out = np.zeros(3)
    tot = I.speeding_bands_kernel(t, v, lim, CFG.high_speed_mps, 10.0, edges, out)
    rt, rout = R.speeding_bands_reference(list(t), list(v), list(lim), CFG.high_speed_mps, 10.0, list(edges))
    assert [tot, *out] == pytest.approx([rt, *rout])
    for brk in (60.0, 900.0):
        assert I.longest_drive_kernel(t, v, 0.5, brk) == pytest.approx(
            R.longest_drive_reference(list(t), list(v), 0.5, brk)
        )


EDGES = [
    (np.zeros(0), np.zeros(0)),
    (np.array([0.0]), np.array([10.0])),
    (np.array([0.0, 1.0]), np.array([0.0, 0.0])),
    (np.arange(5.0), np.full(5, np.nan)),
]


@pytest.mark.parametrize("t,a", EDGES)
def test_kernels_on_edge_input(t, a):
    v = np.full(t.shape[0], 20.0)
    assert kernel_intensity(t, v, a, a, *LEVELS) == pytest.approx(ref_intensity(t, v, a, a, *LEVELS))
    assert I.cruise_kernel(t, v, a, 2, 10.0, 0.5) == pytest.approx(
        R.cruise_reference(list(t), list(v), list(a), 2, 10.0, 0.5)
    )
    assert I.longest_drive_kernel(t, v, 0.5, 900.0) == R.longest_drive_reference(list(t), list(v), 0.5, 900.0)


def ramp_trip():
    """2 min at 20 m/s, a 1.5 m/s^2 acceleration for 6 s, 2 min at 29 m/s (GPS 1 Hz, heading north)."""
    v = np.r_[np.full(120, 20.0), 20.0 + 1.5 * np.arange(1, 7), np.full(120, 29.0)]
    return np.arange(v.shape[0], dtype=float), v


def test_speed_channel_measures_a_known_acceleration():
    t, v = ramp_trip()
    ch = I.channel(t, v, np.zeros_like(v), None, None, CFG)
    assert ch.source == "speed"  # a heading that never changes is taken as not reported
    assert np.isnan(ch.lat).all()
    i = I.intensity(ch, CFG)
    # 1.5 m/s^2 is above the low accel level (0.98) and below the moderate one: the ramp's 6 s, less the two
    # ends that the centred difference halves (0.75), plus or minus one
    assert 4 <= round(i.accel_share[0] * i.moving_s) <= 6
    assert i.accel_share[1] == 0 and i.brake_share == [0, 0, 0]
    # RPA = sum v a+ / sum v: the ramp's work over the whole distance
    assert i.rpa_mps2 == pytest.approx(float(np.sum(v[120:126] * 1.5) / np.sum(v[10:])), rel=0.15)
    assert i.cruise_windows == 7 and i.cruise_speed_cv < 0.05  # 4 windows before, 3 after the ramp


def test_heading_rate_gives_lateral_acceleration_with_its_sign():
    """A left turn at 15 m/s and 0.2 rad/s is 3 m/s^2 to the left (+), a right turn the opposite."""
    t = np.arange(60.0)
    v = np.full(60, 15.0)
    for sign in (1, -1):
        hdg = (90.0 - sign * np.degrees(0.2) * t) % 360  # compass bearing, falling = turning left
        ch = I.channel(t, v, hdg, None, None, CFG)
        assert ch.source == "speed+heading"
        assert np.nanmedian(ch.lat) == pytest.approx(sign * 3.0, rel=1e-3)


def test_imu_channel_reads_the_imu_at_the_gps_lag():
    """The IMU sees the acceleration 1.2 s before the GPS: read at the lag, the 1 s means line up with the GPS."""
    t, v = ramp_trip()
    it = np.arange(0, t[-1], 0.04)
    a = np.interp(it + 1.2, t[1:], np.diff(v))  # the IMU runs 1.2 s ahead of the GPS speed
    al = Alignment(a, np.zeros_like(a), "vehicle_frame", 1.2, 0.9, "raw", "test")
    ch = I.channel(t, v, None, it, al, CFG)
    assert ch.source == "imu"
    peak = ch.t[np.nanargmax(ch.lon)]
    assert 120 <= peak <= 126
    slow = Alignment(a[::25], np.zeros(a[::25].shape[0]), "vehicle_frame", 1.2, 0.9, "raw", "1 Hz")
    assert I.channel(t, v, None, it[::25], slow, CFG).source == "speed"  # a 1 Hz IMU is no 1 s mean


def test_fatigue_break_and_speeding_bands():
    t = np.arange(0, 3 * 3600.0, 1.0)
    v = np.full(t.shape[0], 25.0)
    for stop_min, longest in ((20, 2 * 3600), (10, 3 * 3600)):
        w = v.copy()
        w[(t >= 3600) & (t < 3600 + stop_min * 60)] = 0.0
        got = I.longest_drive_s(t, w, CFG)
        assert got == pytest.approx(longest - (stop_min * 60 if longest == 2 * 3600 else 1), abs=2)
    lim = np.full(t.shape[0], 25.0 - 15 / 3.6)  # 15 km/h over everywhere
    assert I.speeding_bands(t, v, lim, CFG) == pytest.approx([0.0, 1.0, 0.0])
    assert I.speeding_bands(t, v, None, CFG) == [0.0, 0.0, 0.0]  # 90 km/h is under the 80 mph fallback
    c = I.continuous(t, v, None, None, None, None, CFG)
    assert c.fatigue_s == pytest.approx(3 * 3600 - 1 - CFG.fatigue_after_s)


def test_weaving_is_seen_on_a_straight_road():
    rng = np.random.default_rng(3)
    t = np.arange(300.0)
    v = np.full(300, 25.0)
    calm = I.intensity(I.IntensityChannel(t, v, np.zeros(300), rng.normal(0, 0.1, 300), "imu"), CFG)
    weave = I.intensity(I.IntensityChannel(t, v, np.zeros(300), 1.2 * np.sin(2 * math.pi * t / 6), "imu"), CFG)
    bend = I.intensity(I.IntensityChannel(t, v, np.zeros(300), np.full(300, 2.0), "imu"), CFG)
    assert calm.weave_windows == weave.weave_windows == 10 and bend.weave_windows == 0
    assert weave.weave_lat_std > 5 * calm.weave_lat_std
