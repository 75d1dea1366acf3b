"""The monthly run streamed through DuckDB (record batches, ids kept in Arrow, rows written in chunks, a bounded
DuckDB memory) gives every premium, factor and trace of the in-memory run to the cent.

The in-memory run here owes nothing to DuckDB: its book is aggregated with polars from the very frames the bulk
generator inserted, and its rows are kept in Python. Chunk and batch sizes are made small so the book crosses
many of both, with boundaries that do not line up."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pricing.monthly as monthly
import ubi.adapters.book_stream as book_stream
from pricing.rulebook import load_rulebook
from pricing.vector import Book
from simulator.bulk import bulk_policies, bulk_trips, load_bulk
from ubi.adapters import duckdb_store as store
from ubi.adapters.book_stream import ArrowIds
from ubi.common.config import Config
from ubi.common.errors import PricingError, StoreError

MONTH = date(2026, 10, 1)
POLICIES, TRIPS = 2_500, 12


class MemoryStore:
    """``MonthStore`` in memory: the book from polars frames, the written rows kept."""

    def __init__(self, policies: pl.DataFrame, trips: pl.DataFrame) -> None:
        t = trips.group_by("vehicle_id").agg(
            pl.len().alias("trips"),
            pl.col("distance_km").sum().alias("km"),
            (pl.col("moving_s").sum() / 3600.0).alias("driving_hours"),
            pl.col("harsh_brakes").sum(),
            pl.col("harsh_accels").sum(),
        )
        self.book = policies.join(t, on="vehicle_id", how="left").sort("policy_id")
        self.rows: list[pl.DataFrame] = []

    def month_book(self, month: date):
        b = self.book
        base_c = (b["base_premium"] * 100).round().cast(pl.Int64).to_numpy()
        book = Book(
            base_c,
            base_c.copy(),  # first month: no previous premium
            b["trips"].fill_null(0).cast(pl.Int64).to_numpy(),
            b["km"].fill_null(0.0).to_numpy(),
            b["driving_hours"].fill_null(0.0).to_numpy(),
            b["harsh_brakes"].fill_null(0).cast(pl.Int64).to_numpy(),
            b["harsh_accels"].fill_null(0).cast(pl.Int64).to_numpy(),
        )
        return b["policy_id"].to_list(), book, np.zeros(len(b), dtype=bool)

    def write_month(self, rb, month, run_id, actor, summary, chunks, off_balance) -> None:
        self.rows = [prems for _feats, prems in chunks]


class Progress:
    """Records ``progress(done, total)`` calls and the run's phases."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.phases: list[str] = []

    def __call__(self, done: int, total: int) -> None:
        self.seen.append((done, total))

    def phase(self, text: str) -> None:
        self.phases.append(text)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "book.duckdb"
    con = store.connect(path)
    load_bulk(con, POLICIES, TRIPS, MONTH, seed=5, chunk=1_000)
    firsts = range(1, POLICIES + 1, 1_000)  # the frames load_bulk inserted, chunk by chunk
    frames = [bulk_policies(min(1_000, POLICIES - f + 1), 5, f) for f in firsts]
    policies = pl.concat(frames)
    trips = pl.concat(
        [bulk_trips(p["vehicle_id"].to_list(), TRIPS, MONTH, 5, f) for p, f in zip(frames, firsts, strict=True)]
    )
    yield con, policies, trips
    con.close()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-row-workers"])
def test_streamed_run_equals_the_in_memory_run_to_the_cent(book, monkeypatch, workers):
    """workers=2: the rows are built in two spawned processes (pricing.monthly._parallel_chunks) while this one
    writes them; the result must not differ in a cent, a trace or a statement, nor in the rows' order."""
    con, policies, trips = book
    rb = load_rulebook(Config().rulebook)
    mem = MemoryStore(policies, trips)
    expected = monthly.run_month(mem, rb, MONTH, actor="t")
    want = pl.concat(mem.rows)

    monkeypatch.setattr(monthly, "CHUNK", 333)
    monkeypatch.setattr(book_stream, "BATCH_ROWS", 401)
    monkeypatch.setattr(book_stream, "STAGE_ROWS", 700)  # three chunks of 333 to a staged INSERT
    progress = Progress()
    got_summary = store.run_month(con, rb, MONTH, actor="t", progress=progress, memory_limit="256MB", workers=workers)
    seen = progress.seen
    assert any(f"in {workers} process(es)" in p for p in progress.phases)
    got = con.execute(
        "SELECT policy_id, CAST(premium * 100 AS BIGINT), CAST(uncapped_premium * 100 AS BIGINT),"
        " CAST(round(telematics_factor * 10000) AS BIGINT), cap_applied, trace, statement FROM premiums"
        " WHERE month = ? ORDER BY policy_id",
        [MONTH],
    ).fetchall()
    assert len(got) == POLICIES == want.height
    assert [r[0] for r in got] == want["policy_id"].to_list()
    assert [r[1] for r in got] == want["premium_c"].to_list()
    assert [r[2] for r in got] == want["uncapped_c"].to_list()
    assert [r[3] for r in got] == want["factor_u"].to_list()
    assert [r[4] for r in got] == want["cap"].to_list()
    assert [json.loads(r[5])["premium"] for r in got] == [json.loads(t)["premium"] for t in want["trace"]]
    # every trace and statement, character for character
    assert [r[5] for r in got] == want["trace"].to_list()
    assert [r[6] for r in got] == want["statement"].to_list()
    assert got_summary.premium_after == expected.premium_after and got_summary.premium_after > Decimal(0)
    assert (got_summary.capped_up, got_summary.capped_down) == (expected.capped_up, expected.capped_down)
    assert seen == [(min(POLICIES, k), POLICIES) for k in range(333, POLICIES + 333, 333)]
    # the memory limit applied to the run only
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "256.0 MiB"


def test_arrow_ids_behave_as_a_list():
    import pyarrow as pa

    names = [f"P{i:04d}" for i in range(250_123)]
    ids = ArrowIds(pa.chunked_array([names[:100_000], names[100_000:]]))
    assert len(ids) == len(names) and ids[0] == "P0000" and ids[-1] == names[-1] and ids[123_456] == names[123_456]
    assert ids[99_990:100_010] == names[99_990:100_010] and ids[250_000:999_999] == names[250_000:]
    assert list(ids) == names
    with pytest.raises(IndexError):
        ids[len(names)]


def test_a_memory_limit_that_is_not_a_size_is_refused(book):
    con, _, _ = book
    rb = load_rulebook(Config().rulebook)
    with pytest.raises(StoreError, match="expected a size"):
        store.run_month(con, rb, MONTH, memory_limit="2GB'; DROP TABLE trips; --")


def test_ubi_price_shows_progress_and_leaves_the_figures_for_prometheus(tmp_path, capsys):
    from dataclasses import replace

    from ubi.adapters.metrics import pricing_textfile
    from ubi.cli.price import price

    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "p.duckdb")
    con = store.connect(cfg.db_path)
    load_bulk(con, 300, 5, MONTH, seed=2, chunk=300)
    con.close()
    s = price(cfg, "2026-10")
    err = capsys.readouterr().err
    assert "pricing: 300/300 policies' rows built (100%)" in err
    assert "reading the 2026-10 book" in err and "publishing the month" in err  # the steps around the rows
    assert "committing the month" in err and "removing the rows" not in err  # a first run replaces nothing
    assert "copying" not in err  # the rows are written where they stay: no publish copy
    text = pricing_textfile(tmp_path).read_text()
    assert "ubi_pricing_last_run_policies 300.0" in text and s.policies == 300
    assert f"ubi_pricing_last_run_premium_after_eur {float(s.premium_after)}" in text
    price(cfg, "2026-10")  # the month again: the first run's rows go after the publish
    assert "removing the rows of the run this one replaced" in capsys.readouterr().err


def unpublished_rows(con) -> int:
    """Rows in the stored tables under a run that no month shows."""
    return con.execute(
        """SELECT (SELECT count(*) FROM premium_rows ANTI JOIN published_runs USING (month, run_id))
                + (SELECT count(*) FROM feature_rows ANTI JOIN published_runs USING (month, run_id))"""
    ).fetchone()[0]


def test_a_run_that_fails_half_way_changes_nothing_and_leaves_no_rows(book, monkeypatch):
    con, _, _ = book
    rb = load_rulebook(Config().rulebook)
    monkeypatch.setattr(monthly, "CHUNK", 500)
    monkeypatch.setattr(book_stream, "STAGE_ROWS", 500)  # every chunk committed to premium_rows on its own
    store.run_month(con, rb, MONTH, actor="first")
    before = con.execute("SELECT run_id, count(*) FROM premiums WHERE month = ? GROUP BY ALL", [MONTH]).fetchall()
    real_rows, calls = monthly._rows, []

    def failing_rows(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the process dies in the third chunk")
        return real_rows(*args, **kwargs)

    monkeypatch.setattr(monthly, "_rows", failing_rows)
    with pytest.raises(RuntimeError, match="third chunk"):
        store.run_month(con, rb, MONTH, actor="second")
    after = con.execute("SELECT run_id, count(*) FROM premiums WHERE month = ? GROUP BY ALL", [MONTH]).fetchall()
    assert after == before and len(before) == 1 and before[0][1] == POLICIES
    assert unpublished_rows(con) == 0  # the two chunks it had written are deleted
    assert con.execute("SELECT count(*) FROM runs WHERE actor = 'second'").fetchone()[0] == 0


def test_an_engine_disagreement_in_a_row_worker_stops_the_run_and_publishes_nothing(book, monkeypatch):
    """The per-policy engine cross-check runs in the worker processes too: one array premium off by a cent in the
    fourth chunk, at a policy the engine re-prices (every monthly.CHECK_EVERY-th), stops the run with that policy
    named; the month, the runs table and the stored rows are as before."""
    con, _, _ = book
    rb = load_rulebook(Config().rulebook)
    monkeypatch.setattr(monthly, "CHUNK", 400)
    store.run_month(con, rb, MONTH, actor="first")
    before = con.execute("SELECT run_id, count(*) FROM premiums WHERE month = ? GROUP BY ALL", [MONTH]).fetchall()
    real = monthly.price_month_book

    def off_by_a_cent(rb, book):
        priced, ob = real(rb, book)
        priced.premium_c[1_248] += 1  # policy 1,248 (a multiple of CHECK_EVERY): the fourth chunk of 400
        return priced, ob

    monkeypatch.setattr(monthly, "price_month_book", off_by_a_cent)
    progress = Progress()
    assert 1_248 % monthly.CHECK_EVERY == 0
    with pytest.raises(PricingError, match="PB00001249: engine and book arithmetic disagree"):
        store.run_month(con, rb, MONTH, actor="second", progress=progress, workers=2)
    assert progress.seen[-1][0] < 1_600  # the chunks after the bad one were not written
    after = con.execute("SELECT run_id, count(*) FROM premiums WHERE month = ? GROUP BY ALL", [MONTH]).fetchall()
    assert after == before and before[0][1] == POLICIES
    assert unpublished_rows(con) == 0
    assert con.execute("SELECT count(*) FROM runs WHERE actor = 'second'").fetchone()[0] == 0


def test_workers_below_one_are_refused(tmp_path):
    from dataclasses import replace

    from ubi.cli.price import pricing_workers
    from ubi.common.errors import ConfigError

    assert pricing_workers(replace(Config(), pricing_workers=3)) == 3
    assert pricing_workers(replace(Config(), pricing_workers=0)) >= 1
    with pytest.raises(ConfigError, match="pricing_workers"):
        pricing_workers(replace(Config(), pricing_workers=-1))
    with pytest.raises(PricingError, match="workers"):
        monthly.run_month(None, None, MONTH, workers=0)  # type: ignore[arg-type]


def test_the_lean_national_book_prices_as_the_full_one(tmp_path, monkeypatch):
    """bench/pricing.py builds the 10 M-policy book with only the trip columns the run reads (PRICED_COLUMNS, the
    rest NULL, to fit the disk): the same blocks with every column must give the same premiums, traces and
    statements, or the run has come to depend on a column the lean book leaves empty."""
    import importlib.util

    from ubi.common.trip_record import create_table_sql

    spec = importlib.util.spec_from_file_location(
        "bench_pricing", Path(__file__).resolve().parents[1] / "bench" / "pricing.py"
    )
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)  # type: ignore[union-attr]
    monkeypatch.setattr(bp, "BLOCK", 400)
    rb = load_rulebook(Config().rulebook)
    out = []
    for name, columns in (("lean", bp.PRICED_COLUMNS), ("full", None)):
        con = store.connect(tmp_path / f"{name}.duckdb")
        con.execute("DROP TABLE trips")
        con.execute(create_table_sql().replace(" PRIMARY KEY", "").replace(" NOT NULL", ""))
        bp.replicate_blocks(con, 1_200, 8, columns=columns)
        nulls = con.execute("SELECT count(*) - count(end_ts) FROM trips").fetchone()[0]
        assert nulls == (9_600 if name == "lean" else 0)
        store.run_month(con, rb, MONTH, actor="t")
        out.append(
            con.execute(
                "SELECT policy_id, premium, trace, statement FROM premiums WHERE month = ? ORDER BY policy_id",
                [MONTH],
            ).fetchall()
        )
        con.close()
    assert len(out[0]) == 1_200 and out[0] == out[1]


def test_the_sql_built_national_book_is_what_it_says(tmp_path):
    """bench/pricing.py --synthetic builds the 10 M x 60 book in DuckDB SQL (synthesize): the asked policies and
    trips, one id each, every trip inside the month, the bulk generator's km and harsh-event scale, the same book
    on a rebuild, and a book that prices into every harsh-braking band, some premiums capped."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_pricing", Path(__file__).resolve().parents[1] / "bench" / "pricing.py"
    )
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)  # type: ignore[union-attr]
    sums = []
    for name in ("a", "b"):
        db = tmp_path / f"{name}.duckdb"
        bp.build(db, 3_000, 8, synthetic=True)
        con = store.connect(db)
        r = con.execute(
            """SELECT count(*), count(DISTINCT trip_id), count(DISTINCT vehicle_id), min(start_ts), max(start_ts),
                      avg(distance_km), sum(harsh_brakes) * 100 / sum(distance_km), sum(moving_s),
                      (SELECT count(*) FROM policies), (SELECT count(DISTINCT vehicle_group) FROM policies)
               FROM trips"""
        ).fetchone()
        sums.append(  # the rows themselves (an avg's float sum depends on DuckDB's thread order)
            con.execute(
                """SELECT md5(string_agg(concat_ws(':', trip_id, vehicle_id, start_ts, distance_km, moving_s,
                                                   harsh_brakes, harsh_accels, messages), ',' ORDER BY trip_id))
                   FROM trips"""
            ).fetchone()[0]
        )
        assert r[:3] == (24_000, 24_000, 3_000) and r[8:] == (3_000, 4)
        assert r[3] >= datetime(2026, 10, 1) and r[4] < datetime(2026, 11, 1)
        assert 10 < r[5] < 14 and 1 < r[6] < 5  # bulk: km gamma(2, 6), a few harsh brakes per 100 km
        per_vehicle = con.execute("SELECT DISTINCT count(*) FROM trips GROUP BY vehicle_id").fetchall()
        assert per_vehicle == [(8,)]
        assert store.link_trips(con) == 0  # each trip's pair (prev_*) is the one the store would keep
        lo, n = con.execute(
            "SELECT min(completeness), count(*) FILTER (WHERE completeness < 1) FROM month_completeness(?, ?)",
            [MONTH, date(2026, 11, 1)],
        ).fetchone()
        assert 0.5 < lo < 0.99 and 100 < n < 1_500  # a few withheld or lost messages, not a uniform 1
        if name == "a":
            s = store.run_month(con, load_rulebook(Config().rulebook), MONTH, actor="t")
            assert s.policies == 3_000 and s.capped_up > 0 and s.priced_on_driving > 2_900
            bands = con.execute(
                "SELECT count(DISTINCT json_extract_string(trace, '$.factors[0].band')) FROM premiums"
            ).fetchone()[0]
            assert bands == 5
        con.close()
    assert sums[0] == sums[1]


def test_rows_are_written_in_whole_row_groups():
    """Every INSERT but the last holds a whole multiple of STAGE_ROWS (DuckDB's row group): a partial row group
    left by each INSERT is merged by the next checkpoint (a 10 M-row month: 231 s and a 16 GB peak). Nothing is
    lost, reordered or mismatched between the features and the premiums."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 900, 60).tolist()
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    chunks = [
        (pl.DataFrame({"n": list(range(a, a + k))}), pl.DataFrame({"n": list(range(a, a + k)), "x": ["t"] * k}))
        for a, k in zip(starts, sizes, strict=True)
    ]
    out = list(book_stream.batched(iter(chunks), 700))
    heights = [p.height for _, p in out]
    assert all(h % 700 == 0 and h > 0 for h in heights[:-1]) and 0 < heights[-1]
    assert sum(heights) == sum(sizes)
    assert [f.height for f, _ in out] == heights
    assert pl.concat([p for _, p in out])["n"].to_list() == list(range(sum(sizes)))
    assert pl.concat([f for f, _ in out])["n"].to_list() == list(range(sum(sizes)))
