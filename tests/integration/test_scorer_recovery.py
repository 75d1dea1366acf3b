"""Exactly once in effect: a scorer SIGKILLed mid-stream and restarted, with a second scorer joining (a
rebalance), still yields every trip exactly once, identical to what the ground truth says."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace

from scoring.trips import trip_id
from simulator.fleet import motion_only, vehicle_ids
from simulator.player import play_fleet
from tests.integration.test_pipeline import wait_for_trips
from ubi.adapters import duckdb_store as store
from ubi.stages.store import read_status, status_path


def play_in_background(env, seed: int, motion_only_share: float = 0.0) -> tuple[threading.Thread, dict]:
    """Publish a 6-vehicle, 3-day fleet from a thread; ``result["r"]`` holds play_fleet's return when it joins."""
    spec = replace(env.fleet(vehicles=6, days=3, seed=seed), motion_only_share=motion_only_share)
    result: dict = {}
    player = threading.Thread(
        target=lambda: result.update(r=play_fleet(env.config, spec, env.path / "sim", show=False))
    )
    player.start()
    return player, result


def mixed_seed(env, seed: int, share: float) -> int:
    """The first seed from ``seed`` on whose 6-vehicle fleet has at least two vehicles of each kind (with and without
    ignition events). Which vehicles send none depends on their ids, and the ids carry the test's random tag, so a
    fixed seed left the mix to chance: all six alike about one run in 32, and the test then failed."""
    while True:
        spec = replace(env.fleet(vehicles=6, days=3, seed=seed), motion_only_share=share)
        quiet = sum(motion_only(spec, v) for v in vehicle_ids(spec.vehicles, spec.id_prefix))
        if 2 <= quiet <= 4:
            return seed
        seed += 1


def kill_once_stored(cfg, victim, trips: int) -> None:
    """SIGKILL ``victim`` as soon as the store has ``trips`` trips: mid-stream, with trips still open."""
    deadline = time.monotonic() + 60
    while read_status(status_path(cfg)).get("trips", 0) < trips and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()


def test_scorer_killed_and_rebalanced_mid_stream(env):
    cfg = env.config
    stages = [env.start("bridge", "--client-id", f"it-{env.tag}-bridge"), env.start("store", "--client-id", "st1")]
    scorer = env.start("score", "--client-id", "s1")
    player, result = play_in_background(env, seed=23)
    kill_once_stored(cfg, scorer, 5)  # trips are open, offsets partly committed
    scorers = [env.start("score", "--client-id", "s1b"), env.start("score", "--client-id", "s2")]
    player.join()
    _, trips = result["r"]
    expected = {trip_id(t.vehicle_id, t.start_ms): t for ts in trips.values() for t in ts}
    assert wait_for_trips(cfg, len(expected), stages + scorers) == len(expected)
    time.sleep(2)  # any late duplicate would show up now
    for s in scorers + stages:
        s.stop()
    con = store.connect(cfg.db_path)
    rows = con.execute("SELECT trip_id, distance_km, complete FROM trips").fetchall()
    con.close()
    assert sorted(r[0] for r in rows) == sorted(expected)
    for tid, km, complete in rows:
        assert complete, tid
        assert abs(km * 1000 - expected[tid].distance_m) <= 0.01 * expected[tid].distance_m


def test_store_killed_mid_stream_writes_every_trip_once(env):
    """The DuckDB writer SIGKILLed while trips flow: its transaction is all or nothing and its offsets follow the
    commit, so after a restart every trip is there exactly once."""
    cfg = env.config
    stages = [env.start("bridge", "--client-id", f"it-{env.tag}-bridge"), env.start("score", "--client-id", "s1")]
    store_proc = env.start("store", "--client-id", "st1")
    player, result = play_in_background(env, seed=31)
    kill_once_stored(cfg, store_proc, 3)
    player.join()
    restarted = env.start("store", "--client-id", "st1b")
    _, trips = result["r"]
    expected = {trip_id(t.vehicle_id, t.start_ms) for ts in trips.values() for t in ts}
    assert wait_for_trips(cfg, len(expected), stages + [restarted]) == len(expected)
    for s in [restarted, *stages]:
        s.stop()
    con = store.connect(cfg.db_path)
    ids = [r[0] for r in con.execute("SELECT trip_id FROM trips").fetchall()]
    con.close()
    assert sorted(ids) == sorted(expected)


def test_motion_cut_devices_survive_a_scorer_kill_and_a_rebalance(env):
    """Half the fleet sends no ignition events, so the scorer cuts their trips by motion and keeps per-vehicle state
    in its compacted topic. Scorer SIGKILLed mid-stream, restarted, a second one joining: every true trip is in
    DuckDB exactly once (motion trips matched by time, as their start is the last standing fix, not ignition)."""
    cfg = env.config
    stages = [env.start("bridge", "--client-id", f"it-{env.tag}-bridge"), env.start("store", "--client-id", "st1")]
    scorer = env.start("score", "--client-id", "s1")
    player, result = play_in_background(env, seed=mixed_seed(env, 41, 0.5), motion_only_share=0.5)
    kill_once_stored(cfg, scorer, 8)
    scorers = [env.start("score", "--client-id", "s1b"), env.start("score", "--client-id", "s2")]
    player.join()
    _, trips = result["r"]
    truth = [t for ts in trips.values() for t in ts]
    assert wait_for_trips(cfg, len(truth), stages + scorers) == len(truth)
    time.sleep(2)  # any late duplicate would show up now
    for s in scorers + stages:
        s.stop()
    con = store.connect(cfg.db_path)
    rows = con.execute(
        "SELECT vehicle_id, epoch_ms(start_ts), epoch_ms(end_ts), distance_km, ended_by FROM trips"
    ).fetchall()
    con.close()
    assert len(rows) == len(truth)
    assert {r[4] for r in rows} == {"ignition_off", "motion_stop"}
    for t in truth:
        match = [r for r in rows if r[0] == t.vehicle_id and r[1] < t.end_ms and r[2] > t.start_ms]
        assert len(match) == 1, (t.vehicle_id, t.start_ms, match)
        assert abs(match[0][3] * 1000 - t.distance_m) <= 0.01 * t.distance_m
