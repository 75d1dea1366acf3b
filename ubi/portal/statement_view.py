"""A statement in words, in the policy's language: the facts of ``pricing.explain`` turned into sentences from the
message catalogues, an inline SVG chart, and the same content as JSON for other channels (mail, app, letters).
"""

from __future__ import annotations

import dataclasses
import html
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from pricing.explain import Explanation, FactorLine, Tip
from ubi.portal.i18n import Lang

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHART_COLOURS = ("#1b6ca8", "#c0392b", "#7d3c98", "#117a65")


def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def feature_label(lang: Lang, feature: str) -> str:
    return lang.t(f"feature.{feature}")


def band_label(lang: Lang, band: str) -> str:
    key = f"band.{band}"
    text = lang.t(key)
    return band if text == key else text  # a band the catalogue does not know keeps the rulebook's own label


def value_text(lang: Lang, unit: str, v: float) -> str:
    return lang.t(f"unit.{unit}", v=lang.num(v, 2 if unit == "per_100km" else 0))


def factor_sentence(lang: Lang, f: FactorLine) -> str:
    kw = {
        "label": feature_label(lang, f.feature),
        "value": value_text(lang, f.unit, f.value),
        "effect": lang.signed_money(f.effect),
        "band": band_label(lang, f.band),
        "rel": lang.num(f.relativity, 2),
    }
    if f.previous_value is None:
        return lang.t("factor.sentence.new", **kw)
    kw["previous"] = value_text(lang, f.unit, f.previous_value)
    direction = "down" if f.value < f.previous_value else "up" if f.value > f.previous_value else "same"
    text = lang.t(f"factor.sentence.{direction}", **kw)
    if f.change is not None and f.change != 0:
        text += " " + lang.t("factor.change", change=lang.signed_money(f.change))
    return text


def tip_sentence(lang: Lang, tip: Tip, unit: str) -> str:
    kw = {
        "label": feature_label(lang, tip.feature),
        "below": value_text(lang, unit, tip.below),
        "worth": lang.money(tip.worth),
        "band": band_label(lang, tip.band),
    }
    if tip.fewer_events is not None:
        return lang.tn("tip.events", "tip.events.plural", tip.fewer_events, **kw)
    return lang.t("tip.value", **kw)


def data_label(lang: Lang, name: str) -> str:
    key = f"data.{name}"
    text = lang.t(key)
    return name if text == key else text


def _list(lang: Lang, items: list[str]) -> str:
    return lang.t("list.separator").join(items)


def chart_svg(lang: Lang, ex: Explanation, width: int = 340, height: int = 150) -> str:
    """Bars of the last months' premiums and lines of the main factors, as inline SVG with a title and a text
    description (screen readers read those; the same figures are in the table beside it)."""
    pts = list(ex.history)
    if not pts:
        return ""
    n = len(pts)
    top = max(float(p.premium) for p in pts) * 1.15 or 1.0
    pad_l, pad_b, pad_t = 8, 22, 16
    bw = (width - pad_l * 2) / n
    plot_h = height - pad_b - pad_t
    title = lang.t("chart.title")
    desc = "; ".join(f"{lang.month_short(p.month)}: {lang.money(p.premium)}" for p in pts)
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-t chart-d" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-t">{html.escape(title)}</title><desc id="chart-d">{html.escape(desc)}</desc>',
    ]
    for i, p in enumerate(pts):
        h = float(p.premium) / top * plot_h
        x = pad_l + i * bw + bw * 0.15
        y = pad_t + plot_h - h
        current = p.month == ex.month
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{"#1b6ca8" if current else "#9cc3e0"}"/>'
        )
        parts.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{y - 3:.1f}" font-size="9" text-anchor="middle">'
            f"{html.escape(lang.num(float(p.premium), 2))}</text>"
        )
        parts.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{height - 8}" font-size="9" text-anchor="middle">'
            f"{html.escape(lang.month_short(p.month))}</text>"
        )
    # main factors (the two largest effects) as lines on their own scale, over the bars
    mains = [f.feature for f in ex.factors[:2]]
    for k, feat in enumerate(mains):
        vals = [p.values.get(feat) for p in pts]
        known = [v for v in vals if v is not None]
        if not known:
            continue
        vmax = max(known) * 1.2 or 1.0
        xy = [
            (pad_l + i * bw + bw * 0.5, pad_t + plot_h - (v / vmax) * plot_h)
            for i, v in enumerate(vals)
            if v is not None
        ]
        colour = CHART_COLOURS[(k + 1) % len(CHART_COLOURS)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{4 * k},{2 * k}"/>'
        )
        for x, y in xy:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def context(ex: Explanation, lang: Lang) -> dict:
    """Everything the statement template shows, as text in the language: the same texts go into the JSON."""
    L = lang
    month = L.month(ex.month)
    headline = L.t("statement.headline", month=month, premium=L.money(ex.premium))
    if ex.first_month:
        change = L.t("statement.first_month", base=L.money(ex.base_premium))
    elif ex.change > 0:
        change = L.t(
            "statement.change_up", change=L.money(ex.change), pct=L.signed_pct(ex.change_pct),
            previous=L.money(ex.previous_premium),
        )  # fmt: skip
    elif ex.change < 0:
        change = L.t(
            "statement.change_down", change=L.money(-ex.change), pct=L.signed_pct(ex.change_pct),
            previous=L.money(ex.previous_premium),
        )  # fmt: skip
    else:
        change = L.t("statement.change_none", previous=L.money(ex.previous_premium))
    drove = L.tn("statement.drove", "statement.drove.plural", ex.trips, km=L.num(ex.km, 0))
    units = {f.feature: f.unit for f in ex.factors}
    factors = [
        {
            "feature": f.feature,
            "label": feature_label(L, f.feature),
            "value": value_text(L, f.unit, f.value),
            "previous": "" if f.previous_value is None else value_text(L, f.unit, f.previous_value),
            "band": band_label(L, f.band),
            "relativity": "×" + L.num(f.relativity, 2),
            "effect": L.signed_money(f.effect),
            "change": "" if f.change is None else L.signed_money(f.change),
            "sentence": factor_sentence(L, f),
        }
        for f in ex.factors
    ]
    build = [
        (L.t("build.base"), L.money(ex.base_premium)),
        (
            L.t("build.driving", factor=L.num(float(ex.factor), 4), share=L.pct(ex.credibility), km=L.num(ex.km, 0)),
            L.signed_money(ex.driving_effect),
        ),
    ]
    if ex.off_balance is not None:
        build.append(
            (L.t("build.offbalance", c=L.num(float(ex.off_balance), 4)), L.signed_money(ex.off_balance_effect))
        )
    if ex.cap_applied != "none":
        build.append((L.t("build.cap"), L.signed_money(ex.cap_effect)))
    build.append((L.t("build.total"), L.money(ex.premium)))
    notes = []
    if ex.gated:
        notes.append(
            L.t("note.gated", trips=L.integer(ex.trips), km=L.num(ex.km, 0), min_trips=L.integer(ex.min_trips),
                min_km=L.num(ex.min_km, 0))
        )  # fmt: skip
    else:
        notes.append(L.t("note.credibility", km=L.num(ex.km, 0), share=L.pct(ex.credibility), k=L.num(ex.k_km, 0)))
    if ex.cap_applied == "increase":
        notes.append(
            L.t("note.cap_increase", uncapped=L.money(ex.uncapped), pct=L.pct(ex.max_increase),
                limit=L.money(ex.cap_high))
        )  # fmt: skip
    elif ex.cap_applied == "decrease":
        notes.append(
            L.t("note.cap_decrease", uncapped=L.money(ex.uncapped), pct=L.pct(ex.max_decrease),
                limit=L.money(ex.cap_low))
        )  # fmt: skip
    if ex.clamped == "floor":
        notes.append(L.t("note.floor", raw=L.num(ex.factor_raw, 4), floor=L.num(ex.factor_floor, 2)))
    elif ex.clamped == "ceiling":
        notes.append(L.t("note.ceiling", raw=L.num(ex.factor_raw, 4), ceiling=L.num(ex.factor_ceiling, 2)))
    notes.append(
        L.t("note.range", floor=L.money(ex.floor_premium), f=L.num(ex.factor_floor, 2),
            ceiling=L.money(ex.ceiling_premium), c=L.num(ex.factor_ceiling, 2), base=L.money(ex.base_premium))
    )  # fmt: skip
    if ex.no_discount:
        notes.append(L.t("note.completeness", share=L.pct(ex.completeness), min=L.pct(ex.min_completeness)))
    for feature in ex.not_consented:
        notes.append(L.t("note.no_consent", label=feature_label(L, feature)))
    if ex.off_balance is not None and ex.off_balance != 1:
        notes.append(L.t("note.offbalance", c=L.num(float(ex.off_balance), 4)))
    if ex.excluded_trips:
        km = sum(float(t["km"]) for t in ex.excluded_trips)
        notes.append(L.tn("note.excluded", "note.excluded.plural", len(ex.excluded_trips), km=L.num(km, 1)))
    if ex.gated:
        tips = [L.t("tip.gated", min_trips=L.integer(ex.min_trips), min_km=L.num(ex.min_km, 0))]
    elif ex.tips:
        tips = [tip_sentence(L, t, units.get(t.feature, "per_100km")) for t in ex.tips]
    else:
        tips = [L.t("tip.none")]
    history = [
        {
            "month": L.month_short(p.month),
            "premium": L.money(p.premium),
            "values": [value_text(L, units.get(f, "per_100km"), v) for f, v in p.values.items()],
        }
        for p in ex.history
    ]
    privacy = [
        L.t("privacy.used", list=_list(L, [data_label(L, d) for d in ex.data_used])),
        L.t("privacy.measured", list=_list(L, [data_label(L, d) for d in ex.measured_not_priced])),
        L.t("privacy.never", list=_list(L, [data_label(L, d) for d in ex.never_used])),
    ]
    return {
        "lang": L.html_lang,
        "title": L.t("statement.doc_title", month=month),
        "policy": L.t("statement.policy", policy=ex.policy_id),
        "headline": headline,
        "change": change,
        "drove": drove,
        "factors": factors,
        "history_features": [feature_label(L, f) for f in (ex.history[-1].values if ex.history else {})],
        "build": build,
        "notes": notes,
        "tips": tips,
        "history": history,
        "chart": chart_svg(L, ex),
        "privacy": privacy,
        "footer": L.t("statement.footer", version=ex.rulebook_version, sha=ex.rulebook_sha256[:12]),
    }


def _plain(v: object) -> object:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, date):
        return v.isoformat()
    return v


def as_json(ex: Explanation, lang: Lang) -> dict:
    """The statement for other channels: language-neutral facts (amounts as decimal strings) and the texts."""
    facts = json.loads(json.dumps(dataclasses.asdict(ex), default=_plain))
    ctx = context(ex, lang)
    ctx.pop("chart")
    ctx["build"] = [{"item": a, "amount": b} for a, b in ctx["build"]]
    return {"policy_id": ex.policy_id, "month": ex.month.strftime("%Y-%m"), "language": lang.code, "facts": facts,
            "text": ctx}  # fmt: skip


def render_file(ex: Explanation, lang: Lang, retention: dict) -> str:
    """A self-contained HTML page (inline CSS and SVG, no scripts or external files)."""
    return environment().get_template("statement_file.html").render(s=context(ex, lang), t=lang.t, retention=retention)
