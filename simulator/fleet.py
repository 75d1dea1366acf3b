"""A seeded fleet: drivers, policies, trip schedules, sensor streams and the ground truth beside them.

Deterministic for a seed: the same (vehicles, days, seed, start) always yields the same messages, byte for byte.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

import numpy as np

from simulator.motion import DT, IMU_HZ, DriverProfile, G, TripTrace, make_trip, make_trip_calibrated
from simulator.sensors import PROFILES, SensorProfile, device_view, parse_device_mix
from ubi.common.config import ScoringConfig
from ubi.common.messages import DeviceEvent, TelemetryBatch

EARTH_R = 6_371_000.0
TZ = "Europe/Amsterdam"
REGIONS = ("north", "south", "east", "west", "capital")


@dataclass(frozen=True)
class FleetSpec:
    vehicles: int = 20
    days: int = 7
    seed: int = 42
    start: date = date(2026, 10, 1)
    batch_s: int = 10  # seconds of GPS per telemetry message (device contract: 1..60)
    tz: str = TZ
    id_prefix: str = "VH"  # vehicle ids are <prefix><5 digits>
    # Real-world sensor faults: one-fix position glitches, GPS gaps (tunnels) and device clock drift. Each comes
    # from its own RNG stream, so turning them on changes nothing else a seed produces.
    sensor_faults: bool = False
    # Share of vehicles whose device has no ignition wire (a phone app, a battery tracker): it sends no ignition
    # events, and keeps reporting a parked fix every second for PARKED_REPORT_S after the engine stops, so the
    # scorer cuts its trips by motion (scoring/motion.py). Chosen per vehicle from a hash of its id.
    motion_only_share: float = 0.0
    # Device classes with their artefacts (simulator/devices.py PROFILES), as "name:weight,...", chosen per vehicle
    # from a hash of its id; "" = every device "ideal" (the legacy output, byte for byte).
    device_mix: str = ""
    # "legacy": ordinary manoeuvres at 0.8-2.2 m/s^2 and harsh events injected far above the cut points;
    # "calibrated": every manoeuvre from the real distributions (simulator/motion.py make_trip_calibrated).
    motion: str = "legacy"

    def __post_init__(self) -> None:
        if self.motion not in ("legacy", "calibrated"):
            raise ValueError(f"motion must be 'legacy' or 'calibrated', not {self.motion!r}")
        parse_device_mix(self.device_mix)


PARKED_REPORT_S = 240  # a motion-only device reports this long after stopping (more than motion_stop_s = 180 s)


def device_profile(spec: "FleetSpec", vehicle: str) -> SensorProfile:
    """This vehicle's device class (FleetSpec.device_mix), from its own RNG stream."""
    mix = parse_device_mix(spec.device_mix)
    if len(mix) == 1:
        return PROFILES[next(iter(mix))]
    u = _sub_rng(spec.seed, "device", vehicle).random()
    acc = 0.0
    for name, share in mix.items():
        acc += share
        if u < acc:
            return PROFILES[name]
    return PROFILES[name]


def motion_only(spec: "FleetSpec", vehicle: str) -> bool:
    """Whether this vehicle's device sends no ignition events (FleetSpec.motion_only_share)."""
    return spec.motion_only_share > 0 and _sub_rng(spec.seed, vehicle, "ignition").random() < spec.motion_only_share


@dataclass(frozen=True)
class Policy:
    policy_id: str
    vehicle_id: str
    start_date: date
    base_premium: float  # monthly, from traditional factors
    vehicle_group: str
    age_band: str
    region: str
    gender: str  # protected: kept only for fairness audits, never priced on


@dataclass(frozen=True)
class SimTrip:
    vehicle_id: str
    start_ms: int  # ignition on
    end_ms: int  # ignition off
    trace: TripTrace = field(repr=False)
    home: tuple[float, float] = (52.37, 4.89)

    @property
    def distance_m(self) -> float:
        return self.trace.distance_m


def vehicle_ids(n: int, prefix: str = "VH") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(1, n + 1)]


def _sub_rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(("|".join(map(str, (seed, *parts)))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def driver_profile(seed: int, vehicle: str) -> DriverProfile:
    rng = _sub_rng(seed, "driver", vehicle)
    aggression = float(rng.beta(2.0, 4.0))
    return DriverProfile(
        aggression=aggression,
        speed_factor=0.9 + 0.25 * aggression,
        harsh_brake_rate=0.01 + 0.25 * aggression**2,
        harsh_accel_rate=0.005 + 0.15 * aggression**2,
        motorway_share=float(rng.uniform(0.05, 0.3)),
        harsh_corner_rate=0.01 + 0.2 * aggression**2,  # derived, no draw: the seed's other outputs stay the same
        phone_per_hour=0.3 + 2.5 * aggression**2,  # derived too; episodes come from their own RNG stream
        **_habits(seed, vehicle, aggression),
    )


def _habits(seed: int, vehicle: str, aggression: float) -> dict[str, float]:
    """Night driving and annual mileage, from their own RNG stream: riskier drivers drive more at night."""
    rng = _sub_rng(seed, "habits", vehicle)
    return {
        "night_rate": float(0.02 + 0.12 * rng.beta(2, 5) + 0.08 * aggression),
        "mileage": float(np.exp(rng.normal(0.0, 0.35))),
    }


def make_policies(spec: FleetSpec) -> list[Policy]:
    out = []
    for i, vid in enumerate(vehicle_ids(spec.vehicles, spec.id_prefix)):
        rng = _sub_rng(spec.seed, "policy", vid)
        group = rng.choice(["A", "B", "C", "D"], p=[0.3, 0.35, 0.25, 0.1])
        age = rng.choice(["18-24", "25-39", "40-64", "65+"], p=[0.1, 0.35, 0.4, 0.15])
        base = 55.0 * {"A": 0.85, "B": 1.0, "C": 1.2, "D": 1.5}[group]
        base *= {"18-24": 1.8, "25-39": 1.0, "40-64": 0.9, "65+": 1.1}[age]
        out.append(
            Policy(
                policy_id=f"PL{i + 1:06d}",
                vehicle_id=vid,
                start_date=spec.start - timedelta(days=int(rng.integers(30, 900))),
                base_premium=round(float(base), 2),
                vehicle_group=str(group),
                age_band=str(age),
                region=str(rng.choice(REGIONS)),
                gender=str(rng.choice(["female", "male"])),
            )
        )
    return out


def _day_schedule(
    rng: np.random.Generator, day: date, tz: ZoneInfo, driver: DriverProfile
) -> list[tuple[datetime, int]]:
    """(local start time, number of legs) for the day's trips: commutes on weekdays, errands, a night trip now and
    then at the driver's own rate; the driver's mileage scales every trip's length."""
    trips = []
    weekday = day.weekday() < 5
    if weekday and rng.random() < 0.85:
        trips.append((7.0 + rng.uniform(0, 2.0), int(rng.integers(6, 16))))
        trips.append((16.5 + rng.uniform(0, 2.5), int(rng.integers(6, 16))))
    for _ in range(int(rng.poisson(0.6 if weekday else 1.5))):
        trips.append((10.0 + rng.uniform(0, 10.0), int(rng.integers(3, 10))))
    if rng.random() < driver.night_rate:
        trips.append((22.5 + rng.uniform(0, 3.0), int(rng.integers(4, 12))))
    out = []
    for hour, legs in sorted(trips):
        start = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(hours=float(hour))
        out.append((start, max(2, int(round(legs * driver.mileage)))))
    return out


def make_trips(spec: FleetSpec, vehicle: str) -> list[SimTrip]:
    """Every trip of one vehicle over the spec's days, non-overlapping, in time order."""
    tz = ZoneInfo(spec.tz)
    driver = driver_profile(spec.seed, vehicle)
    trips: list[SimTrip] = []
    busy_until = 0
    for d in range(spec.days):
        day = spec.start + timedelta(days=d)
        rng = _sub_rng(spec.seed, "trips", vehicle, day.isoformat())
        corner_rng = _sub_rng(spec.seed, "corners", vehicle, day.isoformat())
        for start_local, legs in _day_schedule(rng, day, tz, driver):
            start_ms = int(start_local.timestamp() * 1000)
            start_ms = max(start_ms, busy_until + 10 * 60_000)
            if spec.motion == "calibrated":
                trace = make_trip_calibrated(rng, driver, legs, corner_rng)
            else:
                trace = make_trip(rng, driver, legs, corner_rng)
            end_ms = start_ms + int(round(trace.duration_s * 1000))
            trips.append(SimTrip(vehicle, start_ms, end_ms, trace))
            busy_until = end_ms
    return trips


def _positions(trace: TripTrace, home: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    north = np.cumsum(trace.speed * np.cos(trace.heading)) * DT
    east = np.cumsum(trace.speed * np.sin(trace.heading)) * DT
    lat = home[0] + np.degrees(north / EARTH_R)
    lon = home[1] + np.degrees(east / (EARTH_R * np.cos(np.radians(home[0]))))
    return lat, lon


@dataclass(frozen=True)
class SensorStreams:
    """What a trip's sensors record: GPS at 1 Hz and the accelerometer at 10 Hz, noise included."""

    gps_t: np.ndarray  # int64 ms
    lat: np.ndarray
    lon: np.ndarray
    speed: np.ndarray
    heading: np.ndarray
    accuracy: np.ndarray
    imu_t: np.ndarray  # int64 ms
    acc_lon: np.ndarray
    acc_lat: np.ndarray
    acc_vert: np.ndarray
    gps_index: np.ndarray  # position of each GPS fix in the 10 Hz trace
    phone: np.ndarray  # uint8 per GPS fix: 1 while the driver handles the phone
    glitches: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # true ms of glitched fixes
    gaps: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # true [start, end) ms, no GPS
    imu_hz: int = IMU_HZ
    # true [start, end) ms when the device has no real speed (before a cold start's first fix); gaps add to it
    blind: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))


def clock_offset_ms(spec: FleetSpec, vehicle: str, t_ms: np.ndarray | int) -> np.ndarray | int:
    """Device clock minus true time: a fixed offset (up to 1.5 s) plus a drift of some ppm."""
    if not spec.sensor_faults:
        return np.zeros_like(t_ms) if isinstance(t_ms, np.ndarray) else 0
    rng = _sub_rng(spec.seed, "clock", vehicle)
    offset, ppm = rng.uniform(-1500, 1500), rng.normal(0, 10)
    epoch = datetime(spec.start.year, spec.start.month, spec.start.day, tzinfo=ZoneInfo("UTC")).timestamp() * 1000
    off = np.round(offset + ppm * 1e-6 * (np.asarray(t_ms, dtype=np.float64) - epoch)).astype(np.int64)
    return off if isinstance(t_ms, np.ndarray) else int(off)


def device_time(spec: FleetSpec, vehicle: str, t_ms):
    return t_ms + clock_offset_ms(spec, vehicle, t_ms)


def phone_flags_at(spec: FleetSpec, trip: SimTrip, fix_t_ms: np.ndarray) -> np.ndarray:
    """The 1 Hz phone flags read at each fix's time (devices with more than one fix a second)."""
    n_s = int((fix_t_ms[-1] - trip.start_ms) // 1000) + 1 if fix_t_ms.shape[0] else 0
    return phone_flags(spec, trip, n_s)[((fix_t_ms - trip.start_ms) // 1000).astype(np.int64)]


def phone_flags(spec: FleetSpec, trip: SimTrip, n_fixes: int) -> np.ndarray:
    """Phone-handling episodes (10-60 s each) at the driver's rate, from their own RNG stream."""
    rng = _sub_rng(spec.seed, "phone", trip.vehicle_id, trip.start_ms)
    rate = driver_profile(spec.seed, trip.vehicle_id).phone_per_hour
    flags = np.zeros(n_fixes, np.uint8)
    for _ in range(int(rng.poisson(rate * n_fixes / 3600.0))):
        start = int(rng.integers(0, max(n_fixes, 1)))
        flags[start : start + int(rng.integers(10, 61))] = 1
    return flags


def sensor_streams(spec: FleetSpec, trip: SimTrip) -> SensorStreams:
    prof = device_profile(spec, trip.vehicle_id)
    if prof.name != "ideal":
        ss = _profile_streams(spec, trip, prof)
        return with_faults(spec, trip, ss) if spec.sensor_faults else ss
    rng = _sub_rng(spec.seed, "sensor", trip.vehicle_id, trip.start_ms)
    tr = trip.trace
    n = len(tr.speed)
    t_ms = trip.start_ms + np.round(np.arange(n) * DT * 1000).astype(np.int64)
    lat, lon = _positions(tr, trip.home)
    gi = np.arange(0, n, IMU_HZ)  # GPS at 1 Hz: every 10th kinematic sample
    gps_speed = np.maximum(tr.speed[gi] + rng.normal(0, 0.08, gi.shape[0]) * (tr.speed[gi] > 0), 0.0)
    gps_lat = lat[gi] + rng.normal(0, 2.0, gi.shape[0]) / 111_000
    gps_lon = lon[gi] + rng.normal(0, 2.0, gi.shape[0]) / 70_000
    gps_heading = np.degrees(tr.heading[gi]) % 360.0
    gps_acc = rng.uniform(2.0, 6.0, gi.shape[0])
    acc_lon = tr.accel + rng.normal(0, 0.05, n)
    acc_lat = tr.speed * tr.yaw_rate + rng.normal(0, 0.05, n)
    acc_vert = G + rng.normal(0, 0.05, n)
    ss = SensorStreams(
        t_ms[gi],
        gps_lat,
        gps_lon,
        gps_speed,
        gps_heading,
        gps_acc,
        t_ms,
        acc_lon,
        acc_lat,
        acc_vert,
        gi,
        phone_flags(spec, trip, gi.shape[0]),
    )
    return with_faults(spec, trip, ss) if spec.sensor_faults else ss


def _profile_streams(spec: FleetSpec, trip: SimTrip, prof: SensorProfile) -> SensorStreams:
    """A trip as a device of class ``prof`` records it (simulator/devices.py device_view)."""
    rng = _sub_rng(spec.seed, "device-sensor", trip.vehicle_id, trip.start_ms)
    tr = trip.trace
    lat, lon = _positions(tr, trip.home)
    dv = device_view(prof, rng, DT, tr.speed, tr.accel, tr.yaw_rate, lat, lon, tr.heading)
    gps_t = trip.start_ms + np.round(dv.gps_t_s * 1000).astype(np.int64)
    imu_t = trip.start_ms + np.round(dv.imu_t_s * 1000).astype(np.int64)
    lock_ms = trip.start_ms + int(round(dv.lock_s * 1000))
    blind = np.array([[trip.start_ms, lock_ms]] if dv.lock_s > 0 else [], np.int64).reshape(-1, 2)
    return SensorStreams(
        gps_t,
        dv.lat,
        dv.lon,
        dv.speed,
        dv.heading_deg,
        dv.accuracy,
        imu_t,
        dv.acc[0],
        dv.acc[1],
        dv.acc[2],
        dv.gps_index,
        phone_flags_at(spec, trip, gps_t),
        imu_hz=prof.imu_hz or IMU_HZ,
        blind=blind,
    )


def with_faults(spec: FleetSpec, trip: SimTrip, ss: SensorStreams) -> SensorStreams:
    """Glitches (a fix 300-1000 m off, about one per 30 min), a tunnel now and then (20-90 s without GPS while
    moving) and the device's clock. Timestamps become device time; the recorded faults stay in true time."""
    rng = _sub_rng(spec.seed, "faults", trip.vehicle_id, trip.start_ms)
    n = ss.gps_t.shape[0]
    lat, lon = ss.lat.copy(), ss.lon.copy()
    glitch = rng.choice(n, size=min(n, int(rng.poisson(n / 1800.0))), replace=False) if n else np.zeros(0, int)
    ang = rng.uniform(0, 2 * np.pi, glitch.shape[0])
    dist = rng.uniform(300, 1000, glitch.shape[0])
    lat[glitch] += dist * np.cos(ang) / 111_000
    lon[glitch] += dist * np.sin(ang) / (111_000 * np.cos(np.radians(trip.home[0])))
    keep = np.ones(n, bool)
    gaps = []
    moving = np.flatnonzero(trip.trace.speed[ss.gps_index] > 8.0)
    if moving.shape[0] > 120 and rng.random() < 0.25:
        i0 = int(rng.choice(moving[:-100]))
        i1 = min(n - 1, i0 + int(rng.integers(20, 91)))
        keep[i0:i1] = False
        gaps.append((int(ss.gps_t[i0]), int(ss.gps_t[i1])))
    k = np.flatnonzero(keep)
    dev = lambda t: device_time(spec, trip.vehicle_id, t)  # noqa: E731
    return SensorStreams(
        dev(ss.gps_t[k]),
        lat[k],
        lon[k],
        ss.speed[k],
        ss.heading[k],
        ss.accuracy[k],
        dev(ss.imu_t),
        ss.acc_lon,
        ss.acc_lat,
        ss.acc_vert,
        ss.gps_index[k],
        ss.phone[k],
        np.sort(ss.gps_t[glitch]).astype(np.int64),
        np.array(gaps, dtype=np.int64).reshape(-1, 2),
        imu_hz=ss.imu_hz,
        blind=ss.blind,
    )


def device_messages(spec: FleetSpec, trip: SimTrip, seq0: int) -> Iterator[DeviceEvent | TelemetryBatch]:
    """What the device sends for one trip: ignition on, telemetry batches, ignition off; seq numbers from seq0.

    A batch covers ``batch_s`` seconds of the device clock; in a tunnel it carries the accelerometer alone. A
    motion-only device (``motion_only``) sends no ignition events and reports PARKED_REPORT_S of parked fixes after
    the trip.
    """
    ss = sensor_streams(spec, trip)
    events = not motion_only(spec, trip.vehicle_id)
    if not events:
        ss = _with_parked_tail(spec, trip, ss)
    on_ms = int(device_time(spec, trip.vehicle_id, trip.start_ms))
    off_ms = int(device_time(spec, trip.vehicle_id, trip.end_ms))
    seq = seq0
    if events:
        yield DeviceEvent(trip.vehicle_id, seq, on_ms, "ignition_on")
        seq += 1
    width = spec.batch_s * 1000
    gw = (ss.gps_t - on_ms) // width
    iw = (ss.imu_t - on_ms) // width
    n_windows = max(int(iw[-1]) if iw.shape[0] else -1, int(gw[-1]) if gw.shape[0] else -1) + 1
    for w in range(n_windows):
        g0, g1 = np.searchsorted(gw, w), np.searchsorted(gw, w + 1)
        i0, i1 = np.searchsorted(iw, w), np.searchsorted(iw, w + 1)
        if g1 == g0 and i1 == i0:
            continue
        g = slice(int(g0), int(g1))
        last = int(ss.gps_t[g1 - 1]) if g1 > g0 else int(ss.imu_t[i1 - 1])
        yield TelemetryBatch(
            trip.vehicle_id,
            seq,
            last,
            ss.gps_t[g],
            ss.lat[g],
            ss.lon[g],
            ss.speed[g],
            ss.heading[g],
            ss.accuracy[g],
            int(ss.imu_t[i0]) if i1 > i0 else last,
            ss.imu_hz,
            ss.acc_lon[i0:i1],
            ss.acc_lat[i0:i1],
            ss.acc_vert[i0:i1],
            ss.phone[g],
        )
        seq += 1
    if events:
        yield DeviceEvent(trip.vehicle_id, seq, off_ms, "ignition_off")


def _with_parked_tail(spec: FleetSpec, trip: SimTrip, ss: SensorStreams) -> SensorStreams:
    """The streams plus PARKED_REPORT_S of a parked vehicle after ignition off: 1 Hz fixes where it stopped with
    GPS speed jitter (|N(0, 0.1)| m/s: at rest a receiver reads 0.1-0.3 m/s), and a quiet accelerometer (gravity and
    noise)."""
    rng = _sub_rng(spec.seed, trip.vehicle_id, trip.start_ms, "parked")
    last_gps = int(ss.gps_t[-1]) if ss.gps_t.shape[0] else int(device_time(spec, trip.vehicle_id, trip.end_ms))
    n = PARKED_REPORT_S
    gt = last_gps + 1000 * np.arange(1, n + 1, dtype=np.int64)
    last_imu = int(ss.imu_t[-1]) if ss.imu_t.shape[0] else last_gps
    step = 1000 // ss.imu_hz
    # a device without an accelerometer reports none; one with it reads what it read standing at the end of the trip
    it = last_imu + step * np.arange(1, (n * ss.imu_hz + 1) if ss.imu_t.shape[0] else 1, dtype=np.int64)
    m = it.shape[0]
    rest = [float(np.mean(a[-ss.imu_hz :])) if a.shape[0] else 0.0 for a in (ss.acc_lon, ss.acc_lat, ss.acc_vert)]
    if device_profile(spec, trip.vehicle_id).name == "ideal":
        rest = [0.0, 0.0, G]  # the legacy output, unchanged

    def pick(a, fill):
        return np.full(n, a[-1] if a.shape[0] else fill)

    return SensorStreams(
        np.concatenate([ss.gps_t, gt]),
        np.concatenate([ss.lat, pick(ss.lat, trip.home[0])]),
        np.concatenate([ss.lon, pick(ss.lon, trip.home[1])]),
        np.concatenate([ss.speed, np.abs(rng.normal(0.0, 0.1, n))]),
        np.concatenate([ss.heading, pick(ss.heading, 0.0)]),
        np.concatenate([ss.accuracy, np.full(n, 5.0)]),
        np.concatenate([ss.imu_t, it]),
        np.concatenate([ss.acc_lon, rest[0] + rng.normal(0.0, 0.05, m)]),
        np.concatenate([ss.acc_lat, rest[1] + rng.normal(0.0, 0.05, m)]),
        np.concatenate([ss.acc_vert, rest[2] + rng.normal(0.0, 0.05, m)]),
        np.concatenate([ss.gps_index, np.full(n, -1, ss.gps_index.dtype)]),
        np.concatenate([ss.phone, np.zeros(n, ss.phone.dtype)]),
        ss.glitches,
        ss.gaps,
        imu_hz=ss.imu_hz,
        blind=ss.blind,
    )


def map_segments(trips: list[SimTrip], every_s: float = 2.0) -> dict[str, np.ndarray]:
    """The roads the fleet drove, as straight segments with their posted limit (the scorer's map layer).

    Sampled every ``every_s`` of driving along each true path; a segment takes the limit of its start.
    """
    step = max(1, int(round(every_s / DT)))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("lat1", "lon1", "lat2", "lon2", "maxspeed_kmh")}
    for tr in trips:
        lat, lon = _positions(tr.trace, tr.home)
        idx = np.arange(0, lat.shape[0], step)
        if idx[-1] != lat.shape[0] - 1:
            idx = np.append(idx, lat.shape[0] - 1)
        moving = np.hypot(np.diff(lat[idx]), np.diff(lon[idx])) > 0
        a, b = idx[:-1][moving], idx[1:][moving]
        for key, arr in (
            ("lat1", lat[a]),
            ("lon1", lon[a]),
            ("lat2", lat[b]),
            ("lon2", lon[b]),
            ("maxspeed_kmh", np.round(tr.trace.limit[a] * 3.6)),
        ):
            parts[key].append(arr)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def speeding_intervals(trips: list[SimTrip]) -> list[dict]:
    """Every stretch driven above the posted limit (true speed and limit, 10 Hz): start, end, peak excess."""
    rows = []
    for tr in trips:
        over = tr.trace.speed > tr.trace.limit
        edges = np.flatnonzero(np.diff(np.concatenate([[0], over.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=False):
            excess = (tr.trace.speed[a:b] - tr.trace.limit[a:b]).max() * 3.6
            rows.append(
                {
                    "vehicle_id": tr.vehicle_id,
                    "trip_start_ms": tr.start_ms,
                    "start_ms": tr.start_ms + int(round(a * DT * 1000)),
                    "end_ms": tr.start_ms + int(round(b * DT * 1000)),
                    "limit_kmh": float(tr.trace.limit[a] * 3.6),
                    "max_over_kmh": float(excess),
                }
            )
    return rows


GRADES = ("moderate", "harsh", "severe")
_KIND = {"harsh_brake": "brake", "harsh_accel": "accel", "harsh_corner": "corner"}


def graded_truth(trace: TripTrace, cfg: ScoringConfig | None = None) -> list[tuple[str, float, float, float, str]]:
    """The trace's events graded with the scorer's own cut points (ScoringConfig): (type, start_s, end_s, peak,
    grade) for each manoeuvre whose peak reaches the moderate band. The peak is that of the true acceleration's
    centred event_mean_window_s mean (the window detection uses; lateral = speed x yaw rate) over the event's
    samples at or above its kind's minimum speed (10 km/h, cornering 30 km/h). Plain NumPy, not the scorer's code."""
    cfg = cfg or ScoringConfig()
    w = max(1, int(round(cfg.event_mean_window_s / DT)))
    box = np.ones(w) / w
    lon_m = np.convolve(trace.accel, box, mode="same")
    lat_m = np.abs(np.convolve(trace.speed * trace.yaw_rate, box, mode="same"))
    out = []
    for typ, s, e, _ in trace.events:
        kind = _KIND[typ]
        if kind == "brake":
            x, cuts, vmin = (
                -lon_m,
                (cfg.brake_moderate_mps2, cfg.harsh_brake_mps2, cfg.brake_severe_mps2),
                cfg.min_event_speed_mps,
            )
        elif kind == "accel":
            x, cuts, vmin = (
                lon_m,
                (cfg.accel_moderate_mps2, cfg.harsh_accel_mps2, cfg.accel_severe_mps2),
                cfg.min_event_speed_mps,
            )
        else:
            x, cuts, vmin = (
                lat_m,
                (cfg.corner_moderate_mps2, cfg.harsh_corner_mps2, cfg.corner_severe_mps2),
                cfg.min_corner_speed_mps,
            )
        i0, i1 = int(round(s / DT)), int(round(e / DT)) + 1
        seg = x[i0:i1][trace.speed[i0:i1] >= vmin]
        peak = float(seg.max()) if seg.shape[0] else 0.0
        if peak >= cuts[0]:
            out.append((typ, s, e, peak, GRADES[int(np.searchsorted(cuts, peak, side="right")) - 1]))
    return out


def ground_truth_rows(spec: FleetSpec, trips: list[SimTrip]) -> tuple[list[dict], list[dict]]:
    """Trips and injected events as plain rows (written beside the data as Parquet)."""
    trip_rows, event_rows = [], []
    for tr in trips:
        v, lim = tr.trace.speed, tr.trace.limit
        ss = sensor_streams(spec, tr)
        step_m = (v[1:] + v[:-1]) * 0.5 * DT
        trip_rows.append(
            {
                "vehicle_id": tr.vehicle_id,
                "start_ms": tr.start_ms,
                "end_ms": tr.end_ms,
                "device_start_ms": int(device_time(spec, tr.vehicle_id, tr.start_ms)),  # what the device reports
                "distance_m": tr.distance_m,
                "duration_s": (tr.end_ms - tr.start_ms) / 1000.0,
                # true distance driven above the posted limit of the road (the map layer's maxspeed)
                "over_limit_m": float(step_m[v[:-1] > lim[:-1]].sum()),
                # true seconds of phone handling while moving (the flags every fix carries)
                "phone_moving_s": float(((ss.phone == 1) & (v[ss.gps_index] > 0.5)).sum()),
            }
        )
        blind = np.concatenate([ss.blind, ss.gaps]).reshape(-1, 2)
        has_imu = ss.imu_t.shape[0] > 0
        for kind, s, e, peak, grade in graded_truth(tr.trace):
            s_ms, e_ms = tr.start_ms + int(s * 1000), tr.start_ms + int(e * 1000)
            event_rows.append(
                {
                    "vehicle_id": tr.vehicle_id,
                    "trip_start_ms": tr.start_ms,
                    "type": kind,
                    "start_ms": s_ms,
                    "end_ms": e_ms,
                    "peak_mps2": peak,
                    "grade": grade,
                    # what the device could see: not before its first real fix nor in a GPS gap, and a corner only
                    # with an accelerometer (a speed channel has no lateral axis)
                    "observable": bool(
                        not ((blind[:, 0] < e_ms) & (blind[:, 1] > s_ms)).any() and (has_imu or kind != "harsh_corner")
                    ),
                }
            )
    return trip_rows, event_rows
