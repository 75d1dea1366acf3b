"""Posted speed limits from a map layer: road segments with a ``maxspeed``, looked up per GPS fix.

File formats (docs/map-layer.md):
- GeoJSON FeatureCollection of LineString / MultiLineString features with a ``maxspeed`` property, as exported
  from OpenStreetMap ways (``"50"``, ``"30 mph"``, ``50``; anything else = unknown);
- CSV or Parquet of straight segments: ``lat1, lon1, lat2, lon2, maxspeed_kmh``.

A fix takes the limit of the nearest segment within ``radius_m`` (NaN when none: unknown, and the scorer falls
back to the absolute high-speed share). The lookup is a uniform grid index and a small numba kernel;
``scoring/reference_map.py`` is its brute-force twin for the tests.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from ubi.common.errors import ConfigError

EARTH_R = 6_371_000.0
_MAXSPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph)?\s*$", re.IGNORECASE)


def parse_maxspeed(value: object) -> float:
    """OSM ``maxspeed`` to km/h; NaN for values that are not a plain number (``"signals"``, ``"DE:urban"``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value > 0 else math.nan
    if isinstance(value, str):
        m = _MAXSPEED.match(value)
        if m:
            v = float(m.group(1))
            return v * 1.609344 if (m.group(2) or "").lower() == "mph" else v
    return math.nan


@njit(cache=True)
def _seg_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    u = 0.0
    if L2 > 0.0:
        u = ((px - ax) * dx + (py - ay) * dy) / L2
        u = min(1.0, max(0.0, u))
    qx, qy = ax + u * dx - px, ay + u * dy - py
    return qx * qx + qy * qy


@njit(cache=True)
def _heading_ok(heading: float, ax: float, ay: float, bx: float, by: float, max_diff: float) -> bool:
    """Does the road run along the vehicle's heading (either direction)? No heading, or a point segment: yes."""
    if math.isnan(heading) or (ax == bx and ay == by):
        return True
    road = math.degrees(math.atan2(bx - ax, by - ay))  # 0 = north, clockwise, like a GPS heading
    d = abs((heading - road) % 180.0)
    return min(d, 180.0 - d) <= max_diff


@njit(cache=True)
def lookup_kernel(
    lat: np.ndarray,
    lon: np.ndarray,
    heading: np.ndarray,
    lat0: float,
    kx: float,
    ky: float,
    cell_m: float,
    radius_m: float,
    max_heading_diff: float,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    limit: np.ndarray,
    keys: np.ndarray,
    starts: np.ndarray,
    items: np.ndarray,
) -> np.ndarray:
    """Limit (km/h) of the nearest segment within radius, running along the fix's heading; NaN where none."""
    n = lat.shape[0]
    out = np.full(n, np.nan)
    r2 = radius_m * radius_m
    for i in range(n):
        px = lon[i] * kx
        py = (lat[i] - lat0) * ky
        cx = int(math.floor(px / cell_m))
        cy = int(math.floor(py / cell_m))
        best = r2
        best_s = np.int64(1) << 62
        for gx in range(cx - 1, cx + 2):
            for gy in range(cy - 1, cy + 2):
                key = (np.int64(gx) << 32) ^ (np.int64(gy) & 0xFFFFFFFF)
                k = np.searchsorted(keys, key)
                if k < keys.shape[0] and keys[k] == key:
                    for j in range(starts[k], starts[k + 1]):
                        s = items[j]
                        if not _heading_ok(heading[i], x1[s], y1[s], x2[s], y2[s], max_heading_diff):
                            continue
                        d2 = _seg_dist2(px, py, x1[s], y1[s], x2[s], y2[s])
                        if d2 < best or (d2 == best and s < best_s):  # ties: the lowest segment index
                            best = d2
                            best_s = s
                            out[i] = limit[s]
    return out


@dataclass(frozen=True)
class MapLayer:
    lat1: np.ndarray
    lon1: np.ndarray
    lat2: np.ndarray
    lon2: np.ndarray
    maxspeed_kmh: np.ndarray
    radius_m: float = 30.0
    cell_m: float = 100.0
    # A fix matches only roads within this angle of its heading: where roads of different classes cross or run
    # close by, the heading says which one the vehicle is on (standard map-matching practice; 45 deg our choice).
    max_heading_diff_deg: float = 45.0

    def __post_init__(self) -> None:
        lat0 = float(np.mean(np.concatenate([self.lat1, self.lat2]))) if self.lat1.size else 0.0
        ky = EARTH_R * math.pi / 180.0
        kx = ky * math.cos(math.radians(lat0))
        x1, y1 = self.lon1 * kx, (self.lat1 - lat0) * ky
        x2, y2 = self.lon2 * kx, (self.lat2 - lat0) * ky
        pad = self.radius_m
        cells: dict[int, list[int]] = {}
        for s in range(x1.shape[0]):
            gx0 = math.floor((min(x1[s], x2[s]) - pad) / self.cell_m)
            gx1 = math.floor((max(x1[s], x2[s]) + pad) / self.cell_m)
            gy0 = math.floor((min(y1[s], y2[s]) - pad) / self.cell_m)
            gy1 = math.floor((max(y1[s], y2[s]) + pad) / self.cell_m)
            for gx in range(gx0, gx1 + 1):
                for gy in range(gy0, gy1 + 1):
                    cells.setdefault(((gx << 32) ^ (gy & 0xFFFFFFFF)), []).append(s)
        keys = np.array(sorted(cells), dtype=np.int64)
        counts = np.array([len(cells[k]) for k in keys], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        items = np.array([s for k in keys for s in cells[k]], dtype=np.int64)
        object.__setattr__(self, "_index", (lat0, kx, ky, x1, y1, x2, y2, keys, starts, items))

    def __len__(self) -> int:
        return int(self.lat1.shape[0])

    def limits_kmh(self, lat: np.ndarray, lon: np.ndarray, heading: np.ndarray | None = None) -> np.ndarray:
        """Posted limit in km/h for each fix (NaN = unknown); ``heading`` in degrees (NaN or None = unknown)."""
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        lon = np.ascontiguousarray(lon, dtype=np.float64)
        heading = np.full(lat.shape, np.nan) if heading is None else np.ascontiguousarray(heading, dtype=np.float64)
        if lat.shape != lon.shape or lat.shape != heading.shape or lat.ndim != 1:
            raise ValueError("lat, lon and heading must be 1-D arrays of equal length")
        if len(self) == 0:
            return np.full(lat.shape[0], np.nan)
        lat0, kx, ky, x1, y1, x2, y2, keys, starts, items = self._index  # type: ignore[attr-defined]
        return lookup_kernel(
            lat,
            lon,
            heading,
            lat0,
            kx,
            ky,
            self.cell_m,
            self.radius_m,
            self.max_heading_diff_deg,
            x1,
            y1,
            x2,
            y2,
            np.ascontiguousarray(self.maxspeed_kmh, dtype=np.float64),
            keys,
            starts,
            items,
        )

    def limits_mps(self, lat: np.ndarray, lon: np.ndarray, heading: np.ndarray | None = None) -> np.ndarray:
        return self.limits_kmh(lat, lon, heading) / 3.6

    # --- files -----------------------------------------------------------------
    @classmethod
    def from_frame(cls, df: pl.DataFrame, radius_m: float = 30.0) -> "MapLayer":
        missing = {"lat1", "lon1", "lat2", "lon2", "maxspeed_kmh"} - set(df.columns)
        if missing:
            raise ConfigError(f"map layer: missing columns {sorted(missing)}")
        col = lambda c: df[c].cast(pl.Float64).fill_null(np.nan).to_numpy()  # noqa: E731
        return cls(col("lat1"), col("lon1"), col("lat2"), col("lon2"), col("maxspeed_kmh"), radius_m)

    @classmethod
    def load(cls, path: Path | str, radius_m: float = 30.0) -> "MapLayer":
        path = Path(path)
        suffix = path.suffix.lower()
        try:
            if suffix in (".geojson", ".json"):
                return cls.from_frame(_geojson_segments(json.loads(path.read_text())), radius_m)
            if suffix == ".parquet":
                return cls.from_frame(pl.read_parquet(path), radius_m)
            if suffix == ".csv":
                return cls.from_frame(pl.read_csv(path), radius_m)
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise ConfigError(f"map layer {path}: {exc}") from exc
        raise ConfigError(f"map layer {path}: unknown format (use .geojson, .csv or .parquet)")

    def write(self, path: Path) -> None:
        pl.DataFrame(
            {
                "lat1": self.lat1,
                "lon1": self.lon1,
                "lat2": self.lat2,
                "lon2": self.lon2,
                "maxspeed_kmh": self.maxspeed_kmh,
            }
        ).write_parquet(path)


def _geojson_segments(doc: dict) -> pl.DataFrame:
    rows: dict[str, list[float]] = {k: [] for k in ("lat1", "lon1", "lat2", "lon2", "maxspeed_kmh")}
    for feat in doc.get("features", []):
        geom = feat.get("geometry") or {}
        limit = parse_maxspeed((feat.get("properties") or {}).get("maxspeed"))
        lines = (
            [geom.get("coordinates", [])]
            if geom.get("type") == "LineString"
            else geom.get("coordinates", [])
            if geom.get("type") == "MultiLineString"
            else []
        )
        for line in lines:
            for (lon_a, lat_a, *_), (lon_b, lat_b, *_) in zip(line, line[1:], strict=False):
                for k, v in zip(rows, (lat_a, lon_a, lat_b, lon_b, limit), strict=False):
                    rows[k].append(float(v))
    return pl.DataFrame(rows, schema={k: pl.Float64 for k in rows})
