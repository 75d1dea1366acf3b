"""Data-subject rights, audit, actuary pseudonyms and consent (issue 13), on a real (encrypted) DuckDB file."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.engine import MonthFeatures, price_policy
from pricing.rulebook import load_rulebook
from tests import pricing_data
from ubi.adapters import audit, subject
from ubi.adapters import duckdb_store as store
from ubi.adapters.actuary_views import actuary_connection
from ubi.adapters.consent import set_consents
from ubi.adapters.privacy import pseudonym, pseudonym_key
from ubi.common.config import Config, load_config
from ubi.common.errors import PrivacyError

RB = load_rulebook(Config().rulebook)
OCT = date(2026, 10, 1)
ALICE, BOB = ("PL_ALICE_01", "VH_ALICE_01"), ("PL_BOB_02", "VH_BOB_02")


def trip(vehicle: str, i: int, km: float, brakes: int) -> dict:
    """A trip row of ``vehicle`` whose id names the vehicle (the erasure tests look for it in every table)."""
    return pricing_data.trip(i, km, brakes, vehicle=vehicle, trip_id=f"trip_{vehicle}_{i}")


@pytest.fixture
def home(tmp_path, monkeypatch):
    from ubi.common.config import get_config

    monkeypatch.setenv("UBI_HOME", str(tmp_path / "home"))
    for var in ("UBI_DB_KEY", "UBI_PSEUDONYM_KEY", "UBI_CONFIG", "UBI_DB"):
        monkeypatch.delenv(var, raising=False)
    get_config.cache_clear()  # the CLI's config, if an earlier test loaded it, names another home (and audit log)
    yield tmp_path / "home"
    get_config.cache_clear()


@pytest.fixture
def db(home, tmp_path: Path):
    path = tmp_path / "s.duckdb"
    con = store.connect(path)
    for pid, vid in (ALICE, BOB):
        con.execute(
            "INSERT INTO policies (policy_id, vehicle_id, start_date, base_premium, vehicle_group, age_band, region)"
            " VALUES (?, ?, DATE '2025-01-01', 60.00, 'B', '25-39', 'north')",
            [pid, vid],
        )
        con.execute("INSERT INTO protected_attributes VALUES (?, 'f')", [pid])
        con.execute("INSERT INTO claims VALUES (?, ?, DATE '2026-10-12', 1234.50)", [f"CL_{pid}", pid])
        con.execute(
            "INSERT INTO exposure_periods VALUES (?, DATE '2025-01-01', DATE '2026-01-01', 1.0, 9000, 12, 3, 200)",
            [pid],
        )
        store.upsert_trips(con, [trip(vid, i, 25.0, 2 if pid == ALICE[0] else 0) for i in range(8)])
    store.run_month(con, RB, OCT)
    # what the portal writes: ids inside the audit table's actor and detail
    store.audit(con, f"policyholder:{ALICE[0]}", "review_request", {"request_id": "r1", "month": "2026-10"})
    store.audit(con, "clerk", "review_accepted", {"id": "o1", "policy_id": ALICE[0], "trip": f"trip_{ALICE[1]}_3"})
    con.close()
    audit.record("reviewer", "review_accept", ALICE[0], {"objection": "o1"})
    return path


def rows_mentioning(con, needles: list[str]) -> dict[str, int]:
    """Rows of every table (not views) whose text holds any needle: the brute-force search an auditor would run."""
    found = {}
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_catalog = current_database()"
        ).fetchall()
    ]
    for t in tables:
        n = sum(1 for row in con.execute(f'SELECT * FROM "{t}"').fetchall() if any(x in str(row) for x in needles))
        if n:
            found[t] = n
    return found


def test_export_holds_every_row_that_mentions_the_person(db):
    con = store.connect(db, read_only=True)
    data = subject.export(con, ALICE[0], kafka=False)
    trips = [r[0] for r in con.execute("SELECT trip_id FROM trips WHERE vehicle_id = ?", [ALICE[1]]).fetchall()]
    # stored tables under the names readers use (premium_rows holds what the premiums view shows, and more)
    expected = {subject.public(t): n for t, n in rows_mentioning(con, [ALICE[0], ALICE[1], *trips]).items()}
    con.close()
    got = {t: len(rows) for t, rows in data["tables"].items()}
    assert got == expected  # every table that mentions her, every row, nothing of Bob's
    assert set(got) >= {"policies", "protected_attributes", "trips", "premiums", "monthly_features", "claims"}
    assert got["trips"] == 8 and "PL_BOB_02" not in json.dumps(data)
    premium = data["tables"]["premiums"][0]
    assert json.loads(premium["trace"])["premium"] == str(premium["premium"]) and premium["statement"]
    assert [e["action"] for e in data["audit_entries"]] == ["review_request", "review_accepted", "review_accept"]
    assert len(data["tables"]["audit"]) == 2  # found inside text, not by a column name
    assert ALICE[0] not in audit.log_path(load_config()).read_text()  # the chained log holds pseudonyms only
    json.dumps(data)  # machine-readable as it stands


def test_erase_leaves_nothing_linkable_and_survives_a_replay(db, home):
    revoked = []
    con = store.connect(db)
    bob_before = con.execute("SELECT premium, trace FROM premiums WHERE policy_id = ?", [BOB[0]]).fetchall()
    alice_premium = con.execute("SELECT premium FROM premiums WHERE policy_id = ?", [ALICE[0]]).fetchone()[0]
    trips = [r[0] for r in con.execute("SELECT trip_id FROM trips WHERE vehicle_id = ?", [ALICE[1]]).fetchall()]
    key = pseudonym_key()
    pseudonyms = [pseudonym(ALICE[0], key, "policy"), pseudonym(ALICE[1], key, "vehicle")]
    pseudonyms += [pseudonym(t, key, "trip") for t in trips]
    r = subject.erase(con, ALICE[0], "dpo", kafka=False, revoke=lambda v: revoked.extend(v) or v)
    assert revoked == [ALICE[1]] and r.credentials == "MQTT credential revoked"
    assert r.deleted["trips"] == 8 and r.deleted["policies"] == 1 and r.deleted["protected_attributes"] == 1
    assert r.pseudonymised == {"claims": 1, "premiums": 1, "audit.actor": 1, "audit.detail": 1}
    assert rows_mentioning(con, [ALICE[0], ALICE[1], "ALICE", *trips, *pseudonyms]) == {}
    # what accounting needs stays, under a token, without the driving details
    kept = con.execute("SELECT premium, trace, statement FROM premiums WHERE policy_id = ?", [r.token]).fetchall()
    assert kept == [(alice_premium, '{"erased": true}', "")]
    assert con.execute("SELECT premium, trace FROM premiums WHERE policy_id = ?", [BOB[0]]).fetchall() == bob_before
    # Kafka replays her trips: the store refuses them; Bob's still land
    assert store.upsert_trips(con, [trip(ALICE[1], i, 25.0, 2) for i in range(8)]) == 0
    assert store.upsert_trips(con, [trip(BOB[1], 99, 5.0, 0)]) == 1
    assert rows_mentioning(con, [ALICE[0], ALICE[1], "ALICE"]) == {}
    # a second erase is idempotent (same token), an export now finds nobody
    assert subject.erase(con, ALICE[0], "dpo", kafka=False).token == r.token
    with pytest.raises(PrivacyError, match="no policy"):
        subject.export(con, ALICE[0], kafka=False)
    with pytest.raises(PrivacyError, match="no policy"):
        subject.erase(con, "PL_NOBODY", "dpo", kafka=False)
    con.close()
    assert audit.verify().ok and audit.entries_about(ALICE[0])[-1]["action"] == "privacy_erase"
    assert any("audit log" in line for line in r.remains) and any("premiums" in line for line in r.remains)


def test_audit_verify_catches_altered_and_removed_entries(home):
    for i in range(5):
        audit.record("alice", "sql", None, {"query": f"SELECT {i}"})
    v = audit.verify()
    assert v.ok and v.entries == 5 and v.head_seq == 5
    head = f"{v.head_seq}:{v.head_hash}"
    path = audit.log_path(load_config())
    original = path.read_text().splitlines(keepends=True)

    altered = json.loads(original[2])
    altered["detail"]["query"] = "SELECT 'nothing to see'"
    path.write_text("".join(original[:2] + [json.dumps(altered, sort_keys=True) + "\n"] + original[3:]))
    v = audit.verify()
    assert not v.ok and any("line 3" in p and "altered" in p for p in v.problems)

    path.write_text("".join(original[:2] + original[3:]))  # a middle entry removed
    v = audit.verify()
    assert not v.ok and any("line 3" in p and "removed" in p for p in v.problems)

    path.write_text("".join(original[:4]))  # the last entry removed: only the kept head shows it
    assert audit.verify().ok and not audit.verify(expect_head=head).ok
    path.write_text("".join(original))
    assert audit.verify(expect_head=head).ok


def test_audit_cli_and_sql_are_recorded(home, db, capsys):
    from ubi.cli.main import main

    assert main(["sql", "--db", str(db), "SELECT count(*) FROM trips"]) == 0
    assert audit.verify().ok
    last = audit.log_path(load_config()).read_text().splitlines()[-1]
    assert json.loads(last)["action"] == "sql" and "count(*)" in json.loads(last)["detail"]["query"]
    assert main(["audit", "verify"]) == 0
    path = audit.log_path(load_config())
    path.write_text(path.read_text().replace('"sql"', '"nothing"'))
    capsys.readouterr()
    assert main(["audit", "verify"]) == 1 and "TAMPERED" in capsys.readouterr().out


def test_actuary_sql_sees_pseudonyms_only(db, capsys):
    con, tables = actuary_connection(db)
    assert "premiums" in tables and "protected_attributes" not in tables
    rows = con.execute("SELECT policy_ps, premium FROM premiums ORDER BY policy_ps").fetchall()
    key = pseudonym_key()
    assert {r[0] for r in rows} == {pseudonym(ALICE[0], key, "policy"), pseudonym(BOB[0], key, "policy")}
    assert "policy_id" not in [d[0] for d in con.execute("SELECT * FROM premiums").description]
    everything = str([con.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    assert "ALICE" not in everything and "BOB" not in everything
    for forbidden in ("SELECT * FROM protected_attributes", f"ATTACH '{db}' AS again"):
        with pytest.raises(Exception):  # noqa: B017 - a catalog or a permission error, either refuses
            con.execute(forbidden)
    # the same policy keeps its pseudonym across tables, so actuaries can still join
    j = con.execute("SELECT count(*) FROM premiums JOIN v_experience USING (policy_ps)").fetchone()[0]
    assert j == con.execute("SELECT count(*) FROM v_experience").fetchone()[0] == 4  # 2 policies x 2 periods
    from ubi.cli.main import main

    assert main(["sql", "--actuary", "--db", str(db), "SELECT policy_ps FROM premiums"]) == 0
    assert "ps_" in capsys.readouterr().out


def test_consent_switch_changes_features_and_premium_as_the_rulebook_says(db):
    con = store.connect(db)
    before = con.execute("SELECT premium, trace FROM premiums WHERE policy_id = ?", [ALICE[0]]).fetchone()
    assert json.loads(before[1])["factors"][0]["band"] != "none"
    set_consents(con, ALICE[0], {"driving_style": False})
    store.run_month(con, RB, OCT)
    premium, trace, statement = con.execute(
        "SELECT premium, trace, statement FROM premiums WHERE policy_id = ?", [ALICE[0]]
    ).fetchone()
    t = json.loads(trace)
    steps = {s["feature"]: s for s in t["factors"]}
    assert steps["harsh_brakes_per_100km"] == {
        "feature": "harsh_brakes_per_100km",
        "label": steps["harsh_brakes_per_100km"]["label"],
        "value": None,
        "band": None,
        "relativity": 1.0,
        "consent": False,
    }
    assert t["features"]["harsh_brakes"] is None  # not shown either
    label = steps["harsh_brakes_per_100km"]["label"].capitalize()
    assert f"{label}: not used for your price, because you have not agreed to its use." in statement
    assert "8.00 per 100 km" not in statement
    # by hand: the rulebook with her brakes and starts at relativity 1
    both = frozenset({"harsh_brakes_per_100km", "harsh_accels_per_100km"})
    f = MonthFeatures(8, 200.0, 8 * 0.5, 16, 0, withheld=both)
    assert premium == price_policy(RB, Decimal("60.00"), None, f).premium
    assert premium != before[0]  # 8 brakes per 100 km no longer surcharged
    bob = con.execute("SELECT statement FROM premiums WHERE policy_id = ?", [BOB[0]]).fetchone()[0]
    assert "not agreed" not in bob
    with pytest.raises(PrivacyError, match="unknown consent purpose"):
        set_consents(con, ALICE[0], {"tracking": True})
    con.close()


def test_no_precise_coordinate_survives_in_duckdb_or_an_export(home, tmp_path):
    """A simulated day through score-file into the store, priced and exported: no value anywhere equals a GPS
    coordinate to 5 decimals (about 1 m), neither in a table (numbers and text) nor in the export."""
    import re

    import polars as pl

    from ubi.cli.main import main

    sim = tmp_path / "sim"
    assert main(["simulate", "--offline", "--vehicles", "2", "--days", "1", "--seed", "3", "--out", str(sim)]) == 0
    out = sim / "trips.parquet"
    assert main(["score-file", str(sim / "gps.parquet"), "--imu", str(sim / "imu.parquet"), "--out", str(out)]) == 0
    gps = pl.read_parquet(sim / "gps.parquet").drop_nulls(["lat", "lon"])
    coords = {f"{x:.5f}" for x in gps["lat"].to_list() + gps["lon"].to_list()}
    assert len(coords) > 1000
    db = tmp_path / "c.duckdb"
    con = store.connect(db)
    store.load_policies(con, sim / "policies.parquet")
    trips = pl.read_parquet(out)
    assert store.upsert_trips(con, trips.to_dicts()) == trips.height > 0
    month = date.fromtimestamp(trips["start_ms"][0] / 1000).replace(day=1)
    store.run_month(con, RB, month)
    policy = con.execute("SELECT policy_id FROM policies LIMIT 1").fetchone()[0]
    exported = json.dumps(subject.export(con, policy, kafka=False))
    number = re.compile(r"-?\d+\.\d{5,}")

    def precise(text: str) -> set[str]:
        return {f"{float(m):.5f}" for m in number.findall(text)} & coords

    tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    found = {t: precise(str(con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
    con.close()
    assert {t: v for t, v in found.items() if v} == {} and precise(exported) == set()


def test_actuary_reports_name_nobody_and_are_audited(db, tmp_path, monkeypatch, capsys):
    from ubi.cli.main import main
    from ubi.common.config import get_config

    monkeypatch.setenv("UBI_DB", str(db))
    get_config.cache_clear()
    try:
        out = tmp_path / "whatif"
        rb = str(Config().rulebook)
        assert main(["actuary", "whatif", "--rulebook", rb, "--month", "2026-10", "--out", str(out)]) == 0
    finally:
        get_config.cache_clear()
    files = list(out.rglob("*"))
    assert any(f.suffix == ".csv" for f in files)
    for f in files:
        if f.is_file():
            text = f.read_bytes()
            assert b"ALICE" not in text and b"BOB" not in text, f
    assert "ALICE" not in capsys.readouterr().out
    actions = [json.loads(line)["action"] for line in audit.log_path(load_config()).read_text().splitlines()]
    assert actions[-1] == "actuary_whatif" and audit.verify().ok
