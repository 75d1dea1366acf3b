"""A local three-broker KRaft Kafka cluster from the same jars as the single broker (``ubi stack up --brokers 3``).

Each node is broker and controller (three voters), with its own ports, data, pid file and logs under
``<home>/kafka-cluster/node<N>/``. Node N (1-based) listens for clients on ``P + 3(N-1)``, for the controller quorum
on that + 1 and for replication on that + 2, where P is the first port of ``kafka.bootstrap`` (or the ports of a
bootstrap list that names every broker). The bootstrap list of the running cluster is written to
``<home>/kafka-cluster/bootstrap``; ``load_config`` reads it, so every client of this home names all brokers.
Clients authenticate exactly as on the single broker (SASL/SCRAM, ACLs per stage); brokers replicate over mutual TLS.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ubi.common.config import Config
from ubi.common.errors import StackError

CLUSTER_DIR = "kafka-cluster"


@dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    port: int
    dir: Path

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def internal_port(self) -> int:
        return self.port + 2

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"


def cluster_dir(cfg: Config) -> Path:
    return cfg.home / CLUSTER_DIR


def nodes(cfg: Config, brokers: int) -> list[Node]:
    """The cluster's nodes: the bootstrap list's addresses when it names ``brokers`` of them, else ports counted
    from its first address in steps of 3."""
    if brokers < 3:
        raise StackError(f"a cluster needs at least 3 brokers (3 controller voters survive one down), not {brokers}")
    addrs = cfg.kafka.addresses
    if len(addrs) == 1:
        host, base = addrs[0]
        addrs = [(host, base + 3 * i) for i in range(brokers)]
    elif len(addrs) != brokers:
        raise StackError(
            f"kafka.bootstrap names {len(addrs)} brokers but {brokers} were asked for: name one address (the others "
            "follow in steps of 3) or all of them"
        )
    ports = [p + k for _h, p in addrs for k in range(3)]
    if len(set(ports)) != len(ports):
        raise StackError(f"kafka.bootstrap {cfg.kafka.bootstrap}: each broker needs its port, +1 and +2 free of others")
    root = cluster_dir(cfg)
    return [Node(i + 1, h, p, root / f"node{i + 1}") for i, (h, p) in enumerate(addrs)]


def recorded_bootstrap(cfg: Config) -> str | None:
    path = cluster_dir(cfg) / "bootstrap"
    return path.read_text().strip() if path.exists() else None


def recorded_nodes(cfg: Config) -> list[Node]:
    """The nodes of the cluster this home last started (none if it never did)."""
    listed = recorded_bootstrap(cfg)
    if not listed:
        return []
    return nodes(replace(cfg, kafka=replace(cfg.kafka, bootstrap=listed)), len(listed.split(",")))


def node_config(cfg: Config, node: Node):
    """A KafkaConfig that talks to this node alone (to probe it)."""
    return replace(cfg.kafka, bootstrap=node.address)


def cluster_up(stack, brokers: int) -> dict[str, str]:
    """Start every node that is not running, wait until all answer, then create topics and ACLs (replication
    factor 3). Idempotent like the single broker: a node that answers is left alone."""
    from ubi.ops import stack as st

    cfg: Config = stack.cfg
    members = nodes(cfg, brokers)
    single = cfg.home / "kafka" / "kafka.pid"
    if st._pid_alive(single):
        raise StackError(f"the single broker of {cfg.home} runs (pid file {single}): `ubi stack down` first")
    root = cluster_dir(cfg)
    st._private_dir(root)
    listed = ",".join(n.address for n in members)
    recorded = recorded_bootstrap(cfg)
    if recorded and recorded != listed and any(st._pid_alive(n.pid_file) for n in recorded_nodes(cfg)):
        raise StackError(f"a cluster on {recorded} runs from {root}: `ubi stack down` first")
    if not (stack.kafka_libs / ".complete").exists():
        raise StackError(f"Kafka jars missing in {stack.kafka_libs}: run deploy/local/install.sh")
    java = stack._java()
    cp = f"{stack.kafka_libs}/*"
    had_secrets = stack.kafka_secrets.exists()
    if any((n.dir / "scram.formatted").exists() for n in members) and not had_secrets:
        raise StackError(
            f"the cluster's storage holds SCRAM credentials but {stack.kafka_secrets} is gone: no client can "
            f"authenticate. `ubi stack down`, remove {root}, then `ubi stack up --brokers {brokers}`"
        )
    passwords = stack._kafka_passwords()
    tls = root / "tls"
    if not (tls / "controller.pem").exists():
        made = subprocess.run(
            ["bash", str(st.DEPLOY / "kafka" / "make-controller-tls.sh"), str(tls)], capture_output=True, text=True
        )
        if made.returncode != 0:
            raise StackError(f"could not make the Kafka nodes' TLS material: {made.stderr.strip()}")
    cid_file = root / "cluster_id"
    if not cid_file.exists():
        out = subprocess.run(
            [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
        )
        cid_file.write_text(out.stdout.strip().splitlines()[-1])
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in members)
    template = (st.DEPLOY / "kafka" / "cluster.properties").read_text()
    scram = [a for u, pw in sorted(passwords.items()) for a in ("--add-scram", st.scram_sha512_entry(u, pw))]
    rows: dict[str, str] = {}
    started = []
    for n in members:
        name = f"kafka-{n.node_id}"
        if st._pid_alive(n.pid_file) and st.port_open(n.host, n.port):
            rows[name] = f"already running on {n.address}"
            continue
        for p in (n.port, n.controller_port, n.internal_port):
            if st.port_open(n.host, p):
                raise StackError(f"port {p} (node {n.node_id}) is taken by another process; stop it or change ports")
        st._private_dir(n.dir)
        for d in (n.dir / "data", n.logs):
            st._private_dir(d)
        props = template.replace("@NODE_ID@", str(n.node_id)).replace("@VOTERS@", voters)
        props = props.replace("@DATA_DIR@", str(n.dir / "data")).replace("@TLS_DIR@", str(tls))
        props = props.replace("@CONTROLLER_PORT@", str(n.controller_port))
        props = props.replace("@INTERNAL_PORT@", str(n.internal_port)).replace("@PORT@", str(n.port))
        (n.dir / "server.properties").write_text(props)
        marker = n.dir / "scram.formatted"
        fmt = subprocess.run(
            [java, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cid_file.read_text().strip(),
             "-c", str(n.dir / "server.properties"), "--ignore-formatted", *([] if marker.exists() else scram)],
            capture_output=True, text=True, preexec_fn=st._private_umask,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(f"kafka node {n.node_id}: storage format failed: {fmt.stderr.strip() or fmt.stdout}")
        marker.touch()
        proc = start_node(stack, n, java, cp)
        started.append((n, proc))
        rows[name] = f"started (pid {proc.pid}) on {n.address}"
    (root / "bootstrap").write_text(listed + "\n")
    for n, proc in started:
        stack._wait(lambda n=n: st.port_open(n.host, n.port), proc, f"kafka node {n.node_id}", 120,
                    n.logs / "kafka-server.log")  # fmt: skip
    kafka_cfg = replace(cfg.kafka, bootstrap=listed)
    wait_for_brokers(kafka_cfg, brokers, timeout=120)
    from ubi.adapters.kafka import ensure_topics

    ensure_topics(kafka_cfg, timeout=120)
    return rows


def start_node(stack, n: Node, java: str, cp: str) -> subprocess.Popen:
    """Start one node's JVM (its storage already formatted) and write its pid file."""
    from ubi.ops import stack as st

    log = open(n.logs / "kafka-stdout.log", "ab")
    proc = subprocess.Popen(
        [java, "-Xms512m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true", f"-Dkafka.logs.dir={n.logs}",
         f"-Dlog4j2.configurationFile={st.DEPLOY / 'kafka' / 'log4j2.yaml'}", "-cp", cp, "kafka.Kafka",
         str(n.dir / "server.properties")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=st._private_umask,
    )  # fmt: skip
    n.pid_file.write_text(str(proc.pid))
    return proc


def wait_for_brokers(kafka_cfg, brokers: int, timeout: float) -> None:
    """Until ``brokers`` brokers are registered and unfenced: topics with replication factor 3 need all three."""
    from ubi.adapters.kafka import admin_client

    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            admin = admin_client(kafka_cfg, request_timeout_ms=5000)
            try:
                seen = sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced"))
                if len(seen) >= brokers:  # type: ignore[arg-type]
                    return
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            seen = exc
        time.sleep(1.0)
    raise StackError(f"only these Kafka brokers registered within {timeout:.0f} s: {seen}")


def quorum_leader(kafka_cfg) -> int | None:
    """The node id of the active controller (the metadata quorum's leader), or None if none answers."""
    from ubi.adapters.kafka import admin_client

    admin = admin_client(kafka_cfg, request_timeout_ms=5000)
    try:
        q = admin.describe_metadata_quorum()
    finally:
        admin.close()
    topics = q.get("topics") or []
    try:
        leader = topics[0]["partitions"][0]["leader_id"]
    except (IndexError, KeyError, TypeError):
        return None
    return int(leader) if leader is not None and leader >= 0 else None


def cluster_status(stack) -> dict[str, str]:
    from ubi.adapters.kafka import probe
    from ubi.ops import stack as st

    cfg: Config = stack.cfg
    rows = {}
    members = recorded_nodes(cfg)
    for n in members:
        name = f"kafka-{n.node_id}"
        pid = st._pid_alive(n.pid_file)
        if st.port_open(n.host, n.port):
            why = probe(node_config(cfg, n), timeout=5.0)
            if why is not None:
                rows[name] = (
                    f"{'process ' + str(pid) if pid else 'a process'} holds {n.address} but does not answer: {why}"
                )
            elif pid:
                rows[name] = f"running (pid {pid}) on {n.address}"
            else:
                rows[name] = f"port {n.address} answers but not started by us"
        else:
            rows[name] = f"process {pid} alive but {n.address} not answering" if pid else "stopped"
    if any(v.startswith("running") for v in rows.values()):
        try:
            leader = quorum_leader(replace(cfg.kafka, bootstrap=",".join(n.address for n in members)))
            rows["controller"] = f"active controller: node {leader}" if leader else "no active controller"
        except Exception as exc:  # noqa: BLE001 - reported as the row
            rows["controller"] = f"quorum not answering: {type(exc).__name__}: {exc}"
    return rows


def cluster_down(stack) -> dict[str, str]:
    """Stop every node at once: stopped one by one, the last two would wait for a quorum that is already gone."""
    from concurrent.futures import ThreadPoolExecutor

    from ubi.ops import stack as st

    members = recorded_nodes(stack.cfg)
    if not members:
        return {}
    with ThreadPoolExecutor(len(members)) as pool:
        stopped = list(pool.map(lambda n: st._stop_pid(n.pid_file, f"kafka node {n.node_id}", 60), members))
    return {f"kafka-{n.node_id}": "stopped" if ok else "not running" for n, ok in zip(members, stopped, strict=True)}
