"""A claims book of any shape: the model spec (TOML) that says what its columns mean, and validation of the data.

The spec names the book's files and which column is the policy id, the exposure, the claim count and amount, and
declares the rating factors the models use (``pricing.glm``). Validation collects every problem at once, with the
column and the row (1-based data rows, header excluded), so one run of ``ubi actuary load-book`` lists all that is
wrong; nothing is written unless there is no problem. docs/book.md describes the shape.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pricing.rulebook import ALWAYS_PROHIBITED, KNOWN_FEATURES
from ubi.common.errors import BookError

NAME_RX = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FACTOR_KINDS = ("categorical", "bands", "spline", "linear")
MAX_EXPOSURE = 5.0  # policy-years on one row; more is a unit mistake (days or months), not a long policy
SHOW_ROWS = 5  # rows named per problem; the rest are counted


@dataclass(frozen=True)
class FactorSpec:
    """One rating factor. ``column`` is the book's column; ``name`` is how reports and models call it."""

    name: str
    column: str
    kind: str  # categorical | bands | spline | linear
    telematics: bool = False
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # categorical: new level -> source levels
    base: str | float | None = None  # reference level (categorical) or value (numeric); default: most exposure
    edges: tuple[float, ...] = ()  # bands: lower edges; the first band is open below, the last open above
    knots: tuple[float, ...] = ()  # spline: interior knots of a cubic B-spline
    log: bool = False  # linear: the log of the value (an elasticity)
    report_edges: tuple[float, ...] = ()  # spline / linear: bands for the relativity table (default: knots/quintiles)
    rulebook_feature: str | None = None  # bands on a feature the monthly rulebook prices: exported to a draft


@dataclass(frozen=True)
class BookSpec:
    name: str
    path: str  # the spec file
    sha256: str
    text: str
    policies: Path
    policy_id: str
    exposure: str
    claim_count: str | None
    claim_amount: str | None
    period_start: str | None
    period_end: str | None
    year: int | None  # a book without dates: every period is this calendar year
    claims_path: Path | None
    claims_policy_id: str | None
    claims_amount: str | None
    claims_date: str | None
    protected: tuple[str, ...]
    age: str | None
    factors: tuple[FactorSpec, ...]
    tweedie_power: float = 1.5
    holdout_share: float = 0.2
    out_of_time_months: int = 3
    seed: int = 0

    @property
    def factor_columns(self) -> list[str]:
        return list(dict.fromkeys(f.column for f in self.factors))

    @property
    def telematics(self) -> list[FactorSpec]:
        return [f for f in self.factors if f.telematics]


def _line_of(text: str, pattern: str, after: int = 0) -> int | None:
    rx = re.compile(pattern)
    for i, line in enumerate(text.splitlines(), 1):
        if i > after and rx.search(line.split("#", 1)[0]):
            return i
    return None


def load_spec(path: Path | str) -> BookSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BookError([f"cannot read the model spec: {exc.strerror}"], str(path)) from None
    return parse_spec(text, str(path), path.resolve().parent)


def parse_spec(text: str, path: str = "<spec>", base_dir: Path | None = None) -> BookSpec:
    """Parse and check a model spec; every problem is listed with its line (where TOML lets us find it)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BookError([f"not valid TOML: {exc}"], path) from None
    base_dir = base_dir or Path.cwd()
    problems: list[str] = []

    def where(key: str, after: int = 0) -> str:
        line = _line_of(text, rf"^\s*{re.escape(key)}\s*=", after)
        return f"line {line} ({key})" if line else key

    def opt_str(sec: dict, key: str, section: str) -> str | None:
        v = sec.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            problems.append(f"{where(key)}: [{section}] {key} must be a column name (text)")
            return None
        return v

    for section in data:
        if section not in {"book", "claims", "audit", "model", "factors"}:
            section_rx = rf"^\s*\[+\s*{re.escape(section)}\s*\]"
            problems.append(f"line {_line_of(text, section_rx)}: unknown section [{section}]")
    book = data.get("book")
    if not isinstance(book, dict):
        raise BookError(problems + ["[book]: section missing (name, policies, policy_id, exposure)"], path)
    known_book = {
        "name",
        "policies",
        "policy_id",
        "exposure",
        "claim_count",
        "claim_amount",
        "period_start",
        "period_end",
        "year",
    }
    for k in book:
        if k not in known_book:
            problems.append(f"{where(k)}: unknown setting [book] {k}; known: {sorted(known_book)}")
    name = book.get("name")
    if not isinstance(name, str) or not NAME_RX.match(name):
        problems.append(f"{where('name')}: [book] name must match {NAME_RX.pattern} (it names the stored tables)")
        name = "invalid"
    files = book.get("policies")
    if not isinstance(files, str) or not files:
        problems.append(f"{where('policies')}: [book] policies must be the path of a Parquet or CSV file")
        files = ""
    pol_path = (base_dir / files).resolve() if files else Path()
    if files and pol_path.suffix.lower() not in (".parquet", ".csv"):
        problems.append(f"{where('policies')}: {files}: only .parquet and .csv files are read")
    required = {}
    for key in ("policy_id", "exposure"):
        required[key] = opt_str(book, key, "book")
        if key not in book:
            problems.append(f"[book] {key}: missing (the column that holds it)")
    claim_count = opt_str(book, "claim_count", "book")
    claim_amount = opt_str(book, "claim_amount", "book")
    period_start = opt_str(book, "period_start", "book")
    period_end = opt_str(book, "period_end", "book")
    if (period_start is None) != (period_end is None):
        problems.append(f"{where('period_start')}: [book] period_start and period_end go together")
    year = book.get("year")
    if year is not None and (not isinstance(year, int) or isinstance(year, bool) or not 1900 <= year <= 2100):
        problems.append(f"{where('year')}: [book] year must be a calendar year (1900-2100)")
        year = None
    if period_start is None and year is None:
        problems.append("[book]: a book without period_start/period_end needs year = YYYY (the year it covers)")

    claims = data.get("claims", {})
    cpath = cpol = camount = cdate = None
    if claims:
        if not isinstance(claims, dict):
            problems.append("[claims]: expected a table")
            claims = {}
        for k in claims:
            if k not in {"path", "policy_id", "amount", "date"}:
                problems.append(f"{where(k)}: unknown setting [claims] {k}")
        cp = claims.get("path")
        if not isinstance(cp, str) or not cp:
            problems.append(f"{where('path')}: [claims] path must be a Parquet or CSV file")
        else:
            cpath = (base_dir / cp).resolve()
            if cpath.suffix.lower() not in (".parquet", ".csv"):
                problems.append(f"{where('path')}: {cp}: only .parquet and .csv files are read")
        cpol = opt_str(claims, "policy_id", "claims")
        camount = opt_str(claims, "amount", "claims")
        cdate = opt_str(claims, "date", "claims")
        if cpol is None or camount is None:
            problems.append("[claims]: needs policy_id and amount (one row per claim)")
        if cdate and period_start is None:
            problems.append(f"{where('date')}: [claims] date needs [book] period_start/period_end to match against")
    if claim_count is None and cpath is None:
        problems.append("[book] claim_count: missing, and no [claims] file to count claims from")

    audit = data.get("audit", {})
    if not isinstance(audit, dict):
        problems.append("[audit]: expected a table")
        audit = {}
    protected = audit.get("protected", [])
    if not isinstance(protected, list) or not all(isinstance(p, str) for p in protected):
        problems.append(f"{where('protected')}: [audit] protected must be a list of column names")
        protected = []
    age = opt_str(audit, "age", "audit")

    model = data.get("model", {})
    if not isinstance(model, dict):
        problems.append("[model]: expected a table")
        model = {}
    settings: dict[str, Any] = {}
    for key, kind, lo, hi in (
        ("tweedie_power", float, 1.01, 1.99),
        ("holdout_share", float, 0.05, 0.5),
        ("out_of_time_months", int, 0, 24),
        ("seed", int, 0, 2**31),
    ):
        if key in model:
            v = model[key]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or isinstance(v, int))
            if not ok or not lo <= v <= hi:
                problems.append(f"{where(key)}: [model] {key} must be a {kind.__name__} in [{lo}, {hi}], got {v!r}")
            else:
                settings[key] = kind(v)
    for k in model:
        if k not in {"tweedie_power", "holdout_share", "out_of_time_months", "seed"}:
            problems.append(f"{where(k)}: unknown setting [model] {k}")

    factors = _parse_factors(data.get("factors", []), text, problems, protected)
    roles = {
        "policy_id": required["policy_id"],
        "exposure": required["exposure"],
        "claim_count": claim_count,
        "claim_amount": claim_amount,
    }
    for f in factors:
        if f.column in {v for v in roles.values() if v}:
            role = next(k for k, v in roles.items() if v == f.column)
            problems.append(f"factor {f.name!r}: column {f.column!r} is the book's {role}, not a rating factor")
    if problems:
        raise BookError(problems, path)
    return BookSpec(
        name=name,
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        policies=pol_path,
        policy_id=str(required["policy_id"]),
        exposure=str(required["exposure"]),
        claim_count=claim_count,
        claim_amount=claim_amount,
        period_start=period_start,
        period_end=period_end,
        year=year,
        claims_path=cpath,
        claims_policy_id=cpol,
        claims_amount=camount,
        claims_date=cdate,
        protected=tuple(protected),
        age=age,
        factors=tuple(factors),
        **settings,
    )


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _parse_factors(raw: Any, text: str, problems: list[str], protected: list[str]) -> list[FactorSpec]:
    if not isinstance(raw, list):
        problems.append("factors: expected [[factors]] tables")
        return []
    out: list[FactorSpec] = []
    seen: set[str] = set()
    banned = {p.lower() for p in protected} | ALWAYS_PROHIBITED
    keys = {"name", "column", "kind", "telematics", "groups", "base", "edges", "knots", "log", "report_edges"}
    keys.add("rulebook_feature")
    after = 0
    for i, f in enumerate(raw):
        line = _line_of(text, r"^\s*\[\[\s*factors\s*\]\]", after) or 0
        after = line
        loc = f"line {line} (factors[{i}])" if line else f"factors[{i}]"
        if not isinstance(f, dict):
            problems.append(f"{loc}: expected a table")
            continue
        for k in f:
            if k not in keys:
                problems.append(f"{loc}: unknown setting {k!r}; known: {sorted(keys)}")
        column, kind = f.get("column"), f.get("kind")
        name = f.get("name", column)
        if not isinstance(column, str) or not column:
            problems.append(f"{loc}: column missing (the book's column this factor reads)")
            continue
        if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
            problems.append(f"{loc}: name {name!r} must be a plain identifier")
            continue
        if name in seen:
            problems.append(f"{loc}: factor {name!r} appears twice")
        seen.add(name)
        if column.lower() in banned or name.lower() in banned:
            problems.append(f"{loc}: {column!r} is a protected attribute: it may be audited, never priced on")
            continue
        if kind not in FACTOR_KINDS:
            problems.append(f"{loc}: kind must be one of {list(FACTOR_KINDS)}, got {kind!r}")
            continue
        telematics = f.get("telematics", False)
        if not isinstance(telematics, bool):
            problems.append(f"{loc}: telematics must be true or false")
            telematics = False
        groups: dict[str, tuple[str, ...]] = {}
        g = f.get("groups", {})
        if g:
            if kind != "categorical":
                problems.append(f"{loc}: groups apply to categorical factors only")
            elif not isinstance(g, dict) or not all(
                isinstance(v, list) and v and all(isinstance(x, (str, int)) for x in v) for v in g.values()
            ):
                problems.append(f'{loc}: groups must map a new level to a list of levels, e.g. {{ "k+" = ["k","l"] }}')
            else:
                flat = [str(x) for v in g.values() for x in v]
                dup = sorted({x for x in flat if flat.count(x) > 1})
                if dup:
                    problems.append(f"{loc}: levels {dup} are in more than one group")
                groups = {str(k): tuple(str(x) for x in v) for k, v in g.items()}
        base = f.get("base")
        if base is not None and not isinstance(base, (str, int, float)):
            problems.append(f"{loc}: base must be a level or a value")
        edges = tuple(float(x) for x in f.get("edges", [])) if _numbers(f.get("edges", [0])) else ()
        knots = tuple(float(x) for x in f.get("knots", [])) if _numbers(f.get("knots", [0])) else ()
        report = tuple(float(x) for x in f.get("report_edges", [])) if _numbers(f.get("report_edges", [0])) else ()
        for key, vals in (("edges", edges), ("knots", knots), ("report_edges", report)):
            if key in f and not _numbers(f[key]):
                problems.append(f"{loc}: {key} must be a non-empty list of numbers")
            elif any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
                problems.append(f"{loc}: {key} must be strictly increasing, got {list(vals)}")
        if kind == "bands" and len(edges) < 2:
            problems.append(f"{loc}: bands need edges = [at least two lower edges]")
        if kind == "spline" and not knots:
            problems.append(f"{loc}: a spline needs knots = [interior knots]")
        if kind != "bands" and "edges" in f:
            problems.append(f"{loc}: edges apply to kind = 'bands' only")
        if kind != "spline" and "knots" in f:
            problems.append(f"{loc}: knots apply to kind = 'spline' only")
        log = f.get("log", False)
        if not isinstance(log, bool) or (log and kind != "linear"):
            problems.append(f"{loc}: log = true applies to kind = 'linear' only")
            log = False
        rbf = f.get("rulebook_feature")
        if rbf is not None:
            if rbf not in KNOWN_FEATURES:
                problems.append(
                    f"{loc}: rulebook_feature {rbf!r} unknown; the rulebook prices {sorted(KNOWN_FEATURES)}"
                )
            elif kind != "bands" or not telematics:
                problems.append(f"{loc}: rulebook_feature needs a telematics factor of kind 'bands'")
            elif edges and edges[0] != 0.0:
                problems.append(f"{loc}: a rulebook's bands start at 0; edges start at {edges[0]}")
        out.append(
            FactorSpec(
                name=name,
                column=column,
                kind=kind,
                telematics=telematics,
                groups=groups,
                base=base if isinstance(base, (str, int, float)) else None,
                edges=edges,
                knots=knots,
                log=bool(log),
                report_edges=report,
                rulebook_feature=rbf if isinstance(rbf, str) else None,
            )
        )
    return out


# ---------------------------------------------------------------- data validation


@dataclass
class Checked:
    """A book that passed validation: one row per policy period, claims matched, and the accounting."""

    rows: pl.DataFrame  # policy_id, period_start, period_end, exposure, claim_count, claim_amount, claims_matched,
    #                     then the factor and audit columns under their own names
    claims: pl.DataFrame  # policy_id, claim_date, amount, matched
    accounting: dict[str, int | float]


def _rows_text(idx: np.ndarray) -> str:
    rows = ", ".join(str(int(i) + 1) for i in idx[:SHOW_ROWS])
    more = f" and {len(idx) - SHOW_ROWS:,} more" if len(idx) > SHOW_ROWS else ""
    return f"row{'s' if len(idx) > 1 else ''} {rows}{more}"


def _problem(problems: list[str], file: str, column: str, mask: np.ndarray, what: str, values: Any = None) -> None:
    idx = np.flatnonzero(mask)
    if idx.size:
        sample = ""
        if values is not None:
            sample = " (e.g. " + ", ".join(repr(values[int(i)]) for i in idx[:3]) + ")"
        problems.append(f"{file}: column {column!r}, {_rows_text(idx)}: {what}{sample}")


def _as_float(df: pl.DataFrame, col: str, file: str, problems: list[str], required: bool = True) -> np.ndarray:
    s = df[col]
    raw = s.to_list() if s.dtype == pl.String else None
    num = s.cast(pl.Float64, strict=False) if s.dtype != pl.Boolean else s.cast(pl.Float64)
    vals = num.to_numpy().astype(float)
    isnull = s.is_null().to_numpy()
    if required:
        _problem(problems, file, col, isnull, "empty (NULL)")
    bad = np.isnan(vals) & ~isnull
    _problem(problems, file, col, bad, "not a number", raw if raw is not None else s.to_list())
    _problem(problems, file, col, np.isinf(vals), "infinite")
    return vals


def _as_date(df: pl.DataFrame, col: str, file: str, problems: list[str]) -> np.ndarray:
    s = df[col]
    if s.dtype == pl.Date:
        d = s
    elif s.dtype == pl.Datetime:
        d = s.dt.date()
    else:
        d = s.cast(pl.String).str.to_date("%Y-%m-%d", strict=False)
    isnull = s.is_null().to_numpy()
    _problem(problems, file, col, isnull, "empty (NULL)")
    _problem(
        problems, file, col, d.is_null().to_numpy() & ~isnull, "not a date YYYY-MM-DD", s.cast(pl.String).to_list()
    )
    return d.to_numpy()


def check_book(spec: BookSpec, rows: pl.DataFrame, claims: pl.DataFrame | None) -> Checked:
    """Validate a book against its spec; raises BookError listing every problem, else the rows ready to store."""
    problems: list[str] = []
    pf = spec.policies.name
    needed = [spec.policy_id, spec.exposure, spec.claim_count, spec.claim_amount, spec.period_start, spec.period_end]
    needed += spec.factor_columns + list(spec.protected) + ([spec.age] if spec.age else [])
    missing = [c for c in dict.fromkeys(x for x in needed if x) if c not in rows.columns]
    if missing:
        problems.append(f"{pf}: column(s) {missing} declared in the spec are not in the file; it has {rows.columns}")
    if claims is not None and spec.claims_path is not None:
        cneed = [spec.claims_policy_id, spec.claims_amount, spec.claims_date]
        cmiss = [c for c in cneed if c and c not in claims.columns]
        if cmiss:
            problems.append(
                f"{spec.claims_path.name}: column(s) {cmiss} declared in the spec are not in the file; "
                f"it has {claims.columns}"
            )
    if rows.height == 0:
        raise BookError(problems + [f"{pf}: no rows"], spec.path)
    # a missing column is reported above; a neutral stand-in lets every other column still be checked in this run
    rows = rows.with_columns(_stand_in(spec, c, rows.height) for c in missing)
    if claims is not None:
        claims = claims.with_columns(
            pl.lit(v).alias(c)
            for c, v in ((spec.claims_policy_id, "?"), (spec.claims_amount, 0.0), (spec.claims_date, "2000-01-01"))
            if c and c not in claims.columns
        )
    n = rows.height
    pid_s = rows[spec.policy_id]
    _problem(problems, pf, spec.policy_id, pid_s.is_null().to_numpy(), "empty (NULL) policy id")
    pid = pid_s.cast(pl.String).to_numpy().astype(str)
    expo = _as_float(rows, spec.exposure, pf, problems)
    ok = ~np.isnan(expo)
    _problem(problems, pf, spec.exposure, ok & (expo <= 0), "exposure must be above 0 policy-years", expo)
    _problem(
        problems, pf, spec.exposure, ok & (expo > MAX_EXPOSURE), f"exposure above {MAX_EXPOSURE} policy-years", expo
    )
    count = np.zeros(n)
    if spec.claim_count:
        count = _as_float(rows, spec.claim_count, pf, problems)
        ok = ~np.isnan(count)
        _problem(problems, pf, spec.claim_count, ok & ((count < 0) | (count != np.round(count))), "not a count", count)
    amount = np.full(n, np.nan)
    if spec.claim_amount:
        amount = _as_float(rows, spec.claim_amount, pf, problems)
        ok = ~np.isnan(amount)
        _problem(problems, pf, spec.claim_amount, ok & (amount < 0), "negative claim amount", amount)
        if spec.claim_count:
            _problem(
                problems, pf, spec.claim_amount, ok & (amount > 0) & (count == 0), "an amount on a row with 0 claims"
            )
    if spec.period_start and spec.period_end:
        start = _as_date(rows, spec.period_start, pf, problems)
        end = _as_date(rows, spec.period_end, pf, problems)
        both = ~np.isnat(start) & ~np.isnat(end)
        _problem(problems, pf, spec.period_end, both & (end <= start), "period ends before it starts")
    else:
        start = np.full(n, np.datetime64(date(spec.year or 1970, 1, 1)), dtype="datetime64[D]")
        end = np.full(n, np.datetime64(date((spec.year or 1970) + 1, 1, 1)), dtype="datetime64[D]")
    key = pl.DataFrame({"p": pid, "s": start})
    dup = key.is_duplicated().to_numpy()
    _problem(problems, pf, spec.policy_id, dup, "the same policy and period appear more than once", pid)
    out = {
        "policy_id": pid,
        "period_start": start.astype("datetime64[D]"),
        "period_end": end.astype("datetime64[D]"),
        "exposure": expo,
    }
    extra: dict[str, pl.Series] = {}
    kinds = {f.column: f.kind for f in spec.factors}
    for col in dict.fromkeys(spec.factor_columns + list(spec.protected) + ([spec.age] if spec.age else [])):
        age_numeric = col == spec.age and kinds.get(col) != "categorical"  # an age column may hold bands already
        if kinds.get(col, "categorical") == "categorical" and not age_numeric:
            s = rows[col]
            _problem(problems, pf, col, s.is_null().to_numpy(), "empty (NULL): give the level a name")
            txt = s.cast(pl.String)
            _problem(problems, pf, col, (txt.str.strip_chars() == "").fill_null(False).to_numpy(), "empty text")
            extra[col] = txt
        else:
            extra[col] = pl.Series(col, _as_float(rows, col, pf, problems))
    # claims file: one row per claim, matched to a policy period
    cl = pl.DataFrame(
        schema={"policy_id": pl.String, "claim_date": pl.Date, "amount": pl.Float64, "matched": pl.Boolean}
    )
    matched_count = np.zeros(n)
    matched_amount = np.zeros(n)
    acc: dict[str, int | float] = {"rows": n}
    if claims is not None and spec.claims_path is not None:
        cf = spec.claims_path.name
        assert spec.claims_policy_id and spec.claims_amount
        cps = claims[spec.claims_policy_id]
        _problem(problems, cf, spec.claims_policy_id, cps.is_null().to_numpy(), "empty (NULL) policy id")
        camt = _as_float(claims, spec.claims_amount, cf, problems)
        _problem(problems, cf, spec.claims_amount, ~np.isnan(camt) & (camt < 0), "negative claim amount", camt)
        cdate = (
            _as_date(claims, spec.claims_date, cf, problems)
            if spec.claims_date
            else np.full(claims.height, np.datetime64("NaT"), dtype="datetime64[D]")
        )
        if not problems:
            cpid = cps.cast(pl.String).to_numpy().astype(str)
            row_of = _match(pid, start, end, cpid, cdate if spec.claims_date else None)
            hit = row_of >= 0
            np.add.at(matched_count, row_of[hit], 1)
            np.add.at(matched_amount, row_of[hit], camt[hit])
            cl = pl.DataFrame(
                {
                    "policy_id": cpid,
                    "claim_date": cdate,
                    "amount": camt,
                    "matched": hit,
                },
                schema={"policy_id": pl.String, "claim_date": pl.Date, "amount": pl.Float64, "matched": pl.Boolean},
            )
            acc |= {
                "claims_in_file": int(claims.height),
                "claims_matched": int(hit.sum()),
                "claims_unmatched": int((~hit).sum()),
                "claims_unmatched_amount": float(camt[~hit].sum()),
            }
            if spec.claim_count:
                acc["rows_where_count_differs_from_claims_file"] = int((matched_count != count).sum())
    if problems:
        raise BookError(problems, spec.path)
    if not spec.claim_count:
        count = matched_count
    if spec.claims_path is not None:
        amount = matched_amount  # the claims file is the detail: its amounts win over a row total
    acc |= {
        "policies": int(np.unique(pid).size),
        "exposure_years": float(expo.sum()),
        "claims": int(count.sum()),
        "claims_with_amount": int(((amount > 0) * (count if spec.claims_path is None else matched_count)).sum()),
        "claim_amount_total": float(np.nansum(amount)),
    }
    frame = pl.DataFrame(out).with_columns(
        pl.Series("claim_count", count.astype(np.int64)),
        pl.Series("claim_amount", np.nan_to_num(amount, nan=0.0)),
        pl.Series("claims_with_amount", (matched_count if spec.claims_path is not None else count).astype(np.int64)),
    )
    for col, s in extra.items():
        frame = frame.with_columns(s.alias(f"f_{col}"))
    return Checked(frame, cl, acc)


def _stand_in(spec: BookSpec, col: str, n: int) -> pl.Series:
    """A value that passes every check, for a column already reported missing."""
    if col == spec.policy_id:
        return pl.Series(col, [f"row{i}" for i in range(n)])
    if col in (spec.period_start, spec.period_end):
        return pl.Series(col, ["2000-01-01" if col == spec.period_start else "2000-01-02"] * n)
    kinds = {f.column: f.kind for f in spec.factors}
    numeric = col in (spec.exposure, spec.claim_count, spec.claim_amount) or kinds.get(col) not in (
        None,
        "categorical",
    )
    numeric = numeric or (col == spec.age and kinds.get(col) != "categorical")
    value: float | str = (1.0 if col == spec.exposure else 0.0) if numeric else "missing"
    return pl.Series(col, [value] * n)


def _match(
    pid: np.ndarray, start: np.ndarray, end: np.ndarray, cpid: np.ndarray, cdate: np.ndarray | None
) -> np.ndarray:
    """For each claim, the row of its policy period (-1: none). Without claim dates a policy must have one row."""
    rows = pl.DataFrame({"policy_id": pid, "start": start, "end": end, "row": np.arange(pid.size)})
    c = pl.DataFrame({"policy_id": cpid, "i": np.arange(cpid.size)})
    if cdate is None:
        one = rows.group_by("policy_id").agg(pl.col("row").first(), pl.len().alias("n")).filter(pl.col("n") == 1)
        j = c.join(one, on="policy_id", how="left").sort("i")
        return j["row"].fill_null(-1).to_numpy().astype(np.int64)
    c = c.with_columns(pl.Series("date", cdate))
    j = c.join(rows, on="policy_id", how="inner").filter(
        (pl.col("date") >= pl.col("start")) & (pl.col("date") < pl.col("end"))
    )
    j = j.group_by("i").agg(pl.col("row").first())
    res = np.full(cpid.size, -1, dtype=np.int64)
    res[j["i"].to_numpy()] = j["row"].to_numpy()
    return res


def stored_column(col: str) -> str:
    """The stored name of a factor or audit column (prefixed so a book column can never shadow a fixed one)."""
    return f"f_{col}"


def finite(x: float) -> float | None:
    return None if math.isnan(x) else x
