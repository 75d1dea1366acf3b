"""Helpers to run pipeline stages as separate processes and to play a simulated fleet through MQTT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from simulator.devices import DeviceFleet
from simulator.fleet import PARKED_REPORT_S, FleetSpec, SimTrip, motion_only
from simulator.run import vehicle_stream, write_truth
from ubi.config import Config
from ubi.progress import Progress
from ubi.stack import Stack


@dataclass
class StageProcess:
    name: str
    proc: subprocess.Popen
    log: Path

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


def start_stage(cfg: Config, name: str, *args: str, env: dict | None = None) -> StageProcess:
    """Start ``ubi <name> ...`` as its own process, logging to .ubi/logs/<name>.log."""
    logs = cfg.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    full_env = {**os.environ, "UBI_HOME": str(cfg.home), "UBI_DB": str(cfg.db_path), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "ubi.cli", name, *args], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    return StageProcess(name, proc, log)


def expected_messages(spec: FleetSpec, trips: dict[str, list[SimTrip]]) -> int:
    """About how many messages the devices send (the progress bar's total)."""
    total = 0
    for v, ts in trips.items():
        tail = PARKED_REPORT_S if motion_only(spec, v) else 0
        for t in ts:
            n_gps = (len(t.trace.speed) + 9) // 10 + tail
            total += (0 if tail else 2) + (n_gps + spec.batch_s - 1) // spec.batch_s
    return total


def play_fleet(cfg: Config, spec: FleetSpec, out: Path, speedup: float = 0.0, show: bool = True) -> tuple[int, dict]:
    """Write ground truth, enrol the devices, and publish every message over MQTT. Returns (messages, trips)."""
    trips = write_truth(spec, out)
    passwords = Stack(cfg).enrol(list(trips))
    total = expected_messages(spec, trips)
    bar = Progress("devices -> mqtt", total, "msgs") if show else None
    fleet = DeviceFleet(cfg.mqtt, passwords)
    sent = fleet.play({v: vehicle_stream(spec, ts) for v, ts in trips.items()}, speedup,
                      progress=bar.update if bar else None)
    fleet.close()
    if bar:
        bar.done(sent)
    return sent, trips
