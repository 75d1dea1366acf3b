"""Simulated device classes and calibrated motion (issue 12): the simulator looks like real devices, and the scorer,
through score-file's public path, recovers the simulator's graded truth on each device class.

Tolerances (per profile, all kinds pooled over a 5-vehicle x 3-day fleet; measured figures in the README):
- IMU devices (oem, phone_raw, phone_linear): the IMU is used on >= 95% of trips; recall of true events (every
  band) >= 0.95 and of harsh-or-severe >= 0.85; precision >= 0.7 on OEM, >= 0.4 on phones; harsh-or-severe
  counts within 35% of the truth on OEM, within 120% on phones. Phones are the known gap: their vibration
  (0.3 m/s^2 per 10 Hz sample, calibrated on the real phones' noise in the 0.5 s mean: see
  test_simulated_phone_vibration_is_that_of_the_real_phones) lets manoeuvres just under a cut point through the
  0.5 s mean, so harsh-or-severe counts run 1.2-1.6x the truth; a strict xfail test holds the target (precision
  0.8, counts within 25%) until the scorer meets it. A wider mean for phones closes most of it (measured with the
  noisier 0.4 of before, 1.5 s: precision 0.59 -> 0.78, harsh+ 152 -> 99 detections for 80 true) but not on the
  real labelled phone trips
  (bench/labelled.py, driverBehaviorDataset): labelled aggressive brakes found 9 -> 7 of 12 (harsh+ 8 -> 0),
  turns 10 -> 3; real manoeuvres are short and the wider mean flattens them. The real data wins: 0.5 s stays.
- OBD (speed channel, no IMU, no cornering): recall >= 0.9 every band, >= 0.7 harsh-or-severe; precision >= 0.5.
Matching is per trip and kind: min(true, detected) events count as matched (trips hold few events).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ingest.contract import decode, encode_telemetry
from simulator.fleet import (
    FleetSpec,
    SimTrip,
    device_profile,
    graded_truth,
    ground_truth_rows,
    make_trips,
    sensor_streams,
    vehicle_ids,
)
from simulator.motion import DT, DriverProfile, TripTrace, make_trip_calibrated, manoeuvre
from simulator.offline import trip_frames, write_offline
from simulator.run import vehicle_stream
from simulator.sensors import PROFILES, SCORING_CLASS, device_view, parse_device_mix
from tests import realdata
from ubi.common.config import IngestConfig, ScoringConfig
from ubi.common.messages import TelemetryBatch
from ubi.stages.score_file import GPS_COLUMNS, score_frames, score_paths

CFG = ScoringConfig()
KINDS = {"brake": "harsh_brake", "accel": "harsh_accel", "corner": "harsh_corner"}
START = date(2026, 10, 5)


def spec(profile: str, **kw) -> FleetSpec:
    return FleetSpec(vehicles=5, days=3, seed=11, start=START, motion="calibrated", device_mix=profile, **kw)


def score_fleet(s: FleetSpec, tmp: Path, cfg: ScoringConfig = CFG) -> tuple[list[SimTrip], list[dict], pl.DataFrame]:
    """The fleet written as score-file input (offline mode) and scored by ``score_paths``; truth events beside."""
    trips = [t for v in vehicle_ids(s.vehicles) for t in make_trips(s, v)]
    gp, ip, _ = write_offline(s, {"all": trips}, tmp)
    has_imu = pl.read_parquet(ip).height > 0
    # each vehicle scored with its device class's profile, as a user's [scoring] device_classes would say
    classes = {v: SCORING_CLASS[device_profile(s, v).name] for v in vehicle_ids(s.vehicles)}
    cfg = replace(cfg, device_classes={**cfg.device_classes, **classes})
    rows = score_paths([gp], [ip] if has_imu else [], cfg)
    return trips, rows, pl.DataFrame(ground_truth_rows(s, trips)[1])


def recovery(trips: list[SimTrip], rows: list[dict], ev: pl.DataFrame, kinds) -> dict[str, float]:
    """Pooled per-trip matching of observable true events against the trip's graded counts."""
    tot = dict.fromkeys(("m_all", "d_all", "t_all", "m_h", "d_h", "t_h"), 0)
    for tr in trips:
        r = [x for x in rows if x["vehicle_id"] == tr.vehicle_id and abs(x["start_ms"] - tr.start_ms) < 60_000]
        assert len(r) == 1, (tr.vehicle_id, tr.start_ms)
        e = ev.filter(
            (pl.col("vehicle_id") == tr.vehicle_id) & (pl.col("trip_start_ms") == tr.start_ms) & pl.col("observable")
        )
        for k in kinds:
            ek = e.filter(pl.col("type") == KINDS[k])
            ta, th = ek.height, ek.filter(pl.col("grade") != "moderate").height
            g = r[0][f"harsh_{k}_grades"]
            da, dh = sum(g), g[1] + g[2]
            tot["m_all"] += min(ta, da)
            tot["m_h"] += min(th, dh)
            tot["d_all"] += da
            tot["d_h"] += dh
            tot["t_all"] += ta
            tot["t_h"] += th
    return {
        "precision": tot["m_all"] / max(tot["d_all"], 1),
        "recall": tot["m_all"] / max(tot["t_all"], 1),
        "precision_harsh": tot["m_h"] / max(tot["d_h"], 1),
        "recall_harsh": tot["m_h"] / max(tot["t_h"], 1),
        "truth": tot["t_all"],
        "truth_harsh": tot["t_h"],
        "detected_harsh": tot["d_h"],
    }


# --- the motion is calibrated on real recordings -----------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated_trips() -> list[SimTrip]:
    s = FleetSpec(vehicles=12, days=5, seed=3, start=START, motion="calibrated")
    return [t for v in vehicle_ids(s.vehicles) for t in make_trips(s, v)]


def one_second(tr: TripTrace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    box = np.ones(10) / 10
    lon = np.convolve(tr.accel, box, "same")[::10]
    lat = np.abs(np.convolve(tr.speed * tr.yaw_rate, box, "same"))[::10]
    return lon, lat, tr.speed[::10]


def test_calibrated_motion_matches_real_forward_and_lateral_quantiles(calibrated_trips):
    """Simulated 1 s forward acceleration at >= 30 km/h has the p1 / p99 of the 28 real Omaha drives (1 Hz logger)
    within 0.3 m/s^2, and |lateral| p99 within 0.4 (the real figures are computed here when ../shared/realdata is
    present; -2.10 / +2.11 and 2.44 otherwise)."""
    parts = [one_second(t.trace) for t in calibrated_trips]
    fast = np.concatenate([p[2] for p in parts]) >= 30 / 3.6
    lon = np.concatenate([p[0] for p in parts])[fast]
    lat = np.concatenate([p[1] for p in parts])[fast]
    real = (-2.10, 2.11, 2.44)
    if realdata.available():
        g, imu = realdata.frames("driveplotr-nds")
        j = g.join(imu, on=["vehicle_id", "t_ms"]).filter(pl.col("speed_mps") >= 30 / 3.6)
        x, y = j["acc_lon"].to_numpy(), np.abs(j["acc_lat"].to_numpy())
        real = (float(np.nanpercentile(x, 1)), float(np.nanpercentile(x, 99)), float(np.nanpercentile(y, 99)))
    p1, p99 = np.percentile(lon, [1, 99])
    assert p1 == pytest.approx(real[0], abs=0.3) and p99 == pytest.approx(real[1], abs=0.3), (p1, p99, real)
    assert np.percentile(lat, 99) == pytest.approx(real[2], abs=0.4), (np.percentile(lat, 99), real)
    assert np.abs(lon).max() < 7.5 and lat.max() < 8.0  # within tyre limits


def test_calibrated_motion_is_exact_and_most_events_sit_near_the_cut_points(calibrated_trips):
    graded = []
    for t in calibrated_trips:
        tr = t.trace
        assert tr.speed.min() >= 0 and tr.speed[0] == 0 and tr.speed[-1] == 0
        assert np.allclose(np.diff(tr.speed) / DT, tr.accel[:-1], atol=1e-9)  # speed integrates the acceleration
        graded += graded_truth(tr)
    kinds = {typ: [(p, g) for ty, _, _, p, g in graded if ty == typ] for typ in KINDS.values()}
    cut = {"harsh_brake": CFG.brake_moderate_mps2, "harsh_accel": CFG.accel_moderate_mps2}
    cut["harsh_corner"] = CFG.corner_moderate_mps2
    for typ, ev in kinds.items():
        peaks = np.array([p for p, _ in ev])
        grades = [g for _, g in ev]
        assert len(ev) >= 20, typ
        assert (peaks >= cut[typ]).all()
        assert np.mean(peaks < 1.25 * cut[typ]) >= 0.5, typ  # at least half within 25% above the moderate cut
        assert grades.count("moderate") > grades.count("harsh") > grades.count("severe"), (typ, grades)


def test_manoeuvre_changes_speed_exactly_with_its_peak():
    for dv, peak in ((13.9, 2.5), (3.0, 1.1), (33.0, 4.4)):
        a = manoeuvre(dv, peak, 0.2, 0.3)
        assert a.sum() * DT == pytest.approx(dv, rel=1e-12)
        assert a.max() == pytest.approx(peak, rel=0.1) and a.min() >= 0


# --- device views ----------------------------------------------------------------------------------------------
def test_device_mix_is_parsed_and_refuses_unknown_profiles():
    assert parse_device_mix("") == {"ideal": 1.0}
    assert parse_device_mix("phone_raw:3,obd:1") == {"phone_raw": 0.75, "obd": 0.25}
    for bad in ("phone:1", "obd:x", "obd:-1", "obd:0"):
        with pytest.raises(ValueError):
            parse_device_mix(bad)
    with pytest.raises(ValueError):
        FleetSpec(motion="wild")
    s = FleetSpec(vehicles=40, days=1, device_mix="phone_raw:1,obd:1,oem:2")
    from simulator.fleet import device_profile

    names = [device_profile(s, v).name for v in vehicle_ids(40)]
    assert set(names) == {"phone_raw", "obd", "oem"} and names.count("oem") > names.count("obd")


def test_device_profiles_have_the_real_artefacts():
    s = FleetSpec(vehicles=3, days=3, seed=5, start=START, motion="calibrated")
    trip = max((t for v in vehicle_ids(3) for t in make_trips(s, v)), key=lambda t: t.distance_m)
    tr = trip.trace
    from simulator.fleet import _positions

    lat, lon = _positions(tr, trip.home)
    rng = np.random.default_rng(0)
    obd = device_view(PROFILES["obd"], rng, DT, tr.speed, tr.accel, tr.yaw_rate, lat, lon, tr.heading)
    assert np.median(np.diff(obd.gps_t_s)) == pytest.approx(0.25, abs=0.05) and obd.imu_t_s.shape[0] == 0
    assert np.allclose(obd.speed * 3.6, np.round(obd.speed * 3.6))  # whole km/h
    oem = device_view(PROFILES["oem"], rng, DT, tr.speed, tr.accel, tr.yaw_rate, lat, lon, tr.heading)
    assert np.median(np.diff(oem.gps_t_s)) == pytest.approx(0.1) and np.median(np.diff(oem.imu_t_s)) == pytest.approx(
        0.1
    )
    for name in ("phone_raw", "phone_linear"):
        p = replace(PROFILES[name], cold_start_s=(60.0, 60.0), repeat_share=0.05)
        ph = device_view(p, rng, DT, tr.speed, tr.accel, tr.yaw_rate, lat, lon, tr.heading)
        assert 0.8 <= ph.lag_s <= 1.5
        # the reported speed is the true speed ph.lag_s earlier (noise aside)
        late = np.interp(ph.gps_t_s - ph.lag_s, np.arange(tr.speed.shape[0]) * DT, tr.speed)
        locked = ph.gps_t_s >= ph.lock_s + 15
        assert np.median(np.abs(ph.speed[locked] - late[locked])) < 0.3
        # cold start: 0 before the first real fix at 25-45 m, then a jump at ~30 m accuracy
        pre = ph.gps_t_s < ph.lock_s
        assert (ph.speed[pre] == 0).all() and (ph.accuracy[pre] >= 25).all()
        first = int(np.argmax(~pre))
        assert 25 <= ph.accuracy[first] <= 31
        # repeated-then-stepped: some moving fixes equal the previous one exactly
        moving = ph.speed[1:] > 2
        assert (ph.speed[1:][moving] == ph.speed[:-1][moving]).mean() > 0.02
        # gravity: raw carries |g| in the device axes, linear does not
        norm = np.linalg.norm(ph.acc.mean(axis=1))
        assert norm == pytest.approx(9.81, abs=0.3) if name == "phone_raw" else norm < 0.5


def _mean_noise(t_s: np.ndarray, x: np.ndarray) -> float:
    """What event detection sees of a device's noise: the robust spread (1.4826 MAD) of the 0.5 s moving mean about
    the 2 s moving mean, at the device's own rate (the per-sample spread depends on the rate, this does not)."""
    from scoring.align import smooth

    hz = 1.0 / float(np.median(np.diff(t_s)))
    r = smooth(x, max(1, round(0.5 * hz))) - smooth(x, max(1, round(2.0 * hz)))
    r = r[np.isfinite(r)]
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


@pytest.mark.skipif(not realdata.available(), reason="../shared/realdata is not here")
def test_simulated_phone_vibration_is_that_of_the_real_phones():
    """The phones' noise in the 0.5 s mean, horizontal axes: the simulated phone (10 Hz) within the range of the real
    phones in ../shared (quat-orient at 16.7 Hz, the ikhyd iPhone at 25.6 Hz), widened by 15%. With the 0.4 m/s^2
    per 10 Hz sample used before it was 0.16-0.21, above both; the over-count of harsh events on simulated phones
    was partly the simulator's."""
    real = []
    for name in ("quat-orient", "ikhyd"):
        _, imu = realdata.frames(name)
        for _, g in imu.group_by("vehicle_id"):
            g = g.sort("t_ms")
            real += [_mean_noise(g["t_ms"].to_numpy() / 1000.0, g[c].to_numpy()) for c in ("acc_lon", "acc_lat")]
    s = replace(spec("phone_linear"), vehicles=4, days=2)
    _, imu = trip_frames(s, [t for v in vehicle_ids(s.vehicles) for t in make_trips(s, v)])
    sim = []
    for _, g in imu.group_by("vehicle_id"):
        g = g.sort("t_ms")
        sim += [_mean_noise(g["t_ms"].to_numpy() / 1000.0, g[c].to_numpy()) for c in ("acc_lon", "acc_lat")]
    assert 0.08 <= min(real) and max(real) <= 0.2, real  # what the recordings hold (0.10-0.16)
    assert min(real) / 1.15 <= float(np.median(sim)) <= max(real) * 1.15, (sorted(sim), sorted(real))
    assert max(sim) <= max(real) * 1.25, (sorted(sim), sorted(real))


def test_every_profile_streams_messages_the_contract_accepts():
    """One trip per device class through the live path's encoder and validator: every message accepted."""
    from simulator.fleet import device_profile

    cfg = IngestConfig()
    s = FleetSpec(
        vehicles=40, days=1, seed=2, start=START, motion="calibrated", device_mix="phone_raw,phone_linear,obd,oem"
    )
    seen: dict[str, tuple[int, int, int]] = {}
    for v in vehicle_ids(40):
        name = device_profile(s, v).name
        trips = make_trips(s, v)[:1]
        if name in seen or not trips:
            continue
        imu = fixes = 0
        for m in vehicle_stream(s, trips):
            if isinstance(m, TelemetryBatch):
                got = decode(v, "telemetry", encode_telemetry(m), int(m.sent_ms), cfg)
                assert isinstance(got, TelemetryBatch), (name, got)
                imu, fixes = imu + len(m.acc_lon), max(fixes, len(m.gps_t))
        seen[name] = (imu, fixes, len(trips))
    assert set(seen) == {"phone_raw", "phone_linear", "obd", "oem"}
    assert seen["obd"][0] == 0 and seen["phone_raw"][0] > 0  # the OBD dongle sends no accelerometer
    assert seen["oem"][1] >= 90 and seen["obd"][1] >= 35  # 10 Hz and ~4 Hz fixes in 10 s messages


# --- the scorer recovers the graded truth on every device class -------------------------------------------------
@pytest.mark.parametrize(
    "profile, prec, prec_h, count_tol",
    [
        ("oem", 0.7, 0.65, 0.35),
        ("phone_raw", 0.4, 0.3, 1.2),
        ("phone_linear", 0.4, 0.3, 1.2),
        pytest.param(
            "phone_raw",
            0.8,
            0.8,
            0.25,
            marks=pytest.mark.xfail(
                strict=True,
                reason="known scorer gap: with real phone vibration (0.3 m/s^2 at 10 Hz) the 0.5 s mean lets "
                "manoeuvres just under a cut point through; harsh+ counts 1.2-1.6x the truth (a wider mean fixes "
                "most of it here but loses the real labelled brakes and turns: module docstring)",
            ),
            id="phone_raw-strict",
        ),
    ],
)
def test_scorer_recovers_graded_truth_on_imu_devices(tmp_path, profile, prec, prec_h, count_tol):
    trips, rows, ev = score_fleet(spec(profile), tmp_path)
    used = [r["imu_status"] in ("vehicle_frame", "rotated") for r in rows]
    assert np.mean(used) >= 0.95, [r["imu_reason"] for r in rows if r["imu_status"] == "rejected"]
    if profile.startswith("phone"):
        lags = [r["imu_lag_s"] for r in rows if r["imu_lag_s"] is not None]
        assert 0.7 <= np.median(lags) <= 1.6  # the 0.8-1.5 s GPS lag is found
        assert all(r["imu_gravity"] == ("raw" if profile == "phone_raw" else "removed") for r in rows)
    rec = recovery(trips, rows, ev, KINDS)
    assert rec["truth"] >= 100 and rec["truth_harsh"] >= 15, rec
    assert rec["recall"] >= 0.95 and rec["recall_harsh"] >= 0.85, rec
    assert rec["precision"] >= prec and rec["precision_harsh"] >= prec_h, rec
    assert abs(rec["detected_harsh"] - rec["truth_harsh"]) <= count_tol * rec["truth_harsh"] + 3, rec


def test_scorer_recovers_graded_truth_on_obd_speed(tmp_path):
    trips, rows, ev = score_fleet(spec("obd"), tmp_path)
    assert all(r["imu_status"] == "none" and r["harsh_corners"] == 0 for r in rows)
    assert not ev.filter((pl.col("type") == "harsh_corner") & pl.col("observable")).height  # no lateral axis
    rec = recovery(trips, rows, ev, ("brake", "accel"))
    assert rec["recall"] >= 0.9 and rec["recall_harsh"] >= 0.7 and rec["precision"] >= 0.5, rec
    assert sum(r["speed_artefacts"] for r in rows) == 0


def _gentle_trip() -> TripTrace:
    """80 km/h after a 1.0 m/s^2 start, a long cruise, a 1.0 m/s^2 stop: no true event in any band."""
    up = manoeuvre(22.2, 1.0, 0.15, 0.5)
    down = -manoeuvre(22.2, 1.0, 0.2, 0.15)
    acc = np.concatenate([np.zeros(20), up, np.zeros(3000), down, np.zeros(50)])
    speed = np.maximum(np.concatenate([[0.0], np.cumsum(acc[:-1]) * DT]), 0.0)
    n = acc.shape[0]
    return TripTrace(speed, acc, np.zeros(n), np.full(n, 0.7), np.full(n, 25.0), [])


def test_artefacts_give_no_false_harsh_events():
    """A gentle trip seen by a phone whose GPS locks on at 80 km/h (0 -> 80 km/h in one fix at ~30 m accuracy) and
    repeats one moving fix in five (then steps), and by an OBD dongle: no harsh event on either path."""
    tr = _gentle_trip()
    assert graded_truth(TripTrace(tr.speed, tr.accel, tr.yaw_rate, tr.heading, tr.limit, [])) == []
    lat = 52.0 + np.cumsum(tr.speed * np.cos(0.7)) * DT / 111_000
    lon = 4.0 + np.cumsum(tr.speed * np.sin(0.7)) * DT / 68_000
    t0 = 1_790_000_000_000
    for name in ("phone_raw", "phone_linear", "obd"):
        p = PROFILES[name]
        if name != "obd":
            p = replace(p, cold_start_s=(40.0, 40.0), repeat_share=0.2)
        d = device_view(p, np.random.default_rng(7), DT, tr.speed, tr.accel, tr.yaw_rate, lat, lon, tr.heading)
        if name != "obd":
            first = int(np.argmax(d.gps_t_s >= d.lock_s))
            jump = np.diff(d.speed)[first - 1 : first + 3].max()  # the lock fix may itself be a repeat
            assert jump * 3.6 > 60  # the cold-start jump is in the data
        vid = f"v-{name}"
        gps = pl.DataFrame(
            {
                "vehicle_id": vid,
                "t_ms": t0 + np.round(d.gps_t_s * 1000).astype(np.int64),
                "lat": d.lat,
                "lon": d.lon,
                "speed_mps": d.speed,
                "heading_deg": d.heading_deg,
                "accuracy_m": d.accuracy,
            }
        )
        gps = gps.select(
            [pl.col(c).cast(t) if c in gps.columns else pl.lit(None, dtype=t).alias(c) for c, t in GPS_COLUMNS.items()]
        )
        imu = None
        if d.imu_t_s.shape[0]:
            imu = pl.DataFrame(
                {
                    "vehicle_id": vid,
                    "t_ms": t0 + np.round(d.imu_t_s * 1000).astype(np.int64),
                    "acc_lon": d.acc[0],
                    "acc_lat": d.acc[1],
                    "acc_vert": d.acc[2],
                }
            )
        rows = score_frames(gps, imu, CFG)
        assert len(rows) == 1
        r = rows[0]
        assert r["harsh_brakes"] == r["harsh_accels"] == r["harsh_corners"] == 0, (name, r)
        assert r["gps_brake_grades"][1:] == [0, 0] and r["gps_accel_grades"][1:] == [0, 0], (name, r)


def test_legacy_simulator_would_not_catch_a_too_high_threshold(tmp_path):
    """The old loop: legacy events sit far above the cut points, so cut points 40% too high still find all of them;
    the calibrated fleet's events sit near the cut points, so the same mistake loses most of them."""
    too_high = replace(
        CFG,
        **{
            f: getattr(CFG, f) * 1.4
            for f in (
                "brake_moderate_mps2",
                "harsh_brake_mps2",
                "brake_severe_mps2",
                "accel_moderate_mps2",
                "harsh_accel_mps2",
                "accel_severe_mps2",
                "corner_moderate_mps2",
                "harsh_corner_mps2",
                "corner_severe_mps2",
            )
        },
    )
    legacy = FleetSpec(vehicles=5, days=3, seed=11, start=START)
    trips, rows, ev = score_fleet(legacy, tmp_path / "legacy", too_high)
    # legacy truth: the injected events (all harsh or severe); the first start of a trip falls in the GPS warm-up
    obs = ev.filter(pl.col("start_ms") - pl.col("trip_start_ms") > 1000 * (CFG.event_warmup_s + 1))
    found = sum(r["harsh_brakes"] + r["harsh_accels"] + r["harsh_corners"] for r in rows)
    assert obs.height >= 20 and found >= 0.95 * obs.height, (found, obs.height)
    trips, rows, ev = score_fleet(spec("oem"), tmp_path / "calibrated", too_high)
    rec = recovery(trips, rows, ev, KINDS)
    assert rec["recall"] < 0.5 and rec["recall_harsh"] < 0.7, rec  # the calibrated simulator catches it
    trips, rows, ev = score_fleet(spec("oem"), tmp_path / "right", CFG)
    assert recovery(trips, rows, ev, KINDS)["recall"] >= 0.95  # and passes the right cut points


def test_blind_time_before_the_first_fix_is_not_truth_the_device_could_see():
    s = spec("phone_raw")
    trips = [t for v in vehicle_ids(s.vehicles) for t in make_trips(s, v)]
    ev = pl.DataFrame(ground_truth_rows(s, trips)[1])
    for t in trips:
        ss = sensor_streams(s, t)
        for row in ev.filter(
            (pl.col("vehicle_id") == t.vehicle_id) & (pl.col("trip_start_ms") == t.start_ms)
        ).iter_rows(named=True):
            in_blind = any(a < row["end_ms"] and b > row["start_ms"] for a, b in ss.blind)
            assert row["observable"] == (not in_blind)


def test_calibrated_trip_is_deterministic():
    d = DriverProfile(0.5, 1.0, 0.0, 0.0, 0.1)
    a = make_trip_calibrated(np.random.default_rng(1), d, 5, np.random.default_rng(2))
    b = make_trip_calibrated(np.random.default_rng(1), d, 5, np.random.default_rng(2))
    assert np.array_equal(a.accel, b.accel) and a.events == b.events


def test_cli_device_mix_writes_graded_truth_and_refuses_unknown_profiles(tmp_path):
    import subprocess
    import sys

    ubi = [str(Path(sys.executable).parent / "ubi")]
    base = ubi + ["simulate", "--offline", "--vehicles", "2", "--days", "1", "--start", "2026-10-05"]
    bad = subprocess.run(
        base + ["--device-mix", "phone:1", "--out", str(tmp_path / "bad")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown device profile 'phone'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    ok = subprocess.run(
        base + ["--device-mix", "phone_raw:1,obd:1", "--out", str(tmp_path / "ok")], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    ev = pl.read_parquet(tmp_path / "ok" / "truth_events.parquet")
    assert {"grade", "observable"} <= set(ev.columns) and set(ev["grade"]) <= {"moderate", "harsh", "severe"}
    assert '"motion": "calibrated"' in (tmp_path / "ok" / "spec.json").read_text()


def test_device_fleet_scores_the_same_from_files_and_from_the_stream(tmp_path):
    """Every device class (4 Hz OBD without IMU, 10 Hz OEM, phones at any mount) through the live path (device
    messages -> TripCutter -> score_trip) and through score-file's offline files: the same trips, distances and
    graded events."""
    from scoring.features import score_trip
    from scoring.trips import TripCutter
    from simulator.fleet import device_messages

    s = FleetSpec(
        vehicles=8, days=1, seed=4, start=START, motion="calibrated", device_mix="phone_raw,phone_linear,obd,oem"
    )
    trips = {v: make_trips(s, v) for v in vehicle_ids(s.vehicles)}
    live = []
    for ts in trips.values():
        cutter, seq, k = TripCutter.for_config(CFG), 0, 0
        for trip in ts:
            for m in device_messages(s, trip, seq):
                seq, k = m.seq + 1, k + 1
                live += [score_trip(t, CFG).as_row() for t in cutter.feed(m, 0, k)]
    live.sort(key=lambda r: (r["vehicle_id"], r["start_ms"]))
    gp, ip, _ = write_offline(s, trips, tmp_path)
    got = score_paths([gp], [ip], CFG)
    assert len(got) == len(live) == sum(map(len, trips.values()))
    keys = ("trip_id", "distance_km", "imu_status", "harsh_brake_grades", "harsh_accel_grades", "harsh_corner_grades")
    for a, b in zip(got, live, strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
