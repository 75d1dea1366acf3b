"""Every stage's /metrics on the running stack: a small simulated fleet through the bridge, the scorer and the store
as separate processes, then each endpoint scraped and compared with what the simulator sent and DuckDB holds."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scoring.trips import trip_id
from simulator.fleet import make_trips, vehicle_ids
from simulator.player import play_fleet
from tests.integration.test_pipeline import wait_for_trips
from ubi.adapters import duckdb_store as store

pytestmark = pytest.mark.integration

PORTS = {"bridge": 19474, "score": 19475, "store": 19476}


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def lag(m: dict) -> float:
    return sum(v for (name, _), v in m.items() if name == "ubi_kafka_consumer_lag")


def test_each_stage_endpoint_counts_what_went_through_it(env):
    cfg = env.config
    stages = [
        env.start("bridge", "--client-id", f"it-{env.tag}-bridge", "--metrics-port", str(PORTS["bridge"])),
        env.start("score", "--client-id", "s1", "--metrics-port", str(PORTS["score"])),
        env.start("store", "--client-id", "st1", "--metrics-port", str(PORTS["store"])),
    ]
    # the vehicles' ids carry the test's random tag, and with them their trips: a one-day fleet of two can have none
    # (then every count below is 0 and only the write-latency check failed: seen twice in CI). Take the first seed
    # from 5 whose fleet drives at least twice.
    seed = 5
    while sum(len(make_trips(env.fleet(vehicles=2, days=1, seed=seed), v)) for v in vehicle_ids(2, f"T{env.tag}")) < 2:
        seed += 1
    spec = env.fleet(vehicles=2, days=1, seed=seed)
    sent, trips = play_fleet(cfg, spec, env.path / "sim", show=False)
    expected = {trip_id(t.vehicle_id, t.start_ms) for ts in trips.values() for t in ts}
    assert len(expected) >= 2
    assert wait_for_trips(cfg, len(expected), stages) == len(expected)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the gauges follow each poll: wait for the idle polls after the last trip
        b, s, st = (scrape(PORTS[k]) for k in ("bridge", "score", "store"))
        if (
            b.get(("ubi_bridge_delivered_total", ())) == sent
            and s.get(("ubi_scorer_trips_total", ())) == len(expected)
            and st.get(("ubi_store_trips_stored", ())) == len(expected)
            and lag(s) == 0
            and lag(st) == 0
        ):
            break
        time.sleep(0.5)
    for p in stages:
        assert p.stop() == 0, p.log.read_text()[-2000:]

    assert b[("ubi_bridge_received_total", ())] == sent == b[("ubi_bridge_delivered_total", ())]
    assert b[("ubi_bridge_in_flight", ())] == 0 and b[("ubi_bridge_dead_lettered_total", ())] == 0
    assert b[("ubi_bridge_publish_to_kafka_ms_count", ())] == sent
    assert s[("ubi_scorer_records_total", ())] == sent  # every message the bridge delivered, read once
    assert s[("ubi_scorer_trips_total", ())] == len(expected) and lag(s) == 0
    assert s[("ubi_scorer_open_trips", ())] == 0
    con = store.connect(cfg.db_path, read_only=True)
    try:
        stored, vehicles = con.execute("SELECT count(*), count(DISTINCT vehicle_id) FROM trips").fetchone()
    finally:
        con.close()
    assert st[("ubi_store_trips_stored", ())] == stored == len(expected)
    assert st[("ubi_store_records_total", ())] == len(expected) and lag(st) == 0
    written = {k: v for k, v in st.items() if k[0].startswith("ubi_store_")}
    assert st[("ubi_store_duckdb_write_seconds_count", ())] >= 1, (written, stages[2].log.read_text()[-3000:])
    assert st[("ubi_store_devices_known", ())] == vehicles  # no policies loaded: the vehicles that drove
