"""Scoring benchmark (not a test): numba kernel throughput on one core against two baselines measured in the same
run, then accuracy against the simulator's ground truth.

    .venv/bin/python bench/scoring.py [--samples 20000000] [--vehicles 20] [--days 10] [--seed 7]

Throughput: each kernel runs over one long channel built from the simulated fleet's trips (1 Hz GPS: times,
speeds, limits, positions, with random phone flags; 10 Hz IMU for the event kernel), repeated to ``--samples``.
Baselines, in the same process on the same arrays:
- memory: a NumPy pass that only reads the arrays the kernel reads (``np.add.reduce`` of each), the most a
  one-pass kernel could do on this machine's memory bandwidth;
- reference: the plain-Python twin in ``scoring/reference.py`` on a slice (it is ~1000x slower).
Best of ``--repeats``; numba and NumPy pinned to one thread. Per-trip end to end (``score_trip`` on real-size
trips, validation and all kernels) is reported too, as samples/s.

Accuracy: a seeded fleet goes through the live path without Kafka (device messages -> TripCutter -> score_trip);
trips are matched to ground truth by trip id; distance error per trip; harsh events are matched one to one to
the injected events of ``truth_events.parquet`` by time overlap (0.5 s tolerance) for precision and recall.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from scoring import features as F  # noqa: E402
from scoring import kernels as K  # noqa: E402
from scoring import reference as R  # noqa: E402
from scoring.trips import TripCutter, trip_id  # noqa: E402
from simulator.fleet import FleetSpec  # noqa: E402
from simulator.run import vehicle_stream, write_truth  # noqa: E402
from ubi.common.config import ScoringConfig  # noqa: E402

CFG = ScoringConfig()


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def channels(n: int, spec: FleetSpec) -> dict[str, np.ndarray]:
    """Realistic channels of ``n`` samples: the simulated fleet's trips (1 Hz GPS speed with sensor noise, posted
    limits, positions; 10 Hz accelerometer), laid end to end with their real gaps between trips and repeated with
    a time shift until ``n`` samples are reached."""
    from simulator.fleet import _positions, make_trips, vehicle_ids

    rng = np.random.default_rng(spec.seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "v", "limit", "lat", "lon", "it", "a", "va")}
    for vid in vehicle_ids(spec.vehicles):
        for trip in make_trips(spec, vid):
            tr = trip.trace
            lat, lon = _positions(tr, trip.home)
            k = np.arange(0, tr.speed.shape[0], 10)
            parts["t"].append(trip.start_ms / 1000 + k * 0.1)
            parts["v"].append(np.maximum(tr.speed[k] + rng.normal(0, 0.08, k.shape[0]) * (tr.speed[k] > 0), 0))
            parts["limit"].append(tr.limit[k])
            parts["lat"].append(lat[k])
            parts["lon"].append(lon[k])
            parts["it"].append(trip.start_ms / 1000 + np.arange(tr.speed.shape[0]) * 0.1)
            parts["a"].append(tr.accel + rng.normal(0, 0.05, tr.speed.shape[0]))
            parts["va"].append(tr.speed)
    base = {k: np.concatenate(v) for k, v in parts.items()}
    out = {}
    for key, tkey in (("t", "t"), ("it", "it")):
        span = base[tkey][-1] - base[tkey][0] + 3600.0
        reps = -(-n // base[tkey].shape[0])
        out[key] = np.concatenate([base[tkey] + r * span for r in range(reps)])[:n]
    for key in ("v", "limit", "lat", "lon", "a", "va"):
        reps = -(-n // base[key].shape[0])
        out[key] = np.ascontiguousarray(np.tile(base[key], reps)[:n])
    out["off"] = F.local_offsets(0.5 * (out["t"][1:] + out["t"][:-1]), CFG.time_zone)
    out["phone"] = (np.random.default_rng(1).random(n) < 0.03).astype(np.int8)
    out["acc"] = np.random.default_rng(2).uniform(1, 8, n)
    return out


def kernels(d: dict[str, np.ndarray]):
    """(name, reads, numba call, python reference call on the first k samples)."""
    g = CFG.max_integration_gap_s
    nv, na = CFG.heatmap_speed_bins, CFG.heatmap_accel_bins
    hm = np.zeros(nv * na)
    keep = np.zeros(d["t"].shape[0], np.uint8)
    n = d["t"].shape[0]
    s, e, p = np.empty(n // 2 + 1), np.empty(n // 2 + 1), np.empty(n // 2 + 1)
    args = (CFG.harsh_brake_mps2, CFG.harsh_accel_mps2, CFG.min_event_speed_mps, g, CFG.moving_mps)
    bands = (
        CFG.night_start_h,
        CFG.night_end_h,
        CFG.rush_am_start_h,
        CFG.rush_am_end_h,
        CFG.rush_pm_start_h,
        CFG.rush_pm_end_h,
    )
    ev = (
        -1,
        CFG.harsh_brake_mps2,
        CFG.min_event_speed_mps,
        CFG.min_event_duration_s,
        CFG.event_merge_gap_s,
        CFG.max_imu_gap_s,
    )
    risk = (CFG.speeding_risk_doubling_kmh, CFG.speeding_risk_cap)
    L = lambda k, *names: [list(d[x][:k]) for x in names]  # noqa: E731
    return [
        (
            "trip (distance, times, GPS events)",
            ("t", "v"),
            lambda: K.trip_kernel(d["t"], d["v"], *args),
            lambda k: R.trip_reference(*L(k, "t", "v"), *args),
        ),
        (
            "exposure (local-time bands)",
            ("t", "v", "off"),
            lambda: K.exposure_kernel(d["t"], d["v"], d["off"], g, *bands, CFG.moving_mps),
            lambda k: R.exposure_reference(
                *L(k, "t", "v"), CFG.time_zone, g, bands[:2], bands[2:4], bands[4:], CFG.moving_mps
            ),
        ),
        (
            "speeding",
            ("t", "v", "limit"),
            lambda: K.speeding_kernel(
                d["t"], d["v"], d["limit"], CFG.speeding_margin_mps, CFG.high_speed_mps, g, *risk
            ),
            lambda k: R.speeding_reference(
                *L(k, "t", "v", "limit"), CFG.speeding_margin_mps, CFG.high_speed_mps, g, *risk
            ),
        ),
        (
            "phone",
            ("t", "v", "phone"),
            lambda: K.phone_kernel(d["t"], d["v"], d["phone"], g, CFG.moving_mps),
            lambda k: R.phone_reference(*L(k, "t", "v", "phone"), g, CFG.moving_mps),
        ),
        (
            "heatmap",
            ("t", "v"),
            lambda: K.heatmap_kernel(
                d["t"],
                d["v"],
                g,
                CFG.heatmap_speed_step_kmh / 3.6,
                nv,
                CFG.heatmap_accel_step_mps2,
                na,
                hm,
                CFG.moving_mps,
            ),
            lambda k: R.heatmap_reference(
                *L(k, "t", "v"),
                g,
                CFG.heatmap_speed_step_kmh / 3.6,
                nv,
                CFG.heatmap_accel_step_mps2,
                na,
                CFG.moving_mps,
            ),
        ),
        (
            "harsh events (IMU, per sample)",
            ("it", "a", "va"),
            lambda: K.event_kernel(d["it"], d["a"], d["va"], *ev[:2], ev[2], *ev[3:], s, e, p),
            lambda k: R.event_reference(*L(k, "it", "a", "va"), *ev[:2], ev[2], *ev[3:]),
        ),
        (
            "GPS cleaning (jump test)",
            ("t", "lat", "lon", "acc"),
            lambda: K.clean_kernel(
                d["t"],
                d["lat"],
                d["lon"],
                d["acc"],
                CFG.max_gps_accuracy_m,
                CFG.max_jump_speed_kmh / 3.6,
                CFG.max_jump_rejects,
                keep,
            ),
            lambda k: R.clean_reference(
                *L(k, "t", "lat", "lon", "acc"),
                CFG.max_gps_accuracy_m,
                CFG.max_jump_speed_kmh / 3.6,
                CFG.max_jump_rejects,
            ),
        ),
    ]


def throughput(n: int, repeats: int, ref_n: int, spec: FleetSpec) -> list[tuple[str, float, float, float]]:
    d = channels(n, spec)
    rows = []
    for name, reads, fast, ref in kernels(d):
        fast()  # compile / load from cache
        k_s = best(fast, repeats)
        m_s = best(lambda reads=reads: [np.add.reduce(d[x]) for x in reads], repeats)
        r_s = best(lambda ref=ref: ref(ref_n), 1)
        rows.append((name, n / k_s, n / m_s, ref_n / r_s))
    return rows


def per_trip(spec: FleetSpec) -> tuple[float, int, int]:
    """score_trip on real trips (validation, cleaning, all kernels): (seconds, trips, GPS+IMU samples)."""
    trips = []
    for _v, msgs in _streams(spec):
        c = TripCutter(CFG.close_grace_s)
        for i, m in enumerate(msgs):
            trips += c.feed(m, 0, i)
    for t in trips[:3]:
        F.score_trip(t, CFG).as_row()
    sec = best(lambda: [F.score_trip(t, CFG).as_row() for t in trips], 3)
    return sec, len(trips), sum(t.t_ms.shape[0] + t.imu_t_ms.shape[0] for t in trips)


def _streams(spec: FleetSpec):
    from simulator.fleet import make_trips, vehicle_ids

    for v in vehicle_ids(spec.vehicles):
        yield v, list(vehicle_stream(spec, make_trips(spec, v)))


def match(det: list[tuple[float, float]], truth: list[tuple[float, float]], tol: float = 0.5) -> int:
    """Greedy one-to-one matching by time overlap (with tolerance); returns the number of matched pairs."""
    used = set()
    hits = 0
    for s, e in det:
        for j, (ts, te) in enumerate(truth):
            if j not in used and s <= te + tol and e >= ts - tol:
                used.add(j)
                hits += 1
                break
    return hits


def accuracy(spec: FleetSpec) -> dict:
    """Trips matched to truth_trips.parquet by id (of the device's ignition-on time); events matched one to one to
    truth_events.parquet (moved to device time) by overlap; phone time against the truth's phone_moving_s."""
    from scoring.maplayer import MapLayer
    from simulator.fleet import device_time

    with tempfile.TemporaryDirectory() as tmp:
        write_truth(spec, Path(tmp))
        ttr = pl.read_parquet(Path(tmp) / "truth_trips.parquet")
        tev = pl.read_parquet(Path(tmp) / "truth_events.parquet")
        layer = MapLayer.load(Path(tmp) / "speed_limits.parquet", CFG.speed_limit_radius_m)
    truth = {trip_id(r["vehicle_id"], r["device_start_ms"]): r for r in ttr.iter_rows(named=True)}
    got: dict[str, dict] = {}
    stats = {k: [0, 0, 0] for k in ("harsh_brake", "harsh_accel", "harsh_corner")}  # detected, truth, matched
    gps_counts = {k: [0, 0] for k in ("harsh_brake", "harsh_accel")}  # speed-channel count, truth count
    errors, phone, jumps, over = [], [0.0, 0.0], 0, [0.0, 0.0, 0.0]
    from simulator.fleet import make_trips, vehicle_ids

    sim = {trip_id(t.vehicle_id, t.start_ms): t for v in vehicle_ids(spec.vehicles) for t in make_trips(spec, v)}
    for v, msgs in _streams(spec):
        c = TripCutter(CFG.close_grace_s)
        for i, m in enumerate(msgs):
            for trip in c.feed(m, 0, i):
                row = F.score_trip(trip, CFG, F.trip_limits(trip, layer)).as_row()
                got[trip.trip_id] = row
                tr = truth.get(trip.trip_id)
                if tr is None:
                    continue
                jumps += row["gps_jumps"]
                errors.append(abs(row["distance_km"] * 1000 - tr["distance_m"]) / max(tr["distance_m"], 1.0))
                phone[0] += row["phone_s"]
                phone[1] += tr["phone_moving_s"]
                over[0] += row["over_limit_km"] * 1000
                over[1] += tr["over_limit_m"]
                if not spec.sensor_faults:  # the posted limit the simulator drove, per fix, instead of the map
                    exact = sim[trip.trip_id].trace.limit[np.round((trip.t_ms - trip.start_ms) / 100).astype(int)]
                    over[2] += F.score_trip(trip, CFG, exact).over_limit_km * 1000
                good = F.clean_fixes(trip.t_ms / 1000, trip.lat, trip.lon, trip.accuracy, CFG)[0]
                it = trip.imu_t_ms / 1000
                v_at = F.gps_trust_speed(it, trip.t_ms[good] / 1000, trip.speed[good], CFG)
                te = tev.filter((pl.col("vehicle_id") == v) & (pl.col("trip_start_ms") == tr["start_ms"]))
                for kind, a in (("brake", trip.acc_lon), ("accel", trip.acc_lon), ("corner", trip.acc_lat)):
                    ev = F.harsh_events(it, a, v_at, kind, CFG)
                    tt = te.filter(pl.col("type") == f"harsh_{kind}")
                    truth_iv = [
                        (device_time(spec, v, s) / 1000, device_time(spec, v, e) / 1000)
                        for s, e in zip(tt["start_ms"].to_list(), tt["end_ms"].to_list(), strict=False)
                    ]
                    st = stats[f"harsh_{kind}"]
                    st[0] += ev.count
                    st[1] += len(truth_iv)
                    st[2] += match(list(zip(ev.start_s.tolist(), ev.end_s.tolist(), strict=False)), truth_iv)
                    if kind != "corner":
                        gps_counts[f"harsh_{kind}"][0] += row[f"harsh_{kind}s_gps"]
                        gps_counts[f"harsh_{kind}"][1] += len(truth_iv)
    errors = np.array(errors)
    return {
        "trips_truth": len(truth),
        "trips_scored": len(got),
        "trips_matched": len(set(got) & set(truth)),
        "distance_err_max": float(errors.max()),
        "distance_err_mean": float(errors.mean()),
        "distance_within_1pct": float((errors <= 0.01).mean()),
        "events": {
            k: {
                "detected": d,
                "truth": t,
                "matched": m,
                "precision": m / d if d else float("nan"),
                "recall": m / t if t else float("nan"),
            }
            for k, (d, t, m) in stats.items()
        },
        "gps_counts": gps_counts,
        "phone_s": phone[0],
        "phone_truth_s": phone[1],
        "gps_jumps": jumps,
        "over_limit_m": over[0],
        "over_limit_truth_m": over[1],
        "over_limit_exact_m": over[2],
    }


def report_accuracy(acc: dict) -> None:
    print(f"trips: truth {acc['trips_truth']}, scored {acc['trips_scored']}, matched by id {acc['trips_matched']}")
    print(
        f"distance error: max {100 * acc['distance_err_max']:.3f}%, mean {100 * acc['distance_err_mean']:.3f}%, "
        f"{100 * acc['distance_within_1pct']:.1f}% of trips within 1%"
    )
    for k, s in acc["events"].items():
        print(
            f"{k:<14} detected {s['detected']:>4}  truth {s['truth']:>4}  matched {s['matched']:>4}  "
            f"precision {s['precision']:.3f}  recall {s['recall']:.3f}"
        )
    for k, (c, t) in acc["gps_counts"].items():
        print(f"{k:<14} speed-channel count {c} vs truth {t} (fallback without IMU)")
    print(
        f"phone handling while moving: measured {acc['phone_s']:,.0f} s vs truth {acc['phone_truth_s']:,.0f} s; "
        f"GPS fixes dropped as jumps: {acc['gps_jumps']}"
    )
    print(
        f"distance above the posted limit (simulator's roads as the map layer): measured "
        f"{acc['over_limit_m'] / 1000:,.1f} km vs truth {acc['over_limit_truth_m'] / 1000:,.1f} km"
        + (
            f"; with the exact posted limit per fix {acc['over_limit_exact_m'] / 1000:,.1f} km"
            if acc["over_limit_exact_m"]
            else ""
        )
    )


def motion_accuracy(spec: FleetSpec) -> dict:
    """The fleet's telemetry with every ignition event removed, cut by motion (score-file's path): how many true
    trips are found (one motion trip overlapping each), and the distance error per found trip."""
    from simulator.fleet import make_trips, vehicle_ids
    from ubi.stages.score_file import messages_to_frames, score_frames

    msgs = [m for _, ms in _streams(spec) for m in ms]
    gps, imu = messages_to_frames(msgs)
    rows = score_frames(gps.filter(pl.col("event").is_null()), imu, CFG)
    truth = [t for v in vehicle_ids(spec.vehicles) for t in make_trips(spec, v)]
    found, errs, split = 0, [], 0
    for t in truth:
        hits = [
            r
            for r in rows
            if r["vehicle_id"] == t.vehicle_id and r["start_ms"] <= t.end_ms and r["end_ms"] >= t.start_ms
        ]
        split += len(hits) > 1
        if len(hits) == 1:
            found += 1
            errs.append(abs(hits[0]["distance_km"] * 1000 - t.distance_m) / max(t.distance_m, 1.0))
    return {
        "truth": len(truth),
        "motion_trips": len(rows),
        "found": found,
        "split": split,
        "err_max": max(errs) if errs else float("nan"),
    }


def cutter_throughput(spec: FleetSpec) -> dict[str, float]:
    """Messages/s through the trip cutter alone (no scoring), for the fleet as it is (ignition events) and for the
    same fleet with motion-only devices (scoring/motion.py, a Python loop over fixes), measured in the same run."""
    out = {}
    for name, s in (("ignition", spec), ("motion", replace(spec, motion_only_share=1.0))):
        msgs = [m for _, ms in _streams(s) for m in ms]
        best = float("inf")
        for _ in range(3):
            cutter = TripCutter.for_config(CFG)
            t0 = time.perf_counter()
            for i, m in enumerate(msgs):
                cutter.feed(m, 0, i, i)
            best = min(best, time.perf_counter() - t0)
        out[name] = len(msgs) / best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=20_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-samples", type=int, default=200_000)
    ap.add_argument("--vehicles", type=int, default=20)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba threads "
        f"{os.environ['NUMBA_NUM_THREADS']}, python {platform.python_version()}"
    )
    spec = FleetSpec(vehicles=a.vehicles, days=a.days, seed=a.seed)
    print(f"\n== kernel throughput, {a.samples:,} samples per channel, best of {a.repeats} (M samples/s)")
    print(f"{'kernel':<36}{'numba':>10}{'memory':>10}{'python':>10}{'% memory':>10}{'x python':>10}")
    for name, k, m, r in throughput(a.samples, a.repeats, a.ref_samples, spec):
        print(f"{name:<36}{k / 1e6:>10.1f}{m / 1e6:>10.1f}{r / 1e6:>10.3f}{100 * k / m:>9.0f}%{k / r:>10.0f}")
    sec, n_trips, n_samples = per_trip(spec)
    print(
        f"\n== score_trip end to end on {n_trips} simulated trips: {n_trips / sec:,.0f} trips/s, "
        f"{n_samples / sec / 1e6:.1f} M samples/s (GPS + IMU; validation, cleaning, all kernels)"
    )
    acc = accuracy(spec)
    print(f"\n== ground truth: {a.vehicles} vehicles x {a.days} days, seed {a.seed}")
    report_accuracy(acc)
    m = motion_accuracy(spec)
    print(
        f"motion cutting without ignition events (score-file path): {m['motion_trips']} trips for "
        f"{m['truth']} true trips, {m['found']} found one to one, {m['split']} split; distance error max "
        f"{100 * m['err_max']:.3f}%"
    )
    c = cutter_throughput(spec)
    print(
        f"trip cutter alone: {c['ignition']:,.0f} msgs/s with ignition events, {c['motion']:,.0f} msgs/s cut by "
        f"motion (10 s messages; {c['motion'] / c['ignition']:.2f}x)"
    )
    faulty = replace(spec, sensor_faults=True)
    print("\n== the same fleet with sensor faults (position glitches, tunnels without GPS, device clock drift)")
    report_accuracy(accuracy(faulty))


if __name__ == "__main__":
    main()
