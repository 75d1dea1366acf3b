"""The messages that flow between stages, below every core: a device's telemetry batch and event as decoded
from the contract (``ingest.contract``), and a rejection carried as data (it feeds the dead-letter topic).
Frozen: a message is never changed after decoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np


def imu_times_ms(t0_ms: int, hz: int, n: int) -> np.ndarray:
    """Times (int64 ms) of ``n`` samples at ``hz`` from ``t0_ms``, rounded to the millisecond: the one formula
    used by the cutter, ``score-file`` and the simulator."""
    return t0_ms + np.round(np.arange(n) * (1000.0 / hz)).astype(np.int64)


@dataclass(frozen=True)
class TelemetryBatch:
    vehicle: str
    seq: int
    sent_ms: int
    gps_t: np.ndarray  # int64 ms
    lat: np.ndarray  # float64 degrees
    lon: np.ndarray
    speed: np.ndarray  # m/s
    heading: np.ndarray  # degrees, 0 = north, clockwise
    accuracy: np.ndarray  # metres (horizontal, 1 sigma)
    imu_t0: int  # ms of the first accelerometer sample
    imu_hz: int
    acc_lon: np.ndarray  # m/s^2, vehicle frame: +forward
    acc_lat: np.ndarray  # m/s^2, +left
    acc_vert: np.ndarray  # m/s^2, +up (includes gravity)
    phone: np.ndarray | None  # uint8 per GPS sample, 1 = phone handled

    def imu_t_ms(self) -> np.ndarray:
        """Each accelerometer sample's time (ms): the batch carries only the first time and the rate."""
        return imu_times_ms(self.imu_t0, self.imu_hz, self.acc_lon.shape[0])


@dataclass(frozen=True)
class DeviceEvent:
    vehicle: str
    seq: int
    t_ms: int
    event: str
    # the device's boot (session) id, when it sends one: a new one on an ignition_on says the device restarted
    # and its seq counter may have started again (docs/device-contract.md)
    boot: str = ""


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


Decoded = Union[TelemetryBatch, DeviceEvent, Rejected]
