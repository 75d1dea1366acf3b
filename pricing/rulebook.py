"""The rulebook: a versioned TOML file actuaries edit, validated before it can price anything.

Validation collects every problem (with the line where it can be found, else the key path) and refuses the
file as a whole; a refused rulebook changes nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ubi.common.errors import RulebookError

# Features the monthly run computes per policy; a factor may use only these.
KNOWN_FEATURES = {
    "harsh_brakes_per_100km": "harsh brakes per 100 km",
    "harsh_accels_per_100km": "fast starts per 100 km",
    "km": "kilometres driven in the month",
    "driving_hours": "hours driven in the month",
}
ALWAYS_PROHIBITED = {"gender", "sex"}
RELATIVITY_RANGE = (0.5, 2.0)  # PIPL-reported coefficient bounds [0.5, 1.5] fit inside; wider is refused


@dataclass(frozen=True)
class Band:
    lo: float
    hi: float  # math.inf for the open top band
    relativity: float
    label: str


@dataclass(frozen=True)
class Factor:
    feature: str
    label: str
    bands: tuple[Band, ...]

    def band_for(self, value: float) -> Band:
        for b in self.bands:
            if b.lo <= value < b.hi:
                return b
        return self.bands[-1] if value >= self.bands[-1].lo else self.bands[0]


@dataclass(frozen=True)
class Rulebook:
    version: str
    effective_from: date
    author: str
    notes: str
    prohibited: tuple[str, ...]
    k_km: float
    min_trips: int
    min_km: float
    factor_floor: float
    factor_ceiling: float
    max_increase: float
    max_decrease: float
    factors: tuple[Factor, ...]
    sha256: str
    text: str
    path: str
    # Optional [offbalance]: rescale every premium by one factor c so the book's revenue equals last month's.
    off_balance: bool = False
    off_balance_tolerance: float = 1e-4  # accepted relative revenue gap
    off_balance_max_iterations: int = 50
    off_balance_bounds: tuple[float, float] = (0.8, 1.25)  # c outside these is refused as a solve, not applied
    # Optional [credibility] min_completeness: below this share of the month's device messages received (data
    # completeness, seq gaps inside and between trips) the factor may not go below 1: withholding data never pays.
    min_completeness: float = 0.0


def toml_number(x: float) -> str:
    """A float as TOML that parses back to the same float."""
    return repr(float(x))


def settings_toml(
    rb: Rulebook, *, header: str, version: str, today: date, notes: str, prohibited: list[str]
) -> list[str]:
    """The lines of a rulebook up to its factors: meta, base, credibility (min_completeness too), limits and
    offbalance, with ``rb``'s settings. What a draft rulebook keeps of the live one (pricing/fit.py, book_fit.py)."""
    n = toml_number
    lines = [
        header,
        "",
        "[meta]",
        f'version = "{version}"',
        f'effective_from = "{today.isoformat()}"',
        'author = "ubi actuary fit (draft, needs actuarial sign-off)"',
        f'notes = """{notes}"""',
        "prohibited_factors = [" + ", ".join(f'"{p}"' for p in sorted(set(prohibited))) + "]",
        "",
        "[base]",
        'source = "policy"',
        "",
        "[credibility]",
        f"k_km = {n(rb.k_km)}",
        f"min_trips = {rb.min_trips}",
        f"min_km = {n(rb.min_km)}",
    ]
    if rb.min_completeness:
        lines.append(f"min_completeness = {n(rb.min_completeness)}")
    lines += [
        "",
        "[limits]",
        f"factor_floor = {n(rb.factor_floor)}",
        f"factor_ceiling = {n(rb.factor_ceiling)}",
        f"max_increase = {n(rb.max_increase)}",
        f"max_decrease = {n(rb.max_decrease)}",
    ]
    if rb.off_balance:
        lines += [
            "",
            "[offbalance]",
            "enabled = true",
            f"tolerance = {n(rb.off_balance_tolerance)}",
            f"max_iterations = {rb.off_balance_max_iterations}",
            f"min_factor = {n(rb.off_balance_bounds[0])}",
            f"max_factor = {n(rb.off_balance_bounds[1])}",
        ]
    return lines


def _line_of(text: str, pattern: str) -> int | None:
    """First line matching a regex: TOML parsers do not report key positions, so we find the key's text."""
    rx = re.compile(pattern)
    for i, line in enumerate(text.splitlines(), 1):
        if rx.search(line.split("#", 1)[0]):
            return i
    return None


def load_rulebook(path: Path | str) -> Rulebook:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulebookError([f"cannot read: {exc.strerror}"], str(path)) from None
    return parse_rulebook(text, str(path))


def parse_rulebook(text: str, path: str = "<rulebook>") -> Rulebook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulebookError([f"not valid TOML: {exc}"], path) from None
    problems: list[str] = []

    def where(key_path: str, needle: str | None = None) -> str:
        key = key_path.split(".")[-1].split("[")[0]
        line = _line_of(text, needle or rf"^\s*{re.escape(key)}\s*=")
        return f"line {line} ({key_path})" if line else key_path

    def get(section: str, key: str, kind: type | tuple, lo: float | None = None, hi: float | None = None):
        sec = data.get(section)
        if not isinstance(sec, dict):
            problems.append(f"[{section}]: section missing")
            return None
        if key not in sec:
            problems.append(f"{section}.{key}: missing")
            return None
        value: Any = sec[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            problems.append(f"{where(f'{section}.{key}')}: expected {getattr(kind, '__name__', 'number')}")
            return None
        if lo is not None and isinstance(value, (int, float)) and (value < lo or (hi is not None and value > hi)):
            problems.append(f"{where(f'{section}.{key}')}: {value} out of range [{lo}, {hi}]")
            return None
        return value

    known_sections = {"meta", "base", "credibility", "limits", "factors", "offbalance"}
    for name in data:
        if name not in known_sections:
            section_rx = rf"^\s*\[+\s*{re.escape(name)}\s*\]"
            problems.append(f"{where(name, section_rx)}: unknown section")
    version = get("meta", "version", str)
    eff = get("meta", "effective_from", (str, date))
    effective = None
    if isinstance(eff, date):
        effective = eff
    elif isinstance(eff, str):
        try:
            effective = date.fromisoformat(eff)
        except ValueError:
            problems.append(f"{where('meta.effective_from')}: not an ISO date: {eff!r}")
    author = data.get("meta", {}).get("author", "")
    notes = data.get("meta", {}).get("notes", "")
    prohibited = data.get("meta", {}).get("prohibited_factors", [])
    if not isinstance(prohibited, list) or not all(isinstance(p, str) for p in prohibited):
        problems.append(f"{where('meta.prohibited_factors')}: expected a list of names")
        prohibited = []
    prohibited_all = tuple(sorted(set(prohibited) | ALWAYS_PROHIBITED))
    source = data.get("base", {}).get("source")
    if source != "policy":
        problems.append(f"{where('base.source')}: only 'policy' is supported, got {source!r}")
    k_km = get("credibility", "k_km", (int, float), 1e-9, 1e9)
    min_trips = get("credibility", "min_trips", int, 0, 10_000)
    min_km = get("credibility", "min_km", (int, float), 0, 1e6)
    floor = get("limits", "factor_floor", (int, float), 0.1, 1.0)
    ceiling = get("limits", "factor_ceiling", (int, float), 1.0, 5.0)
    max_inc = get("limits", "max_increase", (int, float), 0.0, 1.0)
    max_dec = get("limits", "max_decrease", (int, float), 0.0, 1.0)

    factors: list[Factor] = []
    raw_factors = data.get("factors", [])
    if not isinstance(raw_factors, list):
        problems.append("factors: expected [[factors]] tables")
        raw_factors = []
    seen = set()
    for i, f in enumerate(raw_factors):
        key = f"factors[{i}]"
        feat = f.get("feature") if isinstance(f, dict) else None
        if not isinstance(feat, str):
            problems.append(f"{key}.feature: missing")
            continue
        loc = where(f"{key}.feature", rf'feature\s*=\s*"{re.escape(feat)}"')
        if feat in prohibited_all or any(p in feat for p in prohibited_all):
            problems.append(f"{loc}: {feat!r} is a prohibited factor and may not be priced on")
            continue
        if feat not in KNOWN_FEATURES:
            problems.append(f"{loc}: unknown feature {feat!r}; known: {sorted(KNOWN_FEATURES)}")
            continue
        if feat in seen:
            problems.append(f"{loc}: feature {feat!r} appears twice")
        seen.add(feat)
        bands = _parse_bands(f.get("bands"), f"{key}.bands", loc, problems)
        if bands:
            factors.append(Factor(feat, str(f.get("label", KNOWN_FEATURES[feat])), bands))
    if floor is not None and ceiling is not None and floor > ceiling:
        problems.append("limits: factor_floor is above factor_ceiling")
    ob = _parse_offbalance(data, get, problems)
    cred = data.get("credibility")
    if isinstance(cred, dict) and "min_completeness" in cred:
        mc = get("credibility", "min_completeness", (int, float), 0.0, 1.0)
        if mc is not None:
            ob["min_completeness"] = float(mc)
    if problems:
        raise RulebookError(problems, path)
    assert effective is not None  # a missing date is a problem above
    return Rulebook(
        version=version,
        effective_from=effective,
        author=str(author),
        notes=str(notes),
        prohibited=prohibited_all,
        k_km=float(k_km),
        min_trips=int(min_trips),
        min_km=float(min_km),
        factor_floor=float(floor),
        factor_ceiling=float(ceiling),
        max_increase=float(max_inc),
        max_decrease=float(max_dec),
        factors=tuple(factors),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        path=path,
        **ob,
    )


def _parse_offbalance(data: dict, get, problems: list[str]) -> dict:
    """The optional [offbalance] section; absent means off, so older rulebooks keep pricing exactly as before."""
    sec = data.get("offbalance")
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        problems.append("offbalance: expected a table [offbalance]")
        return {}
    for key in sec:
        if key not in {"enabled", "tolerance", "max_iterations", "min_factor", "max_factor"}:
            problems.append(f"offbalance.{key}: unknown setting")
    enabled = sec.get("enabled", False)
    if not isinstance(enabled, bool):
        problems.append("offbalance.enabled: expected true or false")
        enabled = False
    out: dict = {"off_balance": enabled}
    if "tolerance" in sec:
        out["off_balance_tolerance"] = get("offbalance", "tolerance", (int, float), 1e-9, 0.05)
    if "max_iterations" in sec:
        out["off_balance_max_iterations"] = get("offbalance", "max_iterations", int, 1, 1000)
    lo = get("offbalance", "min_factor", (int, float), 0.5, 1.0) if "min_factor" in sec else 0.8
    hi = get("offbalance", "max_factor", (int, float), 1.0, 2.0) if "max_factor" in sec else 1.25
    out["off_balance_bounds"] = (float(lo or 0.8), float(hi or 1.25))
    return {k: v for k, v in out.items() if v is not None}


def _parse_bands(raw, key: str, loc: str, problems: list[str]) -> tuple[Band, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{loc}: {key} must be a non-empty list of bands")
        return ()
    bands = []
    for j, b in enumerate(raw):
        bk = f"{key}[{j}]"
        if not isinstance(b, dict) or "from" not in b or "relativity" not in b:
            problems.append(f"{loc}: {bk} needs 'from' and 'relativity'")
            return ()
        lo, hi, rel = b["from"], b.get("to", math.inf), b["relativity"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi, rel)):
            problems.append(f"{loc}: {bk} from/to/relativity must be numbers")
            return ()
        if not RELATIVITY_RANGE[0] <= rel <= RELATIVITY_RANGE[1]:
            problems.append(f"{loc}: {bk} relativity {rel} outside {list(RELATIVITY_RANGE)}")
        if hi <= lo:
            problems.append(f"{loc}: {bk} is empty or reversed (from {lo} to {hi})")
        bands.append(Band(float(lo), float(hi), float(rel), str(b.get("label", f"{lo}-{hi}"))))
    bands.sort(key=lambda b: b.lo)
    if bands[0].lo != 0.0:
        problems.append(f"{loc}: {key} must start at 0, starts at {bands[0].lo}")
    for a, b in zip(bands, bands[1:], strict=False):
        if b.lo < a.hi:
            problems.append(f"{loc}: {key} bands overlap at {b.lo} (previous band ends at {a.hi})")
        elif b.lo > a.hi:
            problems.append(f"{loc}: {key} leaves a gap between {a.hi} and {b.lo}")
    if bands[-1].hi != math.inf:
        problems.append(f"{loc}: {key} last band must be open-ended (no 'to'), ends at {bands[-1].hi}")
    return tuple(bands)
