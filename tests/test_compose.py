"""deploy/compose.yaml and deploy/compose.cluster.yaml, checked without a Docker engine (none here): they parse, every
file they mount is in the repository or made by a `ubi` command, every variable their scripts read is set or made
by `ubi stack secrets`, no two things want one host port, and the cluster's Kafka nodes carry the local cluster's
settings (deploy/local/kafka/cluster.properties) wherever a container does not force a difference.

The last test runs the cluster file's own shell scripts on this host (the image's paths mapped to a temporary
folder, Kafka's StorageTool from the local jars): the TLS material is made and Kafka accepts each node's config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ubi.adapters.kafka import PRINCIPALS
from ubi.common.config import PROJECT_ROOT, Config
from ubi.ops.cluster import nodes
from ubi.ops.stack import Stack

DEPLOY = PROJECT_ROOT / "deploy"
FILES = ("compose.yaml", "compose.cluster.yaml")
# Host paths (relative to deploy/) that a `ubi` command makes, not the repository: what makes each.
MADE_BY_UBI = {
    "../.ubi/secrets/kafka.env": "ubi stack secrets",
    "../.ubi/mosquitto/passwd": "ubi stack up / ubi devices add",
    "../.ubi/metrics": "ubi price",
}
# Keys of the local cluster's node config that a container must set otherwise (names and paths of the compose
# network, and a keystore format the image can make without openssl); every other key must be equal.
CONTAINER_SPECIFIC = {
    "node.id", "controller.quorum.voters", "listeners", "advertised.listeners", "log.dirs",
    "ssl.keystore.type", "ssl.keystore.location", "ssl.truststore.location", "ssl.keystore.password",
    "ssl.key.password",
}  # fmt: skip


def load(name: str) -> dict:
    """A compose file with each service's `extends` (same folder) resolved as Compose does for these keys."""
    doc = yaml.safe_load((DEPLOY / name).read_text())
    for svc_name, svc in doc["services"].items():
        ext = svc.pop("extends", None)
        if ext:
            base = load(ext["file"])["services"][ext["service"]]
            doc["services"][svc_name] = {**base, **svc}
    return doc


def kafka_nodes(doc: dict) -> dict[str, dict]:
    return {n: s for n, s in doc["services"].items() if re.fullmatch(r"kafka(-\d+)?", n)}


def script(svc: dict) -> str:
    cmd = svc["command"]
    return cmd[0] if isinstance(cmd, list) else cmd


def published(svc: dict) -> list[tuple[str, int, int]]:
    out = []
    for p in svc.get("ports", []):
        host, hport, cport = str(p).split(":")
        out.append((host, int(hport), int(cport)))
    return out


def listen_port(svc_name: str, svc: dict) -> int:
    """The host port a host-network service listens on (its --web.listen-address, Grafana's GF_SERVER_HTTP_PORT)."""
    for arg in svc.get("command", []):
        m = re.fullmatch(r"--web\.listen-address=127\.0\.0\.1:(\d+)", str(arg))
        if m:
            return int(m.group(1))
    if svc_name == "grafana":
        return int(svc.get("environment", {}).get("GF_SERVER_HTTP_PORT", 3000))
    raise AssertionError(f"{svc_name}: no listen port found")


def host_ports(doc: dict) -> list[tuple[int, str]]:
    ports = []
    for name, svc in doc["services"].items():
        ports += [(h, name) for _a, h, _c in published(svc)]
        if svc.get("network_mode") == "host":
            ports.append((listen_port(name, svc), name))
    return ports


def properties(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def rendered(svc: dict) -> dict[str, str]:
    """A cluster node's config as its command's sed writes it (the keystore password left as a placeholder)."""
    env = svc["environment"]
    text = (DEPLOY / "compose" / "kafka-cluster.properties").read_text()
    text = text.replace("@NODE_ID@", env["UBI_NODE_ID"]).replace("@CLIENT_PORT@", env["UBI_CLIENT_PORT"])
    return {k: v for k, v in (line.partition("=")[::2] for line in text.splitlines() if line and line[0] != "#")}


@pytest.fixture(scope="module")
def secrets_env(tmp_path_factory) -> dict[str, str]:
    """What `ubi stack secrets` writes for compose, in a fresh home."""
    home = tmp_path_factory.mktemp("home")
    Stack(replace(Config(), home=home)).secrets()
    env = (home / "secrets" / "kafka.env").read_text()
    return dict(line.split("=", 1) for line in env.splitlines())


@pytest.mark.parametrize("name", FILES)
def test_every_mounted_file_exists_or_a_ubi_command_makes_it(name):
    doc = load(name)
    named = set(doc.get("volumes") or {})
    for svc_name, svc in doc["services"].items():
        sources = [v.split(":")[0] for v in svc.get("volumes", [])]
        sources += [svc["env_file"]] if "env_file" in svc else []
        assert svc.get("image"), svc_name
        for src in sources:
            if src.startswith("../.ubi/"):
                assert src in MADE_BY_UBI, (svc_name, src)
            elif src.startswith("."):
                assert (DEPLOY / src).exists(), (svc_name, src)
            else:
                assert src in named, (svc_name, f"volume {src} not declared")


@pytest.mark.parametrize("name", FILES)
def test_every_variable_the_kafka_scripts_read_is_set_or_made_by_stack_secrets(name, secrets_env):
    doc = load(name)
    assert all(k.startswith("UBI_KAFKA_PW_") for k in secrets_env) and len(secrets_env) == len(PRINCIPALS)
    for svc_name, svc in kafka_nodes(doc).items():
        body = script(svc)
        assert svc["env_file"] == "../.ubi/secrets/kafka.env"
        assigned = set(re.findall(r"^\s*(\w+)=", body, re.M))
        read = set(re.findall(r"\$\$\{?(\w+)", body))
        given = set(svc.get("environment", {})) | assigned | set(secrets_env)
        assert read <= given, (svc_name, read - given)
        # every principal of the stack gets a SCRAM credential, with its own variable
        scram = dict(re.findall(r"name=(\w+),password=\$\$(\w+)\]", body))
        assert scram == {u: f"UBI_KAFKA_PW_{u.upper()}" for u in PRINCIPALS}, svc_name
        assert "$" not in re.sub(r"\$\$", "", body), f"{svc_name}: a single $ is interpolated by Compose on the host"


def test_a_missing_variable_would_be_caught(secrets_env):
    body = "echo $$UBI_KAFKA_PW_ADMIN $$UBI_NOT_MADE"
    assert set(re.findall(r"\$\$\{?(\w+)", body)) - set(secrets_env) == {"UBI_NOT_MADE"}


@pytest.mark.parametrize("name", FILES)
def test_no_two_services_want_one_host_port(name):
    ports = host_ports(load(name))
    seen: dict[int, str] = {}
    for port, svc in ports:
        assert port not in seen, f"{name}: {svc} and {seen[port]} both want {port}"
        seen[port] = svc
    for svc in load(name)["services"].values():
        assert all(addr == "127.0.0.1" for addr, _h, _c in published(svc))  # nothing published beyond this host


def test_observability_beside_the_local_stack_takes_none_of_its_ports():
    """Prometheus, node_exporter and Grafana run on the host network beside `ubi stack up` (one broker or three)
    and the stages: none of them may want a port those use."""
    cfg = Config()
    local = {cfg.mqtt.port, cfg.mqtt.tls_port, cfg.portal.port, cfg.ingest.metrics_port}
    local |= {cfg.ingest.scorer_metrics_port, cfg.ingest.store_metrics_port}
    local |= {p for n in nodes(cfg, 3) for p in (n.port, n.controller_port, n.internal_port)}
    doc = load("compose.yaml")
    host_net = {listen_port(n, s): n for n, s in doc["services"].items() if s.get("network_mode") == "host"}
    assert set(host_net) & local == set(), {p: host_net[p] for p in set(host_net) & local}


def test_prometheus_scrapes_every_stage_and_the_pricing_textfile():
    cfg = Config().ingest
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for j in prom["scrape_configs"] for sc in j["static_configs"] for t in sc["targets"]}
    exporter = listen_port("node-exporter", load("compose.cluster.yaml")["services"]["node-exporter"])
    for port in (cfg.metrics_port, cfg.scorer_metrics_port, cfg.store_metrics_port, exporter):
        assert f"127.0.0.1:{port}" in targets
    cluster = load("compose.cluster.yaml")["services"]
    assert {"prometheus", "grafana", "node-exporter"} <= set(cluster)
    assert all(cluster[s]["network_mode"] == "host" for s in ("prometheus", "grafana", "node-exporter"))


def test_the_cluster_has_the_local_layout_and_settings():
    doc = load("compose.cluster.yaml")
    members = kafka_nodes(doc)
    assert sorted(members) == ["kafka-1", "kafka-2", "kafka-3"]
    local_nodes = nodes(Config(), 3)
    local = properties(DEPLOY / "local" / "kafka" / "cluster.properties")
    for n, (svc_name, svc) in zip(local_nodes, sorted(members.items()), strict=True):
        props = rendered(svc)
        assert props["node.id"] == str(n.node_id) == svc_name.split("-")[1]
        # clients reach node N on the local cluster's port for node N, and Kafka tells them that address
        [(_addr, hport, cport)] = published(svc)
        assert hport == n.port
        assert f"CLIENT://127.0.0.1:{n.port}" in props["advertised.listeners"].split(",")
        assert f"CLIENT://0.0.0.0:{cport}" in props["listeners"].split(",")
        # replication and controller listeners are reachable by the other nodes under the service name
        assert f"INTERNAL://{svc_name}:9094" in props["advertised.listeners"].split(",")
        voters = props["controller.quorum.voters"].split(",")
        assert [v.split("@")[1].split(":")[0] for v in voters] == sorted(members)
        assert props["log.dirs"] in {v.split(":")[1] for v in svc["volumes"]}
        same = {k: v for k, v in local.items() if k not in CONTAINER_SPECIFIC}
        assert {k: props.get(k) for k in same} == same, svc_name
        assert set(props) - set(local) <= CONTAINER_SPECIFIC, svc_name
    assert props["default.replication.factor"] == "3" and props["min.insync.replicas"] == "2"
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,INTERNAL:SSL,CONTROLLER:SSL"
    for svc in members.values():
        assert svc["depends_on"]["kafka-tls"]["condition"] == "service_completed_successfully"


def kafka_libs() -> Path | None:
    libs = Stack(Config()).kafka_libs
    return libs if (libs / ".complete").exists() and shutil.which("java") and shutil.which("keytool") else None


@pytest.mark.skipif(kafka_libs() is None, reason="needs Java with keytool and the Kafka jars (deploy/local/install.sh)")
def test_the_cluster_scripts_make_tls_material_and_a_config_kafka_accepts(tmp_path, secrets_env):
    """The kafka-tls and node scripts, run by /bin/sh here with the image's paths mapped into tmp_path."""
    doc = load("compose.cluster.yaml")
    libs = kafka_libs()
    secrets, bin_ = tmp_path / "secrets", tmp_path / "bin"
    secrets.mkdir()
    bin_.mkdir()
    (bin_ / "kafka-storage.sh").write_text(f'#!/bin/sh\nexec java -cp "{libs}/*" kafka.tools.StorageTool "$@"\n')
    (bin_ / "kafka-server-start.sh").write_text('#!/bin/sh\necho "would start $1"\n')
    for f in bin_.iterdir():
        f.chmod(0o755)

    def on_host(body: str, node: str = "") -> str:
        template = tmp_path / "kafka.properties"
        data = tmp_path / f"{node}-data"
        text = (DEPLOY / "compose" / "kafka-cluster.properties").read_text()
        template.write_text(text.replace("log.dirs=/var/lib/kafka/data", f"log.dirs={data}"))
        for a, b in [
            ("$$", "$"), ("/etc/kafka/secrets", str(secrets)), ("/opt/kafka/bin", str(bin_)),
            ("/etc/ubi/kafka.properties", str(template)),
            ("/tmp/server.properties", str(tmp_path / f"{node}.properties")),
            ("/var/lib/kafka/data", str(data)),
        ]:  # fmt: skip
            body = body.replace(a, b)
        return body

    tls_script = on_host(script(doc["services"]["kafka-tls"]))
    tls = subprocess.run(["/bin/sh", "-c", tls_script], capture_output=True, text=True)
    assert tls.returncode == 0, tls.stderr
    for f in ("node.p12", "truststore.pem", "keystore.pw", "cluster_id"):
        assert (secrets / f).stat().st_mode & 0o077 == 0, f  # owner only
    pw = (secrets / "keystore.pw").read_text()
    listed = subprocess.run(
        ["keytool", "-list", "-v", "-keystore", str(secrets / "node.p12"), "-storepass", pw],
        capture_output=True, text=True,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "CN=ubi-kafka-controller" in listed.stdout
    assert all(f"DNSName: kafka-{i}" in listed.stdout for i in (1, 2, 3))
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", (secrets / "cluster_id").read_text().strip())
    again = subprocess.run(["/bin/sh", "-c", tls_script], capture_output=True)
    assert again.returncode == 0 and (secrets / "keystore.pw").read_text() == pw  # a second `up` keeps them

    svc = doc["services"]["kafka-2"]
    env = {**os.environ, **secrets_env, **svc["environment"]}
    ran = subprocess.run(["/bin/sh", "-c", on_host(script(svc), "kafka-2")], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert "would start" in ran.stdout
    props = properties(tmp_path / "kafka-2.properties")
    assert props["ssl.keystore.password"] == pw
    assert not re.search(r"@[A-Z_]+@", (tmp_path / "kafka-2.properties").read_text())  # every placeholder filled
    meta = properties(tmp_path / "kafka-2-data" / "meta.properties")
    assert meta["node.id"] == "2" and meta["cluster.id"] == (secrets / "cluster_id").read_text().strip()
