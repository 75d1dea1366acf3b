"""A pricing run writes its rows where they stay (``premium_rows``, ``feature_rows``) under its run id and publishes
the month by pointing it at them (``published_runs``); ``premiums`` and ``monthly_features`` are views over the
published runs. What must hold: no reader sees a row before the publish, a run that dies leaves nothing visible
and its rows are deleted, a re-run replaces the month and removes the rows it replaced, and a file of schema
version 1 (premiums and monthly_features as tables) upgrades in place with every row and reader unchanged."""

from __future__ import annotations

from datetime import date

import pytest

import pricing.monthly as monthly
import ubi.adapters.book_stream as book_stream
from pricing.rulebook import load_rulebook
from simulator.bulk import load_bulk
from ubi.adapters import duckdb_store as store
from ubi.adapters.privacy import DB_ALIAS
from ubi.common.config import Config

MONTH, NEXT = date(2026, 10, 1), date(2026, 11, 1)
POLICIES = 900
COLUMNS = "policy_id, month, premium, uncapped_premium, telematics_factor, credibility, cap_applied, trace, statement"


@pytest.fixture
def con(tmp_path):
    c = store.connect(tmp_path / "p.duckdb")
    load_bulk(c, POLICIES, 6, MONTH, seed=11, chunk=POLICIES)
    yield c
    c.close()


def month_rows(con, month: date = MONTH) -> list[tuple]:
    return con.execute(f"SELECT {COLUMNS} FROM premiums WHERE month = ? ORDER BY policy_id", [month]).fetchall()


def stored(con, table: str = "premium_rows") -> dict[str, int]:
    return dict(con.execute(f"SELECT run_id, count(*) FROM {table} GROUP BY ALL").fetchall())


def test_rows_being_written_are_not_seen_until_the_run_is_published(con, monkeypatch):
    rb = load_rulebook(Config().rulebook)
    store.run_month(con, rb, MONTH, actor="first")
    first = month_rows(con)
    monkeypatch.setattr(monthly, "CHUNK", 200)
    monkeypatch.setattr(book_stream, "STAGE_ROWS", 200)  # every chunk its own committed INSERT
    reader = con.cursor()  # another connection to the same database: sees what is committed
    reader.execute(f"USE {DB_ALIAS}")
    seen: list[tuple[int, int, int]] = []

    def progress(done: int, total: int) -> None:
        visible = reader.execute("SELECT count(*), sum(premium) FROM premiums WHERE month = ?", [MONTH]).fetchone()
        written = reader.execute("SELECT count(*) FROM premium_rows WHERE month = ?", [MONTH]).fetchone()[0]
        seen.append((done, visible[0], written))
        assert month_rows(reader) == first  # the published month, whatever has been written beside it

    summary = store.run_month(con, rb, MONTH, actor="second", progress=progress)
    # while the rows were written they were in premium_rows (committed) and not in premiums
    assert any(written > POLICIES for _, _, written in seen)
    assert all(visible == POLICIES for _, visible, _ in seen)
    assert len(seen) == POLICIES // 200 + 1
    assert month_rows(con) == first  # same book and rulebook: the same month, to the character
    assert con.execute("SELECT DISTINCT run_id FROM premiums").fetchall() == [(summary.run_id,)]
    # the replaced run's rows are gone from storage; the month shows the new run only
    assert stored(con) == {summary.run_id: POLICIES} and stored(con, "feature_rows") == {summary.run_id: POLICIES}
    assert con.execute("SELECT month, run_id FROM published_runs").fetchall() == [(MONTH, summary.run_id)]


def test_a_killed_runs_rows_are_ignored_by_readers_and_deleted_by_the_next_run(con):
    rb = load_rulebook(Config().rulebook)
    first = store.run_month(con, rb, MONTH, actor="first")
    before = month_rows(con)
    features = con.execute("SELECT * FROM monthly_features ORDER BY policy_id").fetchall()
    # what a run killed half-way leaves: some rows under a run id that was never published
    con.execute("""INSERT INTO premium_rows SELECT * REPLACE ('killed' AS run_id, premium * 2 AS premium)
                   FROM premium_rows WHERE policy_id < 'PB00000300'""")
    con.execute("INSERT INTO feature_rows SELECT * REPLACE ('killed' AS run_id, 0 AS trips) FROM feature_rows")
    assert month_rows(con) == before
    assert con.execute("SELECT * FROM monthly_features ORDER BY policy_id").fetchall() == features
    v = con.execute("SELECT count(*), sum(premium) FROM v_policy_month WHERE month = ?", [MONTH]).fetchone()
    assert v[0] == POLICIES
    assert stored(con) == {first.run_id: POLICIES, "killed": 299}
    again = store.run_month(con, rb, MONTH, actor="again")
    assert stored(con) == {again.run_id: POLICIES} and stored(con, "feature_rows") == {again.run_id: POLICIES}
    # same book, same rulebook: the month is the same to the character, trace and statement included
    assert month_rows(con) == before


def _downgrade_to_version_1(con) -> None:
    """Rewrite the store as schema version 1 left it: premiums and monthly_features tables keyed by (policy, month)
    (premiums without the later off_balance column), views on them, a scratch table of the old staged publish."""
    for view in ("v_policy_month", "v_experience", "premiums", "monthly_features"):
        con.execute(f"DROP VIEW {view}")
    con.execute("""CREATE TABLE monthly_features (
        policy_id VARCHAR NOT NULL, month DATE NOT NULL, trips INTEGER NOT NULL, km DOUBLE NOT NULL,
        driving_hours DOUBLE NOT NULL, harsh_brakes INTEGER NOT NULL, harsh_accels INTEGER NOT NULL,
        harsh_brakes_per_100km DOUBLE, harsh_accels_per_100km DOUBLE, run_id VARCHAR NOT NULL,
        PRIMARY KEY (policy_id, month))""")
    con.execute("""CREATE TABLE premiums (
        policy_id VARCHAR NOT NULL, month DATE NOT NULL, base_premium DECIMAL(12, 2) NOT NULL,
        previous_premium DECIMAL(12, 2) NOT NULL, telematics_factor DOUBLE NOT NULL, credibility DOUBLE NOT NULL,
        uncapped_premium DECIMAL(12, 2) NOT NULL, premium DECIMAL(12, 2) NOT NULL, cap_applied VARCHAR NOT NULL,
        rulebook_version VARCHAR NOT NULL, rulebook_sha256 VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
        trace JSON NOT NULL, statement VARCHAR NOT NULL, PRIMARY KEY (policy_id, month))""")
    con.execute("INSERT INTO monthly_features SELECT * FROM feature_rows")
    con.execute("INSERT INTO premiums SELECT * EXCLUDE (off_balance) FROM premium_rows")
    for table in ("premium_rows", "feature_rows", "published_runs"):
        con.execute(f"DROP TABLE {table}")
    con.execute("CREATE VIEW v_policy_month AS SELECT * FROM premiums")
    con.execute("CREATE TABLE _pricing_stage_dead_premiums (x INTEGER)")
    con.execute("UPDATE schema_info SET version = 1")


def test_a_version_1_file_upgrades_in_place(tmp_path):
    path = tmp_path / "v1.duckdb"
    con = store.connect(path)
    load_bulk(con, POLICIES, 6, MONTH, seed=11, chunk=POLICIES)
    rb = load_rulebook(Config().rulebook)
    run = store.run_month(con, rb, MONTH, actor="v1")
    before = month_rows(con)
    features = con.execute("SELECT * FROM monthly_features ORDER BY policy_id").fetchall()
    _downgrade_to_version_1(con)
    con.close()

    con = store.connect(path)  # the upgrade
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    assert kinds["premiums"] == kinds["monthly_features"] == "VIEW"
    assert (
        kinds["premium_rows"] == kinds["feature_rows"] == "BASE TABLE" and "_pricing_stage_dead_premiums" not in kinds
    )
    assert con.execute("SELECT version FROM schema_info").fetchall() == [(store.SCHEMA_VERSION,)] == [(3,)]
    assert month_rows(con) == before
    assert con.execute("SELECT * FROM monthly_features ORDER BY policy_id").fetchall() == features
    assert con.execute("SELECT month, run_id FROM published_runs").fetchall() == [(MONTH, run.run_id)]
    assert con.execute("SELECT count(*) FROM v_policy_month").fetchone()[0] == POLICIES
    con.close()

    con = store.connect(path)  # connecting again changes nothing
    assert month_rows(con) == before and stored(con) == {run.run_id: POLICIES}
    # the next month reads the upgraded month's premiums as its previous ones
    nxt = store.run_month(con, rb, NEXT, actor="v2")
    prev = dict(con.execute("SELECT policy_id, premium FROM premiums WHERE month = ?", [MONTH]).fetchall())
    got = con.execute("SELECT policy_id, previous_premium FROM premiums WHERE month = ?", [NEXT]).fetchall()
    assert len(got) == POLICIES and all(prev[p] == v for p, v in got)
    # re-pricing the upgraded month replaces its rows like any other
    again = store.run_month(con, rb, MONTH, actor="v2")
    assert stored(con) == {again.run_id: POLICIES, nxt.run_id: POLICIES}
    assert month_rows(con) == before
    con.close()
