"""Graded events per device class on the calibrated simulator (not a test): the fleet of each profile written as
`ubi score-file` input (offline mode), scored by ``score_paths``, and compared per trip with the ground truth that
grades every manoeuvre with ScoringConfig's cut points (simulator/fleet.py graded_truth).

    .venv/bin/python bench/sim_devices.py [--vehicles 10] [--days 5] [--seed 11]

Matching: per trip and kind, min(true, detected) events count as matched (trips hold few events); only events the
device could see (``observable``: not before its first real fix, corners only with an accelerometer).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from simulator.fleet import FleetSpec, device_profile, ground_truth_rows, make_trips, vehicle_ids  # noqa: E402
from simulator.offline import write_offline  # noqa: E402
from simulator.sensors import SCORING_CLASS  # noqa: E402
from ubi.common.config import ScoringConfig  # noqa: E402
from ubi.stages.score_file import score_paths  # noqa: E402

KINDS = {"brake": "harsh_brake", "accel": "harsh_accel", "corner": "harsh_corner"}


def run(profile: str, vehicles: int, days: int, seed: int, cfg: ScoringConfig) -> dict:
    spec = FleetSpec(vehicles, days, seed, date(2026, 10, 5), motion="calibrated", device_mix=profile)
    trips = [t for v in vehicle_ids(vehicles) for t in make_trips(spec, v)]
    with tempfile.TemporaryDirectory() as tmp:
        gp, ip, _ = write_offline(spec, {"all": trips}, Path(tmp))
        imu = pl.read_parquet(ip).height > 0
        t0 = time.perf_counter()
        # each vehicle scored with its device class's profile, as a user's [scoring] device_classes would say
        classes = {v: SCORING_CLASS[device_profile(spec, v).name] for v in vehicle_ids(vehicles)}
        rows = score_paths([gp], [ip] if imu else [], replace(cfg, device_classes=classes))
        sec = time.perf_counter() - t0
    ev = pl.DataFrame(ground_truth_rows(spec, trips)[1]).filter(pl.col("observable"))
    out = {"trips": len(trips), "scored": len(rows), "sec": sec, "kinds": {}}
    out["imu_used"] = sum(r["imu_status"] in ("vehicle_frame", "rotated") for r in rows)
    out["km"] = sum(r["distance_km"] for r in rows)
    out["true_km"] = sum(t.distance_m for t in trips) / 1000
    for k, typ in KINDS.items():
        s = dict.fromkeys(("t", "d", "m", "t_h", "d_h", "m_h"), 0)
        s["grades_true"], s["grades_det"] = [0, 0, 0], [0, 0, 0]
        for tr in trips:
            r = min(
                (x for x in rows if x["vehicle_id"] == tr.vehicle_id),
                key=lambda x: abs(x["start_ms"] - tr.start_ms),
            )
            e = ev.filter(
                (pl.col("vehicle_id") == tr.vehicle_id)
                & (pl.col("trip_start_ms") == tr.start_ms)
                & (pl.col("type") == typ)
            )
            g = r[f"harsh_{k}_grades"]
            for i, name in enumerate(("moderate", "harsh", "severe")):
                s["grades_true"][i] += e.filter(pl.col("grade") == name).height
                s["grades_det"][i] += g[i]
            ta, th, da, dh = e.height, e.filter(pl.col("grade") != "moderate").height, sum(g), g[1] + g[2]
            s["t"] += ta
            s["d"] += da
            s["m"] += min(ta, da)
            s["t_h"] += th
            s["d_h"] += dh
            s["m_h"] += min(th, dh)
        out["kinds"][k] = s
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=10)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--profiles", default="oem,phone_raw,phone_linear,obd")
    a = ap.parse_args()
    cfg = ScoringConfig()
    print(f"calibrated simulator, {a.vehicles} vehicles x {a.days} days, seed {a.seed}, one profile at a time")
    print(
        "| device | trips | IMU used | distance vs truth | kind | true m/h/s | detected m/h/s | precision / recall "
        "(all bands) | precision / recall (harsh+) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    div = lambda x, y: f"{x / y:.2f}" if y else "-"  # noqa: E731
    for p in a.profiles.split(","):
        r = run(p, a.vehicles, a.days, a.seed, cfg)
        for i, (k, s) in enumerate(r["kinds"].items()):
            if p == "obd" and k == "corner":
                continue
            head = (
                f"| {p} | {r['trips']} | {r['imu_used']} | {100 * (r['km'] - r['true_km']) / r['true_km']:+.1f}% "
                if i == 0
                else "| | | | "
            )
            print(
                head + f"| {k} | {'/'.join(map(str, s['grades_true']))} | {'/'.join(map(str, s['grades_det']))} | "
                f"{div(s['m'], s['d'])} / {div(s['m'], s['t'])} | "
                f"{div(s['m_h'], s['d_h'])} / {div(s['m_h'], s['t_h'])} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
