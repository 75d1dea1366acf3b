"""The actuaries' view of the store: the rating and experience tables with keyed pseudonyms instead of policy,
vehicle, trip and claim ids (``ubi sql --actuary``).

The tables are copied, pseudonymised, into a private in-memory database and the store is detached before the query
runs, so an actuary's SQL cannot reach the ids, the protected attributes, the audit trail or any table not listed
here (a table added later stays out until it is listed). The pseudonyms are HMAC-SHA256 under the pseudonym key
(``privacy.pseudonym_key_env`` or ``<home>/secrets/pseudonym.key``), so they are stable across queries and months
(an actuary can follow a policy over time) but lead back to nobody without the key; no mapping table is stored,
billing keeps the real ids in ``policies``. Rotating the key (docs/privacy.md) changes every pseudonym.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ubi.adapters.privacy import DB_ALIAS, hmac_pads, open_database, pseudonym_key, pseudonym_sql
from ubi.common.config import Config, load_config

# table or view -> {id column: pseudonym kind}, and columns left out (they can carry ids or personal text)
VIEWS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "trips": ({"trip_id": "trip", "vehicle_id": "vehicle"}, ()),
    "policies": ({"policy_id": "policy", "vehicle_id": "vehicle"}, ()),
    "monthly_features": ({"policy_id": "policy"}, ()),
    "premiums": ({"policy_id": "policy"}, ("trace", "statement")),
    "claims": ({"claim_id": "claim", "policy_id": "policy"}, ()),
    "exposure_periods": ({"policy_id": "policy"}, ()),
    "rulebooks": ({}, ()),
    "v_experience": ({"policy_id": "policy"}, ()),
    "v_policy_month": ({"policy_id": "policy"}, ()),
    "v_vehicle_day": ({"vehicle_id": "vehicle"}, ()),
}


def actuary_connection(db: Path | str, cfg: Config | None = None) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """An in-memory database holding only the pseudonymised tables; returns it and the table names."""
    cfg = cfg or load_config()
    pads = hmac_pads(pseudonym_key(cfg))
    con = open_database(db, read_only=True, cfg=cfg)
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    made = []
    for name, (ids, dropped) in VIEWS.items():
        if name not in present:
            continue
        cols = [r[0] for r in con.execute(f'DESCRIBE {DB_ALIAS}."{name}"').fetchall()]
        select = []
        for c in cols:
            if c in dropped:
                continue
            if c in ids:
                select.append(f'{pseudonym_sql(f"{DB_ALIAS}.{name}.{c}", ids[c])} AS "{c.removesuffix("_id")}_ps"')
            else:
                select.append(f'"{c}"')
        sql = f'CREATE TABLE memory.main."{name}" AS SELECT {", ".join(select)} FROM {DB_ALIAS}."{name}"'
        con.execute(sql, pads if "$ipad" in sql else None)
        made.append(name)
    con.execute("USE memory")
    con.execute(f"DETACH {DB_ALIAS}")
    # no files, no ATTACH, no settings changed from here on: the query sees these tables and nothing else
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, made
