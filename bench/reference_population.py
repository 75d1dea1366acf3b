"""Build scoring/reference_population.json: per score part, 101 quantile knots of its value over a reference
population of trips (scoring/population.py reads them). Reproducible: the real recordings in ../shared/realdata
(tests/realdata.py; every trip of every recording except the duplicate channels of the same drives, which would
count those drives twice) plus a seeded simulator fleet. Only the knots are written, no trip and no raw data.

    .venv/bin/python bench/reference_population.py [--out scoring/reference_population.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.population import DEFAULT_TABLE, PARTS, part_values  # noqa: E402
from tests import realdata  # noqa: E402
from ubi.common.config import ScoringConfig  # noqa: E402
from ubi.stages.score_file import messages_to_frames, score_frames  # noqa: E402

# One channel per real drive: comma2k19-can, ikhyd-user and ikhyd-obd are other channels of drives already in
REAL = ("driveplotr-nds", "quat-orient", "ndsbr", "comma2k19", "ikhyd")
# the calibrated simulator (manoeuvres drawn from the real distributions) with every device class it models
SIM = {
    "vehicles": 12,
    "days": 7,
    "seed": 42,
    "sensor_faults": True,
    "motion": "calibrated",
    "device_mix": "phone_raw:1,phone_linear:1,obd:1,oem:1",
}
SIM_CLASS = {"ideal": "oem", "phone_raw": "phone", "phone_linear": "phone", "obd": "dongle", "oem": "oem"}


def simulated(cfg: ScoringConfig) -> list[dict]:
    """The simulated fleet through score-file, each vehicle scored with its device class's profile."""
    from simulator.fleet import FleetSpec, device_profile, make_trips, vehicle_ids
    from simulator.run import vehicle_stream

    spec = FleetSpec(**SIM)  # type: ignore[arg-type]
    ids = vehicle_ids(spec.vehicles)
    msgs = [m for v in ids for m in vehicle_stream(spec, make_trips(spec, v))]
    classes = {v: SIM_CLASS[device_profile(spec, v).name] for v in ids}
    return score_frames(*messages_to_frames(msgs), replace(cfg, device_classes=classes))


def build(cfg: ScoringConfig) -> dict:
    with tempfile.TemporaryDirectory() as d:  # the score is not needed here: an empty table keeps it defined
        empty = Path(d) / "empty.json"
        empty.write_text(json.dumps({"quantiles": {}}))
        c = replace(cfg, reference_population=str(empty))
        rows = {name: score_frames(*realdata.frames(name), c) for name in REAL}
        rows["simulator"] = simulated(c)
    values: dict[str, list[float]] = {p: [] for p in PARTS}
    for rs in rows.values():
        for r in rs:
            for p, x in part_values(r, cfg).items():
                if x is not None:
                    values[p].append(float(x))
    levels = np.linspace(0.0, 1.0, 101)
    return {
        "meta": {
            "what": "101 quantile knots per score part (scoring/population.py)",
            "built_by": "bench/reference_population.py",
            "real_trips": {k: len(v) for k, v in rows.items() if k != "simulator"},
            "simulator_trips": len(rows["simulator"]),
            "simulator_classes": dict(Counter(r["device_class"] for r in rows["simulator"])),
            "simulator": SIM,
            "values_per_part": {p: len(v) for p, v in values.items()},
        },
        "quantiles": {
            p: [round(float(x), 6) for x in np.quantile(np.array(v), levels)] if v else [] for p, v in values.items()
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_TABLE)
    a = ap.parse_args()
    if not realdata.available():
        print(f"no real recordings at {realdata.RD}")
        return 1
    table = build(ScoringConfig())
    a.out.write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps(table["meta"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
