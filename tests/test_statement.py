"""Statements (issue 15): the facts equal the premium row and its trace, the money adds up to the cent, tips are
worth what re-pricing says, every text comes from both catalogues, and `ubi statements` writes every policy."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.engine import MonthFeatures, money, price_policy
from pricing.explain import explain, factor_effects
from tests import portal_data
from ubi.adapters import portal_store as ps
from ubi.common.config import Config
from ubi.common.errors import PortalError, PricingError
from ubi.portal import i18n
from ubi.portal.i18n import Lang
from ubi.portal.statement_view import as_json, context, render_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("st") / "s.duckdb"
    portal_data.build(path)
    con = ps.connect(path)
    yield con
    con.close()


def rows(con) -> list[tuple[str, date]]:
    return con.execute("SELECT policy_id, month FROM premiums ORDER BY 1, 2").fetchall()


def test_statement_equals_the_premium_row_and_adds_up(db):
    cases = set()
    for pid, month in rows(db):
        ex = ps.statement_facts(db, pid, month)
        row = ps.premium_row(db, pid, month)
        trace = json.loads(row["trace"])
        assert ex.premium == row["premium"] and ex.previous_premium == row["previous_premium"]
        assert ex.base_premium == row["base_premium"] and ex.uncapped == row["uncapped_premium"]
        assert ex.cap_applied == row["cap_applied"] and float(ex.factor) == pytest.approx(row["telematics_factor"])
        assert ex.trips == trace["features"]["trips"] and ex.km == trace["features"]["km"]
        # the waterfall is exact to the cent, and the factors' effects add up to the driving effect
        assert ex.base_premium + ex.driving_effect + ex.off_balance_effect + ex.cap_effect == ex.premium
        assert sum((f.effect for f in ex.factors), Decimal(0)) == ex.driving_effect
        assert [abs(f.effect) for f in ex.factors] == sorted((abs(f.effect) for f in ex.factors), reverse=True)
        for f in ex.factors:  # an effect has the sign of its relativity
            assert (f.effect < 0) == (f.relativity < 1) or f.effect == 0
        cases.add(ex.cap_applied)
        cases.add("gated" if ex.gated else "priced")
    assert cases == {"none", "increase", "decrease", "gated", "priced"}  # the data covers every kind of note


def test_a_trace_that_disagrees_with_its_row_stops_the_statement(db):
    row = ps.premium_row(db, "P1", date(2026, 11, 1))
    trace = json.loads(row["trace"])
    trace["premium"] = str(Decimal(trace["premium"]) + Decimal("0.01"))
    with pytest.raises(PricingError, match="disagree on \\['premium'\\]"):
        explain(portal_data.RB, row, trace, None, [])


def test_tips_are_worth_what_repricing_says(db):
    found = 0
    for pid, month in rows(db):
        ex = ps.statement_facts(db, pid, month)
        trace = json.loads(ps.premium_row(db, pid, month)["trace"])
        f = trace["features"]
        for tip in ex.tips:
            key = {"harsh_brakes_per_100km": "harsh_brakes", "harsh_accels_per_100km": "harsh_accels"}[tip.feature]
            fewer = dict(f, **{key: f[key] - tip.fewer_events})
            r = price_policy(
                portal_data.RB,
                ex.base_premium,
                ex.previous_premium,
                MonthFeatures(fewer["trips"], fewer["km"], fewer["driving_hours"], fewer["harsh_brakes"],
                              fewer["harsh_accels"]),
            )  # fmt: skip
            assert ex.uncapped - r.uncapped == tip.worth, (pid, month, tip)
            # and one event fewer than the tip says is not enough to reach the band
            short = dict(fewer, **{key: fewer[key] + 1})
            assert short[key] * 100 / f["km"] >= tip.below
            found += 1
    assert found >= 2


def test_factor_effects_split_exactly_even_when_relativities_cancel():
    trace = {
        "base_premium": "55.00",
        "factor": {"final": "1.0000"},
        "credibility": {"z": 0.5},
        "factors": [{"feature": "a", "relativity": 1.25}, {"feature": "b", "relativity": 0.8}],
    }
    e = factor_effects(trace)
    assert e["a"] > 0 > e["b"] and e["a"] + e["b"] == 0
    trace["factor"]["final"] = "0.8763"
    trace["factors"] = [{"feature": "a", "relativity": 0.8}, {"feature": "b", "relativity": 0.95}]
    e = factor_effects(trace)
    assert e["a"] + e["b"] == money(Decimal("55.00") * Decimal("0.8763")) - Decimal("55.00")
    assert e["a"] < e["b"] < 0


def keys_used() -> set[str]:
    """Every literal message key in the portal's code and templates."""
    found = set()
    for path in list((ROOT / "ubi/portal").rglob("*.py")) + list((ROOT / "ubi/portal/templates").glob("*.html")):
        found |= set(re.findall(r"""\bt[n]?\(\s*["']([a-z_]+\.[a-z_.]+)["']""", path.read_text()))
    return found


def test_every_text_is_in_both_catalogues_with_the_same_placeholders():
    en, zh = i18n.keys("en"), i18n.keys("zh-CN")
    assert set(en) == set(zh)
    missing = keys_used() - set(en)
    assert not missing and len(keys_used()) > 60, missing
    for k in en:
        assert en[k] and zh[k], k
        ph = set(re.findall(r"%\((\w+)\)s", en[k]))
        assert ph == set(re.findall(r"%\((\w+)\)s", zh[k])) or k.endswith("drove"), k
    # dynamic keys: every feature and band of the starter rulebook, every objection reason and sign-in refusal
    for f in portal_data.RB.factors:
        assert f"feature.{f.feature}" in en
        assert all(f"band.{b.label}" in en for b in f.bands)
    for r in ps.REASONS:
        assert f"objection.reason.{r}" in en
    for r in ("unknown", "expired", "revoked", "limited"):
        assert f"signin.refused.{r}" in en


def test_rendered_in_both_languages_with_locale_formats(db):
    ex = ps.statement_facts(db, "P2", date(2026, 10, 1))
    en, zh = context(ex, Lang("en")), context(ex, Lang("zh-CN"))
    assert en["headline"] == "Your premium for October 2026 is €52.35."
    assert zh["headline"] == "您2026年10月的保费为 €52.35。"
    assert "€52.50" in " ".join(en["notes"]) and "€52.50" in " ".join(zh["notes"])  # the cap note, uncapped
    html_zh = render_file(ex, Lang("zh-CN"), {"raw_h": 48})
    assert '<html lang="zh-CN">' in html_zh and "<svg" in html_zh and "<script" not in html_zh
    assert not re.search(r"\b(statement|note|factor|tip|privacy)\.[a-z_]+\b", html_zh)  # no key left untranslated
    data = as_json(ex, Lang("zh-CN"))
    assert data["facts"]["premium"] == "52.35" and data["language"] == "zh-CN"
    with pytest.raises(PortalError):
        Lang("fr").t("statement.headline")


def test_statements_command_writes_each_policy_in_its_language(tmp_path, capsys):
    from ubi.cli import portal as cli

    path = tmp_path / "cli.duckdb"
    portal_data.build(path)
    con = ps.connect(path)
    ps.set_language(con, "P2", "zh-CN")
    premium = con.execute("SELECT premium FROM premiums WHERE policy_id = 'P1' AND month = '2026-10-01'").fetchone()
    # what an erasure leaves (ubi/adapters/subject.py): the amounts under a token, no trace, no policy; stored in
    # the month's published run (premiums is a view over published runs' rows)
    con.execute(
        """INSERT INTO premium_rows (policy_id, month, base_premium, previous_premium, telematics_factor, credibility,
                  uncapped_premium, premium, cap_applied, rulebook_version, rulebook_sha256, run_id, trace, statement)
           SELECT 'erased-1', month, 50, 50, 1, 0, 50, 50, 'none', 'v', 's', run_id, '{"erased": true}', ''
           FROM published_runs WHERE month = '2026-10-01'"""
    )
    con.close()
    cfg = replace(Config(), db_path=path)
    n, out = cli.write_statements(cfg, "2026-10", tmp_path / "out")
    assert n == 2 and not list(out.glob("erased-1*"))
    assert "1 premium rows of erased policies have no statement" in capsys.readouterr().out
    p1 = json.loads((out / "P1-2026-10.json").read_text())
    p2 = (out / "P2-2026-10.html").read_text()
    assert p1["language"] == "en" and '<html lang="zh-CN">' in p2
    assert Decimal(p1["facts"]["premium"]) == premium[0]
    assert not list(out.glob("*.tmp"))
    with pytest.raises(PricingError):
        cli.write_statements(cfg, "2026-13", tmp_path / "bad")
    with pytest.raises(PortalError, match="no premiums for 2025-01"):
        cli.write_statements(cfg, "2025-01", tmp_path / "none")


def test_withheld_consent_and_incomplete_data_are_explained_as_the_engine_priced_them():
    from pricing.rulebook import parse_rulebook

    text = re.sub(r"(?m)^min_completeness = .*\n", "", portal_data.RB.text)
    rb = parse_rulebook(text.replace("min_km = 50.0", "min_km = 50.0\nmin_completeness = 0.9"))
    f = MonthFeatures(20, 400.0, 8.0, 16, 2, completeness=0.5, withheld=frozenset({"harsh_accels_per_100km"}))
    r = price_policy(rb, Decimal("60.00"), Decimal("60.00"), f)
    row = {
        "policy_id": "PX", "month": date(2026, 11, 1), "premium": r.premium, "previous_premium": r.previous_premium,
        "base_premium": r.base_premium, "uncapped_premium": r.uncapped, "cap_applied": r.cap_applied,
        "rulebook_sha256": rb.sha256, "telematics_factor": float(r.factor),
    }  # fmt: skip
    ex = explain(rb, row, r.trace, None, [(date(2026, 11, 1), r.premium, r.trace)])
    assert ex.not_consented == ("harsh_accels_per_100km",)
    assert [x.feature for x in ex.factors] == ["harsh_brakes_per_100km"]
    assert "harsh_accels_per_100km" not in ex.data_used
    assert ex.base_premium + ex.driving_effect + ex.off_balance_effect + ex.cap_effect == ex.premium
    ctx = context(ex, Lang("en"))
    notes = " ".join(ctx["notes"])
    assert "Fast starts was not used for your price" in notes
    # 16 brakes on 400 km = 4 per 100 km ("frequent", x1.15); with only 50% of the data no discount, and the tip
    # is worth exactly what the engine gives with three fewer brakes (2.99 per 100 km, "typical")
    f2 = MonthFeatures(20, 400.0, 8.0, 16 - ex.tips[0].fewer_events, 2, completeness=0.5, withheld=f.withheld)
    assert ex.tips[0].worth == r.uncapped - price_policy(rb, Decimal("60.00"), Decimal("60.00"), f2).uncapped
    f3 = MonthFeatures(20, 400.0, 8.0, 0, 0, completeness=0.5, withheld=f.withheld)
    careful = explain(rb, dict(row, **_row_of(price_policy(rb, Decimal("60.00"), Decimal("60.00"), f3))),
                      price_policy(rb, Decimal("60.00"), Decimal("60.00"), f3).trace, None, [])  # fmt: skip
    assert careful.no_discount and careful.factor == Decimal("1.0000") and careful.tips == ()
    assert "Only 50% of your device's driving data reached us" in " ".join(context(careful, Lang("en"))["notes"])
    assert "您设备 50% 的驾驶数据" in " ".join(context(careful, Lang("zh-CN"))["notes"])


def _row_of(r) -> dict:
    return {
        "premium": r.premium, "previous_premium": r.previous_premium, "base_premium": r.base_premium,
        "uncapped_premium": r.uncapped, "cap_applied": r.cap_applied, "telematics_factor": float(r.factor),
    }  # fmt: skip


def test_factor_effects_add_up_to_the_cent_on_random_traces():
    import random

    rng = random.Random(15)
    for _ in range(2000):
        base = Decimal(rng.randint(1000, 50000)).scaleb(-2)
        rels = [rng.choice([0.7, 0.8, 0.9, 0.95, 1.0, 1.1, 1.15, 1.3, rng.uniform(0.5, 2.0)]) for _ in range(3)]
        z = rng.choice([0.0, rng.random()])
        g = 1.0
        for r in rels:
            g *= r
        factor = Decimal(repr(min(max(1 + z * (g - 1), 0.7), 1.3))).quantize(Decimal("0.0001"))
        trace = {
            "base_premium": str(base),
            "factor": {"final": str(factor)},
            "credibility": {"z": z},
            "factors": [{"feature": f"f{i}", "relativity": r} for i, r in enumerate(rels)],
        }
        e = factor_effects(trace)
        assert sum(e.values(), Decimal(0)) == money(base * factor) - base
        assert all(v == v.quantize(Decimal("0.01")) for v in e.values())
        for i, r in enumerate(rels):  # a neutral factor costs nothing; the others have their relativity's sign
            if r == 1.0:
                assert e[f"f{i}"] == 0
            elif z > 0:
                assert e[f"f{i}"] * Decimal(r - 1.0) >= 0, (rels, z, e)  # never the wrong way
