"""Consent in the store (the ``consents`` table, made with the privacy schema in ubi/adapters/subject.py) and the
pricing hook: ``with_consent`` marks, per policy of a month's book, the features its holder did not agree to
(pricing/consent.py decides which; the engine then prices them at relativity 1 and the statement says so)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pricing import consent
from pricing.rulebook import KNOWN_FEATURES
from pricing.vector import Book
from ubi.common.errors import PrivacyError


def consents_of(con: duckdb.DuckDBPyConnection, policy_id: str) -> dict[str, bool]:
    """Every purpose for this policy, defaults filled in."""
    if con.execute("SELECT 1 FROM policies WHERE policy_id = ?", [policy_id]).fetchone() is None:
        raise PrivacyError(f"no policy {policy_id!r} in the store")
    rows = con.execute("SELECT purpose, granted FROM consents WHERE policy_id = ?", [policy_id]).fetchall()
    return consent.effective(dict(rows))


def set_consents(con: duckdb.DuckDBPyConnection, policy_id: str, changes: dict[str, bool]) -> None:
    consents_of(con, policy_id)  # the policy exists
    try:
        consent.effective(changes)
    except ValueError as exc:
        raise PrivacyError(str(exc)) from None
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.executemany(
        "INSERT OR REPLACE INTO consents VALUES (?, ?, ?, ?)", [[policy_id, p, g, now] for p, g in changes.items()]
    )


def with_consent(con: duckdb.DuckDBPyConnection, ids: Sequence[str], book: Book) -> Book:
    """The book with ``withheld`` set: feature -> bool per policy (in ``ids`` order), for every known feature that
    at least one policy withholds; unchanged when nobody withholds anything. Only the policies with a consent row
    are visited one by one (a 10 M-policy book with a few thousand choices stays cheap)."""
    try:
        rows = con.execute("SELECT policy_id, purpose, granted FROM consents").fetchall()
    except duckdb.CatalogException:  # a read-only store from before consents: defaults for everyone
        rows = []
    grants: dict[str, dict[str, bool]] = {}
    for pid, purpose, granted in rows:
        grants.setdefault(pid, {})[purpose] = bool(granted)
    features = sorted(KNOWN_FEATURES)
    default = consent.withheld(features, {})
    masks = {f: np.full(len(ids), f in default, dtype=bool) for f in features}
    if grants:
        column = getattr(ids, "col", None)  # ArrowIds (ubi/adapters/book_stream.py) or any sequence
        arrow = column if column is not None else pa.array(list(ids), type=pa.string())
        hit = pc.is_in(arrow, value_set=pa.array(list(grants), type=pa.string())).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(hit):
            mine = consent.withheld(features, grants[ids[int(i)]])
            for f in features:
                masks[f][i] = f in mine
    used = {f: m for f, m in masks.items() if m.any()}
    return replace(book, withheld=used) if used else book
