"""Each premium row's trace (JSON) and statement, built from the book's arrays instead of one engine call per policy.

Why: the per-policy engine (``pricing.engine.price_policy`` + ``json.dumps`` + ``statement``) costs ~40 us a
policy, 400 s of one core for a 10 M-policy book. Here everything that is the same for many rows (the rulebook's
constants, each band's JSON and statement words, the off-balance sentence) is formatted once, money comes from the
integer cents the array pricing computed, and the floats that differ per row go through the very Python calls the
engine makes (``repr(round(x, n))`` as ``json.dumps`` writes a float, ``format(x, ".2f")``), so the text is the
engine's, byte for byte. ``tests/test_pricing_rowtext.py`` compares both on random books and edge cases.

Rows the fast path does not cover are handed back to the engine by the caller: features withheld for lack of
consent, trips excluded by an objection (their trace carries them), and any non-finite input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal

import numpy as np

from pricing.engine import off_balance_decimal
from pricing.rulebook import Rulebook
from pricing.vector import CAP_DOWN, CAP_UP, Book, Priced, _div_half_up, _scaled

_UNIT = {"km": "km", "driving_hours": "hours"}  # others: "per 100 km" (pricing.engine.statement)
_CAP_TEXT = {
    CAP_UP: "Your price would have risen more, but monthly increases are capped so changes stay predictable.",
    CAP_DOWN: "Your price would have fallen further; the rest of the saving follows in the coming months "
    "as monthly decreases are capped.",
}
_CAP_LABEL = {0: "none", CAP_UP: "increase", CAP_DOWN: "decrease"}
_BOOL = {True: "true", False: "false"}  # json.dumps of a bool


def _j(x: object) -> str:
    return json.dumps(x)


def _money(c: np.ndarray) -> list[str]:
    """Cents as ``str(Decimal)`` of the engine's money (two decimals; the amounts here are never negative)."""
    return [f"{v // 100}.{v % 100:02d}" for v in c.tolist()]


def _rounded(x: np.ndarray, places: int) -> list[str]:
    """``json.dumps(round(x, places))`` of finite floats: the shortest repr of Python's correctly rounded value."""
    return [repr(round(v, places)) for v in x.tolist()]


def _change(premium_c: np.ndarray, prev_c: np.ndarray) -> list[str]:
    """``f"{(premium - prev) / prev * 100:+.1f}"`` in Decimal (the engine's), in integers: the tenths of a percent
    rounded half to even (Decimal's formatting rounding) of the exact ratio, with Decimal's signed zero."""
    d = premium_c - prev_c
    num = np.abs(d) * 1000
    den = np.where(prev_c > 0, prev_c, 1)
    q, r = np.divmod(num, den)
    up = (2 * r > den) | ((2 * r == den) & (q % 2 == 1))
    tenths = np.where(prev_c > 0, q + up, 0)
    sign = np.where((d < 0) & (prev_c > 0), "-", "+")
    return [f"{s}{t // 10}.{t % 10}" for s, t in zip(sign.tolist(), tenths.tolist(), strict=True)]


def fast_rows(
    rb: Rulebook, month_label: str, book: Book, has_prev: np.ndarray, p: Priced, lo: int, hi: int
) -> tuple[list[str], list[str]]:
    """Traces and statements of policies [lo, hi), equal to ``json.dumps(price_policy(...).trace)`` and
    ``statement(...)`` for the rows ``covered`` selects (the others' text is not meaningful)."""
    s = slice(lo, hi)
    n = hi - lo
    km = book.km[s]
    trips = book.trips[s].tolist()
    comp = np.ones(n) if book.completeness is None else book.completeness[s]
    f = p.factors
    g, z, gated = f.g[s], f.z[s], f.gated[s]
    raw = 1.0 + z * (g - 1.0)  # the engine's float steps, in its order
    short = comp < rb.min_completeness
    base_c = book.base_c[s]
    prev_c = np.where(has_prev[s], book.prev_c[s], base_c)  # the engine: no previous premium -> the base
    inc, s_inc = _scaled(rb.max_increase)
    dec, s_dec = _scaled(rb.max_decrease)
    hi_c = _div_half_up(prev_c * (s_inc + inc), s_inc)
    lo_c = _div_half_up(prev_c * (s_dec - dec), s_dec)
    ob = None if not rb.off_balance else off_balance_decimal(Decimal(p.off_balance_u).scaleb(-6))

    km3 = [round(v, 3) for v in km.tolist()]
    km_j = [repr(v) for v in km3]
    km_s = [format(v, ".0f") for v in km3]
    dh_j = _rounded(book.driving_hours[s], 3)
    hb, ha = book.harsh_brakes[s].tolist(), book.harsh_accels[s].tolist()
    g_j, z_j, raw_j = _rounded(g, 6), _rounded(z, 6), _rounded(raw, 6)
    share = [round(v, 4) for v in comp.tolist()]
    z_pct = [format(v * 100, ".0f") for v in z.tolist()]
    fac_u = f.factor_u[s].tolist()
    fac = [f"{u // 10000}.{u % 10000:04d}" for u in fac_u]
    base_m, prev_m = _money(base_c), _money(prev_c)
    unc_m, prem_m = _money(p.uncapped_c[s]), _money(p.premium_c[s])
    lo_m, hi_m = _money(lo_c), _money(hi_c)
    change = _change(p.premium_c[s], prev_c)
    caps = p.cap[s].tolist()
    gated_l, short_l = gated.tolist(), short.tolist()

    # per factor: each band's JSON tail and statement words, and the rows' values
    factor_cols = []
    for rf in rb.factors:
        head = f'{{"feature": {_j(rf.feature)}, "label": {_j(rf.label)}, "value": '
        tails = [
            f', "band": {_j(b.label)}, "from": {_j(b.lo)}, "to": {_j(None if b.hi == float("inf") else b.hi)}, '
            f'"relativity": {_j(b.relativity)}}}'
            for b in rf.bands
        ]
        unit = _UNIT.get(rf.feature, "per 100 km")
        words = [
            f" {unit}, in the band '{b.label}', which "
            f"{'lowers' if b.relativity < 1 else 'raises' if b.relativity > 1 else 'does not change'} "
            f"your price (x{b.relativity:.2f})."
            for b in rf.bands
        ]
        x4 = [round(v, 4) for v in book.value(rf.feature)[s].tolist()]
        idx = f.bands[rf.feature][s].tolist()
        factor_cols.append((head, tails, rf.label.capitalize() + ": ", words, x4, idx))

    rulebook_j = f'{{"rulebook": {{"version": {_j(rb.version)}, "sha256": {_j(rb.sha256)}}}, "features": {{"trips": '
    gate_j = f', "gate": {{"min_trips": {_j(rb.min_trips)}, "min_km": {_j(rb.min_km)}, "gated": '
    cred_j = f'}}, "credibility": {{"k_km": {_j(rb.k_km)}, "z": '
    comp_min = _j(rb.min_completeness)
    floor_ceil = f', "floor": {_j(rb.factor_floor)}, "ceiling": {_j(rb.factor_ceiling)}, "final": "'
    ob_j = "null" if ob is None else f'"{ob}"'
    gated_line = (
        f"We need at least {rb.min_trips} trips and {rb.min_km:.0f} km in a month "
        "before your driving changes your price, so this month your base premium applies."
    )
    ob_line = (
        f"All premiums this month include a book-wide adjustment of x{ob:.4f} that keeps the "
        "insurer's total premium unchanged."
        if ob is not None and ob != 1
        else None
    )
    min_pct = format(rb.min_completeness * 100, ".0f")

    traces: list[str] = []
    statements: list[str] = []
    for i in range(n):
        steps = ", ".join(c[0] + repr(c[4][i]) + c[1][c[5][i]] for c in factor_cols)
        gi, si = gated_l[i], short_l[i]
        cap = caps[i]
        traces.append(
            f'{rulebook_j}{trips[i]}, "km": {km_j[i]}, "driving_hours": {dh_j[i]}, "harsh_brakes": {hb[i]}, '
            f'"harsh_accels": {ha[i]}}}, "factors": [{steps}], "g": {g_j[i]}{gate_j}{_BOOL[gi]}{cred_j}{z_j[i]}}}, '
            f'"completeness": {{"share": {share[i]!r}, "min": {comp_min}, "no_discount": {_BOOL[si]}}}, '
            f'"factor": {{"raw": {raw_j[i]}{floor_ceil}{fac[i]}"}}, "base_premium": "{base_m[i]}", '
            f'"off_balance": {ob_j}, "uncapped": "{unc_m[i]}", "cap": {{"previous": "{prev_m[i]}", '
            f'"low": "{lo_m[i]}", "high": "{hi_m[i]}", "applied": "{_CAP_LABEL[cap]}"}}, "premium": "{prem_m[i]}"}}'
        )
        lines = [
            f"Your premium for {month_label} is EUR {prem_m[i]} (last month EUR {prev_m[i]}, {change[i]}%).",
            f"You drove {km_s[i]} km in {trips[i]} trips.",
        ]
        if gi:
            lines.append(gated_line)
        else:
            for c in factor_cols:
                lines.append(c[2] + format(c[4][i], ".2f") + c[3][c[5][i]])
            lines.append(
                f"With {km_s[i]} km of driving this month, your own driving counts for {z_pct[i]}% of the "
                f"adjustment; your telematics factor is {fac[i]}."
            )
        if si:
            lines.append(
                f"Only {share[i] * 100:.0f}% of your device's driving data reached us this month (at least "
                f"{min_pct}% is needed for a discount), so no discount applies this month. If your "
                "device was offline or faulty, tell us and we will review it."
            )
        if ob_line:
            lines.append(ob_line)
        if cap in _CAP_TEXT:
            lines.append(_CAP_TEXT[cap])
        statements.append(" ".join(lines))
    return traces, statements


def covered(book: Book, lo: int, hi: int, excluded_ids: set[str] | None, ids: Sequence[str]) -> np.ndarray:
    """Rows of [lo, hi) that ``fast_rows`` builds; the others go through the engine: a withheld feature, an
    excluded trip (``excluded_ids``; ``ids`` are the rows' policy ids), or a non-finite km, hours or share."""
    s = slice(lo, hi)
    ok = np.isfinite(book.km[s]) & np.isfinite(book.driving_hours[s]) & (book.km[s] >= 0)
    if book.completeness is not None:
        ok &= np.isfinite(book.completeness[s])
    if book.withheld:
        for m in book.withheld.values():
            ok &= ~m[s]
    if excluded_ids:
        ok &= np.array([i not in excluded_ids for i in ids], dtype=bool)
    return ok
