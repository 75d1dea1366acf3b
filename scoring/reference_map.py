"""Brute-force twin of scoring.maplayer.lookup_kernel: every fix against every segment."""

from __future__ import annotations

import math

EARTH_R = 6_371_000.0


def limits_reference(
    lat: list[float],
    lon: list[float],
    seg: list[tuple[float, float, float, float, float]],
    radius_m: float,
    heading: list[float] | None = None,
    max_diff: float = 45.0,
) -> list[float]:
    if not seg:
        return [math.nan] * len(lat)
    lat0 = sum(s[0] + s[2] for s in seg) / (2 * len(seg))
    ky = EARTH_R * math.pi / 180.0
    kx = ky * math.cos(math.radians(lat0))
    out = []
    heading = heading if heading is not None else [math.nan] * len(lat)
    for la, lo, hd in zip(lat, lon, heading, strict=False):
        px, py = lo * kx, (la - lat0) * ky
        best, limit, best_i = radius_m * radius_m, math.nan, len(seg)
        for i, (lat1, lon1, lat2, lon2, lim) in enumerate(seg):
            ax, ay, bx, by = lon1 * kx, (lat1 - lat0) * ky, lon2 * kx, (lat2 - lat0) * ky
            if not math.isnan(hd) and not (ax == bx and ay == by):
                diff = abs((hd - math.degrees(math.atan2(bx - ax, by - ay))) % 180.0)
                if min(diff, 180.0 - diff) > max_diff:
                    continue
            dx, dy = bx - ax, by - ay
            L2 = dx * dx + dy * dy
            u = min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / L2)) if L2 > 0 else 0.0
            d2 = (ax + u * dx - px) ** 2 + (ay + u * dy - py) ** 2
            if d2 < best or (d2 == best and i < best_i):
                best, limit, best_i = d2, lim, i
        out.append(limit)
    return out
