"""Simulator benchmark (not a test): samples generated per second in offline mode, on one core.

A sample is one GPS fix or one accelerometer reading (3 axes). Figures, measured in the same run:
- baseline: drawing the same number of Gaussian noise values with NumPy (the sensor noise alone: a floor on
  any simulator that adds noise to every channel);
- generation: fleet schedules, motion traces and sensor streams for every trip (``make_trips`` + ``sensor_streams``);
- offline: generation plus the Parquet files `ubi score-file` reads (``write_offline``).

    .venv/bin/python bench/simulator.py [--vehicles 200] [--days 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from simulator.fleet import FleetSpec, make_trips, sensor_streams, vehicle_ids  # noqa: E402
from simulator.offline import write_offline  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()
    spec = FleetSpec(vehicles=args.vehicles, days=args.days, seed=1, start=date(2026, 10, 1))

    t0 = time.perf_counter()
    trips = {v: make_trips(spec, v) for v in vehicle_ids(spec.vehicles)}
    samples = 0
    for ts in trips.values():
        for t in ts:
            ss = sensor_streams(spec, t)
            samples += ss.gps_t.shape[0] + ss.imu_t.shape[0]
    gen_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    # one noise draw per channel value: GPS has 5 noisy channels, the accelerometer 3
    n_gps = sum(len(t.trace.speed[::10]) for ts in trips.values() for t in ts)
    n_imu = samples - n_gps
    for _ in range(5):
        rng.normal(0, 1, n_gps)
    for _ in range(3):
        rng.normal(0, 1, n_imu)
    base_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trips2 = {v: make_trips(spec, v) for v in vehicle_ids(spec.vehicles)}
        _, _, written = write_offline(spec, trips2, Path(tmp))
        off_s = time.perf_counter() - t0
    n_trips = sum(map(len, trips.values()))
    print(
        f"fleet: {spec.vehicles} vehicles x {spec.days} days = {n_trips} trips, {samples:,} samples "
        f"({n_gps:,} GPS fixes at 1 Hz, {n_imu:,} accelerometer readings at 10 Hz)"
    )
    print(f"baseline (NumPy Gaussian noise for every channel value): {samples / base_s / 1e6:6.2f} M samples/s")
    print(
        f"generation (schedules + motion + sensors):               {samples / gen_s / 1e6:6.2f} M samples/s"
        f"  = {base_s / gen_s:.2f} x baseline"
    )
    print(
        f"offline mode (generation + Parquet files):               {written / off_s / 1e6:6.2f} M samples/s"
        f"  = {base_s / off_s * written / samples:.2f} x baseline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
