"""Chaos harness (issue 11): the whole pipeline, again and again, while things break; compared with a clean run.

Each run plays the same simulated fleet (devices with the end-to-end ack) through real Mosquitto, Kafka, the
bridge, the scorer and the store (under ``ubi.ops.supervisor``), while a seeded schedule of faults lands mid-stream:
SIGKILL of each stage (the supervisor restarts it), SIGKILL of Mosquitto and of Kafka (restarted by the harness
after a pause), poison messages (malformed, oversize, a trip without any GPS fix) and a hostile device (joins the
bridge's share group, takes over the bridge's client id, publishes as another vehicle). Then every trip and every
premium is compared with a clean run of the same fleet:

    lost               trips of the clean run missing here
    extra              trips here that the clean run does not have (a trip split or counted twice)
    wrongly complete   trips flagged complete with fewer messages than the clean run's
    differ             common trips whose measures differ (messages, distance, events, completeness)
    premiums differ    (policy, month) premiums not equal to the clean run's to the cent

The harness runs its own brokers (``--home``, ports 1893/8893 and 9192/9193 by default), so it never disturbs
`ubi stack`.

    python bench/chaos.py --runs 20            # `make chaos`; figures in the README
    python bench/chaos.py --runs 1 --short     # what .ci/run does (tests/integration/test_chaos.py)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.devices import DeviceFleet  # noqa: E402
from simulator.fleet import FleetSpec  # noqa: E402
from simulator.run import vehicle_stream, write_truth  # noqa: E402
from ubi.adapters import duckdb_store as store  # noqa: E402
from ubi.adapters.kafka import ensure_topics  # noqa: E402
from ubi.adapters.mqtt import make_client  # noqa: E402
from ubi.common.config import Config, load_config  # noqa: E402
from ubi.common.messages import DeviceEvent  # noqa: E402
from ubi.ops.stack import Stack  # noqa: E402
from ubi.ops.supervisor import Supervisor  # noqa: E402

FAULTS = ("kill_bridge", "kill_score", "kill_store", "kill_mosquitto", "kill_kafka", "poison", "hostile")
COMPARED = ("messages", "complete", "distance_km", "harsh_brakes", "harsh_accels", "ended_by")


@dataclass
class RunResult:
    name: str
    trips: int = 0
    lost: int = 0
    extra: int = 0
    wrongly_complete: int = 0
    differ: int = 0
    premiums: int = 0
    premiums_differ: int = 0
    faults: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def ok(self) -> bool:
        return not (self.lost or self.extra or self.wrongly_complete or self.differ or self.premiums_differ)


PORTS = {"mqtt": 1893, "kafka": 9192}  # --mqtt-port / --kafka-port (the TLS listener: mqtt + 7000)


def write_config(home: Path, tag: str) -> Path:
    """Own topics, groups and share group per run; the harness's own broker ports; no metrics endpoints."""
    toml = home / f"chaos-{tag}.toml"
    toml.write_text(f"""
[mqtt]
port = {PORTS["mqtt"]}
tls_port = {PORTS["mqtt"] + 7000}
share_group = "chaos-{tag}"
bridge_session_expiry_s = 60

[kafka]
bootstrap = "127.0.0.1:{PORTS["kafka"]}"
telemetry_topic = "chaos.{tag}.telemetry"
dead_letter_topic = "chaos.{tag}.dlq"
trips_topic = "chaos.{tag}.trips"
scorer_group = "chaos-{tag}-scorer"
store_group = "chaos-{tag}-store"
partitions = 3

[ingest]
metrics_port = 0
scorer_metrics_port = 0
store_metrics_port = 0
""")
    return toml


class Chaos:
    """One run's fault schedule, applied from its own thread while the fleet plays."""

    def __init__(self, rng: random.Random, stack: Stack, sup: Supervisor, cfg: Config, poison_pw: dict) -> None:
        self.rng, self.stack, self.sup, self.cfg, self.poison_pw = rng, stack, sup, cfg, poison_pw
        self.done: list[str] = []
        self.lock = threading.Lock()  # the supervisor's check() and a broker restart do not interleave

    def apply(self, fault: str) -> None:
        if fault.startswith("kill_") and fault[5:] in ("bridge", "score", "store"):
            stage = self.sup.find(fault[5:])
            if stage.proc is not None and stage.proc.proc.poll() is None:
                os.kill(stage.proc.proc.pid, signal.SIGKILL)
        elif fault == "kill_mosquitto":
            self._kill_pid(self.stack.mq_dir / "mosquitto.pid")
            time.sleep(self.rng.uniform(0.5, 3.0))
            self._until_up(self.stack.mosquitto_up)
        elif fault == "kill_kafka":
            self._kill_pid(self.stack.kafka_dir / "kafka.pid")
            time.sleep(self.rng.uniform(1.0, 5.0))
            self._until_up(self.stack.kafka_up)
        elif fault == "poison":
            self._poison()
        elif fault == "hostile":
            self._hostile()
        self.done.append(fault)

    @staticmethod
    def _until_up(start, timeout: float = 120.0) -> None:
        """Restart a killed broker, trying again while its port or files are still held by the dead one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                start()
                return
            except Exception:  # noqa: BLE001 - retried until the deadline, then raised
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    @staticmethod
    def _kill_pid(pid_file: Path) -> None:
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        time.sleep(0.3)

    def _client(self, client_id: str):
        ((vehicle, password),) = self.poison_pw.items()
        c, props = make_client(self.cfg.mqtt, client_id, vehicle, password)
        try:
            c.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, properties=props)
        except OSError:
            return None, vehicle
        c.loop_start()
        time.sleep(0.3)
        return c, vehicle

    def _poison(self) -> None:
        """Malformed and oversize messages, and a contract-valid trip without a single GPS fix."""
        c, v = self._client(f"dev-{next(iter(self.poison_pw))}")
        if c is None:
            return
        prefix, now = self.cfg.mqtt.topic_prefix, int(time.time() * 1000)
        seq = self.rng.randrange(1_000_000)
        c.publish(f"{prefix}/{v}/telemetry", b"{not json", qos=1)
        c.publish(f"{prefix}/{v}/telemetry", b"[" + b" " * 300_000 + b"]", qos=1)
        on = DeviceEvent(v, seq, now - 60_000, "ignition_on")
        imu = {"t0": now - 40_000, "hz": 10, "lon": [0.1] * 10, "lat": [0.0] * 10, "vert": [9.8] * 10}
        imu_only = {"v": 1, "vehicle": v, "seq": seq + 1, "sent": now - 30_000, "imu": imu}
        off = DeviceEvent(v, seq + 2, now - 20_000, "ignition_off")
        for topic, body in (
            ("events", {"v": 1, "vehicle": v, "seq": on.seq, "t": on.t_ms, "event": on.event}),
            ("telemetry", imu_only),
            ("events", {"v": 1, "vehicle": v, "seq": off.seq, "t": off.t_ms, "event": off.event}),
        ):
            c.publish(f"{prefix}/{v}/{topic}", json.dumps(body).encode(), qos=1)
        time.sleep(0.5)
        c.loop_stop()
        c.disconnect()

    def _hostile(self) -> None:
        """A device that joins the bridge's share group, takes the bridge's client id, publishes as another."""
        c, v = self._client(f"dev-{next(iter(self.poison_pw))}")
        if c is not None:
            c.subscribe(f"$share/{self.cfg.mqtt.share_group}/{self.cfg.mqtt.topic_prefix}/+/telemetry", qos=1)
            c.publish(f"{self.cfg.mqtt.topic_prefix}/SOMEONE-ELSE/telemetry", b"{}", qos=1)
            time.sleep(0.5)
            c.loop_stop()
            c.disconnect()
        bridge_id = self.sup.find("bridge").args[-1]
        taker, _ = self._client(bridge_id)  # refused by the broker (client ids are bound to accounts)
        if taker is not None:
            taker.loop_stop()
            taker.disconnect()


def play(cfg: Config, stack: Stack, spec: FleetSpec, trips: dict, speedup: float) -> dict:
    passwords = stack.enrol(list(trips))
    fleet = DeviceFleet(cfg.mqtt, passwords, e2e=True, resend_s=5.0)
    sent = fleet.play({v: vehicle_stream(spec, ts) for v, ts in trips.items()}, speedup)
    fleet.flush(timeout=900)  # every message acknowledged end to end: safe in Kafka
    stats = {
        "sent": sent,
        "resent": sum(d.resent for d in fleet.devices.values()),
        "confirmed": sum(d.confirmed for d in fleet.devices.values()),
    }
    fleet.close(30)
    return stats


def wait_drained(cfg: Config, sup: Supervisor, want: int | None, quiet_s: float, timeout: float) -> int:
    """Until the store has written ``want`` trips (or, without a target, nothing new for ``quiet_s``)."""
    from ubi.stages.store import read_status, status_path

    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        sup.check()
        n = read_status(status_path(cfg)).get("trips", 0)
        if n != last:
            last, since = n, time.monotonic()
        if (want is not None and n >= want and time.monotonic() - since > 3) or (
            want is None and n > 0 and time.monotonic() - since > quiet_s
        ):
            return n
        time.sleep(0.5)
    return last


def run_once(
    home: Path, stack: Stack, spec: FleetSpec, truth_dir: Path, trips: dict, chaos_seed: int | None,
    speedup: float, faults: int, want: int | None,
) -> tuple[Path, RunResult]:  # fmt: skip
    stack.up()  # a broker left down by the previous run's last fault comes back first
    tag = uuid.uuid4().hex[:8]
    name = "clean" if chaos_seed is None else f"chaos-{chaos_seed}"
    toml = write_config(home, tag)
    db = home / f"{name}-{tag}.duckdb"
    os.environ["UBI_CONFIG"], os.environ["UBI_DB"] = str(toml), str(db)
    cfg = load_config(toml)
    ensure_topics(cfg.kafka)
    env = {"UBI_CONFIG": str(toml), "UBI_DB": str(db), "UBI_HOME": str(home)}
    sup = Supervisor(
        cfg,
        [("bridge", ("--client-id", f"chaos-{tag}-bridge")), ("score", ("--client-id", "s1")), ("store", ())],
        env=env,
        max_backoff_s=2.0,
    )
    result = RunResult(name)
    t0 = time.monotonic()
    sup.start()
    stop = threading.Event()
    chaos = None
    chaos_thread: threading.Thread | None = None
    if chaos_seed is not None:
        rng = random.Random(chaos_seed)
        poison = f"{spec.id_prefix}POISON"
        chaos = Chaos(rng, stack, sup, cfg, stack.enrol([poison]))
        plan = sorted((rng.uniform(2.0, 30.0), rng.choice(FAULTS)) for _ in range(faults))

        def run_chaos() -> None:
            start = time.monotonic()
            for at, fault in plan:
                if stop.wait(max(0.0, at - (time.monotonic() - start))):
                    return
                try:
                    chaos.apply(fault)
                except Exception as exc:  # noqa: BLE001 - a failed fault is reported, the run goes on
                    print(f"  fault {fault} could not be applied: {exc}", flush=True)

        chaos_thread = threading.Thread(target=run_chaos, daemon=True)
        chaos_thread.start()

    threading.Thread(target=supervise, args=(sup, stop), daemon=True).start()
    try:
        stats = play(cfg, stack, spec, trips, speedup)
        stored = wait_drained(cfg, sup, want, quiet_s=20.0, timeout=600)
    finally:
        stop.set()
        if chaos_thread is not None:
            chaos_thread.join()  # a fault still being applied (a broker restarting) ends inside this run
        sup.stop_all()
    result.trips = stored
    result.restarts = sup.restarts()
    result.faults = chaos.done if chaos else []
    result.seconds = time.monotonic() - t0
    print(f"  {name}: {stored} trips, {stats}, faults {result.faults}, restarts {result.restarts}", flush=True)
    con = store.connect(db)
    try:
        store.load_policies(con, truth_dir / "policies.parquet")
        from pricing.rulebook import load_rulebook

        rb = load_rulebook(cfg.rulebook)
        months = sorted({date(d.year, d.month, 1) for d in (spec.start + timedelta(days=i) for i in range(spec.days))})
        for m in months:
            store.run_month(con, rb, m, actor="chaos")
    finally:
        con.close()
    return db, result


def _rows(db: Path, poison_prefix: str) -> tuple[dict, dict]:
    con = store.connect(db, read_only=True)
    try:
        cols = ", ".join(COMPARED)
        trips = {
            r[0]: r[1:]
            for r in con.execute(
                f"SELECT trip_id, {cols} FROM trips WHERE vehicle_id NOT LIKE ? || '%POISON'", [poison_prefix]
            ).fetchall()
        }
        prem = {(p, str(m)): v for p, m, v in con.execute("SELECT policy_id, month, premium FROM premiums").fetchall()}
    finally:
        con.close()
    return trips, prem


def supervise(sup, stop: threading.Event) -> None:
    """Restart dead stages until ``stop`` (a thread's target): what `ubi pipeline` does, with errors printed."""
    while not stop.wait(0.3):
        try:
            sup.check()
        except Exception as exc:  # noqa: BLE001
            print(f"  supervisor: {exc}", flush=True)


def compare(ref_db: Path, db: Path, result: RunResult, prefix: str) -> RunResult:
    ref, ref_p = _rows(ref_db, prefix)
    got, got_p = _rows(db, prefix)
    result.trips = len(got)
    result.lost = len(ref.keys() - got.keys())
    result.extra = len(got.keys() - ref.keys())
    i_msg, i_complete = COMPARED.index("messages"), COMPARED.index("complete")
    for t in ref.keys() & got.keys():
        a, b = ref[t], got[t]
        if b[i_complete] and b[i_msg] < a[i_msg]:
            result.wrongly_complete += 1
        if tuple(round(x, 6) if isinstance(x, float) else x for x in a) != tuple(
            round(x, 6) if isinstance(x, float) else x for x in b
        ):
            result.differ += 1
    result.premiums = len(ref_p)
    result.premiums_differ = sum(1 for k, v in ref_p.items() if got_p.get(k) != v) + len(got_p.keys() - ref_p.keys())
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--short", action="store_true", help="a small fleet (CI)")
    ap.add_argument("--home", type=Path, default=Path("/tmp/ubi-chaos"))
    ap.add_argument("--seed", type=int, default=11, help="the fleet's seed (the same fleet in every run)")
    ap.add_argument("--faults", type=int, default=6, help="faults per run")
    ap.add_argument("--first-seed", type=int, default=1000, help="run i's fault schedule is seeded first-seed + i")
    ap.add_argument("--keep", action="store_true", help="leave the brokers running afterwards")
    ap.add_argument("--mqtt-port", type=int, default=1893, help="the harness's Mosquitto (TLS: this + 7000)")
    ap.add_argument("--kafka-port", type=int, default=9192, help="the harness's Kafka (controller: this + 1)")
    args = ap.parse_args(argv)
    PORTS.update(mqtt=args.mqtt_port, kafka=args.kafka_port)
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["UBI_HOME"] = str(home)
    for f in home.glob("*.duckdb"):
        f.unlink()
    vehicles, days = (4, 2) if args.short else (8, 3)
    today = date.today()
    spec = FleetSpec(
        vehicles=vehicles, days=days, seed=args.seed, start=today - timedelta(days=days + 1),
        motion_only_share=0.25, id_prefix="CH",
    )  # fmt: skip
    speedup = days * 86400 / (25.0 if args.short else 35.0)  # the fleet plays in about 25-35 s
    base = write_config(home, "base")
    stack = Stack(load_config(base))
    print(f"chaos harness: {args.runs} run(s), {vehicles} vehicles x {days} days, brokers under {home}", flush=True)
    for k, v in stack.up().items():
        print(f"  {k}: {v}", flush=True)
    truth_dir = home / "truth"
    shutil.rmtree(truth_dir, ignore_errors=True)
    trips = write_truth(spec, truth_dir)
    results = []
    try:
        ref_db, ref = run_once(home, stack, spec, truth_dir, trips, None, speedup, 0, None)
        for i in range(args.runs):
            db, r = run_once(home, stack, spec, truth_dir, trips, args.first_seed + i, speedup, args.faults, ref.trips)
            results.append(compare(ref_db, db, r, spec.id_prefix))
            print(
                f"run {i + 1}/{args.runs}: {r.trips} trips, lost {r.lost}, extra {r.extra}, wrongly complete "
                f"{r.wrongly_complete}, differ {r.differ}, premiums differ {r.premiums_differ}/{r.premiums}, "
                f"{r.seconds:.0f} s",
                flush=True,
            )
    finally:
        if not args.keep:
            for k, v in stack.down().items():
                print(f"  {k}: {v}", flush=True)
    total = {k: sum(getattr(r, k) for r in results) for k in ("lost", "extra", "wrongly_complete", "differ")}
    total["premiums_differ"] = sum(r.premiums_differ for r in results)
    faults: dict[str, int] = {}
    for r in results:
        for f in r.faults:
            faults[f] = faults.get(f, 0) + 1
    print(
        f"\n{len(results)} chaos runs against a clean run of {ref.trips} trips and "
        f"{results[0].premiums if results else 0} "
        f"premiums: {total}; faults applied {faults}"
    )
    (home / "chaos-summary.json").write_text(
        json.dumps({"reference_trips": ref.trips, "runs": [r.__dict__ for r in results], "total": total}, indent=1)
    )
    return 0 if all(r.ok() for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
