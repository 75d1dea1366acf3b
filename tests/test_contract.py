"""The device contract: good messages decode; each kind of bad message is rejected with its reason."""

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.contract import DeviceEvent, Rejected, TelemetryBatch, decode, encode_event, encode_telemetry, parse_topic
from ubi.common.config import Config, IngestConfig, PrivacyConfig
from ubi.stages.bridge import route

CFG = IngestConfig()
NOW = int(time.time() * 1000)


def good_obj(vehicle="VH00001", n=10, hz=10):
    t = [NOW - 10_000 + 1000 * i for i in range(n)]
    return {
        "v": 1,
        "vehicle": vehicle,
        "seq": 7,
        "sent": t[-1],
        "gps": {
            "t": t,
            "lat": [52.1] * n,
            "lon": [4.9] * n,
            "speed": [10.0] * n,
            "heading": [90.0] * n,
            "acc": [3.0] * n,
        },
        "imu": {"t0": t[0], "hz": hz, "lon": [0.1] * (n * hz), "lat": [0.0] * (n * hz), "vert": [9.8] * (n * hz)},
    }


def dec(obj, vehicle="VH00001", kind="telemetry"):
    payload = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return decode(vehicle, kind, payload, NOW, CFG)


def test_good_telemetry_roundtrip():
    b = dec(good_obj())
    assert isinstance(b, TelemetryBatch)
    assert b.gps_t.dtype == np.int64 and b.speed.shape == (10,) and b.acc_lon.shape == (100,)
    again = dec(encode_telemetry(b))
    assert isinstance(again, TelemetryBatch) and again.seq == 7
    assert np.array_equal(again.gps_t, b.gps_t)


def test_good_event_roundtrip():
    e = DeviceEvent("VH00001", 3, NOW, "ignition_on")
    assert dec(encode_event(e), kind="events") == e


def mutate(path, value):
    obj = good_obj()
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    "obj,reason",
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (mutate(["v"], 2), "unknown_version"),
        (mutate(["v"], KeyError), "missing_field"),
        (mutate(["seq"], "7"), "wrong_type"),
        (mutate(["seq"], True), "wrong_type"),
        (mutate(["vehicle"], "VH00002"), "vehicle_mismatch"),
        (mutate(["gps", "speed"], [10.0] * 9 + [500.0]), "out_of_range"),
        (mutate(["gps", "lat"], [91.0] * 10), "out_of_range"),
        (mutate(["gps", "speed"], [10.0] * 9), "length_mismatch"),
        (mutate(["gps", "speed"], ["a"] * 10), "wrong_type"),
        (mutate(["gps", "t"], [NOW + 3_600_000 + i for i in range(10)]), "time_travel"),
        (mutate(["gps", "t"], [NOW - 400 * 86_400_000 + i for i in range(10)]), "time_travel"),
        (mutate(["gps", "t"], [NOW - 1000 * i for i in range(10)]), "not_increasing"),
        (mutate(["gps", "t"], []), "length_mismatch"),
        (mutate(["imu", "hz"], 1), "out_of_range"),
        (mutate(["imu", "lat"], [0.0] * 99), "length_mismatch"),
        (mutate(["gps", "t"], [NOW - 120_000, NOW - 1000] + [NOW - 900 + i for i in range(8)]), "window_too_long"),
    ],
)
def test_bad_telemetry_is_rejected_with_reason(obj, reason):
    out = dec(obj)
    assert isinstance(out, Rejected), out
    assert out.reason == reason


def test_nan_and_infinity_rejected():
    raw = json.dumps(good_obj()).replace('"speed": [10.0', '"speed": [NaN').encode()
    assert dec(raw).reason == "not_finite"
    raw = json.dumps(good_obj()).replace('"lon": [0.1', '"lon": [Infinity').encode()
    assert dec(raw).reason == "not_finite"


def test_oversize_rejected_before_parsing():
    out = decode("VH00001", "telemetry", b" " * (CFG.max_payload_bytes + 1), NOW, CFG)
    assert out == Rejected("oversize", f"{CFG.max_payload_bytes + 1} bytes > {CFG.max_payload_bytes}")


def test_gps_may_be_empty_in_a_tunnel_but_not_both():
    obj = good_obj()
    for k in ("t", "lat", "lon", "speed", "heading", "acc"):
        obj["gps"][k] = []
    out = dec(obj)
    assert isinstance(out, TelemetryBatch) and out.gps_t.shape == (0,) and out.acc_lon.shape == (100,)
    for k in ("lon", "lat", "vert"):
        obj["imu"][k] = []
    assert dec(obj).reason == "empty_batch"


def test_unknown_event_rejected():
    out = dec({"v": 1, "vehicle": "VH00001", "seq": 1, "t": NOW, "event": "teleport"}, kind="events")
    assert out.reason == "unknown_event"


def test_topics():
    assert parse_topic("ubi/v1/vehicles", "ubi/v1/vehicles/VH1/telemetry") == ("VH1", "telemetry")
    assert parse_topic("ubi/v1/vehicles", "ubi/v1/vehicles/VH1/other") is None
    assert parse_topic("ubi/v1/vehicles", "elsewhere/VH1/telemetry") is None


def test_route_sends_bad_data_to_dead_letter_with_original_bytes():
    cfg = Config(privacy=PrivacyConfig(dlq_keep_payload=True))  # kept only on request (tests/test_privacy.py)
    out = route(cfg, "ubi/v1/vehicles/VH00001/telemetry", b"{oops", NOW, 5, 1)
    assert out.dead_letter and out.topic == cfg.kafka.dead_letter_topic
    body = json.loads(out.value)
    assert body["reason"] == "malformed_json" and body["mqtt_topic"].endswith("/telemetry")
    import base64

    assert base64.b64decode(body["payload_b64"]) == b"{oops"
    good = route(cfg, "ubi/v1/vehicles/VH00001/telemetry", json.dumps(good_obj()).encode(), NOW, 6, 1)
    assert not good.dead_letter and good.topic == cfg.kafka.telemetry_topic and good.key == b"VH00001"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(payload):
    assert isinstance(decode("VH00001", "telemetry", payload, NOW, CFG), (Rejected, TelemetryBatch))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["v", "seq", "sent", "gps", "imu", "vehicle"]),
    json_values,
    st.sampled_from(["t", "lat", "lon", "speed", "heading", "acc"]),
    json_values,
)
def test_near_valid_payloads_never_crash(top_key, top_value, gps_key, gps_value):
    obj = good_obj()
    obj[top_key] = top_value
    if isinstance(obj.get("gps"), dict):
        obj["gps"][gps_key] = gps_value
    out = decode("VH00001", "telemetry", json.dumps(obj).encode(), NOW, CFG)
    assert isinstance(out, (Rejected, TelemetryBatch))


def test_trusted_decode_equals_full_decode_and_falls_back_on_bad_input():
    from datetime import date, timedelta

    from ingest.contract import decode_trusted
    from simulator.fleet import FleetSpec, make_trips
    from simulator.run import vehicle_stream

    spec = FleetSpec(vehicles=1, days=2, seed=4, start=date.today() - timedelta(days=2))
    n = 0
    for m in vehicle_stream(spec, make_trips(spec, "VH00001")):
        kind = "events" if isinstance(m, DeviceEvent) else "telemetry"
        raw = encode_event(m) if kind == "events" else encode_telemetry(m)
        full, fast = dec(raw, kind=kind), decode_trusted("VH00001", kind, raw, NOW, CFG)
        assert type(full) is type(fast)
        for k in full.__dataclass_fields__:
            x, y = getattr(full, k), getattr(fast, k)
            assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, k
        n += 1
    assert n > 10
    for bad in (b"{oops", json.dumps(mutate(["gps", "speed"], [10.0] * 9)).encode(), b"[]"):
        assert decode_trusted("VH00001", "telemetry", bad, NOW, CFG) == dec(bad)


number_lists = st.lists(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**320), 10**320), st.floats(-100, 100)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(number_lists, min_size=3, max_size=3), st.integers(1, 30))
def test_small_and_large_list_checks_agree(lists, repeat):
    """The plain-Python checks (short lists) and the NumPy checks (long lists) give the same verdict, reason and
    detail, on NaN, infinities, ints beyond the float range and out-of-range values in any list."""
    from ingest.contract import IMU_HI, IMU_KEYS, IMU_LO, _Bad, _check_large, _check_small

    n = min(map(len, lists))
    lists = [(v[:n] * repeat) for v in lists]

    def verdict(check):
        try:
            check(lists, IMU_KEYS, "imu.", IMU_LO, IMU_HI)
        except _Bad as bad:
            return bad.reason, bad.detail
        return None

    assert verdict(_check_small) == verdict(_check_large)


@pytest.mark.parametrize(
    "where,value",
    [
        ("gps.lat", [52.1, True]),
        ("gps.speed", [10.0, "10"]),
        ("imu.vert", [9.8] * 10 + [[9.8]] + [9.8] * 9),
        ("gps.t", None),
    ],
)
def test_numbers_only_anywhere_in_a_list(where, value):
    """A boolean, a string or a nested list is a wrong type wherever it sits, not only first (NumPy would have
    converted "10" and True silently); a time must be an integer."""
    obj = good_obj(n=2)
    group, key = where.split(".")
    if value is None:
        value = [obj["gps"]["t"][0], obj["gps"]["t"][1] + 0.5]
    obj[group][key] = value
    out = dec(obj)
    assert isinstance(out, Rejected) and out.reason == "wrong_type", out


def test_validation_only_gives_the_same_verdicts():
    """The bridge validates without building arrays (build=False): same Rejected for bad input, Valid(seq) for good."""
    from ingest.contract import Valid

    good = json.dumps(good_obj()).encode()
    assert decode("VH00001", "telemetry", good, NOW, CFG, build=False) == Valid(good_obj()["seq"])
    for bad in (b"{", json.dumps({**good_obj(), "seq": -1}).encode(), json.dumps({**good_obj(), "v": 9}).encode()):
        assert decode("VH00001", "telemetry", bad, NOW, CFG, build=False) == dec(bad)


def test_phone_flags_are_the_integers_0_and_1_only():
    """Issue 11, item 8: strings, booleans and 0.5 used to pass (0.5 was read as 0)."""
    for bad, reason in (
        ([1, "1"], "wrong_type"),
        ([True, 0], "wrong_type"),
        ([0.5, 0], "wrong_type"),
        ([1.0, 0], "wrong_type"),
        ([2, 0], "out_of_range"),
        ([-1, 0], "out_of_range"),
        ([1], "length_mismatch"),
    ):
        obj = good_obj()
        n = len(obj["gps"]["t"])
        obj["phone"] = (bad + [0] * n)[:n] if reason != "length_mismatch" else [1] * (n + 1)
        got = decode("VH00001", "telemetry", json.dumps(obj).encode(), NOW, CFG)
        assert isinstance(got, Rejected) and got.reason == reason, (bad, got)
    obj = good_obj()
    obj["phone"] = [1] + [0] * (len(obj["gps"]["t"]) - 1)
    got = decode("VH00001", "telemetry", json.dumps(obj).encode(), NOW, CFG)
    assert not isinstance(got, Rejected) and got.phone.tolist()[0] == 1


def test_month_must_be_a_real_year_and_month():
    import pytest

    from pricing.monthly import month_start
    from ubi.common.errors import PricingError

    assert month_start("2026-11") == __import__("datetime").date(2026, 11, 1)
    for bad in ("2026-13", "2026-11-99", "2026-00", "2026-1", "26-11", "nov"):
        with pytest.raises(PricingError, match="YYYY-MM"):
            month_start(bad)


def test_simulate_default_start_sends_nothing_in_the_future():
    from datetime import date, timedelta

    import pytest

    from ubi.cli.main import simulate_start
    from ubi.common.errors import ConfigError

    assert simulate_start(None, 7, offline=False) == date.today() - timedelta(days=7)
    with pytest.raises(ConfigError, match="future"):
        simulate_start(date.today(), 7, offline=False)
    assert simulate_start(date.today(), 7, offline=True) == date.today()


def test_ack_round_trip_and_ranges():
    """The end-to-end ack names every confirmed seq as merged ranges, in any order, repeats allowed."""
    from ingest.contract import decode_ack, encode_ack, seq_ranges

    assert seq_ranges([]) == []
    assert seq_ranges([5, 3, 4, 4, 9, 11, 10, 1]) == [[1, 1], [3, 5], [9, 11]]
    ranges, rejected = decode_ack(encode_ack([7, 8, 2], [(3, "out_of_range")]))
    assert ranges == [(2, 2), (7, 8)] and rejected == [(3, "out_of_range")]
    with pytest.raises(ValueError):
        decode_ack(b'{"v": 2, "acked": []}')


def test_peek_seq_reads_the_seq_of_a_rejected_message_only_when_it_is_a_valid_one():
    from ingest.contract import peek_seq

    assert peek_seq(b'{"v":1,"seq":12,"gps":"x"}') == 12
    for bad in (
        b"{",
        b"[1]",
        b'{"seq":-1}',
        b'{"seq":1.5}',
        b'{"seq":true}',
        b'{"seq":"3"}',
        b'{"seq":' + b"9" * 30 + b"}",
    ):
        assert peek_seq(bad) is None, bad


def test_an_event_may_carry_a_boot_id_and_a_bad_one_is_refused():
    from ingest.contract import decode_trusted, encode_event

    ev = {"v": 1, "vehicle": "VH00001", "seq": 3, "t": NOW - 1000, "event": "ignition_on", "boot": "b-7f3a"}
    got = dec(json.dumps(ev).encode(), kind="events")
    assert isinstance(got, DeviceEvent) and got.boot == "b-7f3a"
    assert (
        dec(encode_event(got), kind="events") == got == decode_trusted("VH00001", "events", encode_event(got), NOW, CFG)
    )
    for bad, reason in ((7, "wrong_type"), ("", None), ("x" * 65, "out_of_range"), ("a b", "out_of_range")):
        r = dec(json.dumps({**ev, "boot": bad}).encode(), kind="events")
        assert (r.reason if isinstance(r, Rejected) else None) == reason, (bad, r)
