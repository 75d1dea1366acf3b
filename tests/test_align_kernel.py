"""scoring.align's numba alignment against the NumPy code it replaced (scoring.reference_align.align_reference), on
random and edge-case trips: the same status, gravity, reason and lag, R and the vehicle-frame axes to 1e-9; and the
batch (``align_batch``, score-file) against one trip at a time (``align_to_vehicle``, the live stage) bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.align import align_batch, align_to_vehicle, min_eigvec3_kernel
from scoring.reference_align import align_reference
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()
T0 = 1_790_000_000.0


def rotation(rng: np.random.Generator, level: bool) -> np.ndarray:
    """A random device mount: any yaw, level or tilted up to ~60 degrees."""
    yaw = rng.uniform(0, 2 * np.pi)
    tilt = 0.0 if level else rng.uniform(0.3, 1.0)
    cz, sz, cx, sx = np.cos(yaw), np.sin(yaw), np.cos(tilt), np.sin(tilt)
    return np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])


def trip(
    rng: np.random.Generator,
    dur: float = 300.0,
    hz: float = 10.0,
    lag: float = 0.8,
    gravity: float = 9.80665,
    level: bool = False,
    noise: float = 0.15,
    steady: bool = False,
    holes: float = 0.0,
) -> tuple[np.ndarray, ...]:
    """(IMU t s, lon, lat, vert, GPS t s, speed m/s): a drive whose GPS speed lags the accelerometer by ``lag``."""
    gt = T0 + np.arange(0.0, dur, 1.0)
    it = T0 + np.arange(0.0, dur, 1.0 / hz) + rng.uniform(0, 0.001)
    knots = np.arange(0.0, dur + 20, 15.0)
    vk = np.full(knots.shape[0], 20.0) if steady else np.clip(rng.normal(14, 7, knots.shape[0]), 0, 35)
    v_of = lambda t: np.interp(t, T0 + knots, vk)  # noqa: E731
    fwd = np.gradient(v_of(it), it)
    left = rng.normal(0, 0.8, it.shape[0])
    veh = np.vstack([fwd, left, np.full(it.shape[0], gravity)]) + rng.normal(0, noise, (3, it.shape[0]))
    dev = rotation(rng, level).T @ veh
    if holes:
        dev[:, rng.random(it.shape[0]) < holes] = np.nan
    return it, dev[0], dev[1], dev[2], gt, v_of(gt - lag)


def same(a, b) -> None:
    """The same verdict, and the numbers to 1e-9."""
    assert (a.status, a.gravity, a.reason) == (b.status, b.gravity, b.reason)
    for x, y in ((a.lag_s, b.lag_s), (a.r, b.r)):
        assert (np.isnan(x) and np.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-12)
    for x, y in ((a.lon, b.lon), (a.lat, b.lat)):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)


CASES = {
    "raw tilted": {},
    "raw level": {"level": True},
    "raw 1.4 s lag, 25 Hz": {"lag": 1.4, "hz": 25.0},
    "removed": {"gravity": 0.0},
    "removed level": {"gravity": 0.0, "level": True},
    "partial gravity": {"gravity": 5.0},
    "holes": {"holes": 0.2},
    "steady": {"steady": True},
    "steady level": {"steady": True, "level": True},
    "short": {"dur": 22.0, "level": True},
    "short tilted": {"dur": 22.0},
    "noise only": {"noise": 6.0},
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_equals_reference(case: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    it, lon, lat, vert, gt, gv = trip(rng, **CASES[case])
    same(align_to_vehicle(it, lon, lat, vert, gt, gv, CFG), align_reference(it, lon, lat, vert, gt, gv, CFG))


def test_kernel_covers_every_verdict() -> None:
    """The cases above reach each status, gravity and kind of reason (the comparison is not vacuous)."""
    seen = set()
    for seed in range(4):
        for case in CASES:
            a = align_to_vehicle(*trip(np.random.default_rng(seed), **CASES[case]), CFG)
            seen |= {a.status, a.gravity, a.reason.split(" ")[0].split(":")[0]}
    assert {"rotated", "vehicle_frame", "unusable", "raw", "removed", "partial"} <= seen
    assert {"level", "no", "overlap", "R", "partial"} <= seen


def test_edge_cases_equal_reference() -> None:
    rng = np.random.default_rng(5)
    it, lon, lat, vert, gt, gv = trip(rng)
    nan = np.full(it.shape[0], np.nan)
    cases = [
        (it, lon, lat, nan, gt, gv),  # no vertical axis
        (it, lon, lat, vert[:-3], gt, gv),  # a vertical axis of another length: none
        (it, nan, lat, vert, gt, gv),  # no finite forward samples
        (it[:9], lon[:9], lat[:9], vert[:9], gt, gv),  # too few samples
        (it, lon, lat[:-1], vert, gt, gv),
        (it, lon, lat, vert, gt[:2], gv[:2]),
        (it, np.where(rng.random(it.shape[0]) < 0.01, np.inf, lon), lat, vert, gt, gv),  # an infinite sample
        (it[::-1].copy(), lon, lat, vert, gt, gv),  # unsorted: the reference's own path
        (it, lon, lat, vert, gt, np.zeros(gt.shape[0])),  # parked
        ((it - T0).astype(np.float32), lon, lat, vert, gt - T0, gv),  # float32 times: the reference's path
    ]
    for args in cases:
        same(align_to_vehicle(*args, CFG), align_reference(*args, CFG))
    step = ScoringConfig(imu_lag_step_s=0.15)  # not whole grid steps: the per-lag interpolation
    same(align_to_vehicle(*cases[0], step), align_reference(*cases[0], step))
    for per in (0.0, float("nan")):  # the reference's own error
        with pytest.raises((ZeroDivisionError, ValueError)):
            align_reference(it, lon, lat, vert, gt, gv, CFG, per)
        with pytest.raises((ZeroDivisionError, ValueError)):
            align_to_vehicle(it, lon, lat, vert, gt, gv, CFG, per)


def test_batch_equals_one_trip_at_a_time() -> None:
    """align_batch (score-file) gives align_to_vehicle's (the live stage's) alignment bit for bit, each trip reading
    its own fixes of a shared GPS array; trips it does not take come back None."""
    rng = np.random.default_rng(9)
    trips = [trip(rng, **CASES[c]) for c in sorted(CASES)] + [trip(rng, gravity=0.0, dur=120.0)]
    trips.append(trips[0][:1] + (trips[0][1][:5],) + trips[0][2:])  # lon of another length: too few
    bad = trips[1]
    trips.append((bad[0][::-1].copy(),) + bad[1:])  # unsorted: not taken
    goff = np.zeros(len(trips) + 1, np.int64)
    np.cumsum([t[4].shape[0] for t in trips], out=goff[1:])
    tg, vg = np.concatenate([t[4] for t in trips]), np.concatenate([t[5] for t in trips])
    order = list(range(len(trips)))[::-1]  # any order of the group's trips
    pers = [float(np.median(np.diff(trips[k][0]))) for k in order]
    al = align_batch(
        order, [trips[k][0] for k in order], [trips[k][1] for k in order], [trips[k][2] for k in order],
        [trips[k][3] for k in order], pers, goff, tg, vg, CFG,
    )  # fmt: skip
    assert al[0] is None  # the unsorted one
    for a, k, per in zip(al[1:], order[1:], pers[1:], strict=True):
        assert a is not None
        b = align_to_vehicle(*trips[k], CFG, per)
        assert (a.status, a.gravity, a.reason) == (b.status, b.gravity, b.reason)
        assert np.array_equal([a.lag_s, a.r], [b.lag_s, b.r], equal_nan=True)
        assert np.array_equal(a.lon, b.lon, equal_nan=True) and np.array_equal(a.lat, b.lat, equal_nan=True)
    assert sum(a is not None and a.status == "rotated" for a in al) >= 3


@pytest.mark.parametrize("seed", range(20))
def test_min_eigvec3_equals_eigh(seed: int) -> None:
    """The smallest eigenvalue's eigenvector of a symmetric 3x3 matrix, as np.linalg.eigh gives it (up to sign)."""
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(3, 3)) * rng.uniform(0.01, 100)
    c = b @ b.T if seed % 2 else (b + b.T)
    if seed % 5 == 0:
        c = np.diag(rng.uniform(0, 1, 3))  # already diagonal
    out = np.empty(3)
    min_eigvec3_kernel(c, out)
    v = np.linalg.eigh(c)[1][:, 0]
    s = 1.0 if out @ v >= 0 else -1.0
    np.testing.assert_allclose(s * out, v, atol=1e-10)
    min_eigvec3_kernel(np.full((3, 3), np.nan), out)
    assert np.isnan(out).all()
