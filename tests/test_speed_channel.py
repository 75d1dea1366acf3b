"""The guarded speed channel and the moving mean: kernels against their references, and the artefacts of issue 12."""

import math

import numpy as np
import pytest

from scoring import features as F
from scoring import reference as R
from scoring.align import smooth
from scoring.population import population_score
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()


def both_speed(t, v, acc, cfg=CFG):
    got = F.speed_events(np.asarray(t, float), np.asarray(v, float), np.asarray(acc, float), cfg)
    ref, art = R.speed_events_reference(
        list(map(float, t)),
        list(map(float, v)),
        list(map(float, acc)),
        cfg.brake_moderate_mps2,
        cfg.accel_moderate_mps2,
        cfg.min_event_speed_mps,
        cfg.speed_event_max_accuracy_m,
        cfg.event_warmup_s,
        cfg.max_integration_gap_s,
        cfg.speed_repeat_min_mps,
        cfg.speed_max_plausible_mps2,
    )
    assert got.artefacts == art
    for kind, ev in ((-1, got.brake), (1, got.accel)):
        mine = sorted((s, e, p) for k, s, e, p in ref if k == kind)
        assert ev.count == len(mine)
        for (s, e, p), gs, ge, gp in zip(mine, ev.start_s, ev.end_s, ev.peak, strict=False):
            assert (s, e) == pytest.approx((gs, ge)) and p == pytest.approx(gp)
    return got


@pytest.mark.parametrize("seed", range(25))
def test_speed_channel_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    dt = rng.choice([1.0] * 10 + [0.1, 0.25, 0.5, 15.0], size=n)
    t = np.cumsum(dt) + 1.79e9
    v = np.abs(np.cumsum(rng.normal(0, 1.5, n)))
    v[rng.random(n) < 0.05] = np.round(v[rng.random(n) < 0.05].mean() if n else 0.0, 1)
    rep = rng.random(n) < 0.05
    v[1:][rep[1:]] = v[:-1][rep[1:]]  # stale repeats
    v[rng.random(n) < 0.005] += 30.0  # spikes
    acc = rng.choice([3.0, 5.0, 30.0, np.nan], p=[0.6, 0.3, 0.05, 0.05], size=n)
    both_speed(t, v, acc)


@pytest.mark.parametrize(
    "t,v",
    [
        ([], []),
        ([0.0], [10.0]),
        ([0.0, 1.0], [10.0, 20.0]),
        (np.arange(12.0), np.full(12, 20.0)),
        ([0.0, 100.0], [40.0, 0.0]),
    ],
)
def test_speed_channel_edges(t, v):
    got = both_speed(t, v, np.full(len(t), 5.0))
    assert got.brake.count == got.accel.count == 0


def synthetic():
    """The issue's two artefacts on clean 2-minute 1 Hz trips (nothing else happens)."""
    t = np.arange(120.0)
    v1 = np.full(120, 82 / 3.6)
    v1[0] = 0.0
    a1 = np.full(120, 5.0)
    a1[:2] = 30.0
    v2 = np.r_[np.full(60, 84.8), [84.8, 84.8, 69.0, 69.0], np.full(56, 69.0)] / 3.6
    return (t, v1, a1), (t, v2, np.full(120, 5.0))


def test_cold_start_and_repeat_step_are_no_events():
    (t, v1, a1), (t2, v2, a2) = synthetic()
    for tt, vv, aa in ((t, v1, a1), (t2, v2, a2)):
        got = both_speed(tt, vv, aa)
        assert got.brake.count == got.accel.count == 0
    # the cold start stays out even when the device reports no accuracy: the warm-up alone removes it
    assert both_speed(t, v1, np.full(120, np.nan)).accel.count == 0


def test_a_real_brake_is_graded_and_an_impossible_step_is_an_artefact():
    t = np.arange(120.0)
    v = np.r_[np.full(60, 25.0), 25.0 - 3.5 * np.arange(1, 5), np.full(56, 11.0)]  # 3.5 m/s2 for 4 s: harsh
    got = both_speed(t, v, np.full(120, 5.0))
    assert got.brake.grades == (0, 1, 0) and got.accel.count == 0 and got.artefacts == 0
    w = np.r_[np.full(60, 25.0), np.full(60, 5.0)]  # 20 m/s in one second: no car brakes like that
    got = both_speed(t, w, np.full(120, 5.0))
    assert got.artefacts >= 1 and got.brake.grades[1:] == (0, 0)


def test_validation():
    with pytest.raises(ValueError):
        F.speed_events(np.array([1.0, 0.0]), np.ones(2), None, CFG)
    with pytest.raises(ValueError):
        smooth(np.ones(3), 0)


@pytest.mark.parametrize("seed", range(10))
def test_window_mean_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 500))
    a = rng.normal(0, 2, n)
    a[rng.random(n) < 0.1] = np.nan
    w = int(rng.integers(1, 12))
    got = smooth(a, w)
    ref = R.window_mean_reference(list(a), w)
    assert len(got) == len(ref)
    for x, y in zip(got, ref, strict=False):
        assert (math.isnan(x) and math.isnan(y)) or x == y  # the same sums in the same order: exactly


def test_speeding_part_does_not_saturate():
    """The issue's tie: over the limit on 91 % vs 34 % of a trip at +15 km/h, and sustained +5 km/h."""
    t = np.arange(600.0)
    lim = np.full(600, 60 / 3.6)
    pts = []
    for frac, over in ((0.91, 15), (0.34, 15), (0.91, 5), (0.0, 0)):
        v = np.where(np.arange(600) < frac * 600, 60 + over, 55) / 3.6
        x = F.speeding(t, v, lim, CFG).extra_risk
        pts.append(population_score({"speeding_risk": x}, CFG)[1]["speeding_risk"]["points_lost"])
    assert pts[0] > pts[1] > pts[2] > pts[3] == 0.0
    assert pts[0] < CFG.score_weights["speeding_risk"]


@pytest.mark.parametrize("w", [1, 2, 5, 10, 31])
def test_window_mean_is_exactly_the_reference_at_the_edges(w):
    """Short arrays (no block of four windows fits), runs of NaN longer than a window, infinities, -0.0."""
    rng = np.random.default_rng(w)
    for n in (0, 1, 3, 4, 5, 7, 2 * w + 3, 1000):
        a = rng.normal(0, 2, n)
        a[rng.random(n) < 0.05] = -0.0
        if n > 40:
            a[10 : 10 + w + 5] = np.nan
            a[rng.integers(0, n, 3)] = np.inf
        got = smooth(a, w)
        ref = R.window_mean_reference(list(a), w)
        assert [repr(x) for x in got.tolist()] == [repr(float(y)) for y in ref], (n, w)
