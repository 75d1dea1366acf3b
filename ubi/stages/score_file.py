"""``ubi score-file``: score historical telemetry from CSV or Parquet with the live stage's cutter and scorer.

Files become the same ``TelemetryBatch``/``DeviceEvent`` objects a device sends (docs/score-file.md has the columns),
go through the same ``TripCutter`` and ``score_trip``, so a back-test of bought data and the live stream give
identical trips and features for identical data.
"""

from __future__ import annotations

import ctypes
import json
import logging
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import polars as pl

from scoring.batch import FixSource
from scoring.batchrows import score_rows
from scoring.features import score_trip, trip_limits
from scoring.filecut import plan_ignition, plan_motion, vehicle_imu_hz, vehicle_trips_imu
from scoring.maplayer import MapLayer
from scoring.motion import MotionRules
from scoring.trips import ClosedTrip, Quarantined, TripCutter
from ubi.common.config import Config, IngestConfig, ScoringConfig
from ubi.common.errors import ConfigError, ScoreFileError
from ubi.common.messages import DeviceEvent, TelemetryBatch, imu_times_ms

log = logging.getLogger("ubi.stages.score_file")

BATCH_FIXES = 10  # GPS fixes per synthesised message: the devices' typical 10 s at 1 Hz
GPS_COLUMNS = {
    "vehicle_id": pl.String,
    "t_ms": pl.Int64,
    "lat": pl.Float64,
    "lon": pl.Float64,
    "speed_mps": pl.Float64,
    "heading_deg": pl.Float64,
    "accuracy_m": pl.Float64,
    "phone": pl.Int8,
    "limit_kmh": pl.Float64,
    "event": pl.String,
}
IMU_COLUMNS = {
    "vehicle_id": pl.String,
    "t_ms": pl.Int64,
    "acc_lon": pl.Float64,
    "acc_lat": pl.Float64,
    "acc_vert": pl.Float64,
}
REQUIRED_GPS = ("vehicle_id", "t_ms")
REQUIRED_FIX = ("lat", "lon", "speed_mps")
REQUIRED_IMU = ("vehicle_id", "t_ms", "acc_lon", "acc_lat")


_KEYS = ("vehicle_id", "t_ms")


def read_table(path: Path, columns: dict[str, pl.DataType], required: Iterable[str]) -> pl.DataFrame:
    """One CSV or Parquet file with the documented columns (others ignored), cast to their types."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(path)
        elif suffix in (".csv", ".txt"):
            df = pl.read_csv(path, infer_schema_length=10_000)
        else:
            raise ScoreFileError(f"{path}: unknown file type {suffix!r} (use .csv or .parquet)")
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ScoreFileError(f"{path}: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ScoreFileError(f"{path}: missing column(s) {', '.join(missing)}")
    for c in _KEYS:  # a row without its vehicle or its time cannot be placed anywhere
        if c in df.columns and df[c].null_count():
            first = int(df[c].is_null().arg_true()[0])
            raise ScoreFileError(f"{path}: {df[c].null_count()} row(s) without {c} (the first: data row {first + 1})")

    def col(c: str, t: pl.DataType) -> pl.Expr:
        if c not in df.columns:
            return pl.lit(None, dtype=t).alias(c)
        e = pl.col(c)
        if c in with_nan:
            e = e.fill_nan(None)  # NaN as "no value" (e.g. phone on an event row), like an empty CSV cell
        return e.cast(t)  # nothing to do (no copy) for a column of its type already

    try:
        # the float columns that hold a NaN, in one read: only those are rewritten (a copy of the column each)
        floats = [c for c in columns if c in df.columns and df.schema[c].is_float()]
        has = df.select([pl.col(c).is_nan().any() for c in floats]).row(0) if floats else ()
        with_nan = {c for c, h in zip(floats, has, strict=True) if h}
        return df.select([col(c, t) for c, t in columns.items()])
    except pl.exceptions.PolarsError as exc:
        raise ScoreFileError(f"{path}: {exc}") from exc


def column_array(s: pl.Series) -> np.ndarray:
    """A numeric column as one NumPy array (nulls of a float column as NaN), copied chunk by chunk into an array
    NumPy allocates: a file read in many row groups is many chunks, and polars' own ``to_numpy`` of those (or a
    ``fill_null`` first) gets fresh memory from polars' allocator, which a long run pays for again in page faults on
    every file (~100 ms for 8.5 M IMU samples); NumPy's allocation is reused (``keep_freed_memory``)."""
    dtype = np.float64 if s.dtype.is_float() else np.int64
    out = np.empty(s.len(), dtype)
    a = 0
    for c in s.get_chunks():
        b = a + c.len()
        if c.dtype.is_float():
            out[a:b] = c.to_numpy() if not c.null_count() else c.fill_null(np.nan).to_numpy()
        else:
            out[a:b] = c.to_numpy()  # an integer column here has no nulls (read_table's callers check)
        a = b
    return out


def _regular_imu(t: np.ndarray, cols: list[np.ndarray], hz: int, t_end: int) -> tuple[int, list[np.ndarray]]:
    """Put IMU samples on the regular grid a TelemetryBatch implies (t0 + round(k*1000/hz)); grid points with no
    sample within half a period become NaN, which the event kernels read as quiet (like a gap)."""
    t0 = int(t[0])
    k = int(np.floor((t_end - t0) * hz / 1000.0)) + 1
    grid = imu_times_ms(t0, hz, k)
    j = np.clip(np.searchsorted(t, grid), 1, t.shape[0] - 1) if t.shape[0] > 1 else np.zeros(k, np.int64)
    if t.shape[0] > 1:
        j = np.where(np.abs(t[j - 1] - grid) <= np.abs(t[j] - grid), j - 1, j)
    hit = np.abs(t[j] - grid) <= 500.0 / hz
    return t0, [np.where(hit, c[j], np.nan) for c in cols]


def vehicle_messages(
    vehicle: str, gps: pl.DataFrame, imu: pl.DataFrame | None, cfg: ScoringConfig
) -> Iterator[DeviceEvent | TelemetryBatch]:
    """One vehicle's rows as the messages its device would have sent, seq from 0.

    Ignition events come from ``event`` rows; a vehicle with none sends telemetry only, and the trip cutter cuts it
    by motion (scoring/motion.py) exactly as the live stage does. A message never straddles an event.
    """
    ev = gps.filter(pl.col("event").is_not_null()).sort("t_ms")
    fx = gps.filter(pl.col("event").is_null()).sort("t_ms", maintain_order=True)
    bad = fx.filter(pl.any_horizontal([pl.col(c).is_null() for c in REQUIRED_FIX]))
    if bad.height:
        raise ScoreFileError(f"{vehicle}: {bad.height} fix rows lack one of {', '.join(REQUIRED_FIX)}")
    unknown = set(ev["event"].unique().to_list()) - {"ignition_on", "ignition_off"}
    if unknown:
        raise ScoreFileError(f"{vehicle}: unknown event(s) {sorted(unknown)}")
    t = fx["t_ms"].to_numpy()
    events = list(zip(ev["t_ms"].to_list(), ev["event"].to_list(), strict=False))
    lat, lon, speed = (fx[c].to_numpy() for c in ("lat", "lon", "speed_mps"))
    heading = fx["heading_deg"].fill_null(0.0).to_numpy()
    acc = fx["accuracy_m"].fill_null(0.0).to_numpy()
    phone = fx["phone"].fill_null(-1).to_numpy().astype(np.int8)
    has_phone = fx["phone"].is_not_null().to_numpy()
    if imu is not None and imu.height:
        imu = imu.sort("t_ms")
        it = imu["t_ms"].to_numpy()
        ia = [imu[c].fill_null(np.nan).to_numpy() for c in ("acc_lon", "acc_lat", "acc_vert")]
        hz = int(round(1000.0 / np.median(np.diff(it)))) if it.shape[0] > 1 else 10
    else:
        it, ia, hz = np.zeros(0, np.int64), [np.zeros(0)] * 3, 10

    # timeline: an ignition_on precedes fixes at its time, an ignition_off follows them
    items = sorted([(te, 0 if e == "ignition_on" else 2, e) for te, e in events])
    seq = 0
    i = 0
    n = t.shape[0]
    bounds = [(te, order) for te, order, _ in items] + [(np.iinfo(np.int64).max, 0)]
    for k in range(len(bounds)):
        te, order = bounds[k]
        # fixes before this event: t < te, or t <= te for an ignition_off
        stop = int(np.searchsorted(t, te, side="right" if order == 2 else "left"))
        while i < stop:
            j = min(i + BATCH_FIXES, stop)
            nxt = int(t[j]) if j < stop else (te + 1 if order == 2 else te)  # IMU window end, exclusive
            g = slice(i, j)
            lo, hi = np.searchsorted(it, t[i]), np.searchsorted(it, nxt)
            if hi > lo:
                t0, (al, at, av) = _regular_imu(it[lo:hi], [c[lo:hi] for c in ia], hz, int(it[hi - 1]))
            else:
                t0, al, at, av = int(t[i]), np.zeros(0), np.zeros(0), np.zeros(0)
            ph = phone[g] if has_phone[g].any() else None
            yield TelemetryBatch(
                vehicle, seq, int(t[j - 1]), t[g], lat[g], lon[g], speed[g], heading[g], acc[g], t0, hz, al, at, av, ph
            )
            seq += 1
            i = j
        if k < len(items):
            yield DeviceEvent(vehicle, seq, int(te), items[k][2])
            seq += 1
    if i < n:
        log.warning("%s: %d fixes after the last event were not scored", vehicle, n - i)


def message_trips(
    vehicle: str,
    gps: pl.DataFrame,
    imu: pl.DataFrame | None,
    cfg: ScoringConfig,
    quarantined: list[Quarantined] | None = None,
) -> list[ClosedTrip]:
    """One vehicle's rows as its device's messages through the live ``TripCutter``: the trips it closes, in order.
    What the cutter refuses as implausible (the live stage would dead-letter it) is logged and added to
    ``quarantined``. Both paths cut a vehicle they cannot plan from arrays this way, so they refuse alike."""
    cutter = TripCutter.for_config(cfg)
    trips: list[ClosedTrip] = []
    for off, m in enumerate(vehicle_messages(vehicle, gps, imu, cfg)):
        trips += cutter.feed(m, 0, off)
    trips += cutter.finish()
    for q in cutter.take_quarantined():
        log.warning("%s: %s refused as %s: %s", q.vehicle, q.what, q.reason, q.detail)
        if quarantined is not None:
            quarantined.append(q)
    return trips


def score_frames(
    gps: pl.DataFrame,
    imu: pl.DataFrame | None,
    cfg: ScoringConfig,
    layer: MapLayer | None = None,
    quarantined: list[Quarantined] | None = None,
) -> list[dict]:
    """Cut and score every vehicle in the frames; rows in (vehicle, start) order. Posted limits come from the
    file's ``limit_kmh`` column where a vehicle has one, else from the map layer (as in the live stage). What the
    cutter refuses as implausible (as the live stage would dead-letter it) is logged and added to ``quarantined``.

    The frames are sorted once and split by vehicle with offsets; ignition vehicles are cut from arrays
    (scoring/filecut.py), the others through the messages and ``TripCutter`` as before, and all trips are scored in
    batches (scoring/batch.py): the same rows as ``score_frames_per_trip``."""
    trips, limits, src = _cut(gps, imu, cfg, quarantined)
    rows = score_trips(trips, limits, cfg, layer, src)
    order = sorted(range(len(rows)), key=lambda k: (rows[k]["vehicle_id"], rows[k]["start_ms"]))
    return [rows[k] for k in order]


def _check_rows(gps: pl.DataFrame, vehicles: list, ev: pl.DataFrame) -> None:
    """The errors the per-vehicle reading raises, for the first vehicle (in file order) that has one (``ev``: the
    event rows, few: their names are checked there rather than on every row)."""
    missing = pl.col("event").is_null() & pl.any_horizontal([pl.col(c).is_null() for c in REQUIRED_FIX])
    n_missing = gps.select(missing.sum()).item()
    n_odd = ev.select((~pl.col("event").is_in(["ignition_on", "ignition_off"])).sum()).item()
    if None not in vehicles and not n_missing and not n_odd:
        return  # one pass over the frame when all is well
    fx = gps.filter(pl.col("event").is_null())
    bad = fx.filter(pl.any_horizontal([pl.col(c).is_null() for c in REQUIRED_FIX]))["vehicle_id"].value_counts()
    bad_n = dict(zip(bad["vehicle_id"].to_list(), bad["count"].to_list(), strict=True))
    ev = gps.filter(pl.col("event").is_not_null() & ~pl.col("event").is_in(["ignition_on", "ignition_off"]))
    unknown: dict = {}
    for v, e in zip(ev["vehicle_id"].to_list(), ev["event"].to_list(), strict=True):
        unknown.setdefault(v, set()).add(e)
    if None not in vehicles and not bad_n and not unknown:
        return
    for v in vehicles:
        if v is None:
            raise ScoreFileError("rows without vehicle_id")
        if v in bad_n:
            raise ScoreFileError(f"{v}: {bad_n[v]} fix rows lack one of {', '.join(REQUIRED_FIX)}")
        if v in unknown:
            raise ScoreFileError(f"{v}: unknown event(s) {sorted(unknown[v])}")


def _vehicle_runs(gps: pl.DataFrame) -> tuple[list, np.ndarray | None]:
    """The vehicles in order of first appearance and, when each vehicle is one run of rows (a file grouped by
    vehicle), the run boundaries (vehicle k's rows are ``[ends[k], ends[k + 1])``); else ``unique`` and None."""
    r = gps.select(pl.col("vehicle_id").rle()).unnest("vehicle_id")
    runs = r["value"].to_list()
    if len(set(runs)) != len(runs):
        return gps["vehicle_id"].unique(maintain_order=True).to_list(), None
    ends = np.zeros(len(runs) + 1, np.int64)
    np.cumsum(r["len"].to_numpy(), out=ends[1:])
    return runs, ends


def _vehicles(gps: pl.DataFrame) -> list:
    """The vehicles in order of first appearance: the runs of ``vehicle_id`` when each vehicle is one run (a file
    grouped by vehicle; cheaper than a hash of every row), else ``unique``."""
    return _vehicle_runs(gps)[0]


_FIX_ARRAYS = (
    pl.col("t_ms"),
    pl.col("speed_mps"),
    pl.col("lat"),
    pl.col("lon"),
    pl.col("heading_deg").fill_null(0.0),
    pl.col("accuracy_m").fill_null(0.0),
    pl.col("phone").fill_null(-1),
    pl.col("limit_kmh").fill_null(np.nan),
)


def _fix_arrays(fx: pl.LazyFrame) -> list[np.ndarray]:
    """The fix rows' columns as ``cut_frames`` reads them (t, speed, lat, lon, heading, accuracy, phone, the posted
    limit in km/h, NaN where none), in one query: filling a column's nulls before ``to_numpy`` avoids its slower
    null-to-NaN copy."""
    df = fx.select(_FIX_ARRAYS).collect()
    return [df.to_series(k).to_numpy() for k in range(df.width)]


def _fix_runs(gps: pl.DataFrame, is_fix: pl.Series, ends: np.ndarray | None) -> tuple[dict, list[np.ndarray]] | None:
    """``_runs`` of the fix rows without filtering the frame, when the file is already grouped by vehicle (``ends``,
    rows' runs) and each vehicle's fixes are in time order: {vehicle: (first fix, end fix)} and ``_fix_arrays``; None
    otherwise (the caller sorts)."""
    if ends is None or gps["t_ms"].null_count():
        return None
    cols = _fix_arrays(gps.lazy().filter(pl.col("event").is_null()))
    t = cols[0]
    ev_rows = (~is_fix).arg_true().to_numpy()
    fends = ends - np.searchsorted(ev_rows, ends)  # the fixes before each run's end
    if t.shape[0] > 1:
        step = np.diff(t) >= 0
        inner = fends[1:-1]
        step[inner[(inner > 0) & (inner < t.shape[0])] - 1] = True
        if not step.all():
            return None
    names = gps["vehicle_id"].gather(ends[:-1]).to_list() if ends.shape[0] > 1 else []
    return {v: (int(fends[k]), int(fends[k + 1])) for k, v in enumerate(names) if fends[k + 1] > fends[k]}, cols


def _runs(df: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """The frame with each vehicle's rows together in time order (stable: a repeated time keeps the file's order),
    sorted only when it is not already, and {vehicle: (first row, end row)}."""

    def spans(d: pl.DataFrame) -> tuple[list, np.ndarray]:
        r = d.select(pl.col("vehicle_id").rle()).unnest("vehicle_id")
        return r["value"].to_list(), np.concatenate(
            [np.zeros(1, np.int64), np.cumsum(r["len"].to_numpy(), dtype=np.int64)]
        )

    names, ends = spans(df)
    ok = len(set(names)) == len(names)
    if ok and df.height > 1:
        step = np.diff(df["t_ms"].to_numpy()) >= 0
        step[ends[1:-1] - 1] = True
        ok = bool(step.all())
    if not ok:
        df = df.sort(["vehicle_id", "t_ms"], maintain_order=True)
        names, ends = spans(df)
    return df, {v: (int(ends[k]), int(ends[k + 1])) for k, v in enumerate(names)}


def cut_frames(
    gps: pl.DataFrame, imu: pl.DataFrame | None, cfg: ScoringConfig, quarantined: list[Quarantined] | None = None
) -> tuple[list[ClosedTrip], list[np.ndarray | None]]:
    """Every vehicle's trips, as ``TripCutter`` closes them from the messages ``vehicle_messages`` makes, with the
    file's posted limit at each of a trip's fixes (None where the vehicle's rows have none)."""
    return _cut(gps, imu, cfg, quarantined)[:2]


def _cut(
    gps: pl.DataFrame, imu: pl.DataFrame | None, cfg: ScoringConfig, quarantined: list[Quarantined] | None = None
) -> tuple[list[ClosedTrip], list[np.ndarray | None], FixSource]:
    """``cut_frames``, and where each trip's fixes lie in the file's fix arrays (``FixSource``: the batch reads
    them there)."""
    vehicles, ends = _vehicle_runs(gps)
    is_fix = gps["event"].is_null()
    ev = gps.filter(~is_fix)
    _check_rows(gps, vehicles, ev)
    fast = _fix_runs(gps, is_fix, ends)
    fx: pl.DataFrame | None = None  # the fix rows as a frame: only vehicles cut from messages need it
    if fast is None:
        fx, fx_at = _runs(gps.filter(is_fix).drop("event"))
        fix_cols = _fix_arrays(fx.lazy())
    else:
        fx_at, fix_cols = fast
    ev_of: dict[str, tuple[list[int], list[bool]]] = {}
    for v, te, e in zip(ev["vehicle_id"].to_list(), ev["t_ms"].to_list(), ev["event"].to_list(), strict=True):
        ts, on = ev_of.setdefault(v, ([], []))
        ts.append(te)
        on.append(e == "ignition_on")
    imu_at: dict = {}
    if imu is not None and imu.height:
        imu, imu_at = _runs(imu)
        it_all = column_array(imu["t_ms"])
        ia_all = tuple(column_array(imu[c]) for c in ("acc_lon", "acc_lat", "acc_vert"))
    t_all, sp_all, lat_all, lon_all, head_all, acc_all, phone_all, lim_all = fix_cols
    phone_all = phone_all.astype(np.int8)
    lim_all = lim_all / 3.6
    max_trip_ms = int(IngestConfig().max_trip_s * 1000)
    rules = MotionRules.of(cfg)
    trips: list[ClosedTrip] = []
    limits: list[np.ndarray | None] = []
    starts: list[int] = []  # each trip's first fix in the fix arrays, -1 where its arrays are not one slice
    for vehicle in vehicles:
        lo, hi = fx_at.get(vehicle, (0, 0))
        t = t_all[lo:hi]
        lim = None if np.isnan(lim_all[lo:hi]).all() else lim_all[lo:hi]  # NaN: null in the file (read_table)
        ilo, ihi = imu_at.get(vehicle, (0, 0))
        if vehicle in ev_of:
            ts, on = ev_of[vehicle]
            plan = plan_ignition(vehicle, t, np.array(ts, np.int64), np.array(on, bool), max_trip_ms, ihi > ilo)
        else:
            plan = plan_motion(vehicle, t, sp_all[lo:hi], acc_all[lo:hi], rules, ihi > ilo)
        if plan is None:
            if fx is None:
                fx = gps.filter(is_fix).drop("event")
            g = pl.concat(
                [
                    fx.slice(lo, hi - lo).with_columns(event=pl.lit(None, pl.String)),
                    ev.filter(pl.col("vehicle_id") == vehicle) if vehicle in ev_of else ev.clear(),
                ],
                how="diagonal_relaxed",
            )
            v_imu = imu.slice(ilo, ihi - ilo) if imu is not None and ihi > ilo else None
            vt = message_trips(vehicle, g, v_imu, cfg, quarantined)
            trips += vt
            limits += [None if lim is None else lim[np.searchsorted(t, tr.t_ms)] for tr in vt]
            starts += [-1] * len(vt)
            continue
        it = it_all[ilo:ihi] if ihi > ilo else np.zeros(0, np.int64)
        ia = tuple(c[ilo:ihi] for c in ia_all) if ihi > ilo else (np.zeros(0),) * 3
        hz = vehicle_imu_hz(it)
        no_imu = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))  # trip_imu's answer without samples
        dup = np.flatnonzero(t[1:] == t[:-1]) + 1  # a repeated time keeps its first fix
        imus = vehicle_trips_imu(it, ia, hz, t, plan) if ihi > ilo else [no_imu] * len(plan)  # clipped to motion
        for p, (imu_t, a_lon, a_lat, a_vert) in zip(plan, imus, strict=True):
            sel: slice | np.ndarray = slice(p.lo, p.hi)
            if dup.size and ((dup > p.lo) & (dup < p.hi)).any():
                keep = np.ones(p.hi - p.lo, bool)
                keep[dup[(dup > p.lo) & (dup < p.hi)] - p.lo] = False
                sel = np.arange(p.lo, p.hi)[keep]
            sel_all = sel if isinstance(sel, np.ndarray) else slice(lo + p.lo, lo + p.hi)
            if isinstance(sel_all, np.ndarray):
                sel_all = sel_all + lo
            trips.append(
                ClosedTrip(
                    p.trip_id,
                    vehicle,
                    p.start_ms,
                    p.end_ms,
                    t_all[sel_all],
                    sp_all[sel_all],
                    acc_all[sel_all],
                    p.messages,
                    p.complete,
                    p.ended_by,
                    0,
                    imu_t,
                    a_lon,
                    a_lat,
                    phone_all[sel_all],
                    lat_all[sel_all],
                    lon_all[sel_all],
                    head_all[sel_all],
                    a_vert,
                    p.seq_first,
                    p.seq_last,
                )
            )
            limits.append(None if lim is None else lim[sel])
            starts.append(lo + p.lo if isinstance(sel, slice) else -1)
    src = FixSource(
        t_all, t_all / 1000.0, sp_all, acc_all, lat_all, lon_all, head_all, phone_all, np.array(starts, np.int64)
    )
    return trips, limits, src


def score_trips(
    trips: list[ClosedTrip],
    limits: list[np.ndarray | None],
    cfg: ScoringConfig,
    layer: MapLayer | None = None,
    src: FixSource | None = None,
) -> list[dict]:
    """Rows of the scored trips (``limits``: the file's posted limits per trip, None = from the map layer): the
    speed-channel kernels run over all trips at once (scoring/batch.py), each IMU is aligned per trip and the used
    ones' accelerometer kernels run over all of them at once (scoring/batchimu.py), and the rows are built
    column-wise (scoring/batchrows.py). ``src``: where the trips' fixes lie in the file's arrays (``_cut``)."""
    limits = [trip_limits(trip, layer) if lim is None else lim for trip, lim in zip(trips, limits, strict=True)]
    return score_rows(trips, limits, cfg, src)


def score_frames_per_trip(
    gps: pl.DataFrame,
    imu: pl.DataFrame | None,
    cfg: ScoringConfig,
    layer: MapLayer | None = None,
    quarantined: list[Quarantined] | None = None,
) -> list[dict]:
    """``score_frames`` one message and one trip at a time: every vehicle's rows as device messages through the
    live ``TripCutter``, then ``score_trip`` per trip. The reference the fast path is tested against
    (tests/test_score_batch.py); rows in (vehicle, start) order, refusals logged and added to ``quarantined``."""
    rows: list[dict] = []
    for (vehicle,), g in gps.partition_by("vehicle_id", as_dict=True, maintain_order=True).items():
        if vehicle is None:
            raise ScoreFileError("rows without vehicle_id")
        v_imu = imu.filter(pl.col("vehicle_id") == vehicle) if imu is not None else None
        fixes = g.filter(pl.col("event").is_null()).sort("t_ms")
        lim_t = fixes["t_ms"].to_numpy()
        lim = (
            (fixes["limit_kmh"].fill_null(np.nan).to_numpy() / 3.6) if fixes["limit_kmh"].is_not_null().any() else None
        )
        for trip in message_trips(vehicle, g, v_imu, cfg, quarantined):
            limit = trip_limits(trip, layer) if lim is None else lim[np.searchsorted(lim_t, trip.t_ms)]
            rows.append(score_trip(trip, cfg, limit).as_row())
    rows.sort(key=lambda r: (r["vehicle_id"], r["start_ms"]))
    return rows


def messages_to_frames(messages: Iterable[DeviceEvent | TelemetryBatch]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The inverse: device messages as (gps+events, imu) frames in the score-file format (tests, bench, exports)."""
    gps, imu = [], []
    for m in messages:
        if isinstance(m, DeviceEvent):
            gps.append(pl.DataFrame({"vehicle_id": [m.vehicle], "t_ms": [m.t_ms], "event": [m.event]}))
            continue
        n = m.gps_t.shape[0]
        gps.append(
            pl.DataFrame(
                {
                    "vehicle_id": [m.vehicle] * n,
                    "t_ms": m.gps_t,
                    "lat": m.lat,
                    "lon": m.lon,
                    "speed_mps": m.speed,
                    "heading_deg": m.heading,
                    "accuracy_m": m.accuracy,
                    "phone": None if m.phone is None else np.asarray(m.phone, np.int8),
                }
            )
        )
        k = m.acc_lon.shape[0]
        imu.append(
            pl.DataFrame(
                {
                    "vehicle_id": [m.vehicle] * k,
                    "t_ms": m.imu_t_ms(),
                    "acc_lon": m.acc_lon,
                    "acc_lat": m.acc_lat,
                    "acc_vert": m.acc_vert,
                }
            )
        )
    g = (
        pl.concat(
            [
                f.select(
                    [
                        pl.col(c).cast(t) if c in f.columns else pl.lit(None, dtype=t).alias(c)
                        for c, t in GPS_COLUMNS.items()
                    ]
                )
                for f in gps
            ]
        )
        if gps
        else pl.DataFrame(schema=GPS_COLUMNS)
    )
    i = (
        pl.concat(imu).select([pl.col(c).cast(t) for c, t in IMU_COLUMNS.items()])
        if imu
        else pl.DataFrame(schema=IMU_COLUMNS)
    )
    return g, i


LIST_COLUMNS = (
    "harsh_brake_grades",
    "harsh_accel_grades",
    "harsh_corner_grades",
    "heatmap_s",
    "gps_brake_grades",
    "gps_accel_grades",
    "brake_time_share",
    "accel_time_share",
    "lat_time_share",
    "speeding_band_share",
)


def write_rows(rows: list[dict], out: Path) -> None:
    """Scored trips as CSV (list columns as JSON text), Parquet or JSON (an array of records), by extension."""
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        out.write_text(json.dumps(rows, indent=None) + "\n")
        return
    df = pl.DataFrame(rows, infer_schema_length=None)
    if suffix == ".parquet":
        df.write_parquet(out)
    elif suffix == ".csv":
        df.with_columns(
            [pl.Series(c, [json.dumps(r[c]) for r in rows]) for c in LIST_COLUMNS if c in df.columns]
        ).write_csv(out)
    else:
        raise ScoreFileError(f"{out}: unknown output type {suffix!r} (use .csv, .parquet or .json)")


def distinct(s: pl.Series) -> set:
    """The distinct values of a column, through its runs first: a file grouped by vehicle has one run per vehicle,
    so millions of rows hash a few values (``unique`` on 8.5 M IMU rows took ~60 ms, the runs ~20)."""
    return set(s.rle().struct.field("value").unique().to_list())


def score_paths(
    paths: list[Path],
    imu_paths: list[Path],
    cfg: ScoringConfig,
    quarantined: list[Quarantined] | None = None,
    unmatched: dict[str, int] | None = None,
) -> list[dict]:
    """The files' trips, scored (``score_frames``). ``quarantined`` collects the fixes refused as implausible,
    ``unmatched`` the IMU rows (per vehicle) whose vehicle has no GPS rows: they cannot be placed in any trip."""
    gps = pl.concat([read_table(p, GPS_COLUMNS, REQUIRED_GPS) for p in paths])
    imu = pl.concat([read_table(p, IMU_COLUMNS, REQUIRED_IMU) for p in imu_paths]) if imu_paths else None
    layer = MapLayer.load(cfg.speed_limit_map, cfg.speed_limit_radius_m) if cfg.speed_limit_map else None
    if imu is not None:
        orphans = distinct(imu["vehicle_id"]) - distinct(gps["vehicle_id"])
        if orphans and unmatched is not None:
            counts = imu.filter(pl.col("vehicle_id").is_in(list(orphans))).group_by("vehicle_id").len()
            unmatched.update(zip(counts["vehicle_id"].to_list(), counts["len"].to_list(), strict=True))
        if orphans:
            log.warning(
                "IMU rows of %d vehicle(s) match no GPS rows and are not scored: %s",
                len(orphans),
                ", ".join(sorted(map(str, orphans))[:5]),
            )
    return score_frames(gps, imu, cfg, layer, quarantined)


def imu_summary(rows: list[dict]) -> str:
    """One line: how many trips used their IMU, how many rejected it and why (the reasons' leading words)."""
    st = [r.get("imu_status") for r in rows]
    used = sum(s in ("vehicle_frame", "rotated") for s in st)
    rejected = [r for r in rows if r.get("imu_status") == "rejected"]
    none = sum(s == "none" for s in st)
    why: dict[str, int] = {}
    for r in rejected:
        key = re.sub(r"\d+(\.\d+)?", "#", str(r.get("imu_reason") or "?").split(":")[0].split(" (")[0])
        why[key] = why.get(key, 0) + 1
    text = f"IMU used on {used} trips, rejected on {len(rejected)}"
    if why:
        text += " (" + "; ".join(f"{k}: {v}" for k, v in sorted(why.items(), key=lambda x: -x[1])) + ")"
    missing = sum(str(r.get("imu_reason") or "").startswith("no IMU data") for r in rows)
    text += f", none on {none}" + (f" ({missing} of them from a class that should have one)" if missing else "")
    src: dict[str, int] = {}
    for r in rows:
        if r.get("intensity_source"):
            src[r["intensity_source"]] = src.get(r["intensity_source"], 0) + 1
    if src:
        text += "; continuous measures from " + ", ".join(f"{k} on {v}" for k, v in sorted(src.items()))
    return text + f"; speed-channel artefacts: {sum(r.get('speed_artefacts') or 0 for r in rows)}"


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Have glibc keep freed arrays of up to 32 MiB in the process for the next ones instead of unmapping them
    (its default for blocks above ~128 KiB-32 MiB): a file is scored through many such temporaries, and each
    fresh mapping costs its page faults again (about a tenth of score-file's time at 50 vehicles, most of the
    system time). For a short-lived batch process only (the memory goes back when it exits); False where the C
    library has no ``mallopt`` (not glibc): nothing is changed then."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def main(cfg: Config, args) -> int:
    """CLI entry (ubi/cli/main.py): args.paths, args.imu, args.out."""
    out = Path(args.out)
    if not args.paths:
        given = f" (--imu took {', '.join(map(str, args.imu))})" if args.imu else ""
        print(
            f"error: no telemetry files{given}: --imu takes every file after it, so give the telemetry files first "
            "(ubi score-file gps.parquet --imu imu.parquet --out trips.csv) or end the IMU files with -- "
            "(ubi score-file --imu imu.parquet -- gps.parquet --out trips.csv)"
        )
        return 2
    if out.suffix.lower() not in (".csv", ".parquet", ".json"):
        print(f"error: {out}: output must end in .csv, .parquet or .json")
        return 2
    if not keep_freed_memory():
        log.info("mallopt unavailable (not glibc): freed arrays go back to the system as usual")
    try:
        refused: list[Quarantined] = []
        unmatched: dict[str, int] = {}
        rows = score_paths(list(args.paths), list(args.imu or []), cfg.scoring, refused, unmatched)
        write_rows(rows, out)
    except (ScoreFileError, ConfigError) as exc:
        print(f"error: {exc}")
        return 2
    km = sum(r["distance_km"] for r in rows)
    print(f"scored {len(rows)} trips of {len({r['vehicle_id'] for r in rows})} vehicles, {km:,.1f} km -> {out}")
    print(imu_summary(rows))
    if unmatched:
        names = ", ".join(sorted(map(str, unmatched))[:5]) + (", ..." if len(unmatched) > 5 else "")
        print(
            f"IMU rows not scored, their vehicle has no GPS rows: {sum(unmatched.values()):,} rows of "
            f"{len(unmatched)} vehicle(s) ({names})"
        )
    if refused:
        reasons: dict[str, int] = {}
        for q in refused:
            reasons[q.reason] = reasons.get(q.reason, 0) + 1
        print(
            f"refused as implausible (not scored; see the log): {len(refused)} "
            f"({'; '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})"
        )
    return 0
