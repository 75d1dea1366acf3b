"""The chaos harness's short version (issue 11; `make chaos` runs 20): one run of a small fleet while stages,
Mosquitto and Kafka are SIGKILLed and poison and a hostile device arrive, compared with a clean run. It starts its
own brokers on other ports (bench/chaos.py), so the shared stack is not touched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_chaos_run_loses_duplicates_and_changes_nothing(stack, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    import chaos  # bench/chaos.py

    for var in ("UBI_CONFIG", "UBI_DB", "UBI_HOME"):
        monkeypatch.delenv(var, raising=False)
    home = str(tmp_path / "chaos")  # ports apart from `make chaos`'s, so both can run on one machine
    rc = chaos.main(["--runs", "1", "--short", "--home", home, "--mqtt-port", "1895", "--kafka-port", "9196"])
    summary = json.loads((tmp_path / "chaos" / "chaos-summary.json").read_text())
    [run] = summary["runs"]
    assert summary["reference_trips"] >= 10 and run["trips"] == summary["reference_trips"]
    assert len(run["faults"]) == 6
    assert summary["total"] == {"lost": 0, "extra": 0, "wrongly_complete": 0, "differ": 0, "premiums_differ": 0}
    assert rc == 0
