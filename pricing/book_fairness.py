"""Fairness of what people pay, on a claims book: premium levels by protected group and age band, before and after
the telematics factors, and how well the rating factors predict the protected attribute (proxy detection).

The premium is the fitted pure premium per policy-year (frequency x severity GLMs; frequency alone when the book
has no amounts), "before" on the traditional factors only and "after" with the telematics factors as well. The
protected attribute never enters a model (the spec refuses it as a factor); it is read here only. A protected
group whose mean premium level differs from another's by more than the threshold is flagged, however it came
about: through proxies is the usual way. Age is a rating factor, so for age bands only the change that telematics
brings is held to the threshold. A group without exposure or a level that is not a number is a failure, not a
pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from pricing import glm
from pricing.book import BookSpec, stored_column
from pricing.book_fit import policy_fold
from pricing.report import table
from ubi.common.errors import PricingError

DEFAULT_THRESHOLD = 0.03  # the project's 3% (as in pricing.fairness)
PROXY_AUC = 0.60  # rating factors that tell the protected attribute apart this well are a proxy worth a look
AGE_BANDS = ((0, "<25"), (25, "25-39"), (40, "40-64"), (65, "65+"))


def age_band(age: np.ndarray) -> np.ndarray:
    edges = np.array([a for a, _ in AGE_BANDS], float)
    labels = np.array([lab for _, lab in AGE_BANDS])
    return labels[np.clip(np.searchsorted(edges, age.astype(float), side="right") - 1, 0, len(labels) - 1)]


@dataclass
class BookFairness:
    groups: list[dict]
    disparities: list[dict]
    proxies: list[dict]
    threshold: float
    notes: list[str]

    @property
    def flagged(self) -> bool:
        return any(d["flagged"] for d in self.disparities)


def premiums(spec: BookSpec, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """Fitted premium per policy-year before (traditional factors) and after (all factors) telematics."""
    w = frame["exposure"].to_numpy().astype(float)
    counts = frame["claim_count"].to_numpy().astype(float)
    amount = frame["claim_amount"].to_numpy().astype(float)
    n_amt = frame["claims_with_amount"].to_numpy().astype(float)
    values = {c: frame[stored_column(c)].to_numpy() for c in spec.factor_columns}
    d = glm.build_design(list(spec.factors), values, w)
    tele = {f.name for f in spec.telematics}
    has = (n_amt > 0) & (amount > 0)
    sev = np.divide(amount, n_amt, out=np.zeros_like(amount), where=has)
    with_sev = has.sum() >= 20

    def premium(X: np.ndarray) -> np.ndarray:
        p = glm.fit_glm("frequency", X, counts / w, w).predict(X)
        if with_sev:
            p = p * glm.fit_glm("severity", X[has], sev[has], n_amt[has]).predict(X)
        return p

    after = premium(d.X)
    before = premium(d.without(tele)) if tele else after
    return before, after, "pure premium (frequency x severity)" if with_sev else "claim frequency"


def _proxy_auc(spec: BookSpec, frame: pl.DataFrame, labels: np.ndarray) -> float:
    """Hold-out AUC of gradient boosting that predicts the (binary) attribute from the rating factors."""
    cols, cats = [], []
    for f in spec.factors:
        x = frame[stored_column(f.column)].to_numpy()
        if f.kind == "categorical":
            cols.append(np.unique(np.asarray(x).astype(str), return_inverse=True)[1].astype(float))
        else:
            cols.append(x.astype(float))
        cats.append(f.kind == "categorical")
    if not cols:
        return math.nan
    X = np.column_stack(cols)
    levels = np.unique(labels)
    y = (labels == levels[-1]).astype(int)
    test = policy_fold(frame["policy_id"].to_numpy().astype(str), spec.seed + 1) < 0.3
    clf = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, categorical_features=cats, random_state=0)
    clf.fit(X[~test], y[~test])
    return float(roc_auc_score(y[test], clf.predict_proba(X[test])[:, 1]))


def audit_book(
    spec: BookSpec, frame: pl.DataFrame, threshold: float = DEFAULT_THRESHOLD, min_exposure: float = 30.0
) -> BookFairness:
    notes: list[str] = []
    attrs: dict[str, np.ndarray] = {}
    for col in spec.protected:
        s = frame[stored_column(col)]
        if s.null_count():
            raise PricingError(f"fairness: {s.null_count():,} rows have no value of the protected attribute {col!r}")
        attrs[col] = s.cast(pl.String).to_numpy().astype(str)
    if spec.age:
        a = frame[stored_column(spec.age)]
        attrs["age band"] = a.cast(pl.String).to_numpy().astype(str) if a.dtype == pl.String else age_band(a.to_numpy())
    if not attrs:
        raise PricingError(
            f"fairness: the spec of book {spec.name!r} declares no protected attribute and no age column ([audit])"
        )
    if not spec.protected:
        notes.append("no protected attribute declared in the spec: audited by age band only")
    w = frame["exposure"].to_numpy().astype(float)
    before, after, what = premiums(spec, frame)
    notes.append(f"premium = fitted {what} per policy-year")
    if not spec.telematics:
        notes.append("no telematics factor in the spec: 'before' and 'after' are the same premium")
    book_b, book_a = np.average(before, weights=w), np.average(after, weights=w)
    groups, disparities, proxies = [], [], []
    for attr, labels in attrs.items():
        rows = []
        for g in np.unique(labels):
            m = labels == g
            e = float(w[m].sum())
            lb = float(np.average(before[m], weights=w[m]) / book_b) if e > 0 else math.nan
            la = float(np.average(after[m], weights=w[m]) / book_a) if e > 0 else math.nan
            rows.append(
                {
                    "attribute": attr,
                    "group": g,
                    "rows": int(m.sum()),
                    "exposure": e,
                    "level_before": lb,
                    "level_after": la,
                    "change": la / lb - 1 if lb else math.nan,
                }
            )
        bad = [r["group"] for r in rows if not (r["exposure"] > 0 and math.isfinite(r["level_after"]))]
        if bad:
            raise PricingError(f"fairness: {attr} group(s) {bad} have no exposure or no finite premium level")
        big = [r for r in rows if r["exposure"] >= min_exposure]
        if len(big) < 2:
            raise PricingError(
                f"fairness: {attr} has {len(big)} group(s) with at least {min_exposure:g} policy-years "
                f"({[r['group'] for r in rows]}): nothing to compare, so no verdict"
            )
        groups += rows
        # the change telematics brings is a metric only where there are telematics factors (else it is 0 for all)
        metrics: tuple[str, ...] = ("level_before", "level_after") if attr != "age band" else ()
        metrics += ("change",) if spec.telematics else ()
        for metric in metrics:
            hi = max(big, key=lambda r: r[metric])
            lo = min(big, key=lambda r: r[metric])
            gap = (hi[metric] / lo[metric] - 1) if metric != "change" else hi[metric] - lo[metric]
            disparities.append(
                {
                    "attribute": attr,
                    "metric": metric,
                    "gap": gap,
                    "highest": hi["group"],
                    "lowest": lo["group"],
                    "threshold": threshold,
                    "flagged": bool(gap > threshold),
                }
            )
        if attr != "age band" and len(np.unique(labels)) != 2:
            notes.append(f"proxy AUC not computed for {attr}: it has {len(np.unique(labels))} groups, the test needs 2")
        if attr != "age band" and len(np.unique(labels)) == 2:
            auc = _proxy_auc(spec, frame, labels)
            proxies.append(
                {
                    "attribute": attr,
                    "auc_from_rating_factors": auc,
                    "proxy": bool(auc >= PROXY_AUC),
                    "note": f"AUC >= {PROXY_AUC} means the rating factors carry the attribute",
                }
            )
    return BookFairness(groups, disparities, proxies, threshold, notes)


def html_sections(r: BookFairness, book: str) -> list[tuple[str, str]]:
    flagged = [d for d in r.disparities if d["flagged"]]
    verdict = (
        f"<p class='flag'>DISPARITY FLAGGED: {len(flagged)} gap(s) above {r.threshold}.</p>"
        if flagged
        else f"<p class='ok'>No gap above {r.threshold}.</p>"
    )
    notes = "<ul>" + "".join(f"<li>{n}</li>" for n in r.notes) + "</ul>"
    return [
        ("Verdict", f"<p>Book {book}.</p>{notes}{verdict}" + table(r.disparities)),
        ("Proxy detection", table(r.proxies)),
        ("Premium level by group (1 = book mean)", table(r.groups)),
    ]
