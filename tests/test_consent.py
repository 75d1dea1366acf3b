"""Consent in pricing (issue 13): the array engine and the per-policy engine agree with features withheld, and the
purposes map features as pricing/consent.py documents."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from pricing import consent
from pricing.engine import MonthFeatures, price_policy, statement
from pricing.rulebook import KNOWN_FEATURES, parse_rulebook
from pricing.vector import price_book
from tests.test_offbalance import random_book
from ubi.common.config import Config

RB = parse_rulebook(Config().rulebook.read_text())


def test_withheld_features_price_at_relativity_one_in_both_engines(rng):
    book, has_prev = random_book(rng, 2000)
    features = [f.feature for f in RB.factors]
    masks = {f: rng.random(len(book)) < 0.4 for f in features}
    masks[features[0]][:50] = True  # edge: everything withheld for some, nothing for others
    masks[features[-1]][:50] = True
    for f in features:
        masks[f][50:100] = False
    p = price_book(RB, replace(book, withheld=masks))
    plain = price_book(RB, book)
    changed = 0
    for i in range(len(book)):
        held = frozenset(f for f in features if masks[f][i])
        f = MonthFeatures(
            int(book.trips[i]),
            float(book.km[i]),
            float(book.driving_hours[i]),
            int(book.harsh_brakes[i]),
            int(book.harsh_accels[i]),
            withheld=held,
        )
        prev = Decimal(int(book.prev_c[i])).scaleb(-2) if has_prev[i] else None
        r = price_policy(RB, Decimal(int(book.base_c[i])).scaleb(-2), prev, f)
        assert int(r.factor.scaleb(4)) == p.factors.factor_u[i] and int(r.premium.scaleb(2)) == p.premium_c[i]
        if len(held) == len(features):
            assert r.g == 1.0  # every behaviour withheld: only the base premium and caps remain
        if not held:
            assert p.premium_c[i] == plain.premium_c[i]
        changed += int(p.premium_c[i] != plain.premium_c[i])
        shown = [s for s in r.trace["factors"] if s.get("consent") is False]
        assert [s["feature"] for s in shown] == [x for x in features if x in held]
        assert all(s["value"] is None and s["relativity"] == 1.0 for s in shown)
    assert changed > 100  # the switch does change premiums


def test_the_statement_says_a_feature_was_not_used():
    f = MonthFeatures(20, 600.0, 15.0, 30, 1, withheld=frozenset({"harsh_brakes_per_100km"}))
    r = price_policy(RB, Decimal("60.00"), None, f)
    text = statement("October 2026", r)
    label = next(x.label for x in RB.factors if x.feature == "harsh_brakes_per_100km")
    assert f"{label.capitalize()}: not used for your price, because you have not agreed to its use." in text
    assert "5.00 per 100 km" not in text and r.trace["features"]["harsh_brakes"] is None
    assert r.trace["features"]["harsh_accels"] == 1  # what was consented to is shown as before


def test_purposes():
    feats = sorted(KNOWN_FEATURES)
    assert consent.withheld(feats, {}) == frozenset()  # the product's defaults price every known feature
    assert consent.withheld(feats, {"scoring": False}) == frozenset(feats)
    assert consent.withheld(feats, {"driving_style": False}) == {"harsh_brakes_per_100km", "harsh_accels_per_100km"}
    assert consent.withheld(["night_share", "phone_use_share", "km"], {}) == {"night_share", "phone_use_share"}
    assert consent.withheld(["night_share"], {"night_driving": True}) == frozenset()
    with pytest.raises(ValueError, match="unknown consent purpose"):
        consent.withheld(feats, {"location": True})
    assert np.all([consent.purpose_of(f) in consent.PURPOSES for f in feats])
