"""Run pipeline stages as separate processes (``ubi <stage>``), wait until they are ready, stop or kill them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ubi.common.config import Config
from ubi.common.errors import UBIError


@dataclass
class StageProcess:
    name: str
    proc: subprocess.Popen
    log: Path
    log_start: int = 0  # the log file's size when this process started (logs are appended run after run)

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Block until this process has logged ``text`` (e.g. the bridge's "subscribed"): a stage that is merely
        started may not be listening yet, and MQTT drops messages that no session subscribes to."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UBIError(f"{self.name} exited (code {self.proc.returncode}); see {self.log}")
            with open(self.log, "rb") as f:
                f.seek(self.log_start)
                if text.encode() in f.read():
                    return
            time.sleep(0.1)
        raise UBIError(f"{self.name} did not log {text!r} within {timeout:.0f} s; see {self.log}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


BRIDGE_READY = "subscribed to device topics"  # ubi/stages/bridge.py logs this on its SUBACK


def start_stage(cfg: Config, name: str, *args: str, env: dict | None = None) -> StageProcess:
    """Start ``ubi <name> ...`` as its own process, logging to .ubi/logs/<name>.log. A bridge is returned once it
    has subscribed, so that nothing published after this call is dropped for want of a subscriber."""
    logs = cfg.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    start = log.stat().st_size if log.exists() else 0
    full_env = {**os.environ, "UBI_HOME": str(cfg.home), "UBI_DB": str(cfg.db_path), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ubi.cli", name, *args],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
    )
    stage = StageProcess(name, proc, log, start)
    if name == "bridge":
        stage.wait_for_log(BRIDGE_READY)
    return stage
