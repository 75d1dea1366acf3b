"""Event precision / recall on human-labelled real trips (not a test): Ferreira et al. 2017, driverBehaviorDataset.

    .venv/bin/python bench/labelled.py [--data DIR | --git-dir GITDIR]

The data set has no licence: it is read where it lies, never copied into this repository. By default it is read
from the `fetch` mirror (/work/.mirror/jair-jr+driverBehaviorDataset/repo) with ``git show HEAD:path``; ``--data``
(or UBI_LABELLED_DATA) points at a plain checkout instead (``DIR/data/<trip>/...``). Trip 16's sensor files are
missing in the snapshot; trips 17, 20 and 21 are complete.

What the data is: a phone on the windshield of a 2011 Honda Civic, Android *linear* acceleration (gravity removed)
and gyroscope already rotated into the earth frame (x east, y north, z up) at ~50-100 Hz, **no GPS**, and video-
labelled aggressive brakes, accelerations, turns, lane changes and non-aggressive manoeuvres (start / end seconds
from the trip's first sample, ``viagem.json`` firstCollectionUptimeNanos).

How our detection is run on it (the honest way without GPS):
- Vehicle frame. The scorer's own alignment (scoring/align.py) fits the forward axis on GPS dv/dt, which this
  data lacks. Instead the heading comes from the gyroscope: theta(t) = integral of the earth-frame yaw rate (its
  median over the trip removed as bias), the horizontal acceleration is rotated by -theta into a frame that turns
  with the car, and the car's *left* axis in that frame is the direction of E[a * yaw rate] (lateral acceleration
  = speed x yaw rate, speed > 0, so it points left for any speed); forward = left turned -90 degrees. No label is
  used to fit anything. The frame is weakly determined (the correlation of the left axis with the yaw rate is
  printed: 0.07-0.22 here, trip 17 has no turns at all), which limits what these figures say about the detector;
  the principal axis of the horizontal acceleration was tried instead and did worse (it flipped accelerations into
  brakes on trips 17 and 21). The frame wanders within a trip (trip 17's first brakes lie on our forward axis, its
  last ones on the lateral axis: Android's earth frame follows the magnetometer, which a car disturbs), so a
  frame-free line is printed too: how many labels an event on the horizontal magnitude |a_h| finds, with each
  kind's bands (recall only: |a_h| cannot tell the kind).
- Speed gate. Without speed the gate (10 km/h, cornering 30 km/h) is held open everywhere: the labelled
  manoeuvres were all driven at speed, and a detection while standing still would count against precision.
- Detection: ``scoring.features.harsh_events`` with the default ScoringConfig (0.5 s mean, >= 0.6 s, graded
  moderate / harsh / severe) on the 10 Hz block means of the signal (the scorer's own resampling of phone input).
Matching: a detection of kind K matches a labelled event of kind K when their intervals overlap, with 1 s of
tolerance on either side (labels are read from video; the 0.5 s mean shifts edges). brake = freada_agressiva,
accel = aceleracao_agressiva, corner = curva_*_agressiva. Recall = labelled events with at least one matching
detection / labelled events. Precision = matched detections / detections, where a corner detection overlapping a
labelled lane change is left out (a lane change is lateral but not a turn), and any other detection, including
ones on non-aggressive labels and on unlabelled driving between the labels, counts as false. Reported for every
band (moderate and up) and for harsh and up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from scoring.features import harsh_events  # noqa: E402
from ubi.common.config import ScoringConfig  # noqa: E402

MIRROR = Path("/work/.mirror/jair-jr+driverBehaviorDataset/repo")
TRIPS = ("16", "17", "20", "21")
LABELS = {"freada_agressiva": "brake", "aceleracao_agressiva": "accel"}
TOL_S = 1.0


def reader(data: Path | None, git_dir: Path | None):
    """A function path -> bytes (None when missing) over a plain folder or a bare git mirror."""
    if data is not None:
        return lambda p: (data / p).read_bytes() if (data / p).is_file() else None

    def show(p: str) -> bytes | None:
        r = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{p}"], capture_output=True)
        return r.stdout if r.returncode == 0 else None

    return show


@dataclass
class Trip:
    name: str
    t: np.ndarray  # s from the trip's first collection
    acc: np.ndarray  # (3, n) linear acceleration, earth frame (east, north, up)
    gyro_t: np.ndarray
    yaw: np.ndarray  # rad/s, earth z (+ = left turn)
    labels: list[tuple[str, float, float]]


def load(read, trip: str) -> Trip | None:
    files = {k: read(f"data/{trip}/{k}") for k in ("aceleracaoLinear_terra.csv", "giroscopio_terra.csv")}
    gt, meta = read(f"data/{trip}/groundTruth.csv"), read(f"data/{trip}/viagem.json")
    if any(v is None for v in (*files.values(), gt, meta)):
        return None
    t0 = json.loads(meta)["firstCollectionUptimeNanos"]
    a = pl.read_csv(io.BytesIO(files["aceleracaoLinear_terra.csv"])).sort("uptimeNanos")
    g = pl.read_csv(io.BytesIO(files["giroscopio_terra.csv"])).sort("uptimeNanos")
    lab = pl.read_csv(io.BytesIO(gt))
    lab.columns = [c.strip() for c in lab.columns]
    return Trip(
        trip,
        (a["uptimeNanos"].to_numpy() - t0) / 1e9,
        np.vstack([a[c].to_numpy() for c in ("x", "y", "z")]),
        (g["uptimeNanos"].to_numpy() - t0) / 1e9,
        g["z"].to_numpy(),
        [(str(e).strip(), float(s), float(f)) for e, s, f in lab.select(["evento", "inicio", "fim"]).iter_rows()],
    )


def block_10hz(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each 0.1 s block (empty blocks dropped): what a 10 Hz device reports."""
    k = np.floor((t - t[0]) / 0.1).astype(np.int64)
    n = np.bincount(k)
    ok = n > 0
    out = np.vstack([np.bincount(k, weights=row)[ok] / n[ok] for row in np.atleast_2d(x)])
    return t[0] + (np.flatnonzero(ok) + 0.5) * 0.1, out


def vehicle_frame(tr: Trip) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(t, forward, left, r): 10 Hz, from the gyroscope heading (module docstring); r = correlation of the left
    axis with the yaw rate (how well the frame is determined)."""
    t, a = block_10hz(tr.t, tr.acc)
    w = np.interp(t, tr.gyro_t, tr.yaw)
    w = w - np.median(w)
    theta = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(t))])
    c, s = np.cos(-theta), np.sin(-theta)
    e, n = a[0] * c - a[1] * s, a[0] * s + a[1] * c  # rotated with the car: a constant frame up to an offset
    left = np.array([np.mean(e * w), np.mean(n * w)])
    left /= np.linalg.norm(left)
    fwd = np.array([left[1], -left[0]])  # left turned -90 degrees
    lon, lat = fwd[0] * e + fwd[1] * n, left[0] * e + left[1] * n
    r = float(np.corrcoef(lat, w)[0, 1])
    return t, lon, lat, r


def evaluate(trips: list[Trip], cfg: ScoringConfig) -> dict:
    free = {k: [0, 0] for k in ("brake", "accel", "corner")}  # labels found on |horizontal| (any band, harsh+)
    stats = {
        k: dict.fromkeys(("labels", "found", "found_h", "det", "tp", "det_h", "tp_h"), 0)
        for k in ("brake", "accel", "corner")
    }
    frames = []
    for tr in trips:
        t, lon, lat, r = vehicle_frame(tr)
        frames.append((tr.name, r))
        gate = np.full(t.shape[0], 100.0)  # no speed: the gate is open (module docstring)
        tb, a = block_10hz(tr.t, tr.acc)
        mag = np.hypot(a[0], a[1])
        for kind in free:
            ev = harsh_events(tb, -mag if kind == "brake" else mag, gate, kind, cfg)
            cut = {"brake": cfg.harsh_brake_mps2, "accel": cfg.harsh_accel_mps2, "corner": cfg.harsh_corner_mps2}[kind]
            for lab, s, e in tr.labels:
                if LABELS.get(lab) == kind or (kind == "corner" and lab.startswith("curva_")):
                    near = [
                        p
                        for a0, b0, p in zip(ev.start_s, ev.end_s, ev.peak, strict=True)
                        if a0 <= e + TOL_S and b0 >= s - TOL_S
                    ]
                    free[kind][0] += bool(near)
                    free[kind][1] += any(p >= cut for p in near)
        for kind, sig in (("brake", lon), ("accel", lon), ("corner", lat)):
            ev = harsh_events(t, sig, gate, kind, cfg)
            harsh = (
                ev.peak
                >= {"brake": cfg.harsh_brake_mps2, "accel": cfg.harsh_accel_mps2, "corner": cfg.harsh_corner_mps2}[kind]
            )
            mine = [
                (s, e)
                for lab, s, e in tr.labels
                if LABELS.get(lab) == kind or (kind == "corner" and lab.startswith("curva_"))
            ]
            lanes = [(s, e) for lab, s, e in tr.labels if lab.startswith("troca_faixa")]
            hit = lambda a, b, iv: any(a <= e + TOL_S and b >= s - TOL_S for s, e in iv)  # noqa: E731
            st = stats[kind]
            st["labels"] += len(mine)
            st["found"] += sum(
                any(hit(a, b, [(s, e)]) for a, b in zip(ev.start_s, ev.end_s, strict=True)) for s, e in mine
            )
            st["found_h"] += sum(
                any(hit(a, b, [(s, e)]) for a, b, h in zip(ev.start_s, ev.end_s, harsh, strict=True) if h)
                for s, e in mine
            )
            for a, b, h in zip(ev.start_s, ev.end_s, harsh, strict=True):
                if kind == "corner" and hit(a, b, lanes) and not hit(a, b, mine):
                    continue
                ok = hit(a, b, mine)
                st["det"] += 1
                st["tp"] += ok
                st["det_h"] += bool(h)
                st["tp_h"] += bool(h) and ok
    return {"stats": stats, "frames": frames, "free": free}


CLOUDPOSE = Path("/work/.mirror/cloudpose+smartphone_driving_dataset/repo")
CDT = -5 * 3600  # the recordings' local time (Austin, April): both clocks log local wall time


def _epoch(col: pl.Series) -> np.ndarray:
    return col.str.strptime(pl.Datetime("us"), strict=False).dt.epoch("us").to_numpy() / 1e6 - CDT


def cloudpose(read) -> dict | None:
    """An iPhone X on the dash (raw accelerometer 10 Hz, GPS ~1 Hz) beside the BMW's own bus logger (longitudinal
    and lateral g, speed; 10 Hz). Reference events: ``harsh_events`` on the logger's vehicle-frame g gated by its own
    speed. Phone events: the scorer's path for a phone (scoring/align.py on the raw axes with the phone's GPS, the
    lagged GPS speed gate, ``harsh_events``). Matched one to one by interval overlap (+-1 s) per kind, all bands
    and harsh+ (by the reference's grade)."""
    from scoring.align import align_to_vehicle
    from scoring.features import gps_trust_speed

    car_b, phone_b = read("dataset1_car.csv"), read("dataset1_phone.csv")
    if car_b is None or phone_b is None:
        return None
    cfg = ScoringConfig()
    g0 = 9.80665
    car = pl.read_csv(io.BytesIO(car_b))
    ct = _epoch(car["Time"])
    cv = car["Speed (MPH)"].to_numpy() * 0.44704
    c_lon, c_lat = car["Acceleration Gs"].to_numpy() * g0, car["Lateral Gs"].to_numpy() * g0
    ph = pl.read_csv(io.BytesIO(phone_b), infer_schema_length=10000)
    pt = _epoch(ph["loggingTime(txt)"])
    fx = (
        ph.select(["locationTimestamp_since1970(s)", "locationSpeed(m/s)", "locationHorizontalAccuracy(m)"])
        .unique("locationTimestamp_since1970(s)", keep="first", maintain_order=True)
        .sort("locationTimestamp_since1970(s)")
    )
    gt, gv = fx["locationTimestamp_since1970(s)"].to_numpy(), np.maximum(fx["locationSpeed(m/s)"].to_numpy(), 0.0)
    ax, ay, az = (-ph[f"accelerometerAcceleration{k}(G)"].to_numpy() * g0 for k in "XYZ")  # iOS: -(specific force)/g
    al = align_to_vehicle(pt, ax, ay, az, gt, gv, cfg)
    v_at = gps_trust_speed(pt + (al.lag_s if al.used else 0.0), gt, gv, cfg)
    out = {"imu": f"{al.status} ({al.reason})", "kinds": {}}
    if al.used:
        n = max(1, int(round(1.0 / np.median(np.diff(pt)))))
        from scoring.align import smooth

        ok = np.isfinite(smooth(al.lon, n)) & (pt > ct[0]) & (pt < ct[-1])
        out["r_lon"] = float(np.corrcoef(smooth(al.lon, n)[ok], np.interp(pt[ok], ct, smooth(c_lon, n)))[0, 1])
        out["r_lat"] = float(np.corrcoef(smooth(al.lat, n)[ok], np.interp(pt[ok], ct, smooth(c_lat, n)))[0, 1])
    for kind, ref_sig, ph_sig in (("brake", c_lon, al.lon), ("accel", c_lon, al.lon), ("corner", c_lat, al.lat)):
        ref = harsh_events(ct, ref_sig, cv, kind, cfg)
        got = harsh_events(pt, ph_sig, v_at, kind, cfg) if al.used else None
        cut = {"brake": cfg.harsh_brake_mps2, "accel": cfg.harsh_accel_mps2, "corner": cfg.harsh_corner_mps2}[kind]
        riv = list(zip(ref.start_s, ref.end_s, ref.peak >= cut, strict=True))
        giv = [] if got is None else list(zip(got.start_s, got.end_s, got.peak >= cut, strict=True))
        used, m, m_h = set(), 0, 0
        for a, b, _ in giv:
            for j, (s, e, _h) in enumerate(riv):
                if j not in used and a <= e + TOL_S and b >= s - TOL_S:
                    used.add(j)
                    m += 1
                    break
        m_h = sum(1 for j in used if riv[j][2])
        out["kinds"][kind] = {
            "reference": len(riv),
            "reference_h": sum(h for *_, h in riv),
            "phone": len(giv),
            "phone_h": sum(h for *_, h in giv),
            "matched": m,
            "matched_h": m_h,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("UBI_LABELLED_DATA") or None,
        help="a plain checkout of driverBehaviorDataset (DIR/data/<trip>/...)",
    )
    ap.add_argument("--git-dir", type=Path, default=MIRROR, help="a bare git mirror of it (default: the fetch mirror)")
    a = ap.parse_args()
    if a.data is None and not a.git_dir.exists():
        print(f"driverBehaviorDataset not found at {a.git_dir}; pass --data or --git-dir")
        return 1
    read = reader(Path(a.data) if a.data else None, a.git_dir)
    trips, missing = [], []
    for name in TRIPS:
        tr = load(read, name)
        (trips.append(tr) if tr is not None else missing.append(name))
    if not trips:
        print("no complete trip found")
        return 1
    res = evaluate(trips, ScoringConfig())
    n_lab = sum(len(t.labels) for t in trips)
    print(
        f"driverBehaviorDataset: trips {', '.join(t.name for t in trips)} ({n_lab} labels; incomplete, skipped: "
        f"{', '.join(missing) or 'none'}); frame from the gyroscope, corr(left, yaw rate) = "
        + ", ".join(f"{n} {r:.2f}" for n, r in res["frames"])
    )
    print(
        "| kind | labelled | recall (all bands) | recall (harsh+) | detections | precision (all) | "
        "harsh+ detections | precision (harsh+) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, s in res["stats"].items():
        div = lambda a, b: f"{a / b:.2f}" if b else "-"  # noqa: E731
        print(
            f"| {k} | {s['labels']} | {div(s['found'], s['labels'])} | {div(s['found_h'], s['labels'])} | "
            f"{s['det']} | {div(s['tp'], s['det'])} | {s['det_h']} | {div(s['tp_h'], s['det_h'])} |"
        )
    print(
        "frame-free check (events on the horizontal magnitude with each kind's bands, so the kind is not told): "
        + ", ".join(f"{k} {v[0]}/{res['stats'][k]['labels']} (harsh+ {v[1]})" for k, v in res["free"].items())
        + " labels found"
    )
    cp = cloudpose(reader(None, CLOUDPOSE)) if CLOUDPOSE.exists() else None
    if cp is None:
        print("\ncloudpose smartphone_driving_dataset: not found at", CLOUDPOSE)
        return 0
    print(
        f"\ncloudpose (iPhone X beside the car's bus logger, 342 s): phone IMU {cp['imu']}; aligned phone vs logger "
        f"(1 s means) r = {cp.get('r_lon', float('nan')):.2f} forward, {cp.get('r_lat', float('nan')):.2f} lateral "
        "(the logger counts lateral g positive to the right, ours is + left)"
    )
    print("| kind | logger events (harsh+) | phone events (harsh+) | matched | recall vs logger | precision |")
    print("|---|---|---|---|---|---|")
    for k, s in cp["kinds"].items():
        div = lambda a, b: f"{a / b:.2f}" if b else "-"  # noqa: E731
        print(
            f"| {k} | {s['reference']} ({s['reference_h']}) | {s['phone']} ({s['phone_h']}) | {s['matched']} | "
            f"{div(s['matched'], s['reference'])} | {div(s['matched'], s['phone'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
