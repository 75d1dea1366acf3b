"""A mis-mounted accelerometer is rotated into the vehicle frame; a level one is left alone; junk falls back."""

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from scoring.align import align_to_vehicle
from scoring.features import score_trip
from scoring.trips import TripCutter
from simulator.fleet import FleetSpec, make_trips, vehicle_ids
from simulator.run import vehicle_stream
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()


@pytest.fixture(scope="module")
def eventful_trips():
    spec = FleetSpec(vehicles=8, days=3, seed=17, start=date(2026, 11, 2))
    out = []
    for v in vehicle_ids(spec.vehicles):
        cutter = TripCutter()
        for i, m in enumerate(vehicle_stream(spec, make_trips(spec, v))):
            out += cutter.feed(m, 0, i)
    scored = [(t, score_trip(t, CFG).as_row()) for t in out]
    picked = [(t, r) for t, r in scored if r["harsh_brakes"] + r["harsh_accels"] + r["harsh_corners"] > 0][:6]
    assert len(picked) >= 3
    return picked


def rotation(yaw, pitch, roll):
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


@pytest.mark.parametrize("angles", [(1.2, 0.35, 0.2), (-2.5, 0.1, -0.4), (np.pi, 0.0, 0.0)])
def test_mis_mounted_device_scores_like_a_level_one(eventful_trips, angles):
    r = rotation(*angles)
    for trip, level in eventful_trips:
        device = r.T @ np.vstack([trip.acc_lon, trip.acc_lat, trip.acc_vert])  # what a rotated sensor reads
        rotated = replace(trip, acc_lon=device[0], acc_lat=device[1], acc_vert=device[2])
        got = score_trip(rotated, CFG).as_row()
        assert got["event_source"] == "imu_rotated"
        for k in ("harsh_brakes", "harsh_accels", "harsh_corners"):
            assert got[k] == level[k], (k, angles)
        assert got["distance_km"] == pytest.approx(level["distance_km"], rel=1e-3)


def test_level_device_is_left_untouched(eventful_trips):
    trip, _ = eventful_trips[0]
    it = trip.imu_t_ms / 1000.0
    a = align_to_vehicle(it, trip.acc_lon, trip.acc_lat, trip.acc_vert, trip.t_ms / 1000.0, trip.speed)
    assert a.status == "vehicle_frame" and a.lon is trip.acc_lon and a.lat is trip.acc_lat


def test_an_accelerometer_without_gravity_falls_back_to_the_speed_channel(eventful_trips):
    trip, level = eventful_trips[0]
    rng = np.random.default_rng(0)
    m = trip.imu_t_ms.shape[0]
    junk = replace(trip, acc_lon=rng.normal(0, 3, m), acc_lat=rng.normal(0, 3, m), acc_vert=rng.normal(0, 3, m))
    got = score_trip(junk, CFG).as_row()
    assert got["event_source"] == "gps"
    assert got["harsh_brakes"] == level["harsh_brakes_gps"]
