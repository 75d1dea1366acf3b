"""Map layer: the grid-indexed numba lookup equals the brute-force reference; files and OSM maxspeed parse."""

import json
import math

import numpy as np
import polars as pl
import pytest

from scoring.maplayer import MapLayer, parse_maxspeed
from scoring.reference_map import limits_reference
from ubi.common.errors import ConfigError


def random_layer(rng, n_seg):
    lat1 = 52.3 + rng.uniform(0, 0.02, n_seg)
    lon1 = 4.8 + rng.uniform(0, 0.03, n_seg)
    ang = rng.uniform(0, 2 * np.pi, n_seg)
    length = rng.uniform(0, 150, n_seg)  # includes zero-length segments
    lat2 = lat1 + length * np.cos(ang) / 111_000
    lon2 = lon1 + length * np.sin(ang) / 68_000
    lim = rng.choice([30.0, 50.0, 70.0, 120.0, np.nan], n_seg)
    return MapLayer(lat1, lon1, lat2, lon2, lim, radius_m=30.0)


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=False):
        assert (math.isnan(x) and math.isnan(y)) or x == y, (x, y)


@pytest.mark.parametrize("seed", range(8))
def test_kernel_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, int(rng.integers(1, 400)))
    lat = 52.3 + rng.uniform(-0.001, 0.021, 500)
    lon = 4.8 + rng.uniform(-0.001, 0.031, 500)
    segs = list(zip(layer.lat1, layer.lon1, layer.lat2, layer.lon2, layer.maxspeed_kmh, strict=False))
    same(list(layer.limits_kmh(lat, lon)), limits_reference(list(lat), list(lon), segs, 30.0))
    heading = np.where(rng.random(500) < 0.1, np.nan, rng.uniform(0, 360, 500))
    same(list(layer.limits_kmh(lat, lon, heading)), limits_reference(list(lat), list(lon), segs, 30.0, list(heading)))


def test_edge_cases():
    empty = MapLayer(*(np.zeros(0) for _ in range(5)))
    assert np.isnan(empty.limits_kmh(np.array([52.0]), np.array([4.0]))).all()
    layer = MapLayer(np.array([52.0]), np.array([4.0]), np.array([52.001]), np.array([4.0]), np.array([50.0]))
    assert layer.limits_kmh(np.zeros(0), np.zeros(0)).shape == (0,)
    on, near, far = layer.limits_kmh(np.array([52.0005, 52.0005, 52.0005]), np.array([4.0, 4.0004, 4.002]))
    assert (on, near) == (50.0, 50.0) and math.isnan(far)  # 27 m away is matched, 137 m is not
    with pytest.raises(ValueError):
        layer.limits_kmh(np.zeros(2), np.zeros(3))


def test_heading_picks_the_road_the_vehicle_is_on():
    # a 50 km/h street running north and a 120 km/h motorway running east cross at the same point
    layer = MapLayer(
        np.array([52.0, 52.0005]),
        np.array([4.0005, 4.0]),
        np.array([52.001, 52.0005]),
        np.array([4.0005, 4.001]),
        np.array([50.0, 120.0]),
    )
    lat, lon = np.array([52.0005, 52.0005, 52.0005]), np.array([4.0005, 4.0005, 4.0005])
    north, east, unknown = layer.limits_kmh(lat, lon, np.array([2.0, 268.0, np.nan]))
    assert (north, east) == (50.0, 120.0) and unknown in (50.0, 120.0)


def test_osm_maxspeed_values():
    assert parse_maxspeed("50") == 50.0 and parse_maxspeed(30) == 30.0
    assert parse_maxspeed("30 mph") == pytest.approx(48.28, abs=0.01)
    assert all(math.isnan(parse_maxspeed(v)) for v in ("DE:urban", "signals", None, "", True, -5))


def test_geojson_csv_parquet_load_the_same_layer(tmp_path):
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"maxspeed": "50"},
                "geometry": {"type": "LineString", "coordinates": [[4.0, 52.0], [4.0, 52.001], [4.001, 52.001]]},
            },
            {
                "type": "Feature",
                "properties": {"maxspeed": "none"},
                "geometry": {"type": "MultiLineString", "coordinates": [[[4.01, 52.0], [4.01, 52.001]]]},
            },
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [4.0, 52.0]}},
        ],
    }
    (tmp_path / "m.geojson").write_text(json.dumps(doc))
    g = MapLayer.load(tmp_path / "m.geojson")
    assert len(g) == 3 and list(g.maxspeed_kmh[:2]) == [50.0, 50.0] and math.isnan(g.maxspeed_kmh[2])
    g.write(tmp_path / "m.parquet")
    pl.read_parquet(tmp_path / "m.parquet").write_csv(tmp_path / "m.csv")
    pts = (np.array([52.0005, 52.0005]), np.array([4.0, 4.01]))
    for other in (MapLayer.load(tmp_path / "m.parquet"), MapLayer.load(tmp_path / "m.csv")):
        same(list(other.limits_kmh(*pts)), list(g.limits_kmh(*pts)))
    with pytest.raises(ConfigError, match="unknown format"):
        MapLayer.load(tmp_path / "m.txt")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="missing columns"):
        MapLayer.load(tmp_path / "bad.csv")
