"""`ubi demo`: the whole pipeline end to end on the real services, ending with a summary a person can read.

simulated fleet -> Mosquitto (MQTT 5, QoS 1, per-device auth) -> bridge -> Kafka -> scorer (numba) ->
Kafka scored trips -> store (DuckDB) -> monthly pricing (rulebook) -> summary
"""

from __future__ import annotations

import shutil
import textwrap
import time
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pricing.rulebook import load_rulebook
from scoring.trips import trip_id
from simulator.fleet import FleetSpec, device_time, motion_only, vehicle_ids
from simulator.player import play_fleet
from ubi.adapters import duckdb_store as store
from ubi.adapters.duckdb_store import load_policies, run_month
from ubi.adapters.kafka import delete_topics, ensure_topics
from ubi.adapters.mqtt import drop_session
from ubi.common.config import Config, load_config
from ubi.common.errors import UBIError
from ubi.common.progress import Progress
from ubi.ops.processes import start_stage
from ubi.ops.stack import Stack
from ubi.stages.store import read_status, status_path


def months_between(start: date, end: date) -> list[date]:
    out, m = [], date(start.year, start.month, 1)
    while m <= end:
        out.append(m)
        m = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    return out


DEMO_TOML = """# written by `ubi demo`: the demo's own topics, groups and MQTT session, reset on every run
[kafka]
telemetry_topic = "ubi.cli.demo.telemetry.v1"
dead_letter_topic = "ubi.cli.demo.telemetry.dlq.v1"
trips_topic = "ubi.cli.demo.trips.v1"
scorer_group = "ubi-demo-scorer-{run}"
store_group = "ubi-demo-store-{run}"

[mqtt]
share_group = "ubi-demo"
# the demo's bridge session must not keep collecting everyone's traffic for days after the demo
bridge_session_expiry_s = 300
"""
DEMO_BRIDGE_ID = "ubi-demo-bridge"


def old_demo_state_topics(k) -> list[str]:
    """The scorer state topics of earlier demo runs (each run has its own scorer group, so its own topic)."""
    from ubi.adapters.kafka import admin_client

    admin = admin_client(k)
    try:
        return [t for t in admin.list_topics() if t.startswith("ubi-demo-scorer-") and t.endswith(".state.v1")]
    finally:
        admin.close()


def prepare_demo(cfg: Config) -> tuple[Config, Path]:
    """A fresh namespace for this run: recreated topics, new consumer groups, an empty MQTT session."""
    run = uuid.uuid4().hex[:8]
    toml = cfg.run_dir / "demo.toml"
    toml.parent.mkdir(parents=True, exist_ok=True)
    toml.write_text(DEMO_TOML.format(run=run))
    demo = replace(load_config(toml), db_path=cfg.home / "demo.duckdb")
    k = demo.kafka
    delete_topics(k, [k.telemetry_topic, k.dead_letter_topic, k.trips_topic, *old_demo_state_topics(k)])
    ensure_topics(k)
    # Discard whatever a previous, interrupted demo left queued for the bridge's persistent session.
    drop_session(
        demo.mqtt, DEMO_BRIDGE_ID, demo.mqtt.bridge_user, Stack(demo).credentials().password(demo.mqtt.bridge_user)
    )
    for p in (demo.db_path, demo.db_path.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    return demo, toml


def run_demo(
    cfg: Config,
    vehicles: int,
    days: int,
    seed: int,
    timeout: float = 600,
    faults: bool = False,
    motion_only_share: float = 0.2,
) -> int:
    print(f"== stack: {', '.join(f'{k} {v}' for k, v in Stack(cfg).up().items())}")
    cfg, toml = prepare_demo(cfg)
    today = datetime.now(timezone.utc).date()
    spec = FleetSpec(
        vehicles=vehicles,
        days=days,
        seed=seed,
        start=today - timedelta(days=days),
        sensor_faults=faults,
        motion_only_share=motion_only_share,
    )
    out = cfg.home / "sim" / "demo"
    shutil.rmtree(out, ignore_errors=True)
    n_motion = sum(motion_only(spec, v) for v in vehicle_ids(vehicles))
    print(
        f"== fleet: {vehicles} vehicles ({n_motion} of them without ignition events), {days} days from "
        f"{spec.start}, seed {seed}"
    )
    env = {"UBI_CONFIG": str(toml)}
    stages = [
        start_stage(cfg, "bridge", "--client-id", DEMO_BRIDGE_ID, env=env),
        start_stage(cfg, "score", env=env),
        start_stage(cfg, "store", env=env),
    ]
    try:
        time.sleep(2.0)
        for s in stages:
            if s.proc.poll() is not None:
                raise UBIError(f"stage {s.name} exited at start-up; see {s.log}")
        sent, trips = play_fleet(cfg, spec, out)
        # trip ids come from the device's clock, which drifts when faults are simulated
        expected = {
            trip_id(t.vehicle_id, device_time(spec, t.vehicle_id, t.start_ms)) for ts in trips.values() for t in ts
        }
        bar = Progress("scored trips -> duckdb", len(expected), "trips")
        deadline = time.monotonic() + timeout
        stored = 0
        while stored < len(expected):
            stored = read_status(status_path(cfg)).get("trips", 0)
            bar.update(stored)
            for s in stages:
                if s.proc.poll() is not None:
                    raise UBIError(f"stage {s.name} died (exit {s.proc.returncode}); see {s.log}")
            if time.monotonic() > deadline:
                raise UBIError(f"only {stored}/{len(expected)} trips stored after {timeout}s; see {cfg.home / 'logs'}")
            time.sleep(0.3)
        bar.done(stored)
    finally:
        for s in reversed(stages):
            s.stop()
    con = store.connect(cfg.db_path)
    try:
        by = dict(con.execute("SELECT ended_by, count(*) FROM trips GROUP BY ALL").fetchall())
        print(
            f"== trips: {sum(by.values())} stored; cut by ignition events: "
            f"{sum(n for k, n in by.items() if k in ('ignition_off', 'next_trip', 'grace_timeout'))}, by motion: "
            f"{sum(n for k, n in by.items() if k in ('motion_stop', 'data_gap'))}"
        )
        load_policies(con, out / "policies.parquet")
        rb = load_rulebook(cfg.rulebook)
        months = months_between(spec.start, spec.start + timedelta(days=days - 1))
        for m in months:
            s = run_month(con, rb, m, actor="demo")
            print(
                f"== priced {m:%Y-%m} with rulebook {rb.version}: {s.policies} policies, "
                f"{s.priced_on_driving} on driving data, caps hit {s.capped_up} up / {s.capped_down} down"
            )
        print_summary(con, months[-1])
    finally:
        con.close()
    print(f"\nDuckDB file: {cfg.db_path}")
    print(
        "Try:  .venv/bin/ubi sql --db "
        + str(cfg.db_path)
        + ' "SELECT vehicle_id, count(*) trips, round(sum(distance_km)) km FROM trips'
        + ' GROUP BY ALL ORDER BY km DESC LIMIT 5"'
    )
    from ubi.cli.portal import print_demo_portal  # issue 15: the policyholder's statements and portal

    print_demo_portal(cfg)
    return 0


def print_summary(con, month: date) -> None:
    rows = con.execute(
        """
        SELECT p.policy_id, f.trips, f.km, f.harsh_brakes_per_100km, p.previous_premium, p.premium, p.cap_applied
        FROM premiums p JOIN monthly_features f USING (policy_id, month)
        WHERE p.month = ? ORDER BY p.policy_id""",
        [month],
    ).fetchall()
    print(f"\nPremiums for {month:%B %Y} (monthly, EUR)")
    print(f"{'policy':<10} {'trips':>5} {'km':>8} {'brakes/100km':>13} {'old':>8} {'new':>8} {'change':>8}  cap")
    tot_old = tot_new = 0
    for pid, trips, km, b100, old, new, cap in rows:
        change = (new - old) / old * 100
        tot_old += old
        tot_new += new
        b = f"{b100:.2f}" if b100 is not None else "-"
        print(
            f"{pid:<10} {trips:>5} {km:>8.1f} {b:>13} {old:>8} {new:>8} {change:>+7.1f}%  "
            f"{'' if cap == 'none' else cap}"
        )
    change = (tot_new - tot_old) / tot_old * 100 if tot_old else 0
    print(f"{'book':<10} {'':>5} {'':>8} {'':>13} {tot_old:>8} {tot_new:>8} {change:>+7.1f}%")
    biggest = con.execute(
        """SELECT policy_id, statement FROM premiums WHERE month = ?
                             ORDER BY abs(premium - previous_premium) DESC, policy_id LIMIT 1""",
        [month],
    ).fetchone()
    if biggest:
        print(f"\nWhat {biggest[0]} reads on their statement:")
        print(textwrap.fill(biggest[1], width=100, initial_indent="  ", subsequent_indent="  "))
