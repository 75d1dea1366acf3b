"""``ubi score-file`` throughput against a peer, in the same run on the same data (not a test).

    .venv/bin/python bench/score_file.py [--vehicles 5] [--days 7] [--scale 10] [--real-copies 20] [--repeats 3]
        [--compression zstd|lz4|snappy|uncompressed]

Ours: ``score_paths`` from Parquet files to scored rows, end to end (read, sort, cut into trips, every feature, the
score), GPS-only and with the 10 Hz IMU. The peer: PyPI ``insurance-telematics`` (the ``bench`` extra), its polars
pipeline ``load_trips`` -> ``clean_trips`` -> ``extract_trip_features`` from a Parquet file of the same fixes,
labelled with trip ids (it does not cut trips, and reads no IMU), so its figure is GPS fixes/s.

Data: a simulated fleet (``--vehicles`` x ``--days``, ignition events, 1 Hz GPS, 10 Hz IMU), and ``--scale`` times
as many vehicles to show linearity; the real recordings of ../shared/realdata (tests/realdata.py; motion-cut,
1-100 Hz IMU), each copied ``--real-copies`` times as separate vehicles so the run is long enough to time (the peer
gets our trips as its labels). The per-message, per-trip path it replaces is timed once (``score_frames_per_trip``,
from frames already read: GPS-only at both sizes, with IMU at 1x). Everything runs on one core: numba, polars, BLAS
pinned to one thread; times are this process's CPU time (the machine is shared), best of ``--repeats``; wall time is
printed beside it. The last column times only reading the two files as score-file reads them (``read_table``):
no processing can beat it, and with zstd (polars' default codec) the decoding of full-precision float columns is
most of it, so ``--compression`` shows the codec's share. Like ``ubi score-file``, the run first has glibc keep
freed arrays for reuse (``keep_freed_memory``; ``--system-malloc`` leaves it as it is): polars' own allocator keeps
its memory anyway.
"""

from __future__ import annotations

import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from simulator.fleet import FleetSpec, make_trips, vehicle_ids  # noqa: E402
from simulator.offline import trip_frames  # noqa: E402
from ubi.common.config import ScoringConfig  # noqa: E402
from ubi.stages.score_file import (  # noqa: E402
    GPS_COLUMNS,
    IMU_COLUMNS,
    REQUIRED_GPS,
    REQUIRED_IMU,
    keep_freed_memory,
    read_table,
    score_frames_per_trip,
    score_paths,
)

CFG = ScoringConfig()


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(best CPU seconds, wall seconds of that run, the result)."""
    best = (float("inf"), 0.0, None)
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        c, w = time.process_time() - c0, time.perf_counter() - w0
        if c < best[0]:
            best = (c, w, out)
    return best


def peer_frame(gps: pl.DataFrame, trips: pl.DataFrame) -> pl.DataFrame:
    """The fixes in the peer's schema, labelled with the trip (of ``trips``: vehicle_id, start_ms, end_ms) that
    holds them; fixes in no trip are left out (the peer scores labelled trips only)."""
    fx = gps.filter(pl.col("event").is_null() if "event" in gps.columns else pl.lit(True)).sort("vehicle_id", "t_ms")
    tr = trips.select("vehicle_id", "start_ms", "end_ms").sort("vehicle_id", "start_ms")
    j = fx.join_asof(
        tr, left_on="t_ms", right_on="start_ms", by="vehicle_id", strategy="backward", check_sortedness=False
    )
    j = j.filter(pl.col("t_ms") <= pl.col("end_ms"))
    return j.select(
        (pl.col("vehicle_id") + "_" + pl.col("start_ms").cast(pl.String)).alias("trip_id"),
        pl.from_epoch("t_ms", time_unit="ms").alias("timestamp"),
        pl.col("lat").alias("latitude"),
        pl.col("lon").alias("longitude"),
        (pl.col("speed_mps") * 3.6).alias("speed_kmh"),
        pl.col("heading_deg"),
        pl.col("vehicle_id").alias("driver_id"),
    )


def run_peer(path: Path) -> pl.DataFrame:
    from insurance_telematics import clean_trips, extract_trip_features, load_trips

    return extract_trip_features(clean_trips(load_trips(path)))


def per_trip(gp: Path, ip: Path | None) -> list[dict]:
    """The path before the batch (kept as the reference): messages through TripCutter, score_trip per trip."""
    gps = read_table(gp, GPS_COLUMNS, REQUIRED_GPS)
    imu = read_table(ip, IMU_COLUMNS, REQUIRED_IMU) if ip is not None else None
    return score_frames_per_trip(gps, imu, CFG)


def read_both(gp: Path, ip: Path) -> None:
    """Only reading the two files as score-file reads them (``read_table``): the ceiling for everything else."""
    read_table(gp, GPS_COLUMNS, REQUIRED_GPS)
    read_table(ip, IMU_COLUMNS, REQUIRED_IMU)


def measure(
    name: str,
    gps: pl.DataFrame,
    imu: pl.DataFrame | None,
    tmp: Path,
    repeats: int,
    peer: bool,
    before: str = "",
    compression: str = "zstd",
) -> dict:
    gp, ip, pp = tmp / f"{name}.gps.parquet", tmp / f"{name}.imu.parquet", tmp / f"{name}.peer.parquet"
    gps.write_parquet(gp, compression=compression)
    n_fix = int(gps.filter(pl.col("event").is_null()).height) if "event" in gps.columns else gps.height
    out: dict = {"name": name, "vehicles": gps["vehicle_id"].n_unique(), "fixes": n_fix}
    score_paths([gp], [], CFG)  # compile and warm caches outside the timing
    c, w, rows = timed(lambda: score_paths([gp], [], CFG), repeats)
    out |= {"trips": len(rows), "gps_cpu": c, "gps_wall": w}
    if imu is not None:
        imu.write_parquet(ip, compression=compression)
        out["imu"] = imu.height
        score_paths([gp], [ip], CFG)
        c, w, rows_imu = timed(lambda: score_paths([gp], [ip], CFG), repeats)
        out |= {
            "imu_cpu": c,
            "imu_wall": w,
            "imu_used": sum(r["imu_status"] in ("vehicle_frame", "rotated") for r in rows_imu),
            "read_cpu": timed(lambda: read_both(gp, ip), repeats)[0],
        }
    if "gps" in before:
        out["before_gps_cpu"] = timed(lambda: per_trip(gp, None), 1)[0]
    if "imu" in before and imu is not None:
        out["before_imu_cpu"] = timed(lambda: per_trip(gp, ip), 1)[0]
    if peer:
        trips = pl.DataFrame({k: [r[k] for r in rows] for k in ("vehicle_id", "start_ms", "end_ms")})
        pf = peer_frame(gps, trips)
        pf.write_parquet(pp)
        out["peer_fixes"] = pf.height
        run_peer(pp)
        c, w, res = timed(lambda: run_peer(pp), repeats)
        out |= {"peer_cpu": c, "peer_wall": w, "peer_trips": res.height}
    return out


def fleet(vehicles: int, days: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    spec = FleetSpec(vehicles=vehicles, days=days, seed=seed)
    return trip_frames(spec, [t for v in vehicle_ids(vehicles) for t in make_trips(spec, v)])


def real(copies: int) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    from tests import realdata

    if not realdata.available():
        return None
    gs, ims = [], []
    for name in realdata.RECORDINGS:
        g, i = realdata.frames(name)
        for k in range(copies):
            vid = pl.col("vehicle_id") + f"@{name}#{k}"
            gs.append(g.with_columns(vid))
            if i is not None:
                ims.append(i.with_columns(vid).select("vehicle_id", "t_ms", "acc_lon", "acc_lat", "acc_vert"))
    gps = pl.concat(gs, how="diagonal_relaxed").with_columns(pl.lit(None, pl.String).alias("event"))
    return gps, pl.concat(ims)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=5)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--real-copies", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument(
        "--compression",
        default="zstd",
        choices=["zstd", "lz4", "snappy", "uncompressed"],
        help="the Parquet codec of the files scored (polars' default: zstd); the peer's file keeps zstd",
    )
    ap.add_argument("--no-before", action="store_true", help="skip timing the per-trip path (score_frames_per_trip)")
    ap.add_argument(
        "--system-malloc", action="store_true", help="leave glibc's malloc as it is (score-file's CLI tunes it)"
    )
    a = ap.parse_args()
    if not a.no_peer:
        try:
            import insurance_telematics  # noqa: F401
        except ImportError:
            print("the peer is not installed: .venv/bin/pip install -e '.[bench]' (or run with --no-peer)")
            return 2
    kept = False if a.system_malloc else keep_freed_memory()  # as `ubi score-file` does
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; one thread per library; "
        f"freed arrays {'kept for reuse (mallopt)' if kept else 'returned to the system'}"
    )
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for k in (1, a.scale):
            g, i = fleet(a.vehicles * k, a.days, a.seed)
            before = "" if a.no_before else ("gps imu" if k == 1 else "gps")
            name = f"sim {a.vehicles * k} vehicles x {a.days} d"
            results.append(measure(name, g, i, tmp, a.repeats, not a.no_peer, before, a.compression))
            print(results[-1], file=sys.stderr)
        r = real(a.real_copies)
        if r is not None:
            results.append(
                measure(f"real recordings x{a.real_copies}", *r, tmp, a.repeats, not a.no_peer, "", a.compression)
            )
            print(results[-1], file=sys.stderr)
    print(
        "| data | trips | GPS fixes | IMU samples | ours GPS-only, M fixes/s | peer, M fixes/s | ours / peer "
        "| ours with IMU, M samples/s | / peer | reading the files alone, M samples/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        gps = r["fixes"] / r["gps_cpu"] / 1e6
        peer = r["peer_fixes"] / r["peer_cpu"] / 1e6 if "peer_cpu" in r else float("nan")
        imu = (r["fixes"] + r["imu"]) / r["imu_cpu"] / 1e6 if "imu_cpu" in r else float("nan")
        read = (r["fixes"] + r["imu"]) / r["read_cpu"] / 1e6 if "read_cpu" in r else float("nan")
        print(
            f"| {r['name']} | {r['trips']} | {r['fixes']:,} | {r.get('imu', 0):,} | {gps:.2f} | {peer:.2f} | "
            f"{gps / peer:.2f} | {imu:.2f} | {imu / peer:.2f} | {read:.1f} |"
        )
    for r in results:
        if "before_gps_cpu" in r:
            gps = r["fixes"] / r["before_gps_cpu"] / 1e6
            line = f"\n{r['name']}, the per-message, per-trip path: GPS-only {gps:.2f} M fixes/s"
            if "before_imu_cpu" in r:
                line += f", with IMU {(r['fixes'] + r['imu']) / r['before_imu_cpu'] / 1e6:.2f} M samples/s"
            print(line)
    if len(results) >= 2:
        a1, a2 = results[0], results[1]
        print(
            f"\nlinearity ({a.scale}x vehicles): GPS-only time x{a2['gps_cpu'] / a1['gps_cpu']:.1f} for "
            f"x{a2['fixes'] / a1['fixes']:.1f} fixes; with IMU time x{a2['imu_cpu'] / a1['imu_cpu']:.1f} for "
            f"x{(a2['fixes'] + a2['imu']) / (a1['fixes'] + a1['imu']):.1f} samples"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
