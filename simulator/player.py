"""Play a simulated fleet through the real MQTT broker: ground truth first, then every device's messages."""

from __future__ import annotations

from pathlib import Path

from simulator.devices import DeviceFleet
from simulator.fleet import PARKED_REPORT_S, FleetSpec, SimTrip, motion_only
from simulator.run import vehicle_stream, write_truth
from ubi.common.config import Config
from ubi.common.progress import Progress
from ubi.ops.stack import Stack


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
    fleet = DeviceFleet(cfg.mqtt, passwords, e2e=True)  # a device forgets a message once Kafka has it
    sent = fleet.play(
        {v: vehicle_stream(spec, ts) for v, ts in trips.items()}, speedup, progress=bar.update if bar else None
    )
    unconfirmed = fleet.close()
    if unconfirmed and show:
        print(f"warning: {unconfirmed} messages were not acknowledged end to end (is `ubi bridge` running?)")
    if bar:
        bar.done(sent)
    return sent, trips
