"""Brute-force twin of scoring.maplayer.lookup_kernel: every fix against every segment."""

from __future__ import annotations

import math

EARTH_R = 6_371_000.0


def limits_reference(lat: list[float], lon: list[float], seg: list[tuple[float, float, float, float, float]],
                     radius_m: float) -> list[float]:
    if not seg:
        return [math.nan] * len(lat)
    lat0 = sum(s[0] + s[2] for s in seg) / (2 * len(seg))
    ky = EARTH_R * math.pi / 180.0
    kx = ky * math.cos(math.radians(lat0))
    out = []
    for la, lo in zip(lat, lon):
        px, py = lo * kx, (la - lat0) * ky
        best, limit, best_i = radius_m * radius_m, math.nan, len(seg)
        for i, (lat1, lon1, lat2, lon2, lim) in enumerate(seg):
            ax, ay, bx, by = lon1 * kx, (lat1 - lat0) * ky, lon2 * kx, (lat2 - lat0) * ky
            dx, dy = bx - ax, by - ay
            L2 = dx * dx + dy * dy
            u = min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / L2)) if L2 > 0 else 0.0
            d2 = (ax + u * dx - px) ** 2 + (ay + u * dy - py) ** 2
            if d2 < best or (d2 == best and i < best_i):
                best, limit, best_i = d2, lim, i
        out.append(limit)
    return out
