"""Sensor profiles per device class: what a phone, an OBD-II dongle or an OEM / CAN unit records of a trip's true
motion, with the artefacts real devices show (FleetSpec.device_mix; simulator/fleet.py applies them).

Sources: ../shared/realdata (README: phone GPS speed about a second behind the accelerometer, repeated-then-stepped
speeds, cold-start jumps, phones turned 180 degrees, gravity-free phone APIs, OBD speed in whole km/h at ~4 Hz) and
../shared/domain/telematics.md. Kept apart from simulator/devices.py (the MQTT device fleet) because the sensors are
pure NumPy and the offline path needs no MQTT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- sensor profiles per device class (FleetSpec.device_mix) -------------------------------------------------------
# What a device class records of the true motion, with the artefacts seen in ../shared/realdata and the domain notes
# (../shared/domain/telematics.md): phone GPS speed 0.8-1.5 s behind the accelerometer, a cold start that reports 0
# and then jumps to the true speed at ~30 m accuracy, fixes repeated and then stepped, accuracy that varies from fix to
# fix; phone axes at an arbitrary mount (any yaw, 180 degrees included; flat or upright), with gravity (raw) or without
# it (linear acceleration); OBD-II speed in whole km/h at ~4 Hz with no accelerometer; OEM / CAN speed and a vehicle-
# frame IMU, clean, at 10 Hz. "ideal" is the legacy simulator's device (1 Hz GPS, 10 Hz vehicle-frame IMU, no
# artefacts): fleet.sensor_streams keeps its exact output.


@dataclass(frozen=True)
class SensorProfile:
    name: str
    gps_hz: float  # fixes (speed readings) per second
    speed_lag_s: tuple[float, float]  # reported speed (and position) lag behind the true motion, per trip
    speed_noise_mps: float  # 1-sigma at the median accuracy; scales with each fix's accuracy
    speed_step_kmh: float  # reported speed rounded to this (OBD-II PID 010D: whole km/h); 0 = not rounded
    accuracy_m: float  # median horizontal accuracy (lognormal, sigma 0.35)
    position_noise_m: float
    imu: str  # "raw" (gravity, any mount) | "linear" (gravity removed, any mount) | "vehicle" (vehicle frame) | "none"
    imu_hz: int
    # vibration, per 10 Hz sample and horizontal axis (vertical 1.5x), white. Calibrated on what event detection
    # sees: the 0.5 s mean's spread about the 2 s mean (robust), which does not depend on the sample rate as the
    # per-sample spread does. Real phones, horizontal axes at their own rates: quat-orient (16.7 Hz) 0.135-0.160,
    # ikhyd iPhone (25.6 Hz) 0.104-0.112, cloudpose iPhone (10 Hz, local only) 0.085-0.121 m/s^2; 0.3 per 10 Hz
    # sample gives 0.118-0.154 (median 0.127: a little above the real median 0.116); the 0.4 used before (from the
    # per-sample spread at 16.7 Hz) gave 0.156-0.205, noisier than every real phone. tests/test_sim_devices.py
    # checks it against the recordings in ../shared. A windshield dash unit (comma2k19, 100 Hz) 0.060-0.067.
    imu_noise_mps2: float
    imu_bias_mps2: float  # per axis and trip, 1-sigma
    cold_start_s: tuple[float, float] = (0.0, 0.0)  # time to first fix after ignition on; before it speed 0 at 25-45 m
    repeat_share: float = 0.0  # share of moving fixes that repeat the previous fix (then the next one steps)


PROFILES: dict[str, SensorProfile] = {
    "ideal": SensorProfile("ideal", 1.0, (0.0, 0.0), 0.08, 0.0, 4.0, 2.0, "vehicle", 10, 0.05, 0.0),
    "phone_raw": SensorProfile(
        "phone_raw", 1.0, (0.8, 1.5), 0.15, 0.0, 5.0, 3.0, "raw", 10, 0.3, 0.05, (2.0, 45.0), 0.03
    ),
    "phone_linear": SensorProfile(
        "phone_linear", 1.0, (0.8, 1.5), 0.15, 0.0, 5.0, 3.0, "linear", 10, 0.3, 0.05, (2.0, 45.0), 0.03
    ),
    "obd": SensorProfile("obd", 4.0, (0.3, 0.7), 0.05, 1.0, 4.0, 2.5, "none", 0, 0.0, 0.0),
    "oem": SensorProfile("oem", 10.0, (0.05, 0.15), 0.03, 0.0, 2.0, 1.5, "vehicle", 10, 0.15, 0.02),
}
G = 9.80665
# The ScoringConfig device class that scores each profile's data ([scoring] device_classes): "ideal" is a clean
# vehicle-frame unit, i.e. OEM-like.
SCORING_CLASS: dict[str, str] = {
    "ideal": "oem",
    "phone_raw": "phone",
    "phone_linear": "phone",
    "obd": "dongle",
    "oem": "oem",
}


def parse_device_mix(text: str) -> dict[str, float]:
    """ "phone_raw:2,obd:1" -> shares summing to 1 ("" = every device ideal). Unknown names and bad weights raise
    ValueError with the valid names."""
    if not text.strip():
        return {"ideal": 1.0}
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, w = part.strip().partition(":")
        if name not in PROFILES:
            raise ValueError(f"unknown device profile {name!r}; known: {', '.join(PROFILES)}")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise ValueError(f"device mix weight {w!r} of {name!r} is not a number") from None
        if not weight >= 0:
            raise ValueError(f"device mix weight of {name!r} must be >= 0")
        out[name] = out.get(name, 0.0) + weight
    total = sum(out.values())
    if total <= 0:
        raise ValueError("device mix weights sum to 0")
    return {k: v / total for k, v in out.items()}


def mount_rotation(rng: np.random.Generator) -> np.ndarray:
    """Device axes in the vehicle frame (columns): any yaw, a quarter of mounts turned exactly 180 degrees from
    straight; half lying flat (tilt ~5 deg), half upright in a windshield holder (pitched 50-85 deg)."""
    yaw = np.pi if rng.random() < 0.25 else rng.uniform(0, 2 * np.pi)
    pitch = np.radians(rng.normal(0, 5) if rng.random() < 0.5 else rng.uniform(50, 85))
    roll = np.radians(rng.normal(0, 5))
    cz, sz, cy, sy, cx, sx = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class DeviceView:
    """One trip as a device class records it (times in s from ignition on, true clock)."""

    gps_index: np.ndarray  # nearest 10 Hz kinematic sample of each fix
    gps_t_s: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    speed: np.ndarray
    heading_deg: np.ndarray
    accuracy: np.ndarray
    imu_t_s: np.ndarray
    acc: np.ndarray  # (3, n): acc_lon, acc_lat, acc_vert as the device reports them (its own axes when mounted)
    lock_s: float  # first fix with a real speed (0 without a cold start)
    lag_s: float


def device_view(
    p: SensorProfile,
    rng: np.random.Generator,
    dt: float,
    speed: np.ndarray,
    accel: np.ndarray,
    yaw_rate: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    heading: np.ndarray,
) -> DeviceView:
    """What a device of profile ``p`` records of a true 10 Hz trace (speed m/s, accel m/s^2, yaw rate rad/s,
    positions in degrees, heading rad). Draws from ``rng`` only."""
    n = speed.shape[0]
    t = np.arange(n) * dt
    step = 1.0 / (p.gps_hz * dt)
    gi = np.unique(np.round(np.arange(0.0, n - 0.5, step)).astype(np.int64))
    gt = gi * dt
    m = gi.shape[0]
    lag = float(rng.uniform(*p.speed_lag_s))
    tl = np.maximum(gt - lag, 0.0)
    v = np.interp(tl, t, speed)
    acc = p.accuracy_m * np.exp(rng.normal(0.0, 0.35, m))
    lock = float(rng.uniform(*p.cold_start_s)) if p.cold_start_s[1] > 0 else 0.0
    if lock > 0:
        after = gt >= lock
        acc = np.where(after, acc + (30.0 - acc) * np.exp(-(gt - lock) / 5.0), rng.uniform(25.0, 45.0, m))
    noise = rng.normal(0.0, 1.0, m) * p.speed_noise_mps * acc / p.accuracy_m
    v = np.maximum(v + noise * (v > 0.3), 0.0)
    if lock > 0:
        v[gt < lock] = 0.0  # no Doppler solution yet: the receiver reports 0
    if p.speed_step_kmh > 0:
        v = np.round(v * 3.6 / p.speed_step_kmh) * p.speed_step_kmh / 3.6
    pos_sd = np.where(gt < lock, 25.0, p.position_noise_m * acc / p.accuracy_m)
    la = np.interp(tl, t, lat) + rng.normal(0.0, 1.0, m) * pos_sd / 111_000
    lo = np.interp(tl, t, lon) + rng.normal(0.0, 1.0, m) * pos_sd / (111_000 * np.cos(np.radians(float(lat[0]))))
    hd = np.degrees(np.interp(tl, t, np.unwrap(heading))) % 360.0
    if p.repeat_share > 0:
        rep = np.flatnonzero((rng.random(m) < p.repeat_share) & (v > 2.0))
        rep = rep[rep > 0]
        for arr in (v, la, lo, hd, acc):
            arr[rep] = arr[rep - 1]  # a stale fix: the previous one again; the next fix steps to the true value
    if p.imu == "none":
        return DeviceView(gi, gt, la, lo, v, hd, acc, np.zeros(0), np.zeros((3, 0)), lock, lag)
    k = max(1, int(round(1.0 / (p.imu_hz * dt))))
    ii = np.arange(0, n, k)
    f = np.vstack([accel[ii], -speed[ii] * yaw_rate[ii], np.full(ii.shape[0], G)])  # forward, left, up
    if p.imu == "linear":
        f[2] = 0.0
    f += rng.normal(0.0, p.imu_bias_mps2, (3, 1))
    f += rng.normal(0.0, 1.0, f.shape) * (p.imu_noise_mps2 * np.array([[1.0], [1.0], [1.5]]))
    if p.imu in ("raw", "linear"):
        f = mount_rotation(rng).T @ f  # vehicle frame -> the device's own axes
    return DeviceView(gi, gt, la, lo, v, hd, acc, ii * dt, f, lock, lag)


def device_mix_arg(text: str) -> str:
    """argparse type for ``ubi simulate --device-mix``: the text when it parses, else a clean usage error."""
    import argparse

    try:
        parse_device_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
