"""Run every benchmark with its default size, one after the other, each in its own process (``make bench``).

Each script measures its own baseline in the same run and prints ratios; this only sequences them and says which
failed. Needs the local stack for the bridge and scorer benches (``make bench`` starts it).

    .venv/bin/python bench/run_all.py [--only scoring,pricing]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["scoring", "simulator", "pricing", "bridge", "scorer", "realdata", "sim_devices"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    args = ap.parse_args()
    names = args.only.split(",") if args.only else BENCHES
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"== {name}: no bench/{name}.py, skipped")
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"== {name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
