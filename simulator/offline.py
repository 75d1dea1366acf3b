"""Offline mode: the same telemetry the devices would publish, written to Parquet instead of MQTT.

The files use the columns `ubi score-file` reads (docs/score-file.md), so a simulated fleet can be scored as a
back-test without any broker: ``gps.parquet`` (fixes plus ignition events) and ``imu.parquet``, with the ground
truth and policies beside them (simulator/run.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from simulator.fleet import FleetSpec, SimTrip, _with_parked_tail, motion_only, sensor_streams


def trip_frames(spec: FleetSpec, trips: list[SimTrip]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """GPS (with ignition event rows) and IMU frames for a list of trips, built column-wise in one go. A motion-only
    device (FleetSpec.motion_only_share) has no event rows and reports its parked tail, as it does live."""
    names = sorted({t.vehicle_id for t in trips})
    code = {v: i for i, v in enumerate(names)}
    g = {k: [] for k in ("vid", "t", "lat", "lon", "speed", "heading", "acc", "phone", "event")}
    m = {k: [] for k in ("vid", "t", "lon", "lat", "vert")}
    nan = np.array([np.nan])
    for trip in trips:
        ss = sensor_streams(spec, trip)
        events = not motion_only(spec, trip.vehicle_id)
        if not events:
            ss = _with_parked_tail(spec, trip, ss)
        n = ss.gps_t.shape[0]
        pad = nan if events else nan[:0]
        g["vid"].append(np.full(n + 2 * events, code[trip.vehicle_id], np.int32))
        g["t"].append(np.concatenate([[trip.start_ms], ss.gps_t, [trip.end_ms]]) if events else ss.gps_t)
        for key, arr in (
            ("lat", ss.lat),
            ("lon", ss.lon),
            ("speed", ss.speed),
            ("heading", ss.heading),
            ("acc", ss.accuracy),
            ("phone", ss.phone.astype(np.float64)),
        ):
            g[key].append(np.concatenate([pad, arr, pad]))
        ev = np.zeros(n + 2 * events, np.int8)
        if events:
            ev[0], ev[-1] = 1, 2
        g["event"].append(ev)
        m["vid"].append(np.full(ss.imu_t.shape[0], code[trip.vehicle_id], np.int32))
        m["t"].append(ss.imu_t)
        m["lon"].append(ss.acc_lon)
        m["lat"].append(ss.acc_lat)
        m["vert"].append(ss.acc_vert)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in g.items()}
    imu = {k: np.concatenate(v) if v else np.zeros(0) for k, v in m.items()}
    vehicles = pl.Series("vehicle_id", names, dtype=pl.String)
    gps = pl.DataFrame(
        {
            "vehicle_id": vehicles.gather(cat["vid"]),
            "t_ms": cat["t"].astype(np.int64),
            "lat": cat["lat"],
            "lon": cat["lon"],
            "speed_mps": cat["speed"],
            "heading_deg": cat["heading"],
            "accuracy_m": cat["acc"],
            "phone": cat["phone"],
            "event": pl.Series(cat["event"]).replace_strict(
                {0: None, 1: "ignition_on", 2: "ignition_off"}, return_dtype=pl.String
            ),
        }
    ).with_columns(pl.col(c).fill_nan(None) for c in ("lat", "lon", "speed_mps", "heading_deg", "accuracy_m"))
    imu_df = pl.DataFrame(
        {
            "vehicle_id": vehicles.gather(imu["vid"]),
            "t_ms": imu["t"].astype(np.int64),
            "acc_lon": imu["lon"],
            "acc_lat": imu["lat"],
            "acc_vert": imu["vert"],
        }
    )
    return gps, imu_df


def write_offline(spec: FleetSpec, trips: dict[str, list[SimTrip]], out: Path) -> tuple[Path, Path, int]:
    """Write every vehicle's telemetry to ``out``; returns the two paths and the number of samples written."""
    out.mkdir(parents=True, exist_ok=True)
    gps, imu = trip_frames(spec, [t for ts in trips.values() for t in ts])
    gps_path, imu_path = out / "gps.parquet", out / "imu.parquet"
    gps.write_parquet(gps_path, compression="lz4")  # lz4: cheap to write, still compact
    imu.write_parquet(imu_path, compression="lz4")
    return gps_path, imu_path, gps.height + imu.height
