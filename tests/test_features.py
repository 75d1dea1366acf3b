"""Feature kernels against their plain-Python references, on random and edge-case input, plus the public
functions' validation and the scored-trip record."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from scoring import features as F
from scoring import reference as R
from scoring.population import population_score
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()
GAP = CFG.max_integration_gap_s
AMS = ZoneInfo("Europe/Amsterdam")


def close(a, b):
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b, strict=False):
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (a, b)


def random_gps(seed: int, n: int | None = None, t0: float = 1.79e9):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 2500)) if n is None else n
    dt = rng.choice([1.0, 1.0, 1.0, 0.5, 2.0, 30.0], size=max(n - 1, 0))
    t = np.concatenate([[0.0], np.cumsum(dt)])[:n] + t0
    v = np.abs(np.cumsum(rng.normal(0, 2.0, n))) % 45
    v[rng.random(n) < 0.05] = 0.0
    return t, v


def local_s(y, mo, d, h, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=AMS).timestamp()


# ---------------------------------------------------------------- GPS cleaning
def gps_track(seed, n):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) + 1.79e9
    lat = 52.37 + np.cumsum(rng.normal(0, 1e-4, n))
    lon = 4.89 + np.cumsum(rng.normal(0, 1e-4, n))
    acc = rng.uniform(1, 80, n)
    jumps = rng.random(n) < 0.05
    lat[jumps] += rng.choice([-1, 1], jumps.sum()) * 0.5  # ~55 km in 1 s
    lat[rng.random(n) < 0.02] = np.nan
    return t, lat, lon, acc


@pytest.mark.parametrize("seed", range(15))
def test_clean_matches_reference(seed):
    t, lat, lon, acc = gps_track(seed, int(np.random.default_rng(seed).integers(0, 800)))
    keep, bad, jumps = F.clean_fixes(t, lat, lon, acc, CFG)
    rk, rb, rj = R.clean_reference(
        list(t),
        list(lat),
        list(lon),
        list(acc),
        CFG.max_gps_accuracy_m,
        CFG.max_jump_speed_kmh / 3.6,
        CFG.max_jump_rejects,
    )
    assert keep.tolist() == rk and (bad, jumps) == (rb, rj)


def test_clean_edges():
    e = np.zeros(0)
    assert F.clean_fixes(e, e, e, e, CFG)[0].shape == (0,)
    keep, bad, jumps = F.clean_fixes(np.array([0.0]), np.array([52.0]), np.array([4.0]), np.array([3.0]), CFG)
    assert keep.tolist() == [True] and (bad, jumps) == (0, 0)
    t = np.arange(6.0)
    lat = np.array([52.0, 52.0001, 0.0, 53.0, 52.0003, 52.0004])  # (0, 0) no-fix, then a 110 km jump
    lon = np.array([4.0, 4.0, 0.0, 4.0, 4.0, 4.0])
    keep, bad, jumps = F.clean_fixes(t, lat, lon, np.array([3, 3, 3, 3, np.nan, 3.0]), CFG)
    assert keep.tolist() == [True, True, False, False, False, True] and (bad, jumps) == (2, 1)


def test_clean_reanchors_after_a_glitched_first_fix():
    t = np.arange(8.0)
    lat = np.array([60.0] + [52.0 + 1e-4 * i for i in range(7)])
    keep, _, jumps = F.clean_fixes(t, lat, np.full(8, 4.0), np.full(8, 3.0), CFG)
    assert jumps == CFG.max_jump_rejects and keep[CFG.max_jump_rejects + 1 :].all()


# ---------------------------------------------------------------- harsh events (accelerometer)
def run_events(t, a, v, kind, cfg=CFG):
    """harsh_events against the references step by step: window mean, then event runs at the moderate band."""
    got = F.harsh_events(np.asarray(t, float), np.asarray(a, float), np.asarray(v, float), kind, cfg)
    sign, b1, b2, b3, vmin = F.bands(kind, cfg)
    t, a, v = list(map(float, t)), list(map(float, a)), list(map(float, v))
    if len(t) >= 2:
        period = float(np.median(np.diff(t)))
        am = R.window_mean_reference(a, max(1, round(cfg.event_mean_window_s / period)))
        hold = max(cfg.min_event_duration_s - cfg.event_mean_window_s, period) - 1e-6
        ref = R.event_reference(
            t,
            am,
            v,
            sign,
            b1,
            vmin,
            hold,
            cfg.event_merge_gap_s,
            max(cfg.max_imu_gap_s, cfg.max_imu_gap_samples * period),
        )
    else:
        ref = []
    assert got.count == len(ref)
    for (s, e, p), gs, ge, gp in zip(ref, got.start_s, got.end_s, got.peak, strict=False):
        close((s, e, p), (gs, ge, gp))
    assert sum(got.grades) == got.count
    assert got.grades == (
        sum(b1 <= p < b2 for _, _, p in ref),
        sum(b2 <= p < b3 for _, _, p in ref),
        sum(p >= b3 for _, _, p in ref),
    )
    return got


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("kind", ["brake", "accel", "corner"])
def test_events_match_reference(seed, kind):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 5000))
    dt = rng.choice([0.1] * 20 + [0.7, 3.0], size=n)
    t = np.cumsum(dt) + 1.79e9
    a = np.convolve(rng.normal(0, 2.5, n), np.ones(5) / 2, mode="same")
    a[rng.random(n) < 0.01] = np.nan
    v = np.abs(np.cumsum(rng.normal(0, 0.3, n))) + rng.uniform(0, 12)
    v[rng.random(n) < 0.02] = np.nan
    run_events(t, a, v, kind)


@pytest.mark.parametrize(
    "t,a,v,n",
    [
        ([], [], [], 0),
        ([0.0], [-9.0], [20.0], 0),  # one sample: duration 0 < minimum
        (np.arange(0, 2, 0.1), np.full(20, -4.0), np.full(20, 20.0), 1),  # constant decel: one event
        (np.arange(0, 2, 0.1), np.full(20, -4.0), np.full(20, 1.0), 0),  # too slow
        (
            np.arange(0, 3, 0.1),
            np.where((np.arange(30) >= 10) & (np.arange(30) < 13), -4.0, 0.0),
            np.full(30, 20.0),
            0,
        ),  # a 0.3 s pulse inside quiet driving: its 0.5 s mean peaks at 2.4 < 2.45
        (np.arange(0, 3, 0.1), np.where(np.arange(30) == 10, -12.0, 0.0), np.full(30, 20.0), 0),  # one-sample spike
        (
            np.arange(0, 3, 0.1),
            np.where((np.arange(30) >= 10) & (np.arange(30) < 17), -4.0, 0.0),
            np.full(30, 20.0),
            1,
        ),  # 0.7 s: held
        (np.arange(0, 2, 0.1), np.full(20, -4.0), np.full(20, np.nan), 0),  # untrusted speed (warm-up)
        (np.arange(0, 2, 0.1), np.where(np.arange(20) == 9, np.nan, -4.0), np.full(20, 20.0), 1),  # NaN splits,
        # then the two halves (0.8 s and 0.9 s) merge across the 0.2 s hole
        (np.concatenate([np.arange(0, 1, 0.1), np.arange(5, 6, 0.1)]), np.full(20, -4.0), np.full(20, 20.0), 2),  # gap
    ],
)
def test_event_edges(t, a, v, n):
    assert run_events(t, a, v, "brake").count == n


def test_event_grades_and_cornering_gate():
    t = np.arange(0, 3, 0.1)
    e = run_events(t, np.full(30, -6.5), np.full(30, 20.0), "brake")
    assert e.grades == (0, 0, 1)
    e = run_events(t, np.full(30, 3.5), np.full(30, 20.0), "accel")
    assert e.grades == (0, 1, 0) and e.harsh == 1
    assert run_events(t, np.full(30, 2.2), np.full(30, 20.0), "accel").grades == (1, 0, 0)  # moderate only
    assert run_events(t, np.full(30, -6.0), np.full(30, 25 / 3.6), "corner").count == 0  # below 30 km/h
    assert run_events(t, np.full(30, -3.0), np.full(30, 35 / 3.6), "corner").grades == (1, 0, 0)


def test_gps_trust_speed_masks_warmup_gaps_and_outside():
    gps_t = np.array([10.0, 11, 12, 13, 14, 15, 40, 41, 42, 43, 44])
    gps_v = np.arange(11.0)
    imu_t = np.arange(9.0, 46.0, 0.5)
    v = F.gps_trust_speed(imu_t, gps_t, gps_v, replace(CFG, event_warmup_s=3.0))
    ok = ~np.isnan(v)
    assert not ok[imu_t < 13].any()  # before the first fix and within 3 s warm-up
    assert ok[(imu_t >= 13) & (imu_t <= 15)].all()
    assert not ok[(imu_t > 15) & (imu_t < 43)].any()  # across the 25 s gap and the re-acquisition warm-up
    assert ok[(imu_t >= 43) & (imu_t <= 44)].all() and not ok[imu_t > 44].any()
    assert v[imu_t == 13.5][0] == pytest.approx(3.5)


# ---------------------------------------------------------------- exposure in local time
CFG_WRAP = replace(CFG, night_start_h=22.0, night_end_h=7.0)


def run_exposure(t, v, cfg=CFG):
    got = F.exposure(np.asarray(t, float), np.asarray(v, float), cfg)
    ref = R.exposure_reference(
        list(map(float, t)),
        list(map(float, v)),
        cfg.time_zone,
        cfg.max_integration_gap_s,
        (cfg.night_start_h, cfg.night_end_h),
        (cfg.rush_am_start_h, cfg.rush_am_end_h),
        (cfg.rush_pm_start_h, cfg.rush_pm_end_h),
        cfg.moving_mps,
    )
    close([got.night_s, got.night_m, got.rush_s, got.rush_m, got.weekend_s, got.weekend_m], ref)
    return got


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("cfg", [CFG, CFG_WRAP], ids=["night0-4", "night22-7"])
def test_exposure_matches_reference(seed, cfg):
    rng = np.random.default_rng(seed)
    t0 = 1.77e9 + rng.uniform(0, 3.2e7)  # anywhere in a year: DST both ways included over the seeds
    t, v = random_gps(seed, t0=t0)
    run_exposure(t, v, cfg)


@pytest.mark.parametrize(
    "start",
    [
        local_s(2026, 3, 28, 23, 30),  # Saturday night into Sunday 29 March: clocks jump 02:00 -> 03:00
        local_s(2026, 10, 25, 1, 30),  # Sunday 25 October: 03:00 -> 02:00, the hour 02-03 happens twice
        local_s(2026, 11, 26, 23, 40),  # a Thursday night across midnight into Friday
        local_s(2026, 11, 27, 23, 40),  # Friday night into Saturday: weekday -> weekend at midnight
    ],
)
@pytest.mark.parametrize("cfg", [CFG, CFG_WRAP], ids=["night0-4", "night22-7"])
def test_exposure_around_midnight_and_dst(start, cfg):
    t = start + np.arange(0, 3 * 3600, 1.0)
    run_exposure(t, np.full(t.shape, 15.0), cfg)


def test_exposure_known_values():
    # 23:40 Friday to 00:20 Saturday local at 10 m/s: 20 min weekday, 20 min weekend; night 0-4: the last 20 min
    t = local_s(2026, 11, 27, 23, 40) + np.arange(0, 2401, 1.0)
    e = run_exposure(t, np.full(t.shape, 10.0))
    assert (e.weekend_s, e.night_s, e.rush_s) == (1200.0, 1200.0, 0.0)
    assert e.night_m == pytest.approx(12_000.0)
    # DST end: 3 h of driving from 01:30 CEST ends at 03:30 CET (02:00-03:00 happens twice): all of it at night
    t = local_s(2026, 10, 25, 1, 30) + np.arange(0, 3 * 3600 + 1, 1.0)
    assert run_exposure(t, np.full(t.shape, 10.0)).night_s == 3 * 3600
    # DST start: 3 h from 01:30 CET ends at 05:30 CEST (02:00-03:00 never happens): night until 04:00 = 1.5 h
    t = local_s(2026, 3, 29, 1, 30) + np.arange(0, 3 * 3600 + 1, 1.0)
    assert run_exposure(t, np.full(t.shape, 10.0)).night_s == 1.5 * 3600


def test_exposure_edges():
    assert run_exposure([], []).night_s == 0.0
    assert run_exposure([1.79e9], [10.0]).weekend_m == 0.0
    e = run_exposure(local_s(2026, 11, 28, 1, 0) + np.array([0.0, 100.0]), [10.0, 10.0])  # one gap only
    assert e.night_m == 0.0


# ---------------------------------------------------------------- phone, heatmap, speeding
@pytest.mark.parametrize("seed", range(12))
def test_phone_heatmap_speeding_match_reference(seed):
    rng = np.random.default_rng(seed)
    t, v = random_gps(seed)
    n = t.shape[0]
    phone = rng.choice([-1, 0, 0, 1], size=n).astype(np.int8)
    close(F.phone_use(t, v, phone, CFG), R.phone_reference(list(t), list(v), list(phone), GAP, CFG.moving_mps))
    hm = F.heatmap(t, v, CFG)
    ref = R.heatmap_reference(
        list(t),
        list(v),
        GAP,
        CFG.heatmap_speed_step_kmh / 3.6,
        CFG.heatmap_speed_bins,
        CFG.heatmap_accel_step_mps2,
        CFG.heatmap_accel_bins,
        CFG.moving_mps,
    )
    close(hm, ref)
    limit = rng.choice([30, 50, 80, np.nan], size=n) / 3.6
    s = F.speeding(t, v, limit, CFG)
    close(
        s.__dict__.values(),
        R.speeding_reference(
            list(t),
            list(v),
            list(limit),
            CFG.speeding_margin_mps,
            CFG.high_speed_mps,
            GAP,
            CFG.speeding_risk_doubling_kmh,
            CFG.speeding_risk_cap,
        ),
    )


@pytest.mark.parametrize(
    "t,v",
    [
        ([], []),
        ([0.0], [10.0]),
        (np.arange(100.0), np.full(100, 13.9)),  # empty, one sample, constant speed
        ([0.0, 100.0], [40.0, 40.0]),  # only a gap
    ],
)
def test_phone_heatmap_speeding_edges(t, v):
    t = np.asarray(t, float)
    v = np.asarray(v, float)
    n = t.shape[0]
    close(
        F.phone_use(t, v, np.ones(n, np.int8), CFG), R.phone_reference(list(t), list(v), [1] * n, GAP, CFG.moving_mps)
    )
    hm = F.heatmap(t, v, CFG)
    dt = np.diff(t)
    assert hm.sum() == pytest.approx(dt[dt <= GAP].sum())  # every moving second lands in exactly one bin
    s = F.speeding(t, v, None, CFG)
    assert s.known_limit_m == 0.0 and s.high_speed_m == s.high_speed_unknown_m


def test_known_heatmap_and_speeding():
    t = np.arange(11.0)
    v = np.full(11, 20.0)  # 72 km/h, constant: bin 7 of speed, bin "0..0.5 m/s^2" of acceleration
    hm = F.heatmap(t, v, CFG).reshape(CFG.heatmap_speed_bins, CFG.heatmap_accel_bins)
    assert hm[7, CFG.heatmap_accel_bins // 2] == 10.0 and hm.sum() == 10.0
    s = F.speeding(t, v, np.full(11, 50 / 3.6), CFG)
    assert (s.total_m, s.known_limit_m, s.over_limit_m, s.over_margin_m) == (200.0, 200.0, 200.0, 200.0)
    s = F.speeding(t, np.full(11, 40.0), None, CFG)  # 144 km/h, no map: the absolute fallback
    assert s.high_speed_unknown_m == 400.0 and s.over_limit_m == 0.0
    assert F.phone_use(t, v, None, CFG) == (0.0, 0.0)


def test_public_functions_validate():
    with pytest.raises(ValueError, match="increase"):
        F.heatmap(np.array([0.0, 2.0, 1.0]), np.ones(3), CFG)
    with pytest.raises(ValueError, match="non-negative"):
        F.speeding(np.arange(3.0), np.array([1.0, np.nan, 1.0]), None, CFG)
    with pytest.raises(ValueError, match="length"):
        F.speeding(np.arange(3.0), np.ones(3), np.ones(2), CFG)
    with pytest.raises(ValueError, match="one flag per fix"):
        F.phone_use(np.arange(3.0), np.ones(3), np.ones(2), CFG)
    with pytest.raises(ValueError, match="unknown event kind"):
        F.harsh_events(np.arange(3.0), np.ones(3), np.ones(3), "swerve", CFG)
    with pytest.raises(ValueError, match="length"):
        F.harsh_events(np.arange(3.0), np.ones(3), np.ones(2), "brake", CFG)


# ---------------------------------------------------------------- score
def test_score_is_explained_part_by_part():
    """Calibrated parts (scoring/population.py, tests/test_population.py): each part's points are its weight x
    its percentile in the reference, and they sum to the score."""
    values = {"phone_share": 0.05, "speeding_risk": 1.0, "events_per_100km": None, "night_share": 0.0}
    score, parts = population_score(values, CFG)
    assert set(parts) == set(CFG.score_weights)
    for name, p in parts.items():
        assert p["points_lost"] == pytest.approx(p["weight"] * p["percentile"], abs=1e-3)
        assert p["imputed"] == (values.get(name) is None)
    assert parts["night_share"]["points_lost"] == 0.0  # no night driving: the best percentile
    assert score == pytest.approx(100 - sum(p["points_lost"] for p in parts.values()))
    json.dumps(parts)


# ---------------------------------------------------------------- the scored-trip record
def closed_trip(v, a_lon, phone=None, t0_ms=1_795_000_000_000):
    from scoring.trips import ClosedTrip

    n = len(v)
    t = t0_ms + np.arange(n, dtype=np.int64) * 1000
    m = 10 * n
    return ClosedTrip(
        "id",
        "V1",
        int(t[0]),
        int(t[-1]),
        t,
        np.asarray(v, float),
        np.full(n, 3.0),
        3,
        True,
        "ignition_off",
        0,
        t0_ms + np.arange(m, dtype=np.int64) * 100,
        np.asarray(a_lon, float),
        np.zeros(m),
        np.full(n, -1, np.int8) if phone is None else np.asarray(phone, np.int8),
        52.0 + np.arange(n) * 1e-4,
        np.full(n, 4.0),
    )


def test_gps_lock_on_jump_is_not_a_harsh_acceleration():
    # the domain doc's phone recording: 9 -> 79 km/h in one second right after the fix, accelerometer quiet
    v = np.concatenate([[9 / 3.6, 79 / 3.6], np.full(58, 79 / 3.6)])
    row = F.score_trip(closed_trip(v, np.zeros(600)), CFG).as_row()
    assert row["harsh_accels_gps"] == 0 and row["harsh_accels"] == 0 and row["event_source"] == "imu"
    assert row["gps_accel_grades"] == [0, 0, 0]  # inside the speed channel's warm-up too


def test_score_trip_record_with_phone_and_limits():
    n = 300
    v = np.full(n, 25.0)  # 90 km/h
    a = np.zeros(10 * n)
    a[1000:1020] = -4.0  # a 2 s brake at 90 km/h: harsh (3.13 <= 4.0 < 4.41)
    phone = (np.arange(n) < 30).astype(np.int8)  # 30 s of phone in hand
    limit = np.where(np.arange(n) < 150, 80 / 3.6, np.nan)  # speeding for half, no map for the rest
    row = F.score_trip(closed_trip(v, a, phone), CFG, limit).as_row()
    assert row["harsh_brakes"] == 1 and row["harsh_brake_grades"] == [0, 1, 0]
    assert row["phone_s"] == 30.0 and row["phone_reported_s"] == 299.0
    assert row["over_limit_km"] == pytest.approx(3.75) and row["over_limit_margin_km"] == 0.0  # 90 < 80 + 10
    assert row["limit_known_km"] == pytest.approx(3.75) and row["high_speed_unknown_km"] == 0.0
    parts = json.loads(row["score_parts"])
    assert row["score"] == pytest.approx(100 - sum(p["points_lost"] for p in parts.values()), abs=1e-6)
    assert parts["phone_share"]["value"] == pytest.approx(30 / 299, abs=1e-6)
    assert sum(row["heatmap_s"]) == pytest.approx(299.0)
    json.dumps(row)  # the Kafka record is plain JSON


def test_config_rejects_bad_values_at_load_time(tmp_path):
    from ubi.common.config import load_config
    from ubi.common.errors import ConfigError

    for body in ('time_zone = "Mars/Olympus"', "night_start_h = 25.0", "harsh_corner_mps2 = 0.0"):
        f = tmp_path / "ubi.toml"
        f.write_text(f"[scoring]\n{body}\n")
        with pytest.raises(ConfigError, match="scoring"):
            load_config(f)
    f.write_text('[scoring]\ntime_zone = "America/New_York"\nnight_start_h = 23\n')
    assert load_config(f).scoring.time_zone == "America/New_York"
