"""Claims books in DuckDB: read a book's files, validate them against the model spec, store them in one transaction.

A book is two tables named after it, ``book_<name>_rows`` (one row per policy period: exposure, claim count and
amount, then the spec's factor and audit columns prefixed ``f_``) and ``book_<name>_claims`` (one row per claim
of the claims file, ``matched`` saying whether it fell in a period), plus a row in ``books`` with the spec and the
claim accounting. Loading replaces the book as a whole or, on any problem, changes nothing. docs/book.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import polars as pl

from pricing.book import BookSpec, Checked, check_book, parse_spec
from ubi.adapters.duckdb_store import audit, transaction
from ubi.common.errors import BookError, StoreError

BOOKS_SQL = """
CREATE TABLE IF NOT EXISTS books (
    name        VARCHAR PRIMARY KEY,
    spec_path   VARCHAR NOT NULL,
    spec_sha256 VARCHAR NOT NULL,
    spec        VARCHAR NOT NULL,           -- the model spec's text as loaded
    loaded_at   TIMESTAMP NOT NULL,
    accounting  JSON NOT NULL               -- rows, policies, exposure, claims loaded / matched / unmatched
);
"""


def read_file(path: Path, what: str) -> pl.DataFrame:
    """A Parquet or CSV file as a frame (CSV read as text, so every cast is checked by the validation)."""
    if not path.exists():
        raise BookError([f"{what} file not found: {path}"], str(path))
    try:
        if path.suffix.lower() == ".csv":
            return pl.read_csv(path, infer_schema=False)
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BookError([f"{path.name}: cannot read it as {path.suffix[1:].upper()}: {exc}"], str(path)) from None


def check_files(spec: BookSpec) -> tuple[Checked, dict[str, float]]:
    """Read and validate the book's files; nothing touches the database here."""
    t0 = time.perf_counter()
    rows = read_file(spec.policies, "policies")
    claims = read_file(spec.claims_path, "claims") if spec.claims_path is not None else None
    t1 = time.perf_counter()
    checked = check_book(spec, rows, claims)
    return checked, {"read_s": t1 - t0, "validate_s": time.perf_counter() - t1}


def _tables(name: str) -> tuple[str, str]:
    return f"book_{name}_rows", f"book_{name}_claims"


def store_book(con: duckdb.DuckDBPyConnection, spec: BookSpec, checked: Checked, actor: str = "ubi") -> None:
    """Replace the book's tables and registry row in one transaction: all of it lands or none of it."""
    rows_t, claims_t = _tables(spec.name)
    con.complete()  # a result the caller left unfinished (a fetchone) would block every statement below
    # registered under names no table has (a replacement scan of a variable called `claims` reads the claims table)
    con.register("_ubi_book_rows_src", checked.rows.to_arrow())
    con.register("_ubi_book_claims_src", checked.claims.to_arrow())
    try:
        con.execute(BOOKS_SQL)
        with transaction(con):
            con.execute(f'CREATE OR REPLACE TABLE "{rows_t}" AS SELECT * FROM _ubi_book_rows_src')
            con.execute(f'CREATE OR REPLACE TABLE "{claims_t}" AS SELECT * FROM _ubi_book_claims_src')
            con.execute(
                "INSERT OR REPLACE INTO books VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?)",
                [spec.name, spec.path, spec.sha256, spec.text, json.dumps(checked.accounting)],
            )
            audit(con, actor, "load_book", {"book": spec.name, "spec": spec.path, **checked.accounting})
    except duckdb.Error as exc:
        raise StoreError(f"book {spec.name!r} not loaded (nothing changed): {exc}") from None
    finally:
        con.unregister("_ubi_book_rows_src")
        con.unregister("_ubi_book_claims_src")


def load_book(con: duckdb.DuckDBPyConnection, spec: BookSpec) -> tuple[dict, dict[str, float]]:
    """Validate, then store; returns the accounting and the timings."""
    checked, timing = check_files(spec)
    t0 = time.perf_counter()
    store_book(con, spec, checked)
    timing["store_s"] = time.perf_counter() - t0
    return checked.accounting, timing


def books(con: duckdb.DuckDBPyConnection) -> list[str]:
    try:
        return [r[0] for r in con.execute("SELECT name FROM books ORDER BY 1").fetchall()]
    except duckdb.CatalogException:
        return []


def read_book(con: duckdb.DuckDBPyConnection, name: str) -> tuple[BookSpec, pl.DataFrame, dict]:
    """A stored book: its spec as loaded, its rows, its accounting."""
    con.complete()
    try:
        found = con.execute("SELECT spec, spec_path, accounting FROM books WHERE name = ?", [name]).fetchall()
    except duckdb.CatalogException:
        found = []
    row = found[0] if found else None
    if row is None:
        known = books(con)
        raise StoreError(
            f"no book {name!r} in the store (loaded: {known or 'none'}); run `ubi actuary load-book --spec FILE`"
        )
    spec = parse_spec(row[0], row[1], Path(row[1]).resolve().parent)
    sql = f'SELECT * FROM "{_tables(name)[0]}" ORDER BY policy_id, period_start'
    frame = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return spec, frame, json.loads(row[2])
