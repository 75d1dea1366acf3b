"""Start, stop and inspect the local services (Mosquitto and a KRaft Kafka broker) without Docker.

State, data and logs live in one ignored folder (``.ubi/`` by default). ``up`` is idempotent: a service that
already answers is left alone. Each start waits until the service really answers, or says why it could not.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ingest.contract import max_packet_bytes
from ubi.common.config import PROJECT_ROOT, Config
from ubi.common.errors import StackError
from ubi.ops.credentials import CredentialStore

DEPLOY = PROJECT_ROOT / "deploy" / "local"


def scram_sha512_entry(user: str, password: str, iterations: int = 8192) -> str:
    """A StorageTool ``--add-scram`` argument with the salted SCRAM-SHA-512 password only (RFC 5802), so the
    password itself never appears on a command line or in Kafka's files."""
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f'SCRAM-SHA-512=[name={user},iterations={iterations},salt="{b64(salt)}",saltedpassword="{b64(salted)}"]'


def _private_umask() -> None:
    """For the services we start: files they create (data, logs) are readable by their owner only."""
    os.umask(0o077)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid_file: Path) -> int | None:
    """The pid in the file if that process runs. A killed broker started by this process stays a zombie until it
    is reaped, and signal 0 still reaches a zombie: it is reaped here and counts as gone (the chaos harness waited
    300 s for a SIGKILLed Mosquitto to "exit")."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None  # it had exited: now reaped
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return pid
    return None if state == "Z" else pid


def mqtt_answers(host: str, port: int, timeout: float = 3.0) -> bool:
    """Does an MQTT broker answer a CONNECT with a CONNACK (even a refusal)? An open port alone is not enough: a
    broker that was told to stop keeps its listener open while it writes its persistence file."""
    connect = bytes([0x10, 21, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 9]) + b"ubi-probe"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(connect)
            return s.recv(1)[:1] == b"\x20"
    except OSError:
        return False


def _is_live_mosquitto(pid: int | None) -> bool:
    """A running (not zombie) mosquitto process; reaps it if it is our exited child."""
    if pid is None:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"mosquitto" in cmdline


def _stop_pid(pid_file: Path, name: str, timeout: float = 30.0) -> bool:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # a broker this process started stays a zombie until reaped, and signal 0 still reaches a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            pass  # not our child: its parent reaps it
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


@dataclass
class Stack:
    cfg: Config

    # --- paths ---------------------------------------------------------------
    @property
    def mq_dir(self) -> Path:
        return self.cfg.home / "mosquitto"

    @property
    def kafka_dir(self) -> Path:
        return self.cfg.home / "kafka"

    @property
    def kafka_libs(self) -> Path:
        """The broker jars install.sh fetched: this home's, else the project's (a second stack, e.g. the chaos
        harness's, shares them)."""
        own = self.cfg.home / "kafka-libs"
        shared = PROJECT_ROOT / ".ubi" / "kafka-libs"
        return own if (own / ".complete").exists() or not (shared / ".complete").exists() else shared

    def credentials(self) -> CredentialStore:
        return CredentialStore(self.mq_dir / "passwd", self.cfg.secrets_dir / "mqtt.json")

    # --- mosquitto -------------------------------------------------------------
    def _mosquitto_bin(self) -> str:
        found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if not found:
            raise StackError("mosquitto is not installed: run deploy/local/install.sh (apt-get install mosquitto)")
        return found

    def mosquitto_up(self) -> str:
        pid_file = self.mq_dir / "mosquitto.pid"
        host, port = self.cfg.mqtt.host, self.cfg.mqtt.port
        if _pid_alive(pid_file) and mqtt_answers(host, port):
            return "already running"
        # (a broker told to stop keeps its port open while it saves, but no longer answers: wait for it below)
        _private_dir(self.mq_dir)
        (self.mq_dir / "data").mkdir(parents=True, exist_ok=True)
        # One broker per persistence file: an old broker that was told to stop may still be writing it (a large
        # queue takes seconds); a second one started on the same file now would lose what the first had
        # acknowledged. Wait for it to exit: our brokers hold an exclusive lock on data/.lock for their lifetime.
        lock_fd, waited = self._persistence_lock(pid_file, timeout=300)
        for p in (port, self.cfg.mqtt.tls_port):
            if port_open(host, p):
                os.close(lock_fd)
                raise StackError(
                    f"port {p} is taken by another process (a system mosquitto? `systemctl stop mosquitto`)"
                )
        binary = self._mosquitto_bin()
        tls_dir = self.cfg.home / "tls"
        if not (tls_dir / "server.crt").exists():
            made = subprocess.run(
                ["bash", str(DEPLOY / "make-dev-certs.sh"), str(tls_dir)], capture_output=True, text=True
            )
            if made.returncode != 0:
                raise StackError(f"could not make development TLS certificates: {made.stderr.strip()}")
        creds = self.credentials()
        creds.ensure([self.cfg.mqtt.bridge_user])
        self._build_share_guard()
        text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
        text = text.replace("@STATE@", str(self.mq_dir)).replace("@PORT@", str(port))
        text = text.replace("@USER@", getpass.getuser()).replace("@TLS_DIR@", str(tls_dir))
        text = text.replace("@BRIDGE_USER@", self.cfg.mqtt.bridge_user)
        text = text.replace("@MAX_PACKET@", str(max_packet_bytes(self.cfg.ingest)))
        text = text.replace("@TLS_PORT@", str(self.cfg.mqtt.tls_port)).replace("@TLS_BIND@", self.cfg.mqtt.tls_bind)
        (self.mq_dir / "mosquitto.conf").write_text(text)
        shutil.copy(DEPLOY / "mosquitto" / "acl", self.mq_dir / "acl")
        log = open(self.mq_dir / "stdout.log", "ab")
        try:  # the broker inherits the locked descriptor: the lock is free only once it has exited
            proc = subprocess.Popen(
                [binary, "-c", str(self.mq_dir / "mosquitto.conf")],
                pass_fds=(lock_fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_private_umask,
            )
        finally:
            os.close(lock_fd)
        pid_file.write_text(str(proc.pid))
        self._wait(lambda: port_open(host, port), proc, "mosquitto", 60, self.mq_dir / "mosquitto.log")
        after = f" after waiting {waited:.1f} s for the old broker to save and exit" if waited >= 0.05 else ""
        return f"started (pid {proc.pid}) on {host}:{port}{after}"

    def _persistence_lock(self, pid_file: Path, timeout: float) -> tuple[int, float]:
        """Take the persistence file's lock, waiting while an old broker (ours, or the one in the pid file) lives."""
        t0 = time.monotonic()
        fd = os.open(self.mq_dir / "data" / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not _is_live_mosquitto(_pid_alive(pid_file)):
                    return fd, time.monotonic() - t0
                fcntl.flock(fd, fcntl.LOCK_UN)  # a broker started before this lock existed: wait for its exit
            except BlockingIOError:
                pass
            if time.monotonic() - t0 > timeout:
                os.close(fd)
                raise StackError(
                    f"an old mosquitto still holds {self.mq_dir / 'data'} after {timeout:.0f} s; "
                    "refusing to start a second broker on the same persistence file"
                )
            time.sleep(0.1)

    def _build_share_guard(self) -> Path:
        """Compile the broker plugin that keeps devices out of shared subscriptions (deploy/local/mosquitto/
        ubi_share_guard.c) unless an up-to-date build is there. Without it the broker is not started."""
        src = DEPLOY / "mosquitto" / "ubi_share_guard.c"
        out = self.mq_dir / "ubi_share_guard.so"
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            return out
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc or not Path("/usr/include/mosquitto_broker.h").exists():
            raise StackError(
                "building the broker's share-group guard needs gcc and the Mosquitto headers: run "
                "deploy/local/install.sh (apt-get install gcc libc6-dev mosquitto-dev libmosquitto-dev)"
            )
        made = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out), str(src)], capture_output=True, text=True
        )
        if made.returncode != 0:
            raise StackError(f"could not build {src.name}: {made.stderr.strip()}")
        return out

    def mosquitto_reload(self) -> None:
        """Re-read the password and ACL files (after devices are added or revoked)."""
        pid = _pid_alive(self.mq_dir / "mosquitto.pid")
        if pid:
            os.kill(pid, signal.SIGHUP)

    def enrol(self, vehicles: list[str], settle_s: float = 0.3) -> dict[str, str]:
        """Fresh credentials for these devices, live in the running broker; returns the passwords, which exist only
        in memory from here on (the broker keeps a hash)."""
        passwords = self.credentials().add(list(vehicles))
        self.mosquitto_reload()
        time.sleep(settle_s)  # Mosquitto re-reads its password file asynchronously after SIGHUP
        return passwords

    def revoke(self, vehicles: list[str]) -> list[str]:
        """Remove these devices' credentials from the running broker."""
        gone = self.credentials().revoke(list(vehicles))
        self.mosquitto_reload()
        return gone

    # --- kafka -----------------------------------------------------------------
    def _java(self) -> str:
        java = shutil.which("java")
        if not java:
            raise StackError("Java 17+ is required for Kafka: install openjdk-17-jre-headless")
        return java

    @property
    def kafka_secrets(self) -> Path:
        return self.cfg.secrets_dir / "kafka.json"

    def _kafka_passwords(self) -> dict[str, str]:
        """One generated password per Kafka principal, kept only in .ubi/secrets/kafka.json (0600)."""
        from ubi.adapters.kafka import PRINCIPALS

        path = self.kafka_secrets
        kept = json.loads(path.read_text()) if path.exists() else {}
        if set(PRINCIPALS) - set(kept):
            kept = {**{u: secrets.token_urlsafe(24) for u in PRINCIPALS}, **kept}
            CredentialStore._write_private(path, json.dumps(kept, indent=0, sort_keys=True))
        # the same passwords for deploy/compose.yaml's Kafka, which formats its storage with them (0600 too)
        env = "".join(f"UBI_KAFKA_PW_{u.upper()}={kept[u]}\n" for u in sorted(kept))
        env_path = path.with_suffix(".env")
        if not env_path.exists() or env_path.read_text() != env:
            CredentialStore._write_private(env_path, env)
        path.parent.chmod(0o700)
        return kept

    def secrets(self) -> dict[str, str]:
        """Make the Kafka principals' passwords (without starting anything): what deploy/compose.yaml needs."""
        self._kafka_passwords()
        return {"kafka": f"passwords in {self.kafka_secrets} and {self.kafka_secrets.with_suffix('.env')} (0600)"}

    def kafka_up(self) -> str:
        pid_file = self.kafka_dir / "kafka.pid"
        host, port_n = self.cfg.kafka.addresses[0]  # (a cluster's bootstrap list: ubi/ops/cluster.py)
        port = str(port_n)
        if _pid_alive(pid_file) and port_open(host, int(port)):
            self.ensure_topics()
            return "already running"
        for p in (int(port), int(port) + 1):  # the client and the controller listener
            if port_open(host, p):
                raise StackError(f"port {p} is taken by another process; stop it or change the Kafka ports")
        if not (self.kafka_libs / ".complete").exists():
            raise StackError(f"Kafka jars missing in {self.kafka_libs}: run deploy/local/install.sh")
        java = self._java()
        data = self.kafka_dir / "data"
        logs = self.cfg.home / "logs"
        notes = []
        _private_dir(self.kafka_dir)
        marker = self.kafka_dir / "scram.formatted"  # the storage holds our principals' SCRAM credentials
        had_secrets = self.kafka_secrets.exists()
        if (data / "meta.properties").exists() and not marker.exists():
            # formatted before authentication existed here: no principal could log in, so start it afresh
            shutil.rmtree(data)
            notes.append("storage re-formatted for SASL/SCRAM (its old topics were dropped)")
        if marker.exists() and not had_secrets:
            raise StackError(
                f"Kafka's storage holds SCRAM credentials but {self.kafka_secrets} is gone: no client can "
                f"authenticate. `ubi stack down`, remove {self.kafka_dir}, then `ubi stack up`"
            )
        passwords = self._kafka_passwords()
        for d in (data, logs):
            _private_dir(d)
        tls = self.kafka_dir / "tls"
        if not (tls / "controller.pem").exists():
            made = subprocess.run(
                ["bash", str(DEPLOY / "kafka" / "make-controller-tls.sh"), str(tls)], capture_output=True, text=True
            )
            if made.returncode != 0:
                raise StackError(f"could not make the Kafka controller's TLS material: {made.stderr.strip()}")
        props = (DEPLOY / "kafka" / "server.properties").read_text().replace("@DATA_DIR@", str(data))
        props = props.replace("@TLS_DIR@", str(tls)).replace("@CONTROLLER_PORT@", str(int(port) + 1))
        props = props.replace("@PORT@", port)
        (self.kafka_dir / "server.properties").write_text(props)
        cp = f"{self.kafka_libs}/*"
        cid_file = self.kafka_dir / "cluster_id"
        if not cid_file.exists():
            cid = (
                subprocess.run(
                    [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            cid_file.write_text(cid)
        scram = []
        if not marker.exists():
            for user, password in sorted(passwords.items()):
                scram += ["--add-scram", scram_sha512_entry(user, password)]
        fmt = subprocess.run(
            [
                java,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cid_file.read_text().strip(),
                "-c",
                str(self.kafka_dir / "server.properties"),
                "--ignore-formatted",
                *scram,
            ],
            capture_output=True,
            text=True,
            preexec_fn=_private_umask,
        )
        if fmt.returncode != 0:
            raise StackError(f"kafka storage format failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
        marker.touch()
        log = open(logs / "kafka-stdout.log", "ab")
        proc = subprocess.Popen(
            [
                java,
                "-Xms512m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={logs}",
                f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.yaml'}",
                "-cp",
                cp,
                "kafka.Kafka",
                str(self.kafka_dir / "server.properties"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_private_umask,
        )
        pid_file.write_text(str(proc.pid))
        self._wait(lambda: port_open(host, int(port)), proc, "kafka", 90, logs / "kafka-server.log")
        self.ensure_topics(timeout=60)
        return "; ".join([f"started (pid {proc.pid}) on {self.cfg.kafka.bootstrap}", *notes])

    def ensure_topics(self, timeout: float = 30) -> None:
        from ubi.adapters.kafka import ensure_topics

        ensure_topics(self.cfg.kafka, timeout=timeout)

    # --- common ----------------------------------------------------------------
    @staticmethod
    def _wait(ready, proc: subprocess.Popen, name: str, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise StackError(f"{name} exited with code {proc.returncode} during start-up. Log tail:\n{tail}")
            if ready():
                return
            time.sleep(0.3)
        raise StackError(f"{name} did not answer within {timeout:.0f}s; see {log}")

    def up(self, services: tuple[str, ...] = ("mosquitto", "kafka"), brokers: int | None = None) -> dict[str, str]:
        """Start what is not running. ``brokers``: 1 = the single broker, 3 = a replicated cluster
        (ubi/ops/cluster.py); None = as many as kafka.bootstrap names (one, unless this home runs a cluster)."""
        from ubi.ops import cluster

        # data, logs, secrets and the default DuckDB file live here: owner only
        _private_dir(self.cfg.home)
        n = brokers if brokers is not None else len(self.cfg.kafka.addresses)
        if "kafka" in services and n == 1 and len(self.cfg.kafka.addresses) > 1:
            if any(_pid_alive(node.pid_file) for node in cluster.recorded_nodes(self.cfg)):
                raise StackError(f"a {len(self.cfg.kafka.addresses)}-broker cluster runs here: `ubi stack down` first")
            (cluster.cluster_dir(self.cfg) / "bootstrap").unlink(missing_ok=True)  # back to one broker
            host, port = self.cfg.kafka.addresses[0]
            self.cfg = replace(self.cfg, kafka=replace(self.cfg.kafka, bootstrap=f"{host}:{port}"))
        out = {}
        if "mosquitto" in services:
            out["mosquitto"] = self.mosquitto_up()
        if "kafka" in services:
            if n == 1:
                out["kafka"] = self.kafka_up()
            else:
                out.update(cluster.cluster_up(self, n))
        from ubi.adapters.privacy import ensure_keys  # DuckDB, pseudonym, audit, erasure keys (0600)

        out["keys"] = ensure_keys(self.cfg)
        return out

    def mosquitto_down(self) -> bool:
        # it saves its whole persistence file on SIGTERM: a large queue takes a while, never cut that short
        return _stop_pid(self.mq_dir / "mosquitto.pid", "mosquitto", 300)

    def kafka_down(self) -> bool:
        return _stop_pid(self.kafka_dir / "kafka.pid", "kafka", 60)

    def down(self) -> dict[str, str]:
        from ubi.ops.cluster import cluster_down

        return {
            "kafka": "stopped" if self.kafka_down() else "not running",
            **cluster_down(self),  # a cluster's nodes, if this home started one
            "mosquitto": "stopped" if self.mosquitto_down() else "not running",
        }

    def status(self) -> dict[str, str]:
        from ubi.ops.cluster import cluster_status

        host, port = self.cfg.kafka.addresses[0]
        rows = {}
        services = [("mosquitto", self.mq_dir / "mosquitto.pid", self.cfg.mqtt.host, self.cfg.mqtt.port)]
        if len(self.cfg.kafka.addresses) == 1:  # else a cluster's bootstrap list: one row per node below
            services.append(("kafka", self.kafka_dir / "kafka.pid", host, port))
        for name, pid_file, h, p in services:
            pid = _pid_alive(pid_file)
            answering = port_open(h, p)
            if answering and name == "kafka":
                from ubi.adapters.kafka import probe

                why = probe(self.cfg.kafka, timeout=5.0)  # an open port is not an answering broker (frozen JVM)
                if why is not None:
                    rows[name] = (
                        f"{'process ' + str(pid) if pid else 'a process'} holds {h}:{p} but does not answer: {why}"
                    )
                    continue
            if pid and answering:
                rows[name] = f"running (pid {pid}) on {h}:{p}"
            elif answering:
                rows[name] = f"port {h}:{p} answers but not started by us"
            elif pid:
                rows[name] = f"process {pid} alive but {h}:{p} not answering"
            else:
                rows[name] = "stopped"
        if len(self.cfg.kafka.addresses) > 1:
            rows.update(cluster_status(self))
        return rows
