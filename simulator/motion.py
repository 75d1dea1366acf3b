"""Vehicle motion for one trip: a 10 Hz kinematic trace built from legs between stops, plus injected events.

Everything is vectorised with NumPy: a leg is (accelerate, cruise, brake, stand still) phases of constant
acceleration laid out in whole samples, so the speed returns to exactly zero at each stop and the ground truth
(distance, events) is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMU_HZ = 10
DT = 1.0 / IMU_HZ
G = 9.80665

# Road classes: (speed limit km/h, share of legs for urban-ish trips, typical leg length in metres)
ROADS = {
    "urban30": (30.0, 300.0),
    "urban50": (50.0, 600.0),
    "arterial70": (70.0, 1500.0),
    "motorway120": (120.0, 8000.0),
}


@dataclass(frozen=True)
class DriverProfile:
    """Latent risk profile; 0 = calm, 1 = aggressive."""

    aggression: float
    speed_factor: float  # cruise speed relative to the limit
    harsh_brake_rate: float  # probability that a stop is a harsh brake
    harsh_accel_rate: float  # probability that a start is a harsh acceleration
    motorway_share: float
    harsh_corner_rate: float = 0.0  # probability that a cruise (>= 36 km/h) contains a harsh corner
    phone_per_hour: float = 0.0  # phone-handling episodes per hour of driving
    night_rate: float = 0.08  # probability of a late-evening / night trip on a given day
    mileage: float = 1.0  # scales the legs of every trip: low- and high-mileage drivers


@dataclass(frozen=True)
class TripTrace:
    """True motion of one trip at 10 Hz, starting at t=0 (ignition on)."""

    speed: np.ndarray  # m/s, true
    accel: np.ndarray  # m/s^2, true longitudinal
    yaw_rate: np.ndarray  # rad/s
    heading: np.ndarray  # rad, 0 = north, clockwise
    limit: np.ndarray  # m/s posted limit
    events: list[tuple[str, float, float, float]]  # (type, start_s, end_s, peak m/s^2)

    @property
    def duration_s(self) -> float:
        return (len(self.speed) - 1) * DT

    @property
    def distance_m(self) -> float:
        v = self.speed
        return float(np.sum((v[1:] + v[:-1]) * 0.5) * DT)


def make_trip(
    rng: np.random.Generator, driver: DriverProfile, n_legs: int, corner_rng: np.random.Generator | None = None
) -> TripTrace:
    """Build one trip of ``n_legs`` legs; ignition on 3 s before moving and off 3 s after the last stop.

    Harsh corners draw only from ``corner_rng`` (None = none), so adding them leaves every other output of a seed
    unchanged: speeds, distances, longitudinal events and sensor noise.
    """
    acc_parts, yaw_parts, lim_parts = [np.zeros(30)], [np.zeros(30)], [np.full(30, 50 / 3.6)]
    turn_parts = [np.zeros(30)]
    events: list[tuple[str, float, float, float]] = []
    n_total = 30
    heading0 = rng.uniform(0, 2 * np.pi)
    turn = 0.0
    for _ in range(n_legs):
        road = rng.choice(list(ROADS), p=_road_mix(driver.motorway_share))
        limit_kmh, leg_len = ROADS[road]
        limit = limit_kmh / 3.6
        cruise = limit * driver.speed_factor * rng.uniform(0.85, 1.05)
        harsh_start = rng.random() < driver.harsh_accel_rate and cruise > 8
        a_up = rng.uniform(4.5, 5.5) if harsh_start else rng.uniform(0.8, 2.2)
        harsh_stop = rng.random() < driver.harsh_brake_rate and cruise > 8
        a_down = rng.uniform(4.0, 6.5) if harsh_stop else rng.uniform(0.8, 2.0)
        n_up = max(1, int(round(cruise / a_up / DT)))
        n_down = max(1, int(round(cruise / a_down / DT)))
        cruise_len = max(0.0, rng.exponential(leg_len) - cruise**2 / (2 * a_up) - cruise**2 / (2 * a_down))
        n_cruise = int(cruise_len / cruise / DT)
        n_stop = int(rng.uniform(0, 40) / DT) + 5
        a_up_exact = cruise / (n_up * DT)
        a_down_exact = -cruise / (n_down * DT)
        leg_acc = np.concatenate(
            [np.full(n_up, a_up_exact), np.zeros(n_cruise), np.full(n_down, a_down_exact), np.zeros(n_stop)]
        )
        # Curves: a gentle sinusoidal yaw during cruise, bounded so lateral acceleration stays plausible.
        yaw = np.zeros_like(leg_acc)
        if n_cruise > 50:
            curve = np.sin(np.linspace(0, np.pi, n_cruise)) * rng.uniform(-1, 1) * min(0.05, 2.0 / cruise)
            yaw[n_up : n_up + n_cruise] = curve
        if (
            corner_rng is not None
            and n_cruise > 60
            and cruise >= 10.0
            and corner_rng.random() < driver.harsh_corner_rate
        ):
            n_c = int(corner_rng.integers(15, 31))  # 1.5-3 s
            a_lat = corner_rng.uniform(6.0, 8.0)  # above the 5.5 m/s^2 cornering threshold
            c0 = n_up + int(corner_rng.integers(5, n_cruise - n_c - 5))
            yaw[c0 : c0 + n_c] = a_lat / cruise * corner_rng.choice([-1.0, 1.0])
            events.append(("harsh_corner", (n_total + c0) * DT, (n_total + c0 + n_c) * DT, a_lat))
        if harsh_start:
            events.append(("harsh_accel", n_total * DT, (n_total + n_up) * DT, a_up_exact))
        if harsh_stop:
            s = n_total + n_up + n_cruise
            events.append(("harsh_brake", s * DT, (s + n_down) * DT, -a_down_exact))
        acc_parts.append(leg_acc)
        yaw_parts.append(yaw)
        lim_parts.append(np.full(leg_acc.shape[0], limit))
        turn_parts.append(np.full(leg_acc.shape[0], turn))
        n_total += leg_acc.shape[0]
        turn += rng.choice([-np.pi / 2, 0.0, np.pi / 2])  # a junction: the next leg leaves at a right angle
    acc_parts.append(np.zeros(30))
    yaw_parts.append(np.zeros(30))
    lim_parts.append(np.full(30, 50 / 3.6))
    turn_parts.append(np.full(30, turn))
    accel = np.concatenate(acc_parts)
    # speed[i] is the speed at sample i; accel[i] acts between samples i and i+1.
    speed = np.concatenate([[0.0], np.cumsum(accel[:-1]) * DT])
    speed = np.where(np.abs(speed) < 1e-9, 0.0, speed)
    speed = np.maximum(speed, 0.0)
    yaw_rate = np.concatenate(yaw_parts)
    heading = (heading0 + np.concatenate(turn_parts) + np.cumsum(yaw_rate) * DT) % (2 * np.pi)
    return TripTrace(speed, accel, yaw_rate, heading, np.concatenate(lim_parts), events)


def _road_mix(motorway_share: float) -> list[float]:
    rest = 1.0 - motorway_share
    return [0.25 * rest, 0.45 * rest, 0.30 * rest, motorway_share]
