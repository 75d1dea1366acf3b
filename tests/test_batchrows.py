"""scoring/batchrows.py's kernel and vectorised percentile against their per-trip twins and plain-Python
references; its rows against the per-trip path are in tests/test_score_batch.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scoring import batch, batchrows
from scoring import reference_intensity as R
from scoring.intensity import cruise_kernel, intensity_kernel, levels, longest_drive_kernel, speeding_bands_kernel
from scoring.population import percentile, table_for
from scoring.rounding import pyround
from scoring.trips import ClosedTrip
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()
T0 = 1_790_000_000_000


def trip(rng: np.random.Generator, n: int) -> ClosedTrip:
    """Fixes with 1 s steps, stops, gaps above max_integration_gap_s, inaccurate fixes, NaN headings sometimes."""
    t = T0 + np.cumsum(rng.choice([1000, 1000, 1000, 2000, 30_000, 1_000_000], n)).astype(np.int64)
    v = np.abs(np.cumsum(rng.normal(0, 1.5, n)))
    v[rng.random(n) < 0.1] = 0.0
    heading = rng.uniform(0, 360, n) if rng.random() < 0.7 else np.full(n, np.nan)
    z = np.zeros(0)
    return ClosedTrip(
        "x", "v", int(t[0]) if n else T0, int(t[-1]) if n else T0, t, v, rng.choice([3.0, 30.0, np.nan], n), 1,
        True, "ignition_off", 0, np.zeros(0, np.int64), z, z, np.full(n, -1, np.int8),
        52.0 + np.cumsum(v) * 1e-5, np.full(n, 4.0), heading, z,
    )  # fmt: skip


def group(seed: int) -> tuple[list[ClosedTrip], batch.GroupKernels, list]:
    rng = np.random.default_rng(seed)
    trips = [trip(rng, n) for n in [0, 1, 2, 3, 0, 400, 2500, 7, 1, int(rng.integers(10, 900))]]
    limits = [None if k % 3 == 0 else rng.choice([np.nan, 13.9, 27.8], t.t_ms.shape[0]) for k, t in enumerate(trips)]
    return trips, batch.group_kernels(trips, limits, CFG), limits


@pytest.mark.parametrize("seed", range(5))
def test_continuous_batch_kernel_equals_the_per_trip_kernels_and_references(seed):
    trips, g, _ = group(seed)
    out = batchrows.continuous_batch(g)
    bl, al, ll = levels(CFG)
    edges = np.array([0.0, CFG.speeding_band2_kmh, CFG.speeding_band3_kmh]) / 3.6
    for k in range(len(trips)):
        a, b = g.goff[k], g.goff[k + 1]
        c0, c1 = g.ch_off[k], g.ch_off[k + 1]
        t, v, lon, lat = (x[c0:c1] for x in (g.ch_t, g.ch_v, g.ch_lon, g.ch_lat))
        bs, as_, ls = np.zeros(3), np.zeros(3), np.zeros(3)
        hi, hacc = CFG.intensity_high_speed_kmh / 3.6, float(min(bl[0], al[0]))
        r = intensity_kernel(t, v, lon, lat, CFG.moving_mps, bl, al, ll, CFG.jerk_level_mps3, hi, hacc, bs, as_, ls)
        cr = cruise_kernel(t, v, lat, int(CFG.cruise_window_s), CFG.cruise_min_kmh / 3.6, CFG.cruise_max_mean_lat_mps2)
        bands = np.zeros(3)
        tg, vg, lg = g.tg[a:b], g.vg[a:b], g.lg[a:b]
        tot = speeding_bands_kernel(tg, vg, lg, CFG.high_speed_mps, CFG.max_integration_gap_s, edges, bands)
        longest = longest_drive_kernel(tg, vg, CFG.moving_mps, CFG.break_min_s)
        want = [*r, *bs, *as_, *ls, *cr, tot, *bands, longest]
        assert out[k].tolist() == want  # the same kernels: bit for bit
        # and the plain-Python references (their own tests hold the kernels to them)
        *ri, rb, ra, rl = R.intensity_reference(
            list(t), list(v), list(lon), list(lat), CFG.moving_mps, bl, al, ll, CFG.jerk_level_mps3, hi, hacc
        )
        rc = R.cruise_reference(
            list(t), list(v), list(lat), int(CFG.cruise_window_s), CFG.cruise_min_kmh / 3.6,
            CFG.cruise_max_mean_lat_mps2,
        )  # fmt: skip
        rt, rbands = R.speeding_bands_reference(
            list(tg), list(vg), list(lg), CFG.high_speed_mps, CFG.max_integration_gap_s, list(edges)
        )
        rlong = R.longest_drive_reference(list(tg), list(vg), CFG.moving_mps, CFG.break_min_s)
        assert want == pytest.approx([*ri, *rb, *ra, *rl, *rc, rt, *rbands, rlong], nan_ok=True)
    assert (g.ch_off[-1] > 0) and out.shape == (len(trips), batchrows.N_CONT)


def test_no_trips_no_rows():
    assert batchrows.score_rows([], [], CFG) == []


def test_percentiles_equal_the_per_value_function():
    rng = np.random.default_rng(1)
    for knots in (
        *(sorted(rng.gamma(2.0, 1.0, 101).tolist()) for _ in range(3)),
        [0.0] * 50 + sorted(rng.random(51).tolist()),  # repeated knots (many trips at 0)
        [1.5],
        [],
        *table_for(CFG)["quantiles"].values(),
    ):
        kn = list(knots)
        x = np.concatenate([rng.uniform(0, (kn[-1] if kn else 1.0) * 1.3 + 0.1, 500), kn, [0.0, np.inf, 1e300, 1e-300]])
        got = batchrows.percentiles(x, kn)
        assert got.tolist() == [percentile(float(v), kn) for v in x]


@pytest.mark.parametrize("nd", [3, 4, 6])
def test_pyround_is_pythons_round(nd):
    """Random magnitudes, exact decimal halves and their neighbours (where x * 10**nd rounds), whole numbers,
    signed zeros, huge, tiny, NaN and infinite values."""
    rng = np.random.default_rng(nd)
    halves = (rng.integers(-(10**9), 10**9, 20_000) + 0.5) / 10.0**nd
    x = np.concatenate(
        [
            rng.normal(0, 1, 20_000) * 10.0 ** rng.integers(-9, 12, 20_000),
            halves,
            np.nextafter(halves, np.inf),
            np.nextafter(halves, -np.inf),
            rng.integers(-1000, 1000, 1000).astype(float),
            rng.random(20_000),
            [0.0, -0.0, 1e300, -1e300, 5e-324, 2.0**52, 2.0**53 + 2, np.nan, np.inf, -np.inf, 0.0005, 2.675, 1.0005],
        ]
    )
    got = pyround(x, nd).tolist()
    assert [repr(v) for v in got] == [repr(round(float(v), nd)) for v in x]
    assert pyround(x.reshape(-1, 1)[:6], nd).shape == (6, 1)


def test_json_numbers_are_json_dumps():
    x = np.array([1.5, 0.1 + 0.2, -0.0, 1e-7, 123456789.125, np.nan, np.inf, -np.inf])
    assert batchrows._json_nums(x) == [json.dumps(v) for v in x.tolist()]
    assert batchrows._json_nums(x[:5]) == [json.dumps(v) for v in x[:5].tolist()]  # the all-finite path
