"""Dead reckoning across GPS gaps: kernel equals its reference; it recovers a known speed profile."""

import math

import numpy as np
import pytest

from scoring.gapfill import fill_gaps, gap_fill_kernel
from scoring.reference_gapfill import gap_fill_reference


def close(a, b):
    for x, y in zip(a, b, strict=False):
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), (a, b)


@pytest.mark.parametrize("seed", range(12))
def test_kernel_matches_reference_on_random_input(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 200))
    t = np.cumsum(rng.choice([1.0, 1.0, 1.0, 15.0, 40.0, 400.0], n))
    v = rng.uniform(0, 30, n)
    it = np.arange(t[0] - 0.5, t[-1] + 0.5, 0.1)
    it = it[rng.random(it.shape[0]) > 0.02]  # a few missing IMU samples
    a = rng.normal(0, 1.5, it.shape[0])
    close(
        gap_fill_kernel(t, v, it, a, 10.0, 300.0), gap_fill_reference(list(t), list(v), list(it), list(a), 10.0, 300.0)
    )


@pytest.mark.parametrize("t,v", [([], []), ([0.0], [5.0]), ([0.0, 5.0], [5.0, 5.0]), ([0.0, 1000.0], [5.0, 5.0])])
def test_edge_cases_fill_nothing(t, v):
    it = np.arange(0, 10, 0.1)
    assert fill_gaps(np.array(t), np.array(v), it, np.zeros_like(it), 10.0, 300.0) == (0.0, 0.0, 0)


def test_no_imu_coverage_fills_nothing():
    t, v = np.array([0.0, 60.0]), np.array([10.0, 10.0])
    it = np.arange(0.0, 20.0, 0.1)  # IMU stops long before the gap ends
    assert fill_gaps(t, v, it, np.zeros_like(it), 10.0, 300.0)[2] == 0


def test_recovers_a_braking_stop_inside_a_tunnel():
    # 20 m/s, brake at 2 m/s^2 to 0, stand 20 s, accelerate at 2 m/s^2 back to 20 m/s: GPS lost for 60 s
    it = np.round(np.arange(0, 60.0001, 0.1), 6)
    a = np.where(it < 10, -2.0, np.where(it < 30, 0.0, np.where(it < 40, 2.0, 0.0)))
    true_v = np.concatenate([[20.0], 20.0 + np.cumsum(a[:-1]) * 0.1])
    true_d = float(np.sum((true_v[1:] + true_v[:-1]) / 2 * 0.1))
    noise = np.random.default_rng(0).normal(0, 0.05, a.shape[0])
    d, secs, k = fill_gaps(np.array([0.0, 60.0]), np.array([20.0, 20.0]), it, a + noise, 10.0, 300.0)
    assert k == 1 and secs == 60.0
    assert d == pytest.approx(true_d, rel=0.01)
    # the straight trapezoid across the gap would have said 1200 m, far from the truth
    assert abs(1200 - true_d) / true_d > 0.3


def test_validation():
    with pytest.raises(ValueError):
        fill_gaps(np.zeros(2), np.zeros(3), np.zeros(1), np.zeros(1), 10, 300)
    with pytest.raises(ValueError):
        fill_gaps(np.array([1.0, 0.0]), np.zeros(2), np.zeros(1), np.zeros(1), 10, 300)


def test_hole_in_the_accelerometer_fills_nothing():
    it = np.concatenate([np.arange(0, 20, 0.1), np.arange(25, 60.05, 0.1)])
    assert fill_gaps(np.array([0.0, 60.0]), np.array([10.0, 10.0]), it, np.zeros_like(it), 10.0, 300.0)[2] == 0


def test_scored_distance_through_simulated_tunnels_stays_within_one_percent():
    from datetime import date

    from scoring.features import score_trip
    from scoring.trips import TripCutter
    from simulator.fleet import FleetSpec, ground_truth_rows, make_trips, sensor_streams, vehicle_ids
    from simulator.run import vehicle_stream
    from ubi.common.config import ScoringConfig

    spec = FleetSpec(vehicles=6, days=3, seed=3, start=date(2026, 11, 1), sensor_faults=True)
    trips = [t for v in vehicle_ids(spec.vehicles) for t in make_trips(spec, v)]
    assert sum(len(sensor_streams(spec, t).gaps) for t in trips) >= 3  # the fleet really drives through tunnels
    truth = {(r["vehicle_id"], r["device_start_ms"]): r["distance_m"] for r in ground_truth_rows(spec, trips)[0]}
    cutter, scored = TripCutter(), {}
    for v in vehicle_ids(spec.vehicles):
        for i, m in enumerate(vehicle_stream(spec, [t for t in trips if t.vehicle_id == v])):
            for closed in cutter.feed(m, 0, i):
                scored[(closed.vehicle, closed.start_ms)] = score_trip(closed, ScoringConfig()).as_row()
    assert scored.keys() == truth.keys()
    assert sum(r["gap_filled_s"] > 0 for r in scored.values()) >= 3
    for key, r in scored.items():
        assert abs(r["distance_km"] * 1000 / truth[key] - 1) <= 0.01, key
