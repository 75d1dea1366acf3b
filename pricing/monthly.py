"""The monthly pricing run: features from the month's trips, premiums with traces, written by the store in one
transaction with a run record and an audit entry. Running the same month again replaces its rows.

Pure: the store is passed in (``MonthStore``; DuckDB's is ``ubi.adapters.duckdb_store.PricingTables``).

The book is priced as arrays (``pricing.vector``), which also solves the optional off-balance factor; each row's
trace and statement are formatted from those arrays (``pricing.rowtext``: the engine's text byte for byte, a
fraction of the per-policy engine's ~40 us a policy), and the per-policy engine still prices every
CHECK_EVERY-th policy and every row that path leaves to it (withheld features, excluded trips): its premium,
factor, trace and statement must equal the row's, or the run stops with nothing published. Rows go to the store
as DataFrames in chunks (executemany is far too slow for a real book). Once the off-balance factor is solved the
chunks are independent, so ``workers`` > 1 builds them in that many processes; the store still receives them in
order.
"""

from __future__ import annotations

import getpass
import json
import multiprocessing
import re
import uuid
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Callable, Generator, Iterator, Protocol, Sequence

import numpy as np
import polars as pl

from pricing import offbalance, rowtext
from pricing.engine import price_policy, statement
from pricing.rulebook import Rulebook
from pricing.vector import CAP_DOWN, CAP_LABELS, CAP_UP, Book, Factors, Priced, price_book
from ubi.common.errors import PricingError

CHUNK = 50_000  # rows built and inserted at a time: bounds memory for million-policy books
CHECK_EVERY = 32  # every 32nd policy also goes through the per-policy engine (~60 us), its row compared byte for byte


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    month: date
    policies: int
    priced_on_driving: int
    capped_up: int
    capped_down: int
    premium_before: Decimal
    premium_after: Decimal
    off_balance: dict | None = field(default=None)
    excluded_trips: int = 0  # trips left out because the policyholder objected (pending or accepted review)


def month_start(text: str) -> date:
    """``YYYY-MM`` to the month's first day; anything else (``2026-13``, ``2026-11-99``, ``2026-1``) is refused."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise PricingError(f"month {text!r}: expected YYYY-MM with a month from 01 to 12, e.g. 2026-11")
    return date(int(m.group(1)), int(m.group(2)), 1)


def next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def previous_month(d: date) -> date:
    return date(d.year - (d.month == 1), (d.month - 2) % 12 + 1, 1)


def price_month_book(rb: Rulebook, book: Book) -> tuple[Priced, offbalance.OffBalance | None]:
    """Premiums for the book under a rulebook, with its off-balance solved when the rulebook asks for one."""
    if rb.off_balance:
        ob, priced = offbalance.solve(rb, book)
        return priced, ob
    return price_book(rb, book), None


def _rows(
    rb: Rulebook,
    month: date,
    run_id: str,
    ids: Sequence[str],
    book: Book,
    has_prev: np.ndarray,
    p: Priced,
    lo: int,
    hi: int,
    excluded: dict[str, list[dict]] | None = None,
    first: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """monthly_features and premiums rows for policies [lo, hi). Traces and statements are built from the arrays
    (``pricing.rowtext``); the per-policy engine builds the rows that path does not cover and re-prices every
    CHECK_EVERY-th policy, whose premium, factor, trace and statement must equal the array row's to the byte."""
    label = month.strftime("%B %Y")
    ob = None if not rb.off_balance else Decimal(p.off_balance_u).scaleb(-6)
    chunk_ids = ids[lo:hi]
    traces, statements = rowtext.fast_rows(rb, label, book, has_prev, p, lo, hi)
    ok = rowtext.covered(book, lo, hi, set(excluded) if excluded else None, chunk_ids)
    sampled = (np.arange(lo, hi) + first) % CHECK_EVERY == 0  # by place in the whole book (``first``: a slice's)
    for j in np.flatnonzero(~ok | sampled).tolist():
        i = lo + j
        f = book.month_features(i)
        prev = Decimal(int(book.prev_c[i])).scaleb(-2) if has_prev[i] else None
        r = price_policy(rb, Decimal(int(book.base_c[i])).scaleb(-2), prev, f, ob)
        if int(r.premium.scaleb(2)) != int(p.premium_c[i]) or int(r.factor.scaleb(4)) != int(p.factors.factor_u[i]):
            raise PricingError(
                f"{chunk_ids[j]}: engine and book arithmetic disagree ({r.premium} vs "
                f"{p.premium_c[i] / 100}); nothing was written"
            )
        if excluded and chunk_ids[j] in excluded:  # disputed trips: not in the features above, named in the trace
            r.trace["excluded_trips"] = excluded[chunk_ids[j]]
        trace, text = json.dumps(r.trace), statement(label, r)
        if ok[j] and (trace != traces[j] or text != statements[j]):
            raise PricingError(
                f"{chunk_ids[j]}: the row's trace or statement differs from the engine's; nothing was written"
            )
        traces[j], statements[j] = trace, text
    s = slice(lo, hi)
    km = book.km[s]
    with np.errstate(divide="ignore", invalid="ignore"):
        b100 = np.where(km > 0, book.harsh_brakes[s] * (100.0 / km), np.nan)
        a100 = np.where(km > 0, book.harsh_accels[s] * (100.0 / km), np.nan)
    feats = pl.DataFrame(
        {
            "policy_id": chunk_ids,
            "trips": book.trips[s],
            "km": km,
            "driving_hours": book.driving_hours[s],
            "harsh_brakes": book.harsh_brakes[s],
            "harsh_accels": book.harsh_accels[s],
            "b100": b100,
            "a100": a100,
        }
    ).with_columns(pl.col("b100", "a100").fill_nan(None))
    prems = pl.DataFrame(
        {
            "policy_id": chunk_ids,
            "base_c": book.base_c[s],
            "prev_c": book.prev_c[s],
            "factor_u": p.factors.factor_u[s],
            "z": p.factors.z[s],
            "uncapped_c": p.uncapped_c[s],
            "premium_c": p.premium_c[s],
            "cap": _CAP_TEXT[p.cap[s].astype(np.int64) + 1].tolist(),
            "trace": traces,
            "statement": statements,
        }
    )
    return feats, prems


_CAP_TEXT = np.array([CAP_LABELS[c] for c in (-1, 0, 1)], dtype=object)  # cap code + 1 -> label

Chunk = tuple[pl.DataFrame, pl.DataFrame]  # (monthly_features rows, premiums rows)


def _slice_book(book: Book, s: slice) -> Book:
    """The policies ``s`` of a book (views; pickling one copies only the slice)."""
    return Book(
        book.base_c[s],
        book.prev_c[s],
        book.trips[s],
        book.km[s],
        book.driving_hours[s],
        book.harsh_brakes[s],
        book.harsh_accels[s],
        None if book.completeness is None else book.completeness[s],
        None if book.withheld is None else {k: m[s] for k, m in book.withheld.items()},
    )


def _slice_priced(p: Priced, s: slice) -> Priced:
    f = p.factors
    return Priced(
        Factors(f.g[s], f.z[s], f.gated[s], f.factor_u[s], {k: v[s] for k, v in f.bands.items()}),
        p.off_balance_u,
        p.uncapped_c[s],
        p.premium_c[s],
        p.cap[s],
    )


_WORKER: dict = {}  # set once per worker process by _init_worker: (rulebook, month, run_id)


def _init_worker(rb: Rulebook, month: date, run_id: str) -> None:
    _WORKER.update(rb=rb, month=month, run_id=run_id)


def _worker_rows(
    ids: list[str], book: Book, has_prev: np.ndarray, p: Priced, excluded: dict[str, list[dict]], first: int
) -> Chunk:
    """One chunk's rows in a worker process: the same ``_rows`` (engine cross-check included) on its slice."""
    w = _WORKER
    return _rows(w["rb"], w["month"], w["run_id"], ids, book, has_prev, p, 0, len(ids), excluded, first)


def _parallel_chunks(
    rb: Rulebook,
    month: date,
    run_id: str,
    ids: Sequence[str],
    book: Book,
    has_prev: np.ndarray,
    p: Priced,
    excluded: dict[str, list[dict]],
    workers: int,
) -> Generator[Chunk, None, None]:
    """The chunks of ``_rows`` built by ``workers`` processes, yielded in policy order. At most workers + 1
    chunks are in flight, so memory stays bounded when the store writes slower than the workers build. A worker's
    error (an engine disagreement) is raised here, and the store then publishes nothing. Spawned, not forked:
    the parent holds a database's threads."""
    n = len(ids)
    starts = iter(range(0, n, CHUNK))
    ctx = multiprocessing.get_context("spawn")
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(rb, month, run_id))

    def submit(lo: int) -> Future:
        s = slice(lo, min(n, lo + CHUNK))
        chunk_ids = list(ids[s])
        mine = {i: excluded[i] for i in chunk_ids if i in excluded} if excluded else {}
        return ex.submit(_worker_rows, chunk_ids, _slice_book(book, s), has_prev[s], _slice_priced(p, s), mine, lo)

    try:
        pending = deque(submit(lo) for _, lo in zip(range(workers + 1), starts, strict=False))
        while pending:
            rows = pending.popleft().result()
            nxt = next(starts, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield rows
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


class MonthStore(Protocol):
    """What a pricing run needs from storage: the month's book in, the priced month out, all or nothing."""

    def month_book(self, month: date) -> tuple[Sequence[str], Book, np.ndarray]: ...

    def write_month(
        self,
        rb: Rulebook,
        month: date,
        run_id: str,
        actor: str,
        summary: "RunSummary",
        chunks: Iterator[Chunk],
        off_balance: float | None,
    ) -> None: ...


def run_month(
    store: MonthStore,
    rb: Rulebook,
    month: date,
    actor: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> RunSummary:
    """Price the month's book and hand every row to the store in one write. Rows are built and handed over
    CHUNK policies at a time (``progress(done, total)`` after each), so only the book's numeric arrays are held
    whole: a store may keep ids out of Python (any ``Sequence[str]``). ``workers`` > 1: rows are built in that
    many processes when the book has more than one chunk (same rows, same order). A ``progress`` with a
    ``phase(text)`` method is also told when each step before and after the rows begins."""
    if workers < 1:
        raise PricingError(f"workers: {workers} (expected at least 1)")
    actor = actor or getpass.getuser()
    run_id = uuid.uuid4().hex[:16]
    phase = getattr(progress, "phase", None)
    if phase:
        phase(f"reading the {month:%Y-%m} book (features of the month's trips)")
    ids, book, has_prev = store.month_book(month)
    # Trips the policyholder objected to are already out of the book; a store that knows them says which.
    excluded = store.excluded_trips(month) if hasattr(store, "excluded_trips") else {}
    if phase:
        phase(f"pricing {len(ids):,} policies as arrays" + (" with the off-balance solve" if rb.off_balance else ""))
    priced, ob = price_month_book(rb, book)
    n = len(ids)
    gated = int(priced.factors.gated.sum())
    summary = RunSummary(
        run_id,
        month,
        n,
        n - gated,
        int((priced.cap == CAP_UP).sum()),
        int((priced.cap == CAP_DOWN).sum()),
        Decimal(int(book.prev_c.sum())).scaleb(-2),
        Decimal(int(priced.premium_c.sum())).scaleb(-2),
        ob.as_dict() if ob else None,
        sum(len(v) for v in excluded.values()),
    )
    ob_value = None if ob is None else priced.off_balance_u / 1e6
    parallel = workers > 1 and n > CHUNK
    if phase:
        phase(f"rows (trace, statement, engine cross-check) in {workers if parallel else 1} process(es)")

    def chunks() -> Iterator[Chunk]:
        built: Generator[Chunk, None, None] = (
            _parallel_chunks(rb, month, run_id, ids, book, has_prev, priced, excluded, workers)
            if parallel
            else (
                _rows(rb, month, run_id, ids, book, has_prev, priced, lo, min(n, lo + CHUNK), excluded)
                for lo in range(0, n, CHUNK)
            )
        )
        done = 0
        try:
            for rows in built:
                yield rows
                done += rows[1].height
                if progress is not None:
                    progress(done, n)
        finally:  # a store that stops early (its write failed): the workers stop now, not when collected
            built.close()
        if phase:
            phase("publishing the month (one transaction)")

    store.write_month(rb, month, run_id, actor, summary, chunks(), ob_value)
    return summary
