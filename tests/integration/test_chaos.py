"""The chaos harness's short version (issue 11; `make chaos` runs 20): one run of a small fleet while stages,
Mosquitto and Kafka are SIGKILLed and poison and a hostile device arrive, compared with a clean run. It starts its
own brokers on other ports (bench/chaos.py), so the shared stack is not touched, and runs as its own process, so
its environment (UBI_HOME, keys, cached configuration) never leaks into the other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_chaos_run_loses_duplicates_and_changes_nothing(stack, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("UBI_CONFIG", "UBI_DB", "UBI_HOME")}
    home = tmp_path / "chaos"  # ports apart from `make chaos`'s, so both can run on one machine
    args = ["--runs", "1", "--short", "--home", str(home), "--mqtt-port", "1895", "--kafka-port", "9196"]
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "chaos.py"), *args], env=env, timeout=1200)
    summary = json.loads((home / "chaos-summary.json").read_text())
    [one] = summary["runs"]
    assert summary["reference_trips"] >= 10 and one["trips"] == summary["reference_trips"]
    assert len(one["faults"]) == 6
    assert summary["total"] == {"lost": 0, "extra": 0, "wrongly_complete": 0, "differ": 0, "premiums_differ": 0}
    assert run.returncode == 0
