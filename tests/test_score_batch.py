"""The fast ``score-file`` path (frames sorted once, ignition vehicles cut from arrays, trips scored in batches)
gives exactly the rows of the per-trip path (messages through the live TripCutter, ``score_trip`` per trip), and its
new kernels equal their NumPy twins."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from scoring import batch, batchrows, features, intensity
from scoring.filecut import imu_grid_kernel, trip_imu, vehicle_imu_hz
from scoring.reference_batch import imu_grid_reference
from scoring.trips import ClosedTrip, TripCutter
from simulator.fleet import FleetSpec, make_trips, vehicle_ids
from simulator.offline import trip_frames
from tests import realdata
from ubi.common.config import ScoringConfig
from ubi.stages import score_file

CFG = ScoringConfig()
T0 = 1_790_000_000_000


def normalised(gps: pl.DataFrame, imu: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Frames with every score-file column, as read_table gives them."""

    def sel(df: pl.DataFrame, cols: dict) -> pl.DataFrame:
        return df.select(
            [
                (pl.col(c).fill_nan(None) if df.schema[c].is_float() else pl.col(c)).cast(t)
                if c in df.columns
                else pl.lit(None, dtype=t).alias(c)
                for c, t in cols.items()
            ]
        )

    return sel(gps, score_file.GPS_COLUMNS), None if imu is None else sel(imu, score_file.IMU_COLUMNS)


def message_cut(gps: pl.DataFrame, imu: pl.DataFrame | None, cfg: ScoringConfig) -> list[ClosedTrip]:
    """Every vehicle's rows as device messages through the live TripCutter (the per-trip path's cutting)."""
    out: list[ClosedTrip] = []
    for (vehicle,), g in gps.partition_by("vehicle_id", as_dict=True, maintain_order=True).items():
        v_imu = imu.filter(pl.col("vehicle_id") == vehicle) if imu is not None else None
        cutter = TripCutter.for_config(cfg)
        for off, m in enumerate(score_file.vehicle_messages(vehicle, g, v_imu, cfg)):
            out += cutter.feed(m, 0, off)
        out += cutter.finish()
    return out


def assert_same_trips(gps: pl.DataFrame, imu: pl.DataFrame | None, cfg: ScoringConfig) -> None:
    """cut_frames and the message path close the same trips: every ClosedTrip field (a field added to the cutter
    and not to scoring/filecut.py fails here), arrays with their dtypes."""
    fast, _ = score_file.cut_frames(gps, imu, cfg)
    slow = message_cut(gps, imu, cfg)
    key = lambda t: (t.vehicle, t.start_ms, t.trip_id)  # noqa: E731
    assert len(fast) == len(slow)
    for a, b in zip(sorted(fast, key=key), sorted(slow, key=key), strict=True):
        for f in dataclasses.fields(ClosedTrip):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(y, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), (a.trip_id, f.name)
            else:
                assert x == y, (a.trip_id, f.name, x, y)


def shape_of(x: object) -> object:
    """A value's type, and its items' types for a list (scoring/batchrows.py builds rows column-wise)."""
    return [shape_of(y) for y in x] if isinstance(x, list) else type(x)


def assert_same(gps: pl.DataFrame, imu: pl.DataFrame | None, cfg: ScoringConfig = CFG) -> list[dict]:
    """Both paths on the same frames: the same rows field by field, the same refusals, or the same error."""
    qa: list = []
    qb: list = []
    try:
        want = score_file.score_frames_per_trip(gps, imu, cfg, None, qb)
    except Exception as exc:  # noqa: BLE001 - the fast path must fail the same way
        with pytest.raises(type(exc)) as got:
            score_file.score_frames(gps, imu, cfg, None, qa)
        assert str(got.value) == str(exc)
        return []
    assert_same_trips(gps, imu, cfg)
    rows = score_file.score_frames(gps, imu, cfg, None, qa)
    assert len(rows) == len(want)
    for a, b in zip(rows, want, strict=True):
        assert a.keys() == b.keys()
        diff = {k: (a[k], b[k]) for k in a if a[k] != b[k] and not (a[k] != a[k] and b[k] != b[k])}
        assert not diff, (a["trip_id"], diff)
        kinds = {k: (a[k], b[k]) for k in a if shape_of(a[k]) != shape_of(b[k])}
        assert not kinds, (a["trip_id"], kinds)  # 3 and 3.0 are equal, but not in a file
    assert qa == qb
    return rows


@pytest.mark.parametrize(
    "spec",
    [
        FleetSpec(vehicles=3, days=2, seed=5),
        FleetSpec(vehicles=3, days=2, seed=6, sensor_faults=True),
        FleetSpec(vehicles=4, days=2, seed=7, motion_only_share=0.5),
    ],
    ids=["ignition", "sensor-faults", "mixed-motion"],
)
def test_batch_equals_per_trip_on_simulated_fleets(spec):
    trips = [t for v in vehicle_ids(spec.vehicles) for t in make_trips(spec, v)]
    gps, imu = normalised(*trip_frames(spec, trips))
    assert len(assert_same(gps, imu)) >= 10
    assert len(assert_same(gps, None)) >= 10  # GPS only
    # rows in another order (vehicles interleaved, times shuffled): sorted once, the same trips
    shuffled = gps.sample(fraction=1.0, shuffle=True, seed=1)
    assert len(assert_same(shuffled, imu.sample(fraction=1.0, shuffle=True, seed=2))) >= 10


@pytest.mark.skipif(not realdata.available(), reason=f"no real recordings at {realdata.RD}")
@pytest.mark.parametrize("name", list(realdata.RECORDINGS))
def test_batch_equals_per_trip_on_real_recordings(name):
    gps, imu = realdata.frames(name)
    gps, imu = normalised(gps, imu)
    assert assert_same(gps, imu)
    assert assert_same(gps, None)  # GPS-only: every trip's row column-wise (scoring/batchrows.py)


def random_vehicle(rng: np.random.Generator, vid: str, kind: str) -> tuple[list[dict], pl.DataFrame | None]:
    """Rows of one vehicle with the awkward cases: repeated and out-of-order times, gaps, inaccurate and (0, 0)
    fixes, missing optional columns, ignition events doubled, missing, at one time, or before any fix."""
    n = int(rng.integers(0, 500))
    steps = rng.choice(
        [0, 1000, 1000, 1000, 1000, 200, 45_000, 700_000, 4_000_000],
        n,
        p=[0.05, 0.6, 0.1, 0.1, 0.05, 0.05, 0.02, 0.02, 0.01],
    )
    t = T0 + int(rng.integers(0, 10_000)) + np.cumsum(steps)
    v = np.abs(np.cumsum(rng.normal(0, 1.5, n))) * (rng.random(n) > 0.05)
    lat = 52.0 + np.cumsum(v) * 1e-5
    lat[rng.random(n) < 0.01] = 0.0
    acc = rng.choice([3.0, 5.0, 25.0, 80.0, np.nan], n)
    rows = [
        {
            "vehicle_id": vid,
            "t_ms": int(t[i]),
            "lat": float(lat[i]),
            "lon": 4.0 if lat[i] else 0.0,
            "speed_mps": float(v[i]),
            "heading_deg": None if rng.random() < 0.1 else float(rng.uniform(0, 360)),
            "accuracy_m": None if np.isnan(acc[i]) else float(acc[i]),
            "phone": None if rng.random() < 0.3 else int(rng.random() < 0.1),
            "limit_kmh": float(rng.choice([30.0, 50.0, 80.0])) if kind != "nolimit" else None,
            "event": None,
        }
        for i in range(n)
    ]
    if kind in ("ignition", "prefix", "nolimit") and n:
        ev_t = np.sort(rng.choice(t, min(n, int(rng.integers(1, 12))), replace=True))
        events = []
        for k, te in enumerate(ev_t):
            e = "ignition_on" if (k % 2 == 0) ^ (rng.random() < 0.15) else "ignition_off"
            events.append((int(te) + int(rng.choice([0, 0, -1, 1, 500])), e))
        if kind != "prefix":
            events.append((int(t[0]) - int(rng.choice([0, 1000])), "ignition_on"))
        if rng.random() < 0.3:
            events.append((events[-1][0], "ignition_off"))  # on and off at one time
        rows += [{"vehicle_id": vid, "t_ms": te, "event": e} for te, e in events]
    imu = None
    if n and rng.random() < 0.7:
        hz = int(rng.choice([1, 10, 25]))
        it = np.arange(int(t[0]) - 2000, int(t[-1]) + 2000, 1000 // hz)
        it = it[rng.random(it.shape[0]) > 0.03]
        it = np.sort(it + rng.integers(-3, 4, it.shape[0]))  # jitter, and a few holes
        a = rng.normal(0, 2, (3, it.shape[0]))
        a[2] += 9.81 if rng.random() < 0.5 else 0.0
        imu = pl.DataFrame(
            {"vehicle_id": [vid] * it.shape[0], "t_ms": it, "acc_lon": a[0], "acc_lat": a[1], "acc_vert": a[2]}
        )
    return rows, imu


@pytest.mark.parametrize("seed", range(12))
def test_batch_equals_per_trip_on_awkward_input(seed):
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    imus = []
    for k in range(int(rng.integers(1, 5))):
        r, imu = random_vehicle(rng, f"V{k}", str(rng.choice(["ignition", "ignition", "motion", "prefix", "nolimit"])))
        rows += r
        if imu is not None:
            imus.append(imu)
    if not rows:
        return
    gps = pl.DataFrame(rows, schema=score_file.GPS_COLUMNS)
    gps = gps.sample(fraction=1.0, shuffle=True, seed=seed)
    imu = pl.concat(imus).select([pl.col(c).cast(t) for c, t in score_file.IMU_COLUMNS.items()]) if imus else None
    assert_same(gps, imu)


def test_trips_too_long_are_refused_alike():
    """A 30-day trip is left to the message path, which quarantines it: both paths say so."""
    t = T0 + np.arange(0, 31 * 86_400_000, 600_000)
    gps = pl.DataFrame(
        {"vehicle_id": ["L"] * t.shape[0], "t_ms": t, "lat": 52.0, "lon": 4.0, "speed_mps": 10.0},
    )
    ev = pl.DataFrame(
        {"vehicle_id": ["L", "L"], "t_ms": [int(t[0]), int(t[-1])], "event": ["ignition_on", "ignition_off"]}
    )
    gps, _ = normalised(pl.concat([gps, ev], how="diagonal_relaxed"), None)
    q: list = []
    assert score_file.score_frames(gps, None, CFG, None, q) == [] and [x.reason for x in q] == ["trip_too_long"]
    assert_same(gps, None)


def test_bad_rows_raise_what_the_per_trip_path_raises():
    gps = pl.DataFrame(
        {"vehicle_id": ["A", "B", "B"], "t_ms": [1, 2, 3], "lat": [52.0, None, 52.0], "lon": 4.0, "speed_mps": 1.0}
    )
    gps, _ = normalised(gps, None)
    with pytest.raises(score_file.ScoreFileError, match="B: 1 fix rows lack"):
        score_file.score_frames(gps, None, CFG)
    assert_same(gps, None)
    bad = normalised(
        pl.DataFrame({"vehicle_id": ["A", "A"], "t_ms": [1, 2], "event": ["ignition_on", "reboot"]}), None
    )[0]
    assert_same(bad, None)
    neg = normalised(
        pl.DataFrame(
            {
                "vehicle_id": ["A"] * 4,
                "t_ms": [T0, T0 + 1000, T0 + 2000, T0 + 3000],
                "lat": 52.0,
                "lon": 4.0,
                "speed_mps": [1.0, -5.0, 1.0, 1.0],
                "event": ["ignition_on", None, None, "ignition_off"],
            }
        ),
        None,
    )[0].with_columns(pl.when(pl.col("event").is_not_null()).then(None).otherwise(pl.col("lat")).alias("lat"))
    assert_same(neg, None)  # a negative speed: measure_trip's error, in both


def test_the_batch_calls_no_per_trip_speed_channel_function(monkeypatch):
    """The batched kernels are really used: the per-trip functions they replace are never called."""
    spec = FleetSpec(vehicles=2, days=1, seed=3)
    gps, imu = normalised(*trip_frames(spec, [t for v in vehicle_ids(2) for t in make_trips(spec, v)]))
    want = score_file.score_frames_per_trip(gps, None, CFG)

    def boom(*a, **k):
        raise AssertionError("called per trip")

    for name in ("clean_fixes", "trip_features", "speed_events", "exposure", "phone_use", "speeding", "heatmap"):
        monkeypatch.setattr(features, name, boom)
    monkeypatch.setattr(intensity, "channel", boom)  # the 1 Hz speed channel comes from the batch too
    # trips without IMU samples become rows column-wise: no measure_trip, build_record or continuous per trip
    monkeypatch.setattr(batchrows, "measure_trip", boom)
    monkeypatch.setattr(batchrows, "build_record", boom)
    monkeypatch.setattr(intensity, "continuous", boom)
    assert score_file.score_frames(gps, None, CFG) == want


def random_trip(rng: np.random.Generator, n: int) -> ClosedTrip:
    t = T0 + np.cumsum(rng.choice([1000, 1000, 1000, 3000, 30_000], n)).astype(np.int64)
    v = np.abs(np.cumsum(rng.normal(0, 1.5, n)))
    z = lambda: np.zeros(0)  # noqa: E731
    return ClosedTrip(
        "x",
        "v",
        int(t[0]) if n else T0,
        int(t[-1]) if n else T0,
        t,
        v,
        rng.choice([3.0, 30.0, 80.0, np.nan], n),
        1,
        True,
        "ignition_off",
        0,
        np.zeros(0, np.int64),
        z(),
        z(),
        rng.choice(np.array([-1, 0, 1], np.int8), n),
        52.0 + np.cumsum(v) * 1e-5 * (rng.random(n) > 0.01),
        np.full(n, 4.0),
        rng.uniform(0, 360, n),
        z(),
    )


def test_precompute_equals_the_per_trip_functions():
    """scoring.batch's drivers against the per-trip public functions (which the kernels' references check):
    random trips with gaps, inaccurate and jumping fixes, and the edges: empty trips, one fix, two fixes."""
    rng = np.random.default_rng(11)
    trips = [random_trip(rng, n) for n in [0, 1, 2, 3, 0, 600, 1500, 5, 1]]
    limits = [None if k % 3 == 0 else rng.choice([np.nan, 13.9, 27.8], t.t_ms.shape[0]) for k, t in enumerate(trips)]
    pre = batch.precompute(trips, limits, CFG)
    for trip, lim, p in zip(trips, limits, pre, strict=True):
        assert p is not None
        n = trip.t_ms.shape[0]
        good, nbad, nj = features.clean_fixes(trip.t_ms / 1000.0, trip.lat, trip.lon, trip.accuracy, CFG)
        assert (p.clean[0] == good).all() and p.clean[1:] == (nbad, nj)
        t_s, v = trip.t_ms[good] / 1000.0, trip.speed[good]
        assert p.basic == features.trip_features(t_s, v, CFG)
        sev = features.speed_events(t_s, v, trip.accuracy[good], CFG)
        for a, b in ((p.speed_events.brake, sev.brake), (p.speed_events.accel, sev.accel)):
            assert a.grades == b.grades
            for x, y in ((a.start_s, b.start_s), (a.end_s, b.end_s), (a.peak, b.peak)):
                assert np.array_equal(x, y)
        assert p.speed_events.artefacts == sev.artefacts
        assert p.exposure == features.exposure(t_s, v, CFG)
        assert p.phone == features.phone_use(t_s, v, trip.phone[good], CFG)
        assert p.speeding == features.speeding(t_s, v, None if lim is None else lim[good], CFG)
        assert np.array_equal(p.heatmap, features.heatmap(t_s, v, CFG))
        assert n == 0 or p.clean[0].shape == (n,)


def test_precompute_leaves_what_it_cannot_take_to_measure_trip():
    rng = np.random.default_rng(2)
    ok, short, back = random_trip(rng, 50), random_trip(rng, 50), random_trip(rng, 50)
    short = ClosedTrip(**{**short.__dict__, "lat": short.lat[:10]})
    t = back.t_ms.copy()
    t[5] = t[4]
    back = ClosedTrip(**{**back.__dict__, "t_ms": t})
    pre = batch.precompute([ok, short, back], [None] * 3, CFG)
    assert pre[0] is not None and pre[1] is None and pre[2] is None
    with pytest.raises(ValueError, match="strictly increase"):
        features.measure_trip(back, CFG)


def test_measure_trip_refuses_results_of_another_configuration():
    rng = np.random.default_rng(4)
    trip = random_trip(rng, 100)
    [pre] = batch.precompute([trip], [None], ScoringConfig(moving_mps=2.0))
    with pytest.raises(ValueError, match="another configuration"):
        features.measure_trip(trip, CFG, None, None, pre)


@pytest.mark.parametrize("seed", range(6))
def test_imu_grid_kernel_equals_reference(seed):
    """Random IMU streams with jitter, holes, repeated times and rates from 1 to 100 Hz; messages with no sample,
    one sample, and windows ending between samples."""
    rng = np.random.default_rng(seed)
    hz = int(rng.choice([1, 3, 10, 25, 100]))
    m = int(rng.integers(0, 3000))
    it = np.sort(T0 + np.cumsum(rng.choice([1000 // hz, 1000 // hz, 0, 3 * 1000 // hz, 7000], m)))
    it = it + rng.integers(-2, 3, m)
    it.sort()
    cols = [rng.normal(0, 1, m) for _ in range(3)]
    fix_t = np.sort(T0 + rng.integers(-5000, max(1, int(it[-1] - T0) + 5000 if m else 5000), 60))
    lo = np.sort(rng.choice(60, int(rng.integers(0, 20)), replace=False)).astype(np.int64)
    nxt = np.array([fix_t[min(j + int(rng.integers(1, 5)), 59)] + int(rng.integers(0, 2)) for j in lo], np.int64)
    want_t, want = imu_grid_reference(it, cols, hz, fix_t, lo, nxt)
    k = imu_grid_kernel(it, *cols, hz, fix_t, lo, nxt, np.zeros(0, np.int64), *(np.zeros(0),) * 3)
    assert k == want_t.shape[0]
    got_t, got = np.empty(k, np.int64), [np.empty(k) for _ in range(3)]
    imu_grid_kernel(it, *cols, hz, fix_t, lo, nxt, got_t, *got)
    assert np.array_equal(got_t, want_t)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_vehicle_imu_rate_and_empty_trip_imu():
    assert vehicle_imu_hz(np.array([0, 100, 200, 300])) == 10 and vehicle_imu_hz(np.zeros(1, np.int64)) == 10
    from scoring.filecut import PlannedTrip

    p = PlannedTrip("x", 0, 1, 0, 0, 2, True, "ignition_off", np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 1)
    t, *cols = trip_imu(np.arange(10, dtype=np.int64), (np.zeros(10),) * 3, 10, np.zeros(1, np.int64), p)
    assert t.shape == (0,) and all(c.shape == (0,) for c in cols)


def test_median_int_equals_numpy_median():
    """The counting median score-file takes each vehicle's IMU rate from, against np.median: random intervals with
    repeats, odd and even counts, one value, day-long gaps, wide ranges (where it hands over to np.median)."""
    from scoring.filecut import median_int

    rng = np.random.default_rng(5)
    for k in range(500):
        n = int(rng.integers(1, 80))
        x = rng.choice(np.array([0, 1, 33, 34, 100, 100, 101, 5000, -3]), n)
        if k % 9 == 0:
            x = rng.integers(-(10**7), 10**7, n)
        elif k % 5 == 0:
            x[rng.random(n) < 0.3] = 86_400_000  # the gaps between trips
        assert median_int(x) == float(np.median(x))


@pytest.mark.parametrize("smooth_s", [0.0, 2.0])
def test_channel_batch_kernel_equals_intensity_channel(smooth_s):
    """The batched 1 Hz speed channel against scoring.intensity.channel (NumPy) bit for bit: random trips with gaps,
    sub-second and irregular fixes, headings wrapping through north, constant or NaN headings, trips of 0-3 fixes,
    and the dongle's speed smoothing."""
    from scoring.batch import channel_batch_kernel
    from scoring.intensity import channel

    cfg = ScoringConfig(speed_smooth_s=smooth_s)
    rng = np.random.default_rng(int(smooth_s * 10) + 1)
    trips = []
    for n in [0, 1, 2, 3, 12, 40, 400, 1500, 7, 900]:
        t = T0 / 1000 + np.cumsum(rng.choice([1.0, 1.0, 1.0, 0.25, 0.5, 2.0, 15.0, 400.0], n))
        v = np.abs(np.cumsum(rng.normal(0, 1.0, n))) + rng.choice([0.0, 12.0])
        h = np.mod(np.cumsum(rng.normal(0, 20, n)) + 350, 360)
        if n == 40:
            h[:] = 90.0  # constant: no lateral
        if n == 7:
            h[3] = np.nan
        trips.append((t, v, h))
    off = np.concatenate([[0], np.cumsum([t.shape[0] for t, _, _ in trips])]).astype(np.int64)
    t_all, v_all, h_all = (np.concatenate([x[i] for x in trips]) for i in range(3))
    nt = len(trips)
    args = (float(cfg.speed_smooth_s), float(cfg.max_integration_gap_s), float(cfg.event_warmup_s))
    args += (float(cfg.min_corner_speed_mps),)
    ch_off, src, e = np.zeros(nt + 1, np.int64), np.zeros(nt, np.int8), np.zeros(0)
    wh = np.ones(nt, np.uint8)
    channel_batch_kernel(off, t_all, v_all, h_all, wh, *args, ch_off, e, e, e, e, src)
    g, vv, lon, lat = (np.empty(ch_off[-1]) for _ in range(4))
    channel_batch_kernel(off, t_all, v_all, h_all, wh, *args, ch_off, g, vv, lon, lat, src)
    for k, (t, v, h) in enumerate(trips):
        want = channel(t, v, h, None, None, cfg)
        sl = slice(ch_off[k], ch_off[k + 1])
        assert want.source == ("speed+heading" if src[k] else "speed")
        for a, b in ((g[sl], want.t), (vv[sl], want.v), (lon[sl], want.lon), (lat[sl], want.lat)):
            assert np.array_equal(a, b, equal_nan=True), k


def test_np_interp_twin_equals_numpy():
    from scoring.batch import _np_interp

    rng = np.random.default_rng(8)
    for _ in range(50):
        xp = np.cumsum(rng.uniform(0.01, 3.0, int(rng.integers(1, 40)))) + 1.7e9
        fp = rng.normal(0, 5, xp.shape[0])
        x = np.sort(np.concatenate([rng.uniform(xp[0] - 5, xp[-1] + 5, 60), xp[rng.integers(0, xp.shape[0], 5)]]))
        out = np.empty(x.shape[0])
        _np_interp(x, xp, fp, out)
        assert np.array_equal(out, np.interp(x, xp, fp))


def test_dongle_profile_batch_equals_per_trip():
    """The dongle's profile smooths speed before the channel: the batch follows the vehicle's device class."""
    spec = FleetSpec(vehicles=2, days=1, seed=9)
    gps, _ = normalised(*trip_frames(spec, [t for v in vehicle_ids(2) for t in make_trips(spec, v)]))
    cfg = ScoringConfig(device_classes={vehicle_ids(2)[0]: "dongle"})
    rows = assert_same(gps, None, cfg)
    assert {r["device_class"] for r in rows} == {"dongle", "phone"}


@pytest.mark.parametrize(
    "steps,speeds",
    [
        ([], [5.0]),  # one fix
        ([1000], [0.0, 20.0]),
        ([1000] * 30, [15.0] * 31),  # too short to move 200 m in the window... or not: the rules decide
        ([1000] * 400, list(np.r_[np.zeros(20), np.full(200, 14.0), np.zeros(181)])),  # park, drive, stop
        ([1000] * 300 + [3_700_000] + [1000] * 300, [14.0] * 602),  # a data gap inside a drive
        ([0, 1000, 0, 1000] * 100, [14.0] * 401),  # repeated times
    ],
    ids=["one-fix", "two-fixes", "short", "park-drive-stop", "gap", "repeats"],
)
def test_motion_cut_equals_the_motion_track_on_edge_input(steps, speeds):
    """scoring.filecut.motion_cut_kernel/plan_motion against MotionTrack (through the message path) on small
    motion-only vehicles: one fix, two, a drive with a stop, a data gap of over an hour, repeated times."""
    t = T0 + np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
    n = t.shape[0]
    gps = pl.DataFrame(
        {
            "vehicle_id": ["M"] * n,
            "t_ms": t,
            "lat": 52.0 + np.cumsum(speeds) * 9e-6,
            "lon": np.full(n, 4.0),
            "speed_mps": np.asarray(speeds, float),
        }
    )
    assert_same(*normalised(gps, None))


def test_quarter_offsets_equal_local_offsets():
    from scoring.batch import quarter_offsets

    rng = np.random.default_rng(6)
    t = np.sort(rng.uniform(1.77e9, 1.80e9, 3000))  # across DST changes
    t = np.concatenate([t, t[:50][::-1], [t[0]]])  # not only increasing
    for tz in ("Europe/Amsterdam", "America/New_York", "Asia/Kolkata"):
        assert np.array_equal(quarter_offsets(t, tz), features.local_offsets(t, tz))
    assert quarter_offsets(np.zeros(0), "UTC").shape == (0,)


def test_vehicles_in_order_of_first_appearance():
    """From the runs when each vehicle is one run, else from unique: the same list either way (nulls included)."""
    for ids in (["b", "b", "a", "c", "c"], ["b", "a", "b", "c"], [None, None, "a"], ["a", None, "a"], []):
        gps = pl.DataFrame({"vehicle_id": ids}, schema={"vehicle_id": pl.String})
        assert score_file._vehicles(gps) == gps["vehicle_id"].unique(maintain_order=True).to_list()


# ---------------------------------------------------------------- the accelerometer in batches (scoring/batchimu.py)


def imu_vehicle(
    rng: np.random.Generator, vid: str, case: str, hz: int, t0: int
) -> tuple[list[dict], pl.DataFrame | None]:
    """One ignition trip of ~6 minutes at 1 Hz GPS with speed changes, and its IMU at ``hz`` as a phone would give
    it for ``case``: raw (gravity), removed (gravity-free), rotated (yaw 180 / 90 degrees, tilted), no vertical,
    partial gravity, noise (no correlation with the GPS), cruise (no speed changes), few samples, none, NaN holes,
    infinities. The GPS lags the IMU by 1.2 s."""
    n = 360
    t = t0 + 1000 * np.arange(n)
    acc_true = np.concatenate([np.full(20, 0.0), np.sin(np.linspace(0, 30 * np.pi, n - 40)) * 3.4, np.zeros(20)])
    if case == "cruise":
        acc_true = np.zeros(n)
    v = np.maximum(0.0, 15.0 + np.cumsum(acc_true))
    lat_acc = np.cos(np.linspace(0, 9 * np.pi, n)) * 3.8
    heading = (90.0 + np.cumsum(lat_acc / np.maximum(v, 1.0)) * 57.3) % 360.0
    gps = [
        {
            "vehicle_id": vid,
            "t_ms": int(t[i]),
            "lat": 52.0 + i * 1e-4,
            "lon": 4.0,
            "speed_mps": float(v[i]),
            "heading_deg": float(heading[i]),
            "accuracy_m": 4.0,
            "phone": None,
            "limit_kmh": 50.0,
            "event": None,
        }
        for i in range(n)
    ]
    gps += [
        {"vehicle_id": vid, "t_ms": int(t[0]) - 500, "event": "ignition_on"},
        {"vehicle_id": vid, "t_ms": int(t[-1]) + 500, "event": "ignition_off"},
    ]
    if case == "none":
        return gps, None
    step = 1000 // hz
    it = np.arange(int(t[0]) - 1000, int(t[-1]) + 1000, step)
    if case == "few":
        it = it[200:208]
    it = np.sort(it + rng.integers(-step // 10, step // 10 + 1, it.shape[0]))
    it = np.unique(it)
    # the vehicle frame at the IMU times, GPS 1.2 s behind
    fwd = np.interp((it - t[0]) / 1000.0 - 1.2, np.arange(n) - 0.5, acc_true) + rng.normal(0, 0.15, it.shape[0])
    left = np.interp((it - t[0]) / 1000.0, np.arange(n), lat_acc) + rng.normal(0, 0.15, it.shape[0])
    up = rng.normal(0, 0.1, it.shape[0])
    if case == "noise":
        fwd, left = rng.normal(0, 1.0, it.shape[0]), rng.normal(0, 1.0, it.shape[0])
    X = np.vstack([fwd, left, up])
    yaw = {"rotated180": np.pi, "rotated90": np.pi / 2, "tilted": 0.7}.get(case, 0.0)
    Rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    X = Rz @ X
    if case == "tilted":
        c, s = np.cos(0.5), np.sin(0.5)
        X = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ X
    g = {"removed": 0.0, "partial": 5.0}.get(case, 9.80665)
    if case == "tilted":
        X = X + np.array([[0.0], [np.sin(0.5) * g], [np.cos(0.5) * g]])
    else:
        X[2] += g
    vert: list = X[2].tolist()
    if case == "no_vertical":
        vert = [None] * it.shape[0]
    if case == "holes":
        X[:, rng.random(it.shape[0]) < 0.05] = np.nan
        X[:, 100:160] = np.nan
    if case == "inf":
        X[0, rng.integers(0, it.shape[0], 3)] = np.inf
        X[1, rng.integers(0, it.shape[0], 2)] = -np.inf
    imu = pl.DataFrame(
        {"vehicle_id": [vid] * it.shape[0], "t_ms": it, "acc_lon": X[0], "acc_lat": X[1], "acc_vert": vert},
        schema=score_file.IMU_COLUMNS,
        strict=False,
    ).select(list(score_file.IMU_COLUMNS))
    return gps, imu


IMU_CASES = ["raw", "removed", "rotated180", "rotated90", "tilted", "no_vertical", "partial", "noise", "cruise"]
IMU_CASES += ["few", "none", "holes", "inf"]


@pytest.mark.parametrize("hz", [1, 5, 10, 50, 100])
def test_imu_batch_equals_per_trip_on_every_imu_case(hz, monkeypatch):
    """Every case of imu_vehicle at IMU rates 1-100 Hz: the batch's rows equal the per-trip path's field for field,
    and the cases really reach the batch's branches (used in the vehicle frame and rotated, rejected for each
    reason, none), none of them left to measure_trip."""

    def boom(*a, **k):
        raise AssertionError("left to measure_trip")

    monkeypatch.setattr(batchrows, "measure_trip", boom)
    rng = np.random.default_rng(hz)
    rows: list[dict] = []
    imus = []
    for k, case in enumerate(IMU_CASES):
        g, i = imu_vehicle(rng, f"V{k:02d}-{case}", case, hz, T0 + k * 3_600_000)
        rows += g
        if i is not None:
            imus.append(i)
    gps = pl.DataFrame(rows, schema=score_file.GPS_COLUMNS)
    out = assert_same(gps, pl.concat(imus))
    by = {r["vehicle_id"].split("-", 1)[1]: r for r in out}
    assert by["none"]["imu_status"] == "none"
    assert by["few"]["imu_reason"].startswith("too few samples")
    assert by["partial"]["imu_reason"].startswith("partial gravity")
    assert by["noise"]["imu_status"] == "rejected" and by["noise"]["imu_reason"].startswith("R = ")
    assert by["cruise"]["imu_reason"].startswith("level mount, unchecked: no speed changes")
    if hz >= 10:
        assert by["raw"]["imu_status"] == "vehicle_frame" and by["raw"]["intensity_source"] == "imu"
        assert by["rotated180"]["imu_status"] == "rotated" and by["rotated90"]["imu_status"] == "rotated"
        assert by["removed"]["imu_gravity"] == "removed" and by["removed"]["imu_status"] != "rejected"
        assert by["no_vertical"]["imu_gravity"] == "no_vertical"
        assert by["tilted"]["imu_status"] == "rotated"
        assert sum(r["harsh_corners"] + r["harsh_brakes"] for r in out if r["event_source"] != "gps") > 0
    else:
        assert by["raw"]["intensity_source"] != "imu"  # 1 Hz: the channel stays the speed's


def test_imu_trips_do_not_go_through_measure_trip(monkeypatch):
    """The batch takes trips whose IMU is used or rejected: no measure_trip, build_record or per-trip channel."""
    spec = FleetSpec(vehicles=2, days=1, seed=3)
    gps, imu = normalised(*trip_frames(spec, [t for v in vehicle_ids(2) for t in make_trips(spec, v)]))
    want = score_file.score_frames_per_trip(gps, imu, CFG)
    assert any(r["imu_status"] in ("vehicle_frame", "rotated") for r in want)

    def boom(*a, **k):
        raise AssertionError("called per trip")

    monkeypatch.setattr(batchrows, "measure_trip", boom)
    monkeypatch.setattr(batchrows, "build_record", boom)
    monkeypatch.setattr(intensity, "channel", boom)
    monkeypatch.setattr(intensity, "continuous", boom)
    monkeypatch.setattr(features, "fill_gaps", boom)
    monkeypatch.setattr(features, "gps_trust_speed", boom)
    monkeypatch.setattr(features, "harsh_events", boom)
    assert score_file.score_frames(gps, imu, CFG) == want
    # IMU batched a few trips at a time (bounded memory): the same rows
    monkeypatch.setattr(batchrows, "IMU_CHUNK", 30_000)
    assert score_file.score_frames(gps, imu, CFG) == want


@pytest.mark.parametrize("seed", range(6))
def test_imu_batch_kernel_equals_the_per_trip_functions(seed):
    """scoring.batchimu against the functions measure_trip calls for a used IMU (fill_gaps, gps_trust_speed,
    harsh_events, the channel's 1 s means): random trips with GPS gaps, IMU rates 1-100 Hz with holes, NaN and
    infinite samples, lags of 0-3 s, trips without a 1 Hz grid, the last trip with few fixes."""
    from scoring import batchimu
    from scoring.align import Alignment
    from scoring.intensity import _bin_means, channel

    rng = np.random.default_rng(seed)
    ts, vs, its, als, pers, grids = [], [], [], [], [], []
    for j in range(int(rng.integers(1, 6))):
        n = int(rng.choice([3, 40, 400])) if j else 3
        t_s = 1_790_000_000.0 + np.cumsum(rng.choice([1.0, 1.0, 1.0, 4.0, 12.0, 40.0], n))
        v = 6.0 + np.abs(np.cumsum(rng.normal(0, 1.2, n)))
        hz = float(rng.choice([1.0, 5.0, 10.0, 25.0, 100.0]))
        it = np.arange(t_s[0] - 2.0, t_s[-1] + 2.0, 1.0 / hz)
        it = it[rng.random(it.shape[0]) > 0.05]  # holes
        it = np.unique(it + rng.uniform(-0.2 / hz, 0.2 / hz, it.shape[0]))  # jitter
        # sustained swings through every band, and noise
        lon = 4.5 * np.sin(it / 9.0) + rng.normal(0, 0.8, it.shape[0])
        lat = 5.0 * np.cos(it / 7.0) + rng.normal(0, 0.8, it.shape[0])
        lon[rng.random(it.shape[0]) < 0.03] = np.nan
        lat[rng.random(it.shape[0]) < 0.03] = np.nan
        lon[rng.integers(0, it.shape[0], 1)] = np.inf if seed % 2 else -np.inf
        lag = float(rng.choice([0.0, 0.7, 1.3, 3.0]))
        ts.append(t_s)
        vs.append(v)
        its.append(it)
        als.append(Alignment(lon, lat, "rotated", lag, 0.8, "raw", ""))
        pers.append(float(np.median(np.diff(it))))
        grids.append(channel(t_s, v, None, None, None, CFG).t)
    goff = np.concatenate([[0], np.cumsum([x.shape[0] for x in ts])]).astype(np.int64)
    ch_off = np.concatenate([[0], np.cumsum([x.shape[0] for x in grids])]).astype(np.int64)
    ch_t = np.concatenate(grids)
    ch_lon, ch_lat = np.full(ch_t.shape[0], -7.0), np.full(ch_t.shape[0], -7.0)
    k_used = list(range(len(ts)))
    b = batchimu.imu_batch(
        goff, np.concatenate(ts), np.concatenate(vs), ch_off, ch_t, ch_lon, ch_lat, k_used, its, als, pers, CFG
    )
    for k, (t_s, v, it, a, per) in enumerate(zip(ts, vs, its, als, pers, strict=True)):
        gm, gsec, _ = features.fill_gaps(t_s, v, it, a.lon, CFG.max_integration_gap_s, CFG.max_gap_fill_s)
        assert (b.gap[k, 0], b.gap[k, 1]) == (gm, gsec)
        v_at = features.gps_trust_speed(it + a.lag_s, t_s, v, CFG)
        for kind, ax, col in (("brake", a.lon, 0), ("accel", a.lon, 3), ("corner", a.lat, 6)):
            ev = features.harsh_events(it, ax, v_at, kind, CFG, per)
            assert tuple(b.grades[k, col : col + 3]) == ev.grades, (k, kind)
        c0, c1 = ch_off[k], ch_off[k + 1]
        if 1.0 / per >= CFG.intensity_min_imu_hz:
            assert b.with_ch[k]
            for got, ax in ((ch_lon, a.lon), (ch_lat, a.lat)):
                want = _bin_means(it, ax, grids[k] - a.lag_s)
                assert np.array_equal(got[c0:c1], want, equal_nan=True)
        else:
            assert not b.with_ch[k] and (ch_lon[c0:c1] == -7.0).all() and (ch_lat[c0:c1] == -7.0).all()
    assert b.grades.sum() > 0 and (b.gap[:, 1] > 0).any()  # events and filled gaps were there to compare


def test_device_profiles_with_imu_batch_equal_per_trip(monkeypatch):
    """Phone, dongle and OEM vehicles with IMU in one file: a configuration group each (the dongle's 1.5 s and the
    OEM's 1.0 s lag searches, 16 and 11 lags, the dongle's smoothed speed channel), every row equal to the per-trip
    path, none left to measure_trip."""
    spec = FleetSpec(vehicles=3, days=1, seed=12)
    gps, imu = normalised(*trip_frames(spec, [t for v in vehicle_ids(3) for t in make_trips(spec, v)]))
    v = vehicle_ids(3)
    cfg = ScoringConfig(device_classes={v[0]: "dongle", v[1]: "oem"})

    def boom(*a, **k):
        raise AssertionError("left to measure_trip")

    monkeypatch.setattr(batchrows, "measure_trip", boom)
    rows = assert_same(gps, imu, cfg)
    assert {r["device_class"] for r in rows} == {"dongle", "oem", "phone"}
    used = {r["device_class"] for r in rows if r["imu_status"] in ("vehicle_frame", "rotated")}
    assert used == {"dongle", "oem", "phone"}
