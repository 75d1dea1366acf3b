"""The device contract, version 1: topics, payloads and the rules every message must pass.

Documented for device makers in ``docs/device-contract.md``. Decoding never raises on bad input: it returns a
``Rejected`` value carrying a machine-readable reason, which the bridge sends to the dead-letter topic.

Topics (``<prefix>`` = ``ubi/v1/vehicles``; ``<vehicle>`` = the device's username)::

    <prefix>/<vehicle>/telemetry   QoS 1   batched GPS + accelerometer samples
    <prefix>/<vehicle>/events      QoS 1   ignition_on / ignition_off
    <prefix>/<vehicle>/status      QoS 1   retained "online"/"offline" (last will)
    <prefix>/<vehicle>/ack         QoS 1   from the platform: the seqs that are safe in Kafka (``encode_ack``)

Units: SI throughout. Time: UTC epoch milliseconds. ``seq``: one counter per device over telemetry and events,
+1 per message; repeats (same seq) are removed downstream, never by the MQTT dup flag.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from ubi.common.config import IngestConfig
from ubi.common.messages import Decoded, DeviceEvent, Rejected, TelemetryBatch

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
EVENT_TYPES = frozenset({"ignition_on", "ignition_off"})
BOOT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # an event's optional boot (session) id

# Physical ranges a sample must respect (beyond them it is a broken sensor or a broken encoder).
MAX_SPEED_MPS = 100.0  # 360 km/h
MAX_ACCEL_MPS2 = 160.0  # 16 g, the range of common MEMS accelerometers
MAX_ACCURACY_M = 10_000.0
IMU_HZ_RANGE = (10, 200)
GPS_MAX_HZ = 20


def max_packet_bytes(cfg: IngestConfig) -> int:
    """The largest MQTT packet the broker accepts: the contract's payload limit plus 1 KiB for topic and header."""
    return cfg.max_payload_bytes + 1024


def topic_for(prefix: str, vehicle: str, kind: str) -> str:
    return f"{prefix}/{vehicle}/{kind}"


def parse_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """``<prefix>/<vehicle>/<kind>`` -> (vehicle, kind), or None if the topic is not ours."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :].split("/")
    if len(rest) != 2 or not rest[0] or rest[1] not in ("telemetry", "events", "status", "ack"):
        return None
    return rest[0], rest[1]


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _field(obj: dict, key: str, kind: type | tuple, where: str = ""):
    if key not in obj:
        raise _Bad("missing_field", f"{where}{key}")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _Bad("wrong_type", f"{where}{key}: expected {getattr(kind, '__name__', kind)}")
    return value


def _int(obj: dict, key: str, where: str = "") -> int:
    return _field(obj, key, int, where)


def _array(obj: dict, key: str, n: int | None, where: str, lo: float, hi: float, dtype=np.float64) -> np.ndarray:
    values = _field(obj, key, list, where)
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise _Bad("wrong_type", f"{where}{key}: expected a list of numbers") from None
    if arr.ndim != 1 or any(isinstance(v, (bool, str)) for v in values[:1]):
        raise _Bad("wrong_type", f"{where}{key}: expected a flat list of numbers")
    if n is not None and arr.shape[0] != n:
        raise _Bad("length_mismatch", f"{where}{key}: {arr.shape[0]} values, expected {n}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise _Bad("not_finite", f"{where}{key}: NaN or infinity")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise _Bad("out_of_range", f"{where}{key}: values must lie in [{lo}, {hi}]")
    return arr


SMALL_GROUP = 64  # up to this many values a list, plain Python checks beat NumPy's per-call overhead
_NUMBER_TYPES = frozenset({int, float})


def _group(obj: dict, keys: tuple[str, ...], n: int, where: str, lo: tuple, hi: tuple) -> list[list]:
    """Validate several equal-length number lists at once: the bridge's hot path. Checks, in this order over all
    the lists: length, type (JSON numbers only: no booleans, strings or nested lists anywhere), finiteness, range.
    Small lists are checked with C-level built-ins (sum, min, max), large ones with one NumPy array; both give the
    same verdict (tests/test_contract.py compares them)."""
    lists = [_field(obj, k, list, where) for k in keys]
    for k, values in zip(keys, lists, strict=False):
        if len(values) != n:
            raise _Bad("length_mismatch", f"{where}{k}: {len(values)} values, expected {n}")
    for k, values in zip(keys, lists, strict=False):
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            raise _Bad("wrong_type", f"{where}{k}: expected a list of numbers")
    if n == 0:
        return lists
    if n <= SMALL_GROUP:
        _check_small(lists, keys, where, lo, hi)
    else:
        _check_large(lists, keys, where, lo, hi)
    return lists


def _check_small(lists: list[list], keys: tuple[str, ...], where: str, lo: tuple, hi: tuple) -> None:
    for k, values in zip(keys, lists, strict=False):
        try:  # NaN and infinities propagate through the sum; a huge int or float may overflow: look closer then
            total = sum(values)
            suspect = isinstance(total, float) and not math.isfinite(total)
        except OverflowError:
            suspect = True
        if suspect:
            if any(isinstance(x, float) and not math.isfinite(x) for x in values):
                raise _Bad("not_finite", f"{where}{k}: NaN or infinity")
    for i, (k, values) in enumerate(zip(keys, lists, strict=False)):
        if min(values) < lo[i] or max(values) > hi[i]:
            raise _Bad("out_of_range", f"{where}{k}: values must lie in [{lo[i]}, {hi[i]}]")


def _check_large(lists: list[list], keys: tuple[str, ...], where: str, lo: tuple, hi: tuple) -> None:
    try:
        arr = np.array(lists, dtype=np.float64)
    except OverflowError:  # an int beyond the float range: rare enough for the exact plain-Python checks
        _check_small(lists, keys, where, lo, hi)
        return
    finite = np.isfinite(arr).all(axis=1)  # only JSON NaN/Infinity (or 1e400, parsed as inf) get here
    if not finite.all():
        raise _Bad("not_finite", f"{where}{keys[int(np.flatnonzero(~finite)[0])]}: NaN or infinity")
    out = (arr.min(axis=1) < np.asarray(lo)) | (arr.max(axis=1) > np.asarray(hi))
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise _Bad("out_of_range", f"{where}{keys[i]}: values must lie in [{lo[i]}, {hi[i]}]")


def _times(obj: dict, key: str, where: str) -> list[int]:
    """A list of epoch milliseconds: integers (a float only where it is integral, as some JSON writers emit)."""
    values = _field(obj, key, list, where)
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        raise _Bad("wrong_type", f"{where}{key}: expected a list of integers")
    if float in set(map(type, values)):
        if not all(type(x) is int or x.is_integer() for x in values):
            raise _Bad("wrong_type", f"{where}{key}: expected a list of integers")
        values = [int(x) for x in values]
    if values and (min(values) < 0 or max(values) > 2**62):
        raise _Bad("out_of_range", f"{where}{key}: values must lie in [0, {2**62}]")
    return values


GPS_KEYS = ("lat", "lon", "speed", "heading", "acc")
GPS_LO = (-90.0, -180.0, 0.0, 0.0, 0.0)
GPS_HI = (90.0, 180.0, MAX_SPEED_MPS, 360.0, MAX_ACCURACY_M)
IMU_KEYS = ("lon", "lat", "vert")
IMU_LO = (-MAX_ACCEL_MPS2,) * 3
IMU_HI = (MAX_ACCEL_MPS2,) * 3


class Valid:
    """``decode(..., build=False)``'s verdict for a good telemetry message: the bridge forwards the bytes and needs
    no arrays, only the seq it acknowledges to the device."""

    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq

    def __repr__(self) -> str:
        return f"Valid(seq={self.seq})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Valid) and other.seq == self.seq

    def __hash__(self) -> int:
        return hash(self.seq)


def decode(
    topic_vehicle: str, kind: str, payload: bytes, received_ms: int, cfg: IngestConfig, build: bool = True
) -> Decoded | Valid:
    """Decode and validate one MQTT message. Never raises for bad input. With ``build=False`` a good telemetry
    message gives ``Valid(seq)`` instead of its arrays (the same checks, less work)."""
    if len(payload) > cfg.max_payload_bytes:
        return Rejected("oversize", f"{len(payload)} bytes > {cfg.max_payload_bytes}")
    try:
        try:
            obj = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise _Bad("malformed_json", str(exc)[:200]) from None
        if not isinstance(obj, dict):
            raise _Bad("not_an_object", type(obj).__name__)
        version = _int(obj, "v")
        if version not in SUPPORTED_VERSIONS:
            raise _Bad("unknown_version", f"v={version}; supported: {sorted(SUPPORTED_VERSIONS)}")
        vehicle = _field(obj, "vehicle", str)
        if vehicle != topic_vehicle:
            raise _Bad("vehicle_mismatch", f"payload vehicle {vehicle!r} published on topic of {topic_vehicle!r}")
        seq = _int(obj, "seq")
        if not 0 <= seq < 2**63:
            raise _Bad("out_of_range", "seq must be a non-negative 64-bit integer")
        lo_ms = received_ms - int(cfg.max_age_days * 86_400_000)
        hi_ms = received_ms + int(cfg.max_future_skew_s * 1000)
        if kind == "events":
            return _decode_event(obj, vehicle, seq, lo_ms, hi_ms)
        if kind == "telemetry":
            return _decode_telemetry(obj, vehicle, seq, lo_ms, hi_ms, cfg, build)
        raise _Bad("unknown_kind", kind)
    except _Bad as bad:
        return Rejected(bad.reason, bad.detail)


def _check_time(ms: int, lo_ms: int, hi_ms: int, what: str) -> None:
    if ms < lo_ms:
        raise _Bad("time_travel", f"{what}={ms} is older than the accepted window")
    if ms > hi_ms:
        raise _Bad("time_travel", f"{what}={ms} is in the future of the receive time")


def _decode_event(obj: dict, vehicle: str, seq: int, lo_ms: int, hi_ms: int) -> DeviceEvent:
    t = _int(obj, "t")
    _check_time(t, lo_ms, hi_ms, "t")
    event = _field(obj, "event", str)
    if event not in EVENT_TYPES:
        raise _Bad("unknown_event", f"{event!r}; known: {sorted(EVENT_TYPES)}")
    boot = obj.get("boot", "")
    if not isinstance(boot, str):
        raise _Bad("wrong_type", "boot must be a string")
    if boot and not BOOT_RE.fullmatch(boot):
        raise _Bad("out_of_range", "boot must be 1-64 characters of A-Z a-z 0-9 _ -")
    return DeviceEvent(vehicle, seq, t, event, boot)


def _decode_telemetry(
    obj: dict, vehicle: str, seq: int, lo_ms: int, hi_ms: int, cfg: IngestConfig, build: bool = True
) -> TelemetryBatch | Valid:
    sent = _int(obj, "sent")
    gps = _field(obj, "gps", dict)
    t = _times(gps, "t", "gps.")
    n = len(t)
    if n:
        _check_time(min(t), lo_ms, hi_ms, "gps.t")
        _check_time(max(t), lo_ms, hi_ms, "gps.t")
        if n > 1 and not all(map(int.__lt__, t, t[1:])):
            raise _Bad("not_increasing", "gps.t must strictly increase within a message")
        window_s = (t[-1] - t[0]) / 1000.0
        if window_s > cfg.max_batch_window_s:
            raise _Bad("window_too_long", f"{window_s:.1f}s > {cfg.max_batch_window_s}s")
        if n > GPS_MAX_HZ * (window_s + 1):
            raise _Bad("out_of_range", "gps sample rate above 20 Hz")
    gps_lists = _group(gps, GPS_KEYS, n, "gps.", GPS_LO, GPS_HI)
    imu = _field(obj, "imu", dict)
    t0 = _int(imu, "t0", "imu.")
    _check_time(t0, lo_ms, hi_ms, "imu.t0")
    hz = _int(imu, "hz", "imu.")
    if not IMU_HZ_RANGE[0] <= hz <= IMU_HZ_RANGE[1]:
        raise _Bad("out_of_range", f"imu.hz={hz}; must be within {IMU_HZ_RANGE}")
    m = len(_field(imu, "lon", list, "imu."))
    if m > hz * (cfg.max_batch_window_s + 1):
        raise _Bad("window_too_long", f"imu has {m} samples at {hz} Hz")
    if n == 0 and m == 0:
        # no fix (a tunnel) is fine while the accelerometer reports; a message with neither carries nothing
        raise _Bad("empty_batch", "neither gps nor imu samples")
    imu_lists = _group(imu, IMU_KEYS, m, "imu.", IMU_LO, IMU_HI)
    phone = None
    if "phone" in obj and obj["phone"] is not None:
        flags = _field(obj, "phone", list)
        if len(flags) != n:
            raise _Bad("length_mismatch", f"phone: {len(flags)} values, expected {n}")
        if not all(type(x) is int for x in flags):  # not a string, a boolean or a fraction (0.5)
            raise _Bad("wrong_type", "phone: expected a list of the integers 0 and 1")
        if not all(x == 0 or x == 1 for x in flags):
            raise _Bad("out_of_range", "phone: values must be 0 or 1")
        phone = np.asarray(flags, dtype=np.uint8)
    if not build:
        return Valid(seq)
    t_ms = np.asarray(t, dtype=np.int64)
    lat, lon, speed, heading, accuracy = np.array(gps_lists, dtype=np.float64).reshape(5, n)
    ax, ay, az = np.array(imu_lists, dtype=np.float64).reshape(3, m)
    return TelemetryBatch(vehicle, seq, sent, t_ms, lat, lon, speed, heading, accuracy, t0, hz, ax, ay, az, phone)


def decode_trusted(topic_vehicle: str, kind: str, payload: bytes, received_ms: int, cfg: IngestConfig) -> Decoded:
    """Decode a message the bridge already validated (the scorer's hot path): parse and build arrays, no range
    checks. Anything that does not parse cleanly goes through the full ``decode`` and its verdict."""
    try:
        obj = json.loads(payload)
        if obj["v"] != SCHEMA_VERSION or obj["vehicle"] != topic_vehicle:
            raise ValueError
        if kind == "events":
            return DeviceEvent(
                obj["vehicle"], int(obj["seq"]), int(obj["t"]), str(obj["event"]), str(obj.get("boot", ""))
            )
        gps, imu = obj["gps"], obj["imu"]
        g = np.array([gps["lat"], gps["lon"], gps["speed"], gps["heading"], gps["acc"]], dtype=np.float64)
        a = np.array([imu["lon"], imu["lat"], imu["vert"]], dtype=np.float64)
        if g.ndim != 2 or a.ndim != 2:
            raise ValueError
        phone = obj.get("phone")
        return TelemetryBatch(
            obj["vehicle"],
            int(obj["seq"]),
            int(obj["sent"]),
            np.asarray(gps["t"], dtype=np.int64),
            g[0],
            g[1],
            g[2],
            g[3],
            g[4],
            int(imu["t0"]),
            int(imu["hz"]),
            a[0],
            a[1],
            a[2],
            None if phone is None else np.asarray(phone, dtype=np.uint8),
        )
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        full = decode(topic_vehicle, kind, payload, received_ms, cfg)
        assert not isinstance(full, Valid)  # decode builds the message unless asked to only check it
        return full


def _round_list(arr: np.ndarray, digits: int) -> list:
    return [round(float(x), digits) for x in arr]


def encode_telemetry(b: TelemetryBatch) -> bytes:
    """The JSON a device sends (used by the simulator; the inverse of ``decode``)."""
    obj = {
        "v": SCHEMA_VERSION,
        "vehicle": b.vehicle,
        "seq": int(b.seq),
        "sent": int(b.sent_ms),
        "gps": {
            "t": [int(x) for x in b.gps_t],
            "lat": _round_list(b.lat, 7),
            "lon": _round_list(b.lon, 7),
            "speed": _round_list(b.speed, 3),
            "heading": _round_list(b.heading, 1),
            "acc": _round_list(b.accuracy, 1),
        },
        "imu": {
            "t0": int(b.imu_t0),
            "hz": int(b.imu_hz),
            "lon": _round_list(b.acc_lon, 3),
            "lat": _round_list(b.acc_lat, 3),
            "vert": _round_list(b.acc_vert, 3),
        },
    }
    if b.phone is not None:
        obj["phone"] = [int(x) for x in b.phone]
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def encode_event(e: DeviceEvent) -> bytes:
    obj = {"v": SCHEMA_VERSION, "vehicle": e.vehicle, "seq": e.seq, "t": e.t_ms, "event": e.event}
    if e.boot:
        obj["boot"] = e.boot
    return json.dumps(obj, separators=(",", ":")).encode()


# --- end-to-end acknowledgement (platform -> device) ---------------------------------------------------------------
# A PUBACK only says the broker took a message; a broker crash before it saved or delivered it loses it. The bridge
# therefore tells each device, on <prefix>/<vehicle>/ack (readable only by that device), which seqs Kafka has
# confirmed: ``{"v": 1, "acked": [[first, last], ...], "rejected": [[seq, "reason"], ...]}``. A device drops a
# buffered message only when its seq is in one of them, and resends the rest after a reconnect or a timeout.


def seq_ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted, merged ``[first, last]`` ranges covering ``seqs`` (repeats and any order allowed)."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def encode_ack(acked: list[int], rejected: list[tuple[int, str]] | None = None) -> bytes:
    obj: dict = {"v": SCHEMA_VERSION, "acked": seq_ranges(acked)}
    if rejected:
        obj["rejected"] = [[int(s), r] for s, r in rejected]
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_ack(payload: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
    """(acked ranges, rejected seqs with their reason); raises ValueError on anything else."""
    obj = json.loads(payload)
    if not isinstance(obj, dict) or obj.get("v") != SCHEMA_VERSION:
        raise ValueError("not a version-1 ack")
    ranges = [(int(a), int(b)) for a, b in obj.get("acked", [])]
    rejected = [(int(s), str(r)) for s, r in obj.get("rejected", [])]
    return ranges, rejected


def peek_seq(payload: bytes, limit: int = 262_144) -> int | None:
    """The seq of a message that failed validation, when it has a readable one (so the device can be told it was
    rejected and stop resending it); None otherwise."""
    if len(payload) > limit:
        return None
    try:
        obj = json.loads(payload)
        seq = obj.get("seq") if isinstance(obj, dict) else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return seq if type(seq) is int and 0 <= seq < 2**63 else None
