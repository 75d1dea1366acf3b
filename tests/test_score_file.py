"""``ubi score-file`` gives the same trips and features as the live stream path, from CSV or Parquet."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import polars as pl
import pytest

from scoring.features import score_trip
from scoring.trips import TripCutter
from simulator.fleet import FleetSpec, device_messages, make_trips, vehicle_ids
from tests.stage_data import message_time
from ubi.common.config import Config, ScoringConfig
from ubi.stages import score_file

CFG = ScoringConfig()
SPEC = FleetSpec(vehicles=3, days=2, seed=5)


def stream_rows(spec: FleetSpec) -> tuple[list[dict], list]:
    """The live path without Kafka: each vehicle's messages through TripCutter and score_trip, received 0.5 s after
    they were sent (the bridge's stamp moves the watermark that ends the resequencer's waits)."""
    rows, messages = [], []
    for v in vehicle_ids(spec.vehicles):
        cutter, seq = TripCutter.for_config(CFG), 0
        for trip in make_trips(spec, v):
            for m in device_messages(spec, trip, seq):
                seq = m.seq + 1
                messages.append(m)
                closed = cutter.feed(m, 0, len(messages), received_ms=message_time(m) + 500)
                rows += [score_trip(t, CFG).as_row() for t in closed]
    rows.sort(key=lambda r: (r["vehicle_id"], r["start_ms"]))
    return rows, messages


@pytest.fixture(scope="module")
def fleet():
    return stream_rows(SPEC)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_file_path_equals_stream_path(fleet, tmp_path, fmt):
    live, messages = fleet
    gps, imu = score_file.messages_to_frames(messages)
    gp, ip = tmp_path / f"gps.{fmt}", tmp_path / f"imu.{fmt}"
    getattr(gps, f"write_{fmt}")(gp)
    getattr(imu, f"write_{fmt}")(ip)
    got = score_file.score_paths([gp], [ip], CFG)
    assert len(got) == len(live) >= 10
    for a, b in zip(got, live, strict=False):
        assert a == b, {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def test_motion_only_devices_file_path_equals_stream_path_and_truth(tmp_path):
    """Devices without ignition events (FleetSpec.motion_only_share): the live cutter and score-file find the same
    trips, one per true trip, with the true distance; only ``messages`` and the seq span differ (10 s batches
    live, 10-fix batches from a file, numbered by the file path)."""
    spec = FleetSpec(vehicles=3, days=2, seed=5, motion_only_share=1.0)
    live, messages = stream_rows(spec)
    assert not any(isinstance(m, score_file.DeviceEvent) for m in messages)
    gps, imu = score_file.messages_to_frames(messages)
    gps.write_parquet(tmp_path / "g.parquet")
    imu.write_parquet(tmp_path / "i.parquet")
    got = score_file.score_paths([tmp_path / "g.parquet"], [tmp_path / "i.parquet"], CFG)
    assert len(got) == len(live) >= 10
    for a, b in zip(got, live, strict=False):
        diff = {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in ("messages", "seq_first", "seq_last")}
        assert not diff, diff
    truth = sorted(
        (t for v in vehicle_ids(spec.vehicles) for t in make_trips(spec, v)), key=lambda t: (t.vehicle_id, t.start_ms)
    )
    assert len(truth) == len(live)
    for row, t in zip(live, truth, strict=False):
        assert row["ended_by"] == "motion_stop" and row["complete"]
        assert 0 <= row["start_ms"] - t.start_ms <= 3_000  # ignition is 3 s before moving: warm-up covers it
        assert t.end_ms - 45_000 <= row["end_ms"] <= t.end_ms  # the last stop (0.5-40.5 s) + 3 s to ignition off
        assert row["distance_km"] * 1000 == pytest.approx(t.distance_m, rel=0.01)


@pytest.mark.parametrize("ext", ["json", "csv", "parquet"])
def test_cli_writes_each_format(fleet, tmp_path, ext):
    live, messages = fleet
    gps, imu = score_file.messages_to_frames(messages)
    gps.write_parquet(tmp_path / "g.parquet")
    imu.write_parquet(tmp_path / "i.parquet")
    out = tmp_path / f"trips.{ext}"
    args = Namespace(paths=[tmp_path / "g.parquet"], imu=[tmp_path / "i.parquet"], out=out)
    assert score_file.main(Config(), args) == 0
    if ext == "json":
        back = json.loads(out.read_text())
        assert back == json.loads(json.dumps(live))
    else:
        back = pl.read_csv(out) if ext == "csv" else pl.read_parquet(out)
        assert back["trip_id"].to_list() == [r["trip_id"] for r in live]
        assert back["distance_km"].to_list() == pytest.approx([r["distance_km"] for r in live], rel=1e-12)
        hm = back["heatmap_s"].to_list()
        assert [json.loads(x) if isinstance(x, str) else x for x in hm] == [r["heatmap_s"] for r in live]


def test_without_events_trips_are_cut_at_data_gaps(tmp_path):
    t = np.concatenate([np.arange(0, 600), np.arange(5000, 5300)]) * 1000 + 1_790_000_000_000
    n = t.shape[0]
    df = pl.DataFrame(
        {
            "vehicle_id": ["X1"] * n,
            "t_ms": t,
            "lat": np.full(n, 52.0),
            "lon": np.full(n, 4.0),
            "speed_mps": np.full(n, 10.0),
            "phone": np.where(np.arange(n) % 10 == 0, 1, 0),
        }
    )
    df.write_csv(tmp_path / "g.csv")
    rows = score_file.score_paths([tmp_path / "g.csv"], [], CFG)
    assert [r["start_ms"] for r in rows] == [int(t[0]), int(t[600])]
    assert rows[0]["distance_km"] == pytest.approx(5.99) and rows[0]["event_source"] == "gps"
    assert rows[0]["phone_s"] == pytest.approx(60.0) and rows[0]["phone_reported_s"] == pytest.approx(599.0)


def test_irregular_imu_goes_on_the_grid_with_holes(tmp_path):
    t0 = 1_790_000_000_000
    gt = t0 + np.arange(0, 30) * 1000
    g = pl.DataFrame(
        {
            "vehicle_id": ["X1"] * 30,
            "t_ms": gt,
            "lat": np.full(30, 52.0),
            "lon": np.full(30, 4.0),
            "speed_mps": np.full(30, 20.0),
        }
    )
    it = t0 + np.arange(0, 300) * 100
    keep = (np.arange(300) < 120) | (np.arange(300) >= 125)  # half a second missing
    it = it[keep] + np.random.default_rng(0).integers(-3, 4, keep.sum())  # device jitter of a few ms
    a = np.where((it >= t0 + 10_000) & (it < t0 + 15_000), -5.0, 0.0)  # a 5 s brake across the hole
    i = pl.DataFrame({"vehicle_id": ["X1"] * it.shape[0], "t_ms": it, "acc_lon": a, "acc_lat": np.zeros_like(a)})
    g.write_parquet(tmp_path / "g.parquet")
    i.write_parquet(tmp_path / "i.parquet")
    [row] = score_file.score_paths([tmp_path / "g.parquet"], [tmp_path / "i.parquet"], CFG)
    assert row["event_source"] == "imu" and row["harsh_brakes"] == 1  # the hole splits the run, merging rejoins it


def test_bad_input_is_reported(tmp_path):
    (tmp_path / "g.csv").write_text("vehicle,t\nA,1\n")
    args = Namespace(paths=[tmp_path / "g.csv"], imu=[], out=tmp_path / "o.json")
    assert score_file.main(Config(), args) == 2
    args = Namespace(paths=[tmp_path / "g.csv"], imu=[], out=tmp_path / "o.xlsx")
    assert score_file.main(Config(), args) == 2
    (tmp_path / "h.csv").write_text("vehicle_id,t_ms,lat\nA,1,52.0\n")
    with pytest.raises(score_file.ScoreFileError, match="lack one of"):
        score_file.score_paths([tmp_path / "h.csv"], [], CFG)


def test_without_ignition_events_motion_cutting_finds_the_same_trips(fleet, tmp_path):
    """The simulated fleet with its ignition rows removed: motion rules find every trip, with the same distance
    and events; the start moves from ignition-on to the last standing fix before moving (ignition is 3 s earlier)."""
    live, messages = fleet
    gps, imu = score_file.messages_to_frames(messages)
    gps.filter(pl.col("event").is_null()).write_parquet(tmp_path / "g.parquet")
    imu.write_parquet(tmp_path / "i.parquet")
    got = score_file.score_paths([tmp_path / "g.parquet"], [tmp_path / "i.parquet"], CFG)
    assert len(got) == len(live)
    for a, b in zip(got, live, strict=False):
        assert a["vehicle_id"] == b["vehicle_id"] and 0 <= a["start_ms"] - b["start_ms"] <= 5_000
        assert 0 <= b["end_ms"] - a["end_ms"] <= 45_000  # the last stop (0.5-40.5 s) + 3 s to ignition off
        assert a["distance_km"] == pytest.approx(b["distance_km"], abs=0.002)  # crawl below 0.5 m/s at the ends
        for k in ("harsh_brakes", "harsh_accels", "harsh_corners", "harsh_brakes_gps", "max_speed_kmh"):
            assert a[k] == b[k], k


def test_simulator_offline_files_score_like_the_stream(fleet, tmp_path):
    """`ubi simulate --offline` writes the score-file format (NaN phone on event rows included): same rows as live,
    except `messages`, which counts the device's 10 s batches live and 10-fix batches from a file."""
    from simulator.offline import write_offline

    live, _ = fleet
    trips = {v: make_trips(SPEC, v) for v in vehicle_ids(SPEC.vehicles)}
    gps_path, imu_path, _ = write_offline(SPEC, trips, tmp_path)
    got = score_file.score_paths([gps_path], [imu_path], CFG)
    assert len(got) == len(live)
    for a, b in zip(got, live, strict=False):
        diff = {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in ("messages", "seq_first", "seq_last")}
        assert not diff, diff


def test_speeding_from_the_map_layer_matches_truth(tmp_path):
    """With the simulator's roads as the map layer (ScoringConfig.speed_limit_map), distance above the posted limit
    is close to the true over-limit distance. Not equal: 1 Hz noisy GPS speed against the 10 Hz true speed of
    drivers cruising near the limit, and a fix within 30 m of a junction may take the crossing road's limit
    (bench/scoring.py reports the fleet figure)."""
    from dataclasses import replace

    from simulator.fleet import ground_truth_rows, map_segments
    from simulator.offline import write_offline

    trips = {v: make_trips(SPEC, v) for v in vehicle_ids(SPEC.vehicles)}
    every = [t for ts in trips.values() for t in ts]
    pl.DataFrame(map_segments(every)).write_parquet(tmp_path / "limits.parquet")
    gps_path, imu_path, _ = write_offline(SPEC, trips, tmp_path)
    cfg = replace(CFG, speed_limit_map=str(tmp_path / "limits.parquet"))
    rows = score_file.score_paths([gps_path], [imu_path], cfg)
    truth = {(r["vehicle_id"], r["start_ms"]): r["over_limit_m"] for r in ground_truth_rows(SPEC, every)[0]}
    measured = sum(r["over_limit_km"] for r in rows) * 1000
    true = sum(truth[(r["vehicle_id"], r["start_ms"])] for r in rows)
    assert true > 1000 and abs(measured - true) <= 0.20 * true
    assert sum(r["limit_known_km"] for r in rows) >= 0.99 * sum(r["distance_km"] for r in rows)
    assert all(r["high_speed_unknown_km"] == 0.0 for r in rows)  # every fix has a limit: no fallback needed
    bad = tmp_path / "nope.parquet"
    args = Namespace(paths=[gps_path], imu=[imu_path], out=tmp_path / "o.json")
    assert score_file.main(Config(scoring=replace(CFG, speed_limit_map=str(bad))), args) == 2


def test_offline_files_of_a_mixed_fleet_score_like_the_stream(tmp_path):
    """`ubi simulate --offline --motion-only-share 0.5`: motion-only vehicles have no event rows and their parked
    tail, so the file scores exactly like the stream for both kinds of device."""
    from simulator.offline import write_offline

    spec = FleetSpec(vehicles=4, days=2, seed=5, motion_only_share=0.5)
    live, _ = stream_rows(spec)
    trips = {v: make_trips(spec, v) for v in vehicle_ids(spec.vehicles)}
    gps_path, imu_path, _ = write_offline(spec, trips, tmp_path)
    got = score_file.score_paths([gps_path], [imu_path], CFG)
    assert len(got) == len(live) and {r["ended_by"] for r in got} == {"ignition_off", "motion_stop"}
    for a, b in zip(got, live, strict=False):
        diff = {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in ("messages", "seq_first", "seq_last")}
        assert not diff, diff


def test_implausible_trips_are_reported_not_dropped_silently(fleet, tmp_path, capsys):
    """A trip of 30 days (ignition_off long after ignition_on) is refused by the cutter: score-file says so (as the
    live stage dead-letters it) instead of losing it without a word."""
    from ubi.common.messages import DeviceEvent

    _, messages = fleet
    v = messages[0].vehicle
    t0 = min(m.t_ms for m in messages if isinstance(m, DeviceEvent)) - 86_400_000
    bad = [DeviceEvent(v + "X", 0, t0 - 30 * 86_400_000, "ignition_on"), DeviceEvent(v + "X", 1, t0, "ignition_off")]
    gps, _ = score_file.messages_to_frames([*messages, *bad])
    gps.write_parquet(tmp_path / "g.parquet")
    refused: list = []
    rows = score_file.score_paths([tmp_path / "g.parquet"], [], ScoringConfig(), refused)
    assert [q.reason for q in refused] == ["trip_too_long"]
    assert all(r["vehicle_id"] != v + "X" for r in rows)
    args = Namespace(paths=[tmp_path / "g.parquet"], imu=[], out=tmp_path / "t.json")
    assert score_file.main(Config(), args) == 0
    assert "refused as implausible (not scored; see the log): 1 (trip_too_long: 1)" in capsys.readouterr().out


def test_imu_rows_of_a_vehicle_without_gps_are_counted_in_the_summary(fleet, tmp_path, capsys):
    """IMU rows whose vehicle has no GPS rows cannot be placed in a trip: score_paths reports them per vehicle and
    the command's summary says how many rows of which vehicles were left out (not only a log line)."""
    live, messages = fleet
    gps, imu = score_file.messages_to_frames(messages)
    ghost = imu.head(37).with_columns(pl.lit("ghost-7").alias("vehicle_id"))
    gps.write_parquet(tmp_path / "g.parquet")
    pl.concat([imu, ghost]).write_parquet(tmp_path / "i.parquet")
    unmatched: dict = {}
    rows = score_file.score_paths([tmp_path / "g.parquet"], [tmp_path / "i.parquet"], CFG, None, unmatched)
    assert unmatched == {"ghost-7": 37} and json.loads(json.dumps(rows)) == json.loads(json.dumps(live))
    args = Namespace(paths=[tmp_path / "g.parquet"], imu=[tmp_path / "i.parquet"], out=tmp_path / "t.json")
    assert score_file.main(Config(), args) == 0
    assert "IMU rows not scored, their vehicle has no GPS rows: 37 rows of 1 vehicle(s) (ghost-7)" in (
        capsys.readouterr().out
    )


def test_imu_before_the_paths_is_a_clear_error_and_double_dash_ends_it(fleet, tmp_path, capsys):
    """``--imu`` takes every file after it: given before the telemetry files it used to swallow them and argparse
    said only that ``paths`` was required. Now the command says what happened and how to write it; ``--`` ends the
    IMU list and scores as the usual order does."""
    from ubi.cli.main import main as cli
    from ubi.common.config import get_config

    live, messages = fleet
    gps, imu = score_file.messages_to_frames(messages)
    g, i, out = tmp_path / "g.parquet", tmp_path / "i.parquet", tmp_path / "t.json"
    gps.write_parquet(g)
    imu.write_parquet(i)
    try:
        assert cli(["score-file", "--imu", str(i), str(g), "--out", str(out)]) == 2
        said = capsys.readouterr().out
        assert f"no telemetry files (--imu took {i}, {g})" in said and not out.exists()
        assert cli(["score-file", "--imu", str(i), "--out", str(out), "--", str(g)]) == 0
    finally:
        get_config.cache_clear()  # the CLI loaded the configuration: later tests set their own environment
    assert json.loads(out.read_text()) == json.loads(json.dumps(live))
