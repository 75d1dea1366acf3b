"""The cluster fault tests' harness: a three-broker cluster of its own, one clean run of a simulated fleet, and runs
of the same fleet with one fault each, compared with the simulator's ground truth and with the clean run.

It reuses the chaos harness (bench/chaos.py) for the per-run configuration, the fleet's play with the end-to-end ack,
the wait for the store and the trip-by-trip, premium-by-premium comparison.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import chaos  # noqa: E402  (bench/chaos.py)
from kafka.errors import KafkaError  # noqa: E402

from pricing.rulebook import load_rulebook  # noqa: E402
from scoring.trips import trip_id  # noqa: E402
from simulator.fleet import FleetSpec  # noqa: E402
from simulator.run import write_truth  # noqa: E402
from ubi.adapters import duckdb_store as store  # noqa: E402
from ubi.adapters.kafka import admin_client, ensure_topics  # noqa: E402
from ubi.common.config import Config, load_config  # noqa: E402
from ubi.ops import cluster as kc  # noqa: E402
from ubi.ops.stack import Stack, _pid_alive, _stop_pid  # noqa: E402
from ubi.ops.supervisor import Supervisor  # noqa: E402

PREFIX = "CL"
RESULTS: list[str] = []  # one line per scenario, printed at the end of the run (README figures)


@dataclass
class Outcome:
    name: str
    fault: str = ""
    truth_trips: int = 0
    stored: int = 0
    missing_truth: int = 0  # true trips not stored
    not_true: int = 0  # stored trips the simulator never drove
    duplicates: int = 0  # a trip id stored more than once
    compared: chaos.RunResult = field(default_factory=lambda: chaos.RunResult("?"))
    restarts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def ok(self) -> bool:
        return not (self.missing_truth or self.not_true or self.duplicates) and self.compared.ok()

    def line(self, clean_s: float) -> str:
        c = self.compared
        return (
            f"{self.name}: {self.fault}; {self.stored}/{self.truth_trips} true trips stored, missing "
            f"{self.missing_truth}, not true {self.not_true}, duplicated {self.duplicates}; against the clean run: "
            f"lost {c.lost}, extra {c.extra}, wrongly complete {c.wrongly_complete}, differ {c.differ}, premiums "
            f"differ {c.premiums_differ}/{c.premiums}; restarts {self.restarts}; {self.seconds:.0f} s "
            f"(clean run {clean_s:.0f} s)"
        )


class Cluster:
    def __init__(self, home: Path, mqtt_port: int, kafka_port: int) -> None:
        self.home = home.resolve()
        self.mqtt_port, self.kafka_port = mqtt_port, kafka_port
        self.stack: Stack
        self.cfg: Config
        self.spec = FleetSpec(
            vehicles=4, days=2, seed=11, start=date.today() - timedelta(days=3), motion_only_share=0.0, id_prefix=PREFIX
        )
        self.speedup = self.spec.days * 86400 / 25.0  # the fleet plays in about 25 s
        self.trips: dict = {}
        self.clean: Outcome | None = None
        self.clean_db: Path | None = None

    # --- the cluster -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        for k in ("UBI_CONFIG", "UBI_DB", "UBI_KAFKA_BOOTSTRAP", "UBI_MQTT_PORT"):
            os.environ.pop(k, None)  # this session's brokers only
        os.environ["UBI_HOME"] = str(self.home)
        # DuckDB spills to ./.tmp and refuses to open any file while another process's spill files are there
        # ("Existing temporary files found"): run from this home, not from a checkout other jobs share
        os.chdir(self.home)
        for f in self.home.glob("*.duckdb*"):
            f.unlink()
        chaos.PORTS.update(mqtt=self.mqtt_port, kafka=self.kafka_port)
        base = chaos.write_config(self.home, "base")
        self.stack = Stack(load_config(base))
        t0 = time.monotonic()
        rows = self.stack.up(brokers=3)
        RESULTS.append(f"ubi stack up --brokers 3: {time.monotonic() - t0:.0f} s ({', '.join(rows)})")
        self.cfg = load_config(base)  # now with every broker in kafka.bootstrap
        assert len(self.cfg.kafka.addresses) == 3, self.cfg.kafka.bootstrap
        self.stack = Stack(self.cfg)
        self.trips = write_truth(self.spec, self.home / "truth")
        self.clean_db, self.clean = self.run("clean run", None)
        self.clean.fault = "no fault"
        assert self.clean.ok() and self.clean.stored == self.clean.truth_trips >= 10, self.clean.line(0)

    def stop(self) -> None:
        print(f"cluster down: {self.stack.down()}", flush=True)

    def nodes(self) -> list[kc.Node]:
        return kc.recorded_nodes(self.cfg)

    def node(self, node_id: int) -> kc.Node:
        return next(n for n in self.nodes() if n.node_id == node_id)

    def ensure_all_up(self, timeout: float = 180.0) -> None:
        chaos.Chaos._until_up(lambda: kc.cluster_up(self.stack, 3), timeout)

    def controller(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                leader = kc.quorum_leader(self.cfg.kafka)
                if leader is not None:
                    return leader
            except Exception:  # noqa: BLE001 - no quorum yet: asked again
                pass
            time.sleep(0.5)
        raise AssertionError(f"no active controller within {timeout:.0f} s")

    def leaders(self, topics: list[str], timeout: float = 60.0) -> dict[tuple[str, int], tuple[int, list[int]]]:
        """(topic, partition) -> (leader, replicas). Asked again while the client picks a dead node (kafka-python's
        admin client raises instead of trying the next broker)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin = admin_client(self.cfg.kafka)
                try:
                    return {
                        (t["name"], p["partition_index"]): (p["leader_id"], list(p["replica_nodes"]))
                        for t in admin.describe_topics(topics)
                        for p in t["partitions"]
                    }
                finally:
                    admin.close()
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def kill(self, node: kc.Node, sig: int = signal.SIGKILL) -> None:
        pid = _pid_alive(node.pid_file)
        assert pid is not None, f"node {node.node_id} is not running"
        os.kill(pid, sig)
        deadline = time.monotonic() + 60
        while _pid_alive(node.pid_file) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop_node(self, node: kc.Node) -> None:
        """A graceful stop (SIGTERM: controlled shutdown, leadership handed over first)."""
        assert _stop_pid(node.pid_file, f"kafka node {node.node_id}", 60)

    # --- one run of the fleet ------------------------------------------------------------------------------------
    def run(
        self,
        name: str,
        fault: Callable[[Cluster, Config, Supervisor], str] | None,
        at_s: float = 8.0,
        bridges: int = 1,
        scorers: int = 1,
    ) -> tuple[Path, Outcome]:
        """Play the fleet through a fresh deployment (own topics and groups) while ``fault`` is applied ``at_s``
        seconds in; price it; compare with the ground truth and the clean run."""
        tag = uuid.uuid4().hex[:8]
        toml = chaos.write_config(self.home, tag)
        db = self.home / f"{name.replace(' ', '-')}-{tag}.duckdb"
        os.environ["UBI_CONFIG"], os.environ["UBI_DB"] = str(toml), str(db)
        cfg = load_config(toml)
        assert cfg.kafka.bootstrap == self.cfg.kafka.bootstrap  # every broker named
        ensure_topics(cfg.kafka, timeout=120)
        env = {"UBI_CONFIG": str(toml), "UBI_DB": str(db), "UBI_HOME": str(self.home)}
        stages = [("bridge", ("--client-id", f"cl-{tag}-bridge{i}")) for i in range(bridges)]
        stages += [("score", ("--client-id", f"s{i}")) for i in range(scorers)]
        stages += [("store", ())]
        sup = Supervisor(cfg, stages, env=env, max_backoff_s=2.0)
        out = Outcome(name)
        t0 = time.monotonic()
        sup.start()
        stop = threading.Event()
        errors: list[BaseException] = []

        def apply_fault() -> None:
            if stop.wait(at_s):
                return
            try:
                out.fault = fault(self, cfg, sup)  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001 - the test fails with it below
                errors.append(exc)

        threads = [threading.Thread(target=chaos.supervise, args=(sup, stop), daemon=True)]
        if fault is not None:
            threads.append(threading.Thread(target=apply_fault, daemon=True))
        for t in threads:
            t.start()
        try:
            chaos.play(cfg, self.stack, self.spec, self.trips, self.speedup)
            want = self.clean.stored if self.clean else None
            chaos.wait_drained(cfg, sup, want, quiet_s=20.0, timeout=240)  # normally done within a minute
        finally:
            if len(threads) > 1:
                threads[1].join()  # a fault still being applied ends inside this run
            stop.set()
            sup.stop_all()
        if errors:
            raise errors[0]
        out.seconds = time.monotonic() - t0
        out.restarts = sup.restarts()
        self._price(db)
        self._against_truth(db, out)
        if self.clean_db is not None:
            out.compared = chaos.compare(self.clean_db, db, chaos.RunResult(name), PREFIX)
        print(out.line(self.clean.seconds if self.clean else out.seconds), flush=True)
        return db, out

    def _price(self, db: Path) -> None:
        con = store.connect(db)
        try:
            store.load_policies(con, self.home / "truth" / "policies.parquet")
            rb = load_rulebook(self.cfg.rulebook)
            days = (self.spec.start + timedelta(days=i) for i in range(self.spec.days))
            for m in sorted({date(d.year, d.month, 1) for d in days}):
                store.run_month(con, rb, m, actor="cluster-test")
        finally:
            con.close()

    def _against_truth(self, db: Path, out: Outcome) -> None:
        truth = {trip_id(t.vehicle_id, t.start_ms) for ts in self.trips.values() for t in ts}
        con = store.connect(db, read_only=True)
        try:
            counts = dict(con.execute("SELECT trip_id, count(*) FROM trips GROUP BY trip_id").fetchall())
        finally:
            con.close()
        out.truth_trips, out.stored = len(truth), sum(counts.values())
        out.missing_truth = len(truth - counts.keys())
        out.not_true = len(counts.keys() - truth)
        out.duplicates = sum(n - 1 for n in counts.values() if n > 1)
