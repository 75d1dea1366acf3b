"""The back-testing shortcuts of ``score-file`` (issue 12) equal what they replace: the fix rows' runs and columns
read without filtering the frame (``_fix_runs``) equal the filtered, sorted frame's (``_runs`` + ``_fix_arrays``),
and the batch's one-pass compaction of the kept fixes (``kept_kernel``) equals NumPy's boolean masks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scoring.batch import fill_runs_kernel, kept_kernel, quarter_offsets, quarter_runs_kernel
from scoring.features import local_offsets
from ubi.stages import score_file


def frame(rng: np.random.Generator, order: list[str], events: float, null_share: float = 0.1) -> pl.DataFrame:
    """GPS rows of the vehicles in ``order`` (one run per entry), times increasing per run, ``events`` of the rows
    ignition events (no fix columns), the optional columns null at ``null_share`` of the rows."""
    rows = []
    t = {v: 1_790_000_000_000 for v in set(order)}
    for v in order:
        for _ in range(int(rng.integers(0, 30))):
            t[v] += int(rng.integers(1, 2000))
            ev = rng.random() < events
            nul = lambda x: None if rng.random() < null_share else x  # noqa: E731
            rows.append(
                {
                    "vehicle_id": v,
                    "t_ms": t[v],
                    "lat": None if ev else float(rng.uniform(50, 51)),
                    "lon": None if ev else float(rng.uniform(4, 5)),
                    "speed_mps": None if ev else float(rng.uniform(0, 30)),
                    "heading_deg": None if ev else nul(float(rng.uniform(0, 360))),
                    "accuracy_m": None if ev else nul(float(rng.uniform(2, 20))),
                    "phone": None if ev else nul(int(rng.integers(0, 2))),
                    "limit_kmh": None if ev else nul(float(rng.choice([30, 50, 80]))),
                    "event": str(rng.choice(["ignition_on", "ignition_off"])) if ev else None,
                }
            )
    return pl.DataFrame(rows, schema=score_file.GPS_COLUMNS)


def slow(gps: pl.DataFrame) -> tuple[dict, list[np.ndarray]]:
    fx, at = score_file._runs(gps.filter(pl.col("event").is_null()).drop("event"))
    return at, score_file._fix_arrays(fx.lazy())


@pytest.mark.parametrize("seed", range(8))
def test_fix_runs_equal_filtered_runs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    order = ["a", "b", "c", "d"][: 1 + seed % 4]
    gps = frame(rng, order, events=[0.0, 0.05, 0.5, 1.0][seed % 4])
    vehicles, ends = score_file._vehicle_runs(gps)
    assert vehicles == gps["vehicle_id"].unique(maintain_order=True).to_list()
    fast = score_file._fix_runs(gps, gps["event"].is_null(), ends)
    assert fast is not None
    at, cols = slow(gps)
    assert fast[0] == at  # vehicles with events only have no entry in either
    for x, y in zip(fast[1], cols, strict=True):
        assert x.dtype == y.dtype
        assert np.array_equal(x, y, equal_nan=True)


def test_fix_runs_leave_unsorted_or_interleaved_files_to_the_sort() -> None:
    rng = np.random.default_rng(1)
    gps = frame(rng, ["a", "b"], events=0.1)
    assert score_file._vehicle_runs(frame(rng, ["a", "b", "a"], events=0.1))[1] is None  # a vehicle in two runs
    second = int(gps["event"].is_null().arg_true()[1])  # a's first fixes (it has more than one at this seed)
    assert gps["vehicle_id"][second] == "a"
    backwards = gps.with_columns(pl.when(pl.int_range(pl.len()) == second).then(0).otherwise("t_ms").alias("t_ms"))
    fix = backwards["event"].is_null()
    assert score_file._fix_runs(backwards, fix, score_file._vehicle_runs(backwards)[1]) is None
    nulls = gps.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise("t_ms").alias("t_ms"))
    assert score_file._fix_runs(nulls, nulls["event"].is_null(), score_file._vehicle_runs(nulls)[1]) is None
    # an event-only run between two runs of fixes does not hide the time order across vehicles
    ev_only = pl.concat([gps, frame(rng, ["e"], events=1.0), frame(rng, ["f"], events=0.0)])
    fast = score_file._fix_runs(ev_only, ev_only["event"].is_null(), score_file._vehicle_runs(ev_only)[1])
    assert fast is not None and fast[0] == slow(ev_only)[0]


@pytest.mark.parametrize("seed", range(6))
def test_kept_kernel_equals_boolean_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 50, int(rng.integers(0, 12)))
    sizes[: 1 + seed % 3] = 0  # empty trips, at the start
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(off[-1])
    keep = (rng.random(n) < [0.0, 0.5, 0.97, 1.0, 0.9, 0.1][seed]).astype(np.uint8)
    cols = [rng.normal(size=n) for _ in range(5)]
    cols[3][rng.random(n) < 0.3] = np.nan
    phone = rng.integers(-1, 2, n).astype(np.int8)
    nk = int(keep.sum())
    out = [np.empty(nk) for _ in range(5)]
    pg = np.empty(nk, np.int8)
    cols[1][rng.random(n) < 0.05] = rng.choice([np.nan, np.inf, -np.inf, -1.0, -0.0])  # speeds refused
    goff = np.full(off.shape[0], -1, np.int64)
    ok = np.ones(off.shape[0] - 1, np.uint8)
    kept_kernel(off, keep, *cols, phone, goff, *out, pg, ok)
    kb = keep.astype(bool)
    for o, c in zip(out + [pg], cols + [phone], strict=True):
        assert np.array_equal(o, c[kb], equal_nan=True)
    assert np.array_equal(goff, np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[off])
    # the trips holding a kept speed that is not finite and non-negative, as the batch found them before
    vg = out[1]
    badv = ~(np.isfinite(vg) & (vg >= 0))
    want = np.ones_like(ok)
    want[np.unique(np.searchsorted(goff, np.flatnonzero(badv), side="right") - 1)] = 0
    assert np.array_equal(ok, want)


def test_quarter_runs_kernel_edges() -> None:
    """Runs of equal quarters (the offsets themselves: tests/test_score_batch.py against local_offsets)."""
    t = np.array([0.0, 899.999, 900.0, 900.0, 100.0, -0.5, -0.5, 1e12])
    heads, q = np.empty(t.shape[0], np.int64), np.empty(t.shape[0], np.int64)
    r = quarter_runs_kernel(t, 900.0, False, heads, q)
    assert heads[:r].tolist() == [0, 2, 4, 5, 7]
    assert q[:r].tolist() == np.floor(t[[0, 2, 4, 5, 7]] / 900.0).astype(np.int64).tolist()
    assert quarter_runs_kernel(np.zeros(0), 900.0, False, heads, q) == 0
    assert quarter_runs_kernel(np.zeros(1), 900.0, True, heads, q) == 0
    for tz in ("Europe/Amsterdam", "America/New_York"):  # the midpoints without making them
        tt = np.sort(np.random.default_rng(2).uniform(1.77e9, 1.80e9, 2000))
        want = quarter_offsets(0.5 * (tt[1:] + tt[:-1]), tz)
        assert np.array_equal(quarter_offsets(tt, tz, mid=True), want)
        assert np.array_equal(want, local_offsets(0.5 * (tt[1:] + tt[:-1]), tz))
    assert quarter_offsets(np.zeros(1), "UTC", mid=True).shape == (0,)
    assert quarter_offsets(np.zeros(0), "UTC", mid=True).shape == (0,)
    out = np.empty(t.shape[0])
    fill_runs_kernel(heads[:r], np.arange(r, dtype=np.float64), out)
    assert out.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]


def test_channel_in_one_pass_equals_count_then_fill() -> None:
    """``channel_batch_kernel`` into long enough outputs gives what counting first then filling gives (the batch's
    one pass), and outputs one sample too short are refused with out_off[-1] = -1 (the batch then counts first)."""
    from scoring.batch import channel_batch_kernel

    rng = np.random.default_rng(3)
    sizes = [0, 1, 2, 5, 300, 40, 1200]
    t = np.concatenate([1.79e9 + np.cumsum(rng.choice([1.0, 1.0, 0.5, 2.0, 30.0], n)) for n in sizes])
    v = np.abs(rng.normal(10, 5, t.shape[0]))
    h = np.mod(np.cumsum(rng.normal(0, 10, t.shape[0])), 360)
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    nt = len(sizes)
    args = (2.0, 5.0, 3.0, 2.0)
    wh = np.ones(nt, np.uint8)
    e = np.zeros(0)

    def run(cap: int | None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        ch_off, src = np.zeros(nt + 1, np.int64), np.zeros(nt, np.int8)
        if cap is None:
            channel_batch_kernel(off, t, v, h, wh, *args, ch_off, e, e, e, e, src)
            cap = int(ch_off[-1])
        outs = [np.full(cap, -7.0) for _ in range(4)]
        channel_batch_kernel(off, t, v, h, wh, *args, ch_off, *outs, src)
        return ch_off, [o[: max(int(ch_off[-1]), 0)] for o in outs], src

    ref_off, ref, ref_src = run(None)
    n = int(ref_off[-1])
    assert n > 500
    for cap in (n, n + 5000):
        ch_off, outs, src = run(cap)
        assert np.array_equal(ch_off, ref_off) and np.array_equal(src, ref_src)
        for a, b in zip(outs, ref, strict=True):
            assert np.array_equal(a, b, equal_nan=True)
    assert run(n - 1)[0][-1] == -1


FAULTS = """
import resource, sys
import numpy as np
from ubi.stages.score_file import keep_freed_memory
if sys.argv[1] == "1":
    assert keep_freed_memory()
a = np.ones(2_000_000)  # 16 MB, a size glibc maps fresh by default
del a
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(2_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_a_freed_array_without_faulting_it_in_again() -> None:
    """What `ubi score-file` sets (keep_freed_memory): a freed 16 MB array's pages serve the next one (a fresh
    mapping faults in ~4,000 pages again, unless transparent huge pages make them few)."""
    root = Path(__file__).resolve().parents[1]
    faults = [
        int(
            subprocess.run(
                [sys.executable, "-c", FAULTS, on], cwd=root, capture_output=True, text=True, check=True
            ).stdout
        )
        for on in ("0", "1")
    ]
    assert faults[1] < 50, faults
    assert faults[1] < faults[0] or faults[0] < 50


def test_plan_ignition_without_batches_plans_the_same_trips() -> None:
    """``plan_ignition(..., batches=False)`` (a vehicle without IMU samples) plans the trips it plans with them,
    field for field, only without the messages' IMU windows (empty, and trip_imu gives no samples for them)."""
    from scoring.filecut import plan_ignition, trip_imu

    rng = np.random.default_rng(11)
    t = np.cumsum(rng.choice([1000, 1000, 1000, 0, 40_000], 600)).astype(np.int64) + 1_790_000_000_000
    ev_t = np.sort(rng.choice(t, 24, replace=False))
    ev_t[0] = t[0]
    ev_on = rng.random(24) < 0.6
    ev_on[0] = True
    with_b = plan_ignition("v", t, ev_t, ev_on, 10**9)
    without = plan_ignition("v", t, ev_t, ev_on, 10**9, batches=False)
    assert with_b is not None and without is not None and len(with_b) >= 5
    assert any(p.batch_lo.shape[0] for p in with_b)
    for a, b in zip(with_b, without, strict=True):
        assert tuple(a)[:8] + tuple(a)[10:] == tuple(b)[:8] + tuple(b)[10:]
        assert b.batch_lo.shape == b.batch_nxt.shape == (0,)
        it = np.arange(t[0], t[-1], 100, dtype=np.int64)
        acc = (np.ones(it.shape[0]), np.ones(it.shape[0]), np.ones(it.shape[0]))
        assert trip_imu(it, acc, 10, t, b)[0].shape == (0,)
    assert plan_ignition("v", t, ev_t[1:] + 1, ev_on[1:], 10**9, batches=False) is None  # fixes before the first event


def test_plan_motion_without_batches_plans_the_same_trips() -> None:
    """``plan_motion(..., batches=False)`` plans the trips it plans with them, field for field, only without the
    messages' IMU windows; a drive of stops, gaps and inaccurate fixes gives several trips of both endings."""
    from scoring.filecut import plan_motion
    from scoring.motion import MotionRules
    from ubi.common.config import ScoringConfig

    rng = np.random.default_rng(4)
    dt = rng.choice([1000, 1000, 1000, 1000, 2000, 400_000], 3000, p=[0.3, 0.3, 0.2, 0.19, 0.005, 0.005])
    t = (np.cumsum(dt) + 1_790_000_000_000).astype(np.int64)
    phase = (np.arange(3000) // 150) % 3  # driving, stopped, driving
    speed = np.where(phase == 1, 0.0, np.abs(rng.normal(12, 4, 3000)))
    acc = np.where(rng.random(3000) < 0.05, 80.0, rng.uniform(3, 12, 3000))
    rules = MotionRules.of(ScoringConfig())
    with_b, without = plan_motion("v", t, speed, acc, rules), plan_motion("v", t, speed, acc, rules, batches=False)
    assert len(with_b) >= 5 and {p.ended_by for p in with_b} == {"motion_stop", "data_gap"}
    for a, b in zip(with_b, without, strict=True):
        assert tuple(a)[:8] + tuple(a)[10:] == tuple(b)[:8] + tuple(b)[10:]
        assert a.batch_lo.shape[0] == a.messages and b.batch_lo.shape == b.batch_nxt.shape == (0,)


def motion_used_reference(t: np.ndarray, acc: np.ndarray, max_acc: float) -> tuple[np.ndarray, ...]:
    """The NumPy that motion_used_kernel replaced in plan_motion."""
    n = t.shape[0]
    last = np.maximum.accumulate(np.where(acc <= max_acc, t, np.iinfo(np.int64).min))
    prev = np.concatenate([[np.iinfo(np.int64).min], last[:-1]])
    used = (acc <= max_acc) & (t > prev)
    cum = np.concatenate([[0], np.cumsum(used)])
    b0 = 10 * np.arange(-(-n // 10))
    return np.flatnonzero(used), cum[b0], cum[np.minimum(b0 + 10, n)] - 1


@pytest.mark.parametrize("seed", range(6))
def test_motion_used_kernel_equals_reference(seed: int) -> None:
    """The used fixes and each message's first/last used fix as the NumPy gives them: random times with repeats and
    steps back, NaN and inaccurate fixes, lengths around whole messages, none at all."""
    from scoring.filecut import motion_used_kernel

    rng = np.random.default_rng(seed)
    for n in (0, 1, 9, 10, 11, 20, 257):
        t = np.cumsum(rng.choice([1000, 1000, 0, -3000, 60_000], n)).astype(np.int64)
        acc = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 60, n))
        if seed == 0:
            acc[:] = 99.0  # none accurate
        ui, lo, hi = np.empty(n, np.int64), np.empty(-(-n // 10), np.int64), np.empty(-(-n // 10), np.int64)
        k = motion_used_kernel(t, acc, 30.0, ui, lo, hi)
        ref = motion_used_reference(t, acc, 30.0)
        assert np.array_equal(ui[:k], ref[0]) and np.array_equal(lo, ref[1]) and np.array_equal(hi, ref[2])


def test_group_kernels_read_from_the_file_arrays_as_from_concatenated_trips(tmp_path: Path) -> None:
    """The batch reading each trip's fixes where they lie in score-file's fix arrays (``FixSource``) gives every
    ``GroupKernels`` array the concatenation gives, and falls back to it where a trip is not one slice of them."""
    from dataclasses import fields, replace

    from scoring.batch import _from_source, group_kernels
    from simulator.fleet import FleetSpec, make_trips, vehicle_ids
    from simulator.offline import trip_frames
    from ubi.common.config import ScoringConfig

    cfg = ScoringConfig()
    spec = FleetSpec(vehicles=3, days=2, seed=5)
    gps, _ = trip_frames(spec, [t for v in vehicle_ids(3) for t in make_trips(spec, v)])
    gps.with_columns(pl.col("accuracy_m") * np.random.default_rng(1).uniform(0.2, 20, gps.height)).write_parquet(
        tmp_path / "g.parquet"
    )
    gps = score_file.read_table(tmp_path / "g.parquet", score_file.GPS_COLUMNS, score_file.REQUIRED_GPS)
    trips, limits, src = score_file._cut(gps, None, cfg)
    assert len(trips) >= 10 and (src.start >= 0).all()
    sizes = np.array([t.t_ms.shape[0] for t in trips], np.int64)
    assert _from_source(src, src.start, sizes)
    a, b = group_kernels(trips, limits, cfg), group_kernels(trips, limits, cfg, src, src.start)
    assert int(a.keep.sum()) < a.keep.shape[0] and int(a.ev_n[:, :2].sum()) > 10  # fixes cleaned away, events

    def same(x, y) -> None:
        for f in fields(x):
            if f.name not in ("cfg", "ev_s", "ev_e", "ev_p"):
                assert np.array_equal(getattr(x, f.name), getattr(y, f.name), equal_nan=True), f.name
        for k in range(len(trips)):  # the events written (the rest of the buffers is never read)
            w, m = x.goff[k] + k, int(x.ev_n[k, 0] + x.ev_n[k, 1])
            for e in ("ev_s", "ev_e", "ev_p"):
                assert np.array_equal(getattr(x, e)[w : w + m], getattr(y, e)[w : w + m]), e

    same(a, b)
    bad = replace(src, start=np.where(np.arange(len(trips)) == 2, -1, src.start))
    assert not _from_source(bad, bad.start, sizes)
    same(a, group_kernels(trips, limits, cfg, bad, bad.start))


@pytest.mark.parametrize("nan_in", [(), ("heading_deg",), ("phone", "limit_kmh", "lat")])
def test_read_table_rewrites_only_columns_with_nan_as_every_column_was(tmp_path: Path, nan_in: tuple) -> None:
    """read_table turns NaN into null (an empty CSV cell) only in the float columns that hold one: the same frame
    as when every float column went through fill_nan (the code before), for files with and without NaN, a float
    phone column included."""
    rng = np.random.default_rng(2)
    n = 200
    df = pl.DataFrame(
        {
            "vehicle_id": ["a"] * n,
            "t_ms": np.arange(n, dtype=np.int64) * 1000,
            "lat": rng.uniform(50, 51, n),
            "lon": rng.uniform(4, 5, n),
            "speed_mps": rng.uniform(0, 30, n),
            "heading_deg": rng.uniform(0, 360, n),
            "phone": rng.integers(0, 2, n).astype(np.float64),
            "limit_kmh": rng.choice([30.0, 50.0], n),
        }
    ).with_columns([pl.when(pl.int_range(n) % 7 == 3).then(np.nan).otherwise(pl.col(c)).alias(c) for c in nan_in])
    df.write_parquet(tmp_path / "g.parquet")

    def before(d: pl.DataFrame) -> pl.DataFrame:
        return d.select(
            [
                (pl.col(c).fill_nan(None) if d.schema[c].is_float() else pl.col(c)).cast(t)
                if c in d.columns
                else pl.lit(None, dtype=t).alias(c)
                for c, t in score_file.GPS_COLUMNS.items()
            ]
        )

    got = score_file.read_table(tmp_path / "g.parquet", score_file.GPS_COLUMNS, score_file.REQUIRED_GPS)
    assert got.equals(before(df), null_equal=True) and got.schema == before(df).schema
    assert sum(got[c].null_count() for c in nan_in) == len(nan_in) * len(range(3, n, 7))


def _per_trip_imu(it, acc, hz, t, plan) -> list:
    """trip_imu per trip, a motion trip's IMU masked to [start, end]: what cut_frames did before."""
    from scoring.filecut import trip_imu

    out = []
    for p in plan:
        imu = trip_imu(it, acc, hz, t, p)
        if p.clip_imu and imu[0].shape[0]:
            ik = (imu[0] >= p.start_ms) & (imu[0] <= p.end_ms)
            imu = tuple(x[ik] for x in imu)
        out.append(imu)
    return out


@pytest.mark.parametrize("regular", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_vehicle_trips_imu_equals_trip_imu_per_trip(seed: int, regular: bool) -> None:
    """All of a vehicle's trips' IMU from one kernel call equals trip_imu trip by trip (and the motion trips' mask):
    ignition and motion plans, IMU with jitter, repeated times and holes, messages whose windows overlap (grids
    that must be sorted), a trip without messages, no IMU at all. ``regular``: a device sampling exactly on the
    grid t0 + rint(q * 1000 / hz) (the kernel's shortcut for a sample on a grid point), with a few samples repeated
    at the same time (the earlier one is the nearest), NaN values and holes."""
    from scoring.filecut import PlannedTrip, plan_ignition, plan_motion, vehicle_trips_imu
    from scoring.motion import MotionRules
    from ubi.common.config import ScoringConfig

    rng = np.random.default_rng(seed)
    n = 2000
    t = (np.cumsum(rng.choice([1000, 1000, 1000, 30_000], n, p=[0.4, 0.4, 0.19, 0.01])) + 1_790_000_000_000).astype(
        np.int64
    )
    hz = int(rng.choice([10, 30, 100] if regular else [10, 25, 100]))
    if regular:
        t_first = t[0] - 5000
        grid = t_first + np.rint(np.arange((t[-1] + 5000 - t_first) * hz // 1000) * (1000.0 / hz)).astype(np.int64)
        it = np.sort(np.concatenate([grid, rng.choice(grid, 40)])).astype(np.int64)  # 40 times twice
        it = it[np.r_[True, rng.random(it.shape[0] - 1) > 0.02]]  # holes (the first sample kept: t0 stays)
    else:
        grid = np.arange(t[0] - 5000, t[-1] + 5000, 1000 // hz)
        grid = grid + (rng.integers(-3, 4, grid.shape[0]) if seed % 2 else 0)  # jitter
        it = np.sort(np.concatenate([grid, rng.integers(t[0], t[-1], 300)])).astype(np.int64)  # repeated times too
        it = it[rng.random(it.shape[0]) > 0.05]  # holes
    acc = tuple(rng.normal(0, 1, it.shape[0]) for _ in range(3))
    if regular:
        for a in acc:
            a[rng.random(it.shape[0]) < 0.01] = np.nan
    ev_t = np.sort(rng.choice(t, 30, replace=False))
    ev_t[0] = t[0]
    ev_on = rng.random(30) < 0.6
    ev_on[0] = True
    speed = np.where((np.arange(n) // 120) % 3 == 1, 0.0, 12.0)
    plans = [
        plan_ignition("v", t, ev_t, ev_on, 10**9),
        plan_motion("v", t, speed, np.full(n, 5.0), MotionRules.of(ScoringConfig())),
    ]
    bl = np.array([0, 10, 5, 20], np.int64)  # overlapping message windows: a grid to sort
    nx = np.array([t[30], t[25], t[40], t[50]], np.int64)
    plans.append([PlannedTrip("x", int(t[0]), int(t[50]), 0, 50, 4, True, "ignition_off", bl, nx, 0, 4)])
    plans.append(plans[0][:3] + [PlannedTrip("e", 0, 1, 0, 0, 1, True, "ignition_off", bl[:0], nx[:0], 0, 1)])
    for plan in plans:
        assert plan is not None and len(plan) >= 1
        for it_, acc_ in ((it, acc), (it[:0], tuple(a[:0] for a in acc))):
            got, ref = vehicle_trips_imu(it_, acc_, hz, t, plan), _per_trip_imu(it_, acc_, hz, t, plan)
            assert len(got) == len(ref)
            for g, r in zip(got, ref, strict=True):
                for x, y in zip(g, r, strict=True):
                    assert np.array_equal(x, y, equal_nan=True) and x.dtype == y.dtype
    assert sum(x[0].shape[0] for x in vehicle_trips_imu(it, acc, hz, t, plans[2])) > 0


def test_column_array_equals_to_numpy_over_many_chunks() -> None:
    """column_array (chunk by chunk into one NumPy array) gives what polars' to_numpy gives after fill_null(NaN):
    the same values and dtype for a float column of several chunks with nulls and NaNs, an integer column, an empty
    column and one chunk."""
    rng = np.random.default_rng(3)
    parts = [rng.normal(0, 1, k).tolist() for k in (5, 0, 17, 1, 40)]
    parts[0][2] = parts[2][3] = parts[4][30] = None
    parts[0][4] = float("nan")
    f = pl.concat([pl.Series("a", p, pl.Float64) for p in parts], rechunk=False)
    assert f.n_chunks() > 1 and f.null_count() == 3
    i = pl.concat([pl.Series("t", np.arange(k, dtype=np.int64) * 7) for k in (3, 8)], rechunk=False)
    for s in (f, i, f.rechunk(), pl.Series("e", [], pl.Float64), pl.Series("e", [], pl.Int64)):
        got = score_file.column_array(s)
        ref = s.fill_null(np.nan).to_numpy() if s.dtype.is_float() else s.to_numpy()
        assert np.array_equal(got, ref, equal_nan=True) and got.dtype == ref.dtype


@pytest.mark.parametrize("key", ["t_ms", "vehicle_id"])
def test_rows_without_their_vehicle_or_time_are_refused_with_the_row(tmp_path: Path, key: str) -> None:
    """An IMU or GPS row without t_ms / vehicle_id is a clear ScoreFileError naming the column and the first such
    row (it used to crash inside the IMU arrays with 'cannot convert float NaN to integer')."""
    from ubi.common.errors import ScoreFileError

    n = 30
    imu = pl.DataFrame(
        {
            "vehicle_id": ["v"] * n,
            "t_ms": np.arange(n, dtype=np.int64) * 100,
            "acc_lon": np.zeros(n),
            "acc_lat": np.zeros(n),
            "acc_vert": np.full(n, 9.8),
        }
    ).with_columns(pl.when(pl.int_range(pl.len()).is_in([7, 11])).then(None).otherwise(pl.col(key)).alias(key))
    imu.write_parquet(tmp_path / "i.parquet")
    with pytest.raises(ScoreFileError, match=rf"2 row\(s\) without {key} \(the first: data row 8\)"):
        score_file.read_table(tmp_path / "i.parquet", score_file.IMU_COLUMNS, score_file.REQUIRED_IMU)


@pytest.mark.parametrize("seed", range(3))
def test_distinct_through_runs_equals_unique(seed: int) -> None:
    """distinct (the runs' values, then unique) is the set ``unique`` gives, for grouped and interleaved columns,
    nulls and an empty column."""
    rng = np.random.default_rng(seed)
    names = [f"v{k}" for k in range(7)] + [None]
    grouped = pl.Series("v", sorted(rng.choice(7, 500).tolist())).cast(pl.String)
    mixed = pl.Series("v", [names[k] for k in rng.integers(0, 8, 500)], pl.String)
    for s in (grouped, mixed, pl.Series("v", [], pl.String)):
        assert score_file.distinct(s) == set(s.unique().to_list())
