"""Real recordings (../shared/realdata, read by tests/realdata.py) through score_frames: per recording, IMU
acceptance with reasons, graded events per 100 km (moderate/harsh/severe) and score ties.

    .venv/bin/python bench/realdata.py
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import realdata  # noqa: E402
from ubi.common.config import ScoringConfig  # noqa: E402
from ubi.stages.score_file import imu_summary, score_frames  # noqa: E402


def main() -> int:
    if not realdata.available():
        print(f"no real recordings at {realdata.RD}")
        return 1
    cfg = ScoringConfig()
    print(
        "| recording | trips | km | IMU used / rejected | brake m/h/s | accel m/h/s | corner m/h/s | per 100 km "
        "(all / harsh+) | score = 100 | distinct scores | artefacts |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in realdata.RECORDINGS:
        rows = score_frames(*realdata.frames(name), cfg)
        km = sum(r["distance_km"] for r in rows)
        used = sum(r["imu_status"] in ("vehicle_frame", "rotated") for r in rows)
        rej = Counter(r["imu_reason"].split(":")[0] for r in rows if r["imu_status"] == "rejected")
        g = {k: [sum(r[f"harsh_{k}_grades"][i] for r in rows) for i in range(3)] for k in ("brake", "accel", "corner")}
        total = sum(sum(x) for x in g.values())
        harsh = sum(x[1] + x[2] for x in g.values())
        per = f"{total * 100 / km:.0f} / {harsh * 100 / km:.0f}" if km else "-"
        imu = (
            "-"
            if all(r["imu_status"] == "none" for r in rows)
            else f"{used} / {len(rows) - used - sum(r['imu_status'] == 'none' for r in rows)}"
        )
        print(
            f"| {name} | {len(rows)} | {km:.1f} | {imu}{' ' + str(dict(rej)) if rej else ''} | "
            + " | ".join("/".join(map(str, g[k])) for k in ("brake", "accel", "corner"))
            + f" | {per} | {sum(r['score'] == 100 for r in rows)} | {len({r['score'] for r in rows})} | "
            f"{sum(r['speed_artefacts'] for r in rows)} |"
        )
        print(f"<!-- {name}: {imu_summary(rows)} -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
