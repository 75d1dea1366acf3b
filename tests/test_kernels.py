"""Every numba kernel against its plain-Python reference, on random and edge-case input."""

import math

import numpy as np
import pytest

from scoring.features import trip_features
from scoring.kernels import trip_kernel
from scoring.reference import trip_reference
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()
ARGS = (CFG.harsh_brake_mps2, CFG.harsh_accel_mps2, CFG.min_event_speed_mps, CFG.max_integration_gap_s, CFG.moving_mps)


def both(t, v, args=ARGS):
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    return trip_kernel(t, v, *args), trip_reference(list(t), list(v), *args)


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=False):
        assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9), (a, b)


@pytest.mark.parametrize("seed", range(25))
def test_random_trips_match_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    dt = rng.choice([0.5, 1.0, 1.0, 1.0, 2.0, 15.0], size=n - 1)  # includes gaps beyond max_gap
    t = np.concatenate([[0.0], np.cumsum(dt)]) + 1.7e9
    v = np.abs(np.cumsum(rng.normal(0, 2.5, n))) % 40
    assert_same(*both(t, v))


@pytest.mark.parametrize(
    "t,v",
    [
        ([], []),
        ([0.0], [12.0]),
        ([0.0, 1.0], [0.0, 0.0]),
        (list(range(100)), [13.9] * 100),  # constant speed
        ([0.0, 100.0], [10.0, 10.0]),  # one gap only: nothing integrated
        ([0.0, 1.0, 2.0, 3.0, 4.0], [20.0, 15.0, 10.0, 5.0, 0.0]),  # one braking burst of 4 s = one event
        ([0.0, 1.0, 2.0, 3.0], [2.0, 0.0, 2.0, 0.0]),  # below min speed: no events
        ([0.0, 1.0, 20.0, 21.0], [20.0, 15.0, 15.0, 10.0]),  # the gap splits two bursts
    ],
)
def test_edge_cases_match_reference(t, v):
    assert_same(*both(t, v))


def test_known_values():
    (dist, moving, idle, vmax, brakes, accels), _ = both([0, 1, 2, 3, 4, 5], [0, 5, 10, 10, 5, 0])
    assert dist == pytest.approx(2.5 + 7.5 + 10 + 7.5 + 2.5)
    assert (moving, idle, vmax) == (5.0, 0.0, 10.0)
    assert brakes == 1  # 10 -> 5 -> 0 is one merged burst at 5 m/s^2
    assert accels == 1  # 0 -> 5 -> 10 is one merged burst at 5 m/s^2


def test_public_function_validates():
    with pytest.raises(ValueError, match="equal length"):
        trip_features(np.zeros(3), np.zeros(2), CFG)
    with pytest.raises(ValueError, match="finite"):
        trip_features(np.arange(3.0), np.array([1.0, np.nan, 2.0]), CFG)
    with pytest.raises(ValueError, match="increase"):
        trip_features(np.array([0.0, 2.0, 1.0]), np.ones(3), CFG)
    with pytest.raises(ValueError, match="non-negative"):
        trip_features(np.arange(3.0), np.array([1.0, -1.0, 2.0]), CFG)
    assert trip_features(np.zeros(0), np.zeros(0), CFG).distance_m == 0.0
