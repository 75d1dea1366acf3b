"""Real recordings (../shared/realdata, read by tests/realdata.py) through score_frames: per recording, IMU
acceptance with reasons, graded events per 100 km (moderate/harsh/severe) and score ties.

    .venv/bin/python bench/realdata.py              # per recording: IMU, graded events, ties
    .venv/bin/python bench/realdata.py --reference  # distance vs CAN / OBD speed, IMU acceptance per recording
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

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


# ---- score ranking (issue 12, the calibrated score): ties and spread, the scorer-4 formula beside it ----


def _v4_score(r: dict) -> float:
    """The scorer-4 trip score from a row (its formula and defaults: caps, x / (1 + x) speeding), for comparison."""
    km = r["distance_km"]
    per = (lambda n: n * 100.0 / km) if km >= 1.0 else (lambda n: None)
    rep = r.get("phone_reported_s") or 0.0
    dist = km or 0.0
    parts = [
        (25.0, 0.10, (r.get("phone_s") or 0.0) / rep if rep > 0 else None),
        (20.0, 10.0, per(r["harsh_brakes"])),
        (10.0, 10.0, per(r["harsh_accels"])),
        (10.0, 10.0, per(r["harsh_corners"] or 0)),
        (10.0, 0.5, r["night_km"] / dist if dist > 0 else None),
    ]
    lost = sum(w * min(1.0, max(0.0, x) / cap) for w, cap, x in parts if x is not None)
    x = r.get("speeding_extra_risk")
    lost += 25.0 * x / (1.0 + x) if x else 0.0
    return round(max(0.0, 100.0 - lost), 3)


def ranking() -> None:
    """Per recording: trips, trips at exactly 100 and distinct scores (scorer 4 -> now), score spread now, and
    which intensity source the 1 Hz channel used; the same drive's channels side by side show device invariance."""
    from ubi.common.config import ScoringConfig

    cfg = ScoringConfig()
    print(
        "\n| recording | trips | at 100 (v4 -> now) | distinct (v4 -> now) | score now min / median / max | "
        "intensity source | largest parts lost (mean points) |"
    )
    print("|---|---|---|---|---|---|---|")
    every_old: list[float] = []
    every_new: list[float] = []
    for name in realdata.RECORDINGS:
        rows = score_frames(*realdata.frames(name), cfg)
        old = [_v4_score(r) for r in rows]
        new = [r["score"] for r in rows]
        every_old += old
        every_new += new
        src = Counter(r["intensity_source"] for r in rows)
        lost = Counter()
        for r in rows:
            for p, d in r_parts(r).items():
                lost[p] += d["points_lost"] / len(rows)
        top = ", ".join(f"{p} {v:.1f}" for p, v in lost.most_common(3))
        print(
            f"| {name} | {len(rows)} | {sum(x == 100 for x in old)} -> {sum(x == 100 for x in new)} | "
            f"{len(set(old))} -> {len(set(new))} | {min(new):.1f} / {sorted(new)[len(new) // 2]:.1f} / "
            f"{max(new):.1f} | {dict(src)} | {top} |"
        )
    q_old, q_new = np.percentile(every_old, [25, 50, 75]), np.percentile(every_new, [25, 50, 75])
    print(
        f"\nall {len(every_new)} trips: exactly 100 on {sum(x == 100 for x in every_new)} (scorer 4: "
        f"{sum(x == 100 for x in every_old)}), {len(set(every_new))} distinct scores ({len(set(every_old))}), "
        f"quartiles {' / '.join(f'{x:.0f}' for x in q_new)} (scorer 4: {' / '.join(f'{x:.0f}' for x in q_old)})"
    )


def r_parts(r: dict) -> dict:
    import json

    return json.loads(r["score_parts"]) if isinstance(r["score_parts"], str) else r["score_parts"]


# --- distance against a reference speed, IMU acceptance per recording (issue 12 figures; kept apart from main) ---
def distance_vs_reference(cfg: ScoringConfig | None = None) -> list[tuple[str, float, float]]:
    """(what, our distance km, reference km): the same drive scored from its GNSS / phone speed and from the car's
    own speed (comma2k19: u-blox vs CAN; ikhyd trip 2: iPhone GPS vs the OBD-II dongle beside it)."""
    cfg = cfg or ScoringConfig()
    km = {n: score_frames(*realdata.frames(n), cfg) for n in ("comma2k19", "comma2k19-can", "ikhyd-obd")}
    obd = km["ikhyd-obd"]
    g, i = realdata.frames("ikhyd")  # both iPhone trips run together when cut by motion: keep trip 2's window
    lo, hi = int(realdata.frames("ikhyd-obd")[0]["t_ms"].min()), int(realdata.frames("ikhyd-obd")[0]["t_ms"].max())
    keep = pl.col("t_ms").is_between(lo, hi)
    phone = score_frames(g.filter(keep), None if i is None else i.filter(keep), cfg)
    return [
        (
            "comma2k19 u-blox GNSS vs CAN",
            sum(r["distance_km"] for r in km["comma2k19"]),
            sum(r["distance_km"] for r in km["comma2k19-can"]),
        ),
        ("ikhyd iPhone GPS vs OBD-II", sum(r["distance_km"] for r in phone), sum(r["distance_km"] for r in obd)),
    ]


def imu_acceptance(cfg: ScoringConfig | None = None) -> list[tuple[str, int, int, dict]]:
    """(recording, trips with an IMU, trips where it was used, {reason: count} of the rejected)."""
    cfg = cfg or ScoringConfig()
    out = []
    for name in realdata.RECORDINGS:
        gps, imu = realdata.frames(name)
        if imu is None:
            continue
        rows = score_frames(gps, imu, cfg)
        has = [r for r in rows if r["imu_status"] != "none"]
        used = sum(r["imu_status"] in ("vehicle_frame", "rotated") for r in has)
        rej = Counter(r["imu_reason"].split(":")[0] for r in has if r["imu_status"] == "rejected")
        out.append((name, len(has), used, dict(rej)))
    return out


def report_reference_and_acceptance() -> None:
    print("\n| drive | our distance | reference | difference |\n|---|---|---|---|")
    for what, ours, ref in distance_vs_reference():
        print(f"| {what} | {ours:.3f} km | {ref:.3f} km | {100 * (ours - ref) / ref:+.1f}% |")
    print("\n| recording | trips with IMU | IMU used | rejected (reasons) |\n|---|---|---|---|")
    for name, n, used, rej in imu_acceptance():
        print(f"| {name} | {n} | {used} ({100 * used / n:.0f}%) | {n - used} {rej or ''} |")


if __name__ == "__main__":
    if "--reference" in sys.argv:
        report_reference_and_acceptance()
        raise SystemExit(0)
    rc = main()
    if rc == 0:
        ranking()
    raise SystemExit(rc)
