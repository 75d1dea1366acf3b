"""Per-message and per-trip figures for docs/capacity.md that the other benchmarks do not give.

    .venv/bin/python bench/capacity.py [--trips 100000]

- size of a 1 s and a 10 s telemetry batch (JSON as devices send it, noisy values at the contract's precision)
  and how well 200 of them compress together (zlib level 6; Kafka compresses per record batch);
- the cost of validating (the bridge's ``decode``) and of ``decode_trusted`` (the scorer's) for a 10 s batch
  relative to a 1 s batch, measured interleaved in the same run (the ratio is what the capacity estimate uses:
  absolute times move with the load on this shared machine);
- the store's write rate: ``upsert_trips`` in 5,000-row transactions (the store's poll) into a fresh DuckDB file
  opened as the store opens it, and the file's bytes per trip.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.contract import decode, decode_trusted, encode_telemetry  # noqa: E402
from ubi.common.config import Config  # noqa: E402
from ubi.common.messages import TelemetryBatch  # noqa: E402

T0 = 1_795_000_000_000


def batch(rng: np.random.Generator, secs: int) -> TelemetryBatch:
    """A 1 Hz GPS + 10 Hz accelerometer batch with noisy values rounded as in the contract's example."""
    t = T0 + np.arange(secs) * 1000
    m = secs * 10
    return TelemetryBatch(
        "VH000001",
        5,
        int(t[-1]),
        t.astype(np.int64),
        np.round(52.37 + rng.normal(0, 1e-3, secs), 6),
        np.round(4.89 + rng.normal(0, 1e-3, secs), 6),
        np.round(13.4 + rng.normal(0, 1, secs), 2),
        np.round(rng.uniform(0, 360, secs), 1),
        np.round(rng.uniform(2, 8, secs), 1),
        int(t[0]),
        10,
        np.round(rng.normal(0, 0.5, m), 2),
        np.round(rng.normal(0, 0.3, m), 2),
        np.round(9.81 + rng.normal(0, 0.2, m), 2),
        None,
    )


def messages() -> None:
    cfg = Config()
    rng = np.random.default_rng(1)
    raw = {}
    for secs in (1, 10):
        many = [encode_telemetry(batch(rng, secs)) for _ in range(200)]
        blob = b"".join(many)
        raw[secs] = many[0]
        ratio = len(blob) / len(zlib.compress(blob, 6))
        print(f"{secs:>2} s batch: {len(many[0]):,} bytes; 200 together compress {ratio:.2f}x")
    spent = {("validate", 1): 0.0, ("validate", 10): 0.0, ("trusted", 1): 0.0, ("trusted", 10): 0.0}
    for _ in range(20):  # interleaved, so both sizes see the same load
        for secs in (1, 10):
            now = T0 + secs * 1000 + 500
            t = time.perf_counter()
            for _ in range(200):
                decode("VH000001", "telemetry", raw[secs], now, cfg.ingest, build=False)
            spent[("validate", secs)] += time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(200):
                decode_trusted("VH000001", "telemetry", raw[secs], now, cfg.ingest)
            spent[("trusted", secs)] += time.perf_counter() - t
    for what in ("validate", "trusted"):
        one, ten = spent[(what, 1)] / 4000 * 1e6, spent[(what, 10)] / 4000 * 1e6
        print(f"{what:<9} 1 s: {one:.1f} µs, 10 s: {ten:.1f} µs, ratio {ten / one:.2f}")


def store_rate(trips: int) -> None:
    from tests.test_store_stage import row
    from ubi.adapters import duckdb_store as store

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store.duckdb"
        con = store.connect(path)
        t = time.perf_counter()
        n = 0
        for b in range(trips // 5000):
            rows = []
            for i in range(5000):
                r = row(b * 5000 + i)
                r["trip_id"], r["vehicle_id"] = f"t{b * 5000 + i:08d}", f"V{i:05d}"
                rows.append(r)
            n += store.upsert_trips(con, rows)
        secs = time.perf_counter() - t
        con.execute("CHECKPOINT")
        con.close()
        print(
            f"store: {n:,} trips in {secs:.1f} s = {n / secs:,.0f} trips/s; file {path.stat().st_size / n:.0f} B a trip"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trips", type=int, default=100_000)
    a = ap.parse_args()
    messages()
    store_rate(a.trips)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
