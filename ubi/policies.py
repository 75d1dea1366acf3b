"""Load policy administration data (from the insurer's system, or the simulator) into DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ubi import store
from ubi.errors import StoreError


def load_policies(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Upsert policies from Parquet; protected attributes go to their own table (fairness audits only)."""
    src = str(path)
    dupes = con.execute("""SELECT vehicle_id FROM read_parquet(?) GROUP BY 1 HAVING count(*) > 1 LIMIT 5""",
                        [src]).fetchall()
    if dupes:
        raise StoreError(f"{src}: vehicles on more than one policy: {[d[0] for d in dupes]}")
    with store.transaction(con):
        con.execute("""
            INSERT OR REPLACE INTO policies
            SELECT policy_id, vehicle_id, start_date, base_premium, vehicle_group, age_band, region
            FROM read_parquet(?)""", [src])
        con.execute("""
            INSERT OR REPLACE INTO protected_attributes
            SELECT policy_id, gender FROM read_parquet(?)""", [src])
        n = con.execute("SELECT count(*) FROM read_parquet(?)", [src]).fetchone()[0]
        store.audit(con, "ubi", "load_policies", {"path": src, "rows": n})
    return n
