"""Read the real recordings in ../shared/realdata (MIT licences; see its README) into the `ubi score-file` input
format (docs/score-file.md). Used by tests/test_realdata.py and bench/realdata.py; the data is never copied here.

    .venv/bin/python -m tests.realdata OUTDIR      # writes <name>.gps.parquet / <name>.imu.parquet, then
    ubi score-file OUTDIR/quat-orient.gps.parquet --imu OUTDIR/quat-orient.imu.parquet --out trips.csv

Writes per recording <name>.gps.parquet and (where there is an accelerometer) <name>.imu.parquet. Variants:
  ikhyd        : iPhone raw accelerometer (gravity included, device frame)
  ikhyd-user   : same trips, the iPhone's gravity-removed `accelUser*` channels (acc_vert ~ 0)
  ikhyd-obd    : trip 2's OBD-II speed (PID 010D, ~4 Hz) as the speed channel (GPS-only)
  comma2k19    : u-blox GNSS 10 Hz + IMU 100 Hz; comma2k19-can: CAN speed (resampled 10 Hz) as the speed channel
Conventions: acc_* in m/s^2, specific force (a phone lying flat reads +9.81 on acc_vert). iOS reports
-(specific force)/g, so its axes are negated. Axes that are not in the vehicle frame are passed as (x, y, z) ->
(acc_lon, acc_lat, acc_vert) unchanged: the scorer's rotation (scoring/align.py) has to cope.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from ubi.stages.score_file import GPS_COLUMNS

RD = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
G = 9.80665
GPS_COLS = ["vehicle_id", "t_ms", "lat", "lon", "speed_mps", "heading_deg", "accuracy_m", "phone", "limit_kmh"]
IMU_COLS = ["vehicle_id", "t_ms", "acc_lon", "acc_lat", "acc_vert"]


def _gps(**c) -> pl.DataFrame:
    """Fix rows in the score-file format (its own column schema, less the event column)."""
    n = len(c["t_ms"])
    schema = {k: t for k, t in GPS_COLUMNS.items() if k in GPS_COLS}
    return pl.DataFrame({k: (c[k] if k in c else [None] * n) for k in GPS_COLS}, schema=schema, strict=False)


def _imu(vid, t_ms, lon, lat, vert) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "vehicle_id": [vid] * len(t_ms),
            "t_ms": np.asarray(t_ms, np.int64),
            "acc_lon": np.asarray(lon, float),
            "acc_lat": np.asarray(lat, float),
            "acc_vert": np.asarray(vert, float),
        }
    )


def driveplotr():
    """28 drives, 1 Hz GPS + 1 Hz IMU (x fwd, y right, z up, g, gravity in z). One vehicle, cut by motion."""
    d = pl.read_csv(RD / "driveplotr-nds/nds_data.csv.gz", infer_schema_length=10000)
    d = d.sort("time_utc").unique("time_utc", keep="first", maintain_order=True)
    t = (d["time_utc"].to_numpy() * 1000).astype(np.int64)
    vid = "nds"
    gps = _gps(
        vehicle_id=[vid] * len(t),
        t_ms=t,
        lat=d["gps_lat"],
        lon=d["gps_long"],
        speed_mps=d["speed_mph"].fill_null(0.0).to_numpy() * 0.44704,
        heading_deg=d["gps_heading"],
    )
    ok = d["accel_x"].is_not_null().to_numpy()
    imu = _imu(
        vid, t[ok], d["accel_x"].to_numpy()[ok] * G, -d["accel_y"].to_numpy()[ok] * G, d["accel_z"].to_numpy()[ok] * G
    )
    return gps, imu


QUAT_EPOCH = {
    "21": datetime(2020, 10, 15, 8, 0, tzinfo=timezone.utc),  # no epoch in the files: 21:00 NZDT
    "22": datetime(2020, 10, 15, 10, 0, tzinfo=timezone.utc),
}


def quat():
    """2 drives, AndroSensor: GPS ~1 Hz (km/h), raw accelerometer ~16.7 Hz with gravity; trip 22 phone turned
    180 deg."""
    gl, il = [], []
    for k, e in QUAT_EPOCH.items():
        e_ms = int(e.timestamp() * 1000)
        g = pl.read_csv(RD / f"quat-orient/gps.2020-10-15-{k}.csv")
        a = pl.read_csv(RD / f"quat-orient/accel.2020-10-15-{k}.csv")
        g.columns = ["ms", "lat", "lon", "kmh", "hdg", "sats", "alt"]
        a.columns = ["ms", "x", "y", "z"]
        gl.append(
            _gps(
                vehicle_id=["quat"] * g.height,
                t_ms=g["ms"].to_numpy() + e_ms,
                lat=g["lat"],
                lon=g["lon"],
                speed_mps=g["kmh"].to_numpy() / 3.6,
                heading_deg=g["hdg"],
            )
        )
        il.append(_imu("quat", a["ms"].to_numpy() + e_ms, a["x"], a["y"], a["z"]))
    return pl.concat(gl), pl.concat(il)


def ndsbr():
    """3 drivers x 3 trips, 1 Hz, decimal commas; posted limit LIMITE_VEL (NPI = unknown), phone use UMP_YN."""
    out = []
    for drv in "ABC":
        d = pl.read_csv(RD / f"ndsbr/driver_{drv}.csv", separator=";", infer_schema_length=0)

        def num(c, d=d):
            return d[c].str.replace(",", ".").cast(pl.Float64, strict=False)

        # DAY + the "03:00:00" column = UTC (local BRT = UTC-3 is column PR)
        ts = [
            datetime.strptime(f"{a} {b}", "%d/%m/%Y %H:%M:%S").replace(tzinfo=timezone.utc)
            for a, b in zip(d["DAY"], d["03:00:00"], strict=False)
        ]
        t = np.array([int(x.timestamp() * 1000) for x in ts], np.int64)
        lim = d["LIMITE_VEL"].cast(pl.Float64, strict=False)
        phone = (d["UMP_YN"] == "Yes").cast(pl.Int8)
        g = _gps(
            vehicle_id=[f"ndsbr-{drv}"] * d.height,
            t_ms=t,
            lat=num("LAT"),
            lon=num("LONG"),
            speed_mps=num("SPD_KMH").fill_null(0.0).to_numpy() / 3.6,
            heading_deg=num("HEADING"),
            phone=phone,
            limit_kmh=lim,
        )
        out.append(g.sort("t_ms").unique("t_ms", keep="first", maintain_order=True))
    return pl.concat(out), None


def comma(can: bool = False):
    """60 s highway segment: u-blox 10 Hz (lat, lon, speed, utc_ms, alt, bearing), IMU 100 Hz (fwd, right, down)."""
    s = RD / "comma2k19-example/segment/processed_log"

    def ld(p):
        return np.load(s / p, allow_pickle=False)

    gt, gv = ld("GNSS/live_gnss_ublox/t"), ld("GNSS/live_gnss_ublox/value")
    off_ms = float(np.median(gv[:, 3] - gt * 1000.0))  # boot seconds -> UTC ms
    vid = "comma-can" if can else "comma"
    if can:
        ct, cv = ld("CAN/speed/t"), ld("CAN/speed/value")[:, 0]
        tt = np.arange(gt[0], gt[-1], 0.1)
        g = _gps(
            vehicle_id=[vid] * len(tt),
            t_ms=np.round(tt * 1000 + off_ms).astype(np.int64),
            lat=np.interp(tt, gt, gv[:, 0]),
            lon=np.interp(tt, gt, gv[:, 1]),
            speed_mps=np.interp(tt, ct, cv),
        )
    else:
        g = _gps(
            vehicle_id=[vid] * len(gt),
            t_ms=np.round(gt * 1000 + off_ms).astype(np.int64),
            lat=gv[:, 0],
            lon=gv[:, 1],
            speed_mps=gv[:, 2],
            heading_deg=gv[:, 5],
        )
    it, iv = ld("IMU/accelerometer/t"), ld("IMU/accelerometer/value")
    imu = _imu(vid, np.round(it * 1000 + off_ms), iv[:, 0], -iv[:, 1], -iv[:, 2])
    return g, imu.unique("t_ms", keep="first", maintain_order=True).sort("t_ms")


IOWA = timezone(timedelta(hours=-5))  # CDT, May 2019


def _ikhyd_csv(path: Path, vid: str, user: bool):
    d = pl.read_csv(path, infer_schema_length=10000)
    d.columns = [c.strip() for c in d.columns]
    d = d.with_columns(
        [
            pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
            for c in d.columns
            if d.schema[c] == pl.String and c not in ("Timestamp", "ActivityType", "ActivityConfidence")
        ]
    )
    t = np.array(
        [
            int(datetime.strptime(x, "%d-%b-%Y %H:%M:%S.%f").replace(tzinfo=IOWA).timestamp() * 1000)
            for x in d["Timestamp"]
        ],
        np.int64,
    )
    # GPS is repeated on every 25 Hz row: a fix is a row where (lat, lon, speed) changes
    key = d.select(["Lat", "Long", "Speed(m/s)"]).to_numpy()
    new = np.r_[True, (np.diff(key, axis=0) != 0).any(axis=1)]
    sp = np.maximum(d["Speed(m/s)"].to_numpy()[new], 0.0)  # iOS reports -1 for invalid
    g = _gps(
        vehicle_id=[vid] * int(new.sum()),
        t_ms=t[new],
        lat=d["Lat"].to_numpy()[new],
        lon=d["Long"].to_numpy()[new],
        speed_mps=sp,
        heading_deg=d["TrueHeading"].to_numpy()[new],
        accuracy_m=d["HorizontalAccuracy(m)"].to_numpy()[new],
    )
    p = "accelUser" if user else "accel"
    ax, ay, az = (-d[f"{p}{k}(g)"].to_numpy() * G for k in "XYZ")  # iOS sign: -(specific force)/g
    imu = _imu(vid, t, ax, ay, az)
    return g.unique("t_ms", keep="first", maintain_order=True), imu.unique("t_ms", keep="first", maintain_order=True)


def ikhyd(user: bool = False):
    vid = "ikhyd-user" if user else "ikhyd"
    a = _ikhyd_csv(RD / "ikhyd/sample_trip.csv", vid, user)
    b = _ikhyd_csv(RD / "ikhyd/trip2_with_obd.csv", vid, user)
    return pl.concat([a[0], b[0]]).sort("t_ms"), pl.concat([a[1], b[1]]).sort("t_ms")


def ikhyd_obd():
    """Trip 2's OBD speed (km/h, ~4 Hz) with positions from the logger's own gps rows (interpolated)."""
    obd, gps = [], []
    for line in (RD / "ikhyd/trip2_with_obd.txt").read_text().splitlines():
        p = line.split(";")
        if len(p) == 3 and p[1] == "010D":
            obd.append((int(p[0]), float(p[2])))
        elif len(p) == 3 and p[1] == "gps":
            f = p[2].split(":")
            gps.append((int(p[0]), float(f[0]), float(f[1])))
    o, g = np.array(obd), np.array(gps)
    o = o[np.r_[True, np.diff(o[:, 0]) > 0]]
    return _gps(
        vehicle_id=["ikhyd-obd"] * len(o),
        t_ms=o[:, 0].astype(np.int64),
        lat=np.interp(o[:, 0], g[:, 0], g[:, 1]),
        lon=np.interp(o[:, 0], g[:, 0], g[:, 2]),
        speed_mps=o[:, 1] / 3.6,
    ), None


RECORDINGS = {
    "driveplotr-nds": driveplotr,
    "quat-orient": quat,
    "ndsbr": ndsbr,
    "comma2k19": comma,
    "comma2k19-can": lambda: comma(can=True),
    "ikhyd": ikhyd,
    "ikhyd-user": lambda: ikhyd(user=True),
    "ikhyd-obd": ikhyd_obd,
}


def convert_all(out: Path) -> dict[str, tuple[Path, Path | None]]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fn in RECORDINGS.items():
        gps, imu = fn()
        gps = gps.filter(
            pl.col("lat").is_not_null()
            & pl.col("lon").is_not_null()
            & pl.col("speed_mps").is_not_null()
            & pl.col("lat").is_not_nan()
            & pl.col("speed_mps").is_not_nan()
        )
        gp = out / f"{name}.gps.parquet"
        gps.write_parquet(gp)
        ip = None
        if imu is not None:
            ip = out / f"{name}.imu.parquet"
            imu.write_parquet(ip)
        paths[name] = (gp, ip)
    return paths


def available() -> bool:
    return RD.is_dir()


def frames(name: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """One recording as (gps, imu) frames, rows without a position or speed dropped."""
    gps, imu = RECORDINGS[name]()
    gps = gps.filter(
        pl.col("lat").is_not_null()
        & pl.col("lon").is_not_null()
        & pl.col("speed_mps").is_not_null()
        & pl.col("lat").is_not_nan()
        & pl.col("speed_mps").is_not_nan()
    )
    from ubi.stages.score_file import GPS_COLUMNS, IMU_COLUMNS

    gps = gps.select(
        [pl.col(c).cast(t) if c in gps.columns else pl.lit(None, dtype=t).alias(c) for c, t in GPS_COLUMNS.items()]
    )
    imu = None if imu is None else imu.select([pl.col(c).cast(t) for c, t in IMU_COLUMNS.items()])
    return gps, imu


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tests.realdata OUTDIR")
    out = Path(sys.argv[1])
    for k, (g, i) in convert_all(out).items():
        print(f"{k:16s} {pl.read_parquet(g).height:7d} fixes  {pl.read_parquet(i).height if i else 0:7d} imu  -> {g}")
