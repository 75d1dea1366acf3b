"""Claim-frequency models from exposure and claims, and fitted relativities as a draft rulebook.

A log-link Poisson GLM (scikit-learn ``PoissonRegressor``; target = claims / exposure, exposure as sample
weight, which is the same likelihood as counts with a log-exposure offset) with the rulebook's own bands as
one-hot features, so exp(beta) is directly a band relativity; log km per year as a continuous term (frequency
grows less than proportionally with distance); vehicle group and age band as controls so the telematics
relativities are not confounded with them. Prohibited factors (region, gender) never enter any model.
A ``HistGradientBoostingRegressor(loss="poisson")`` on the raw features sits beside it as a benchmark.
Both are scored on a 25% hold-out: mean Poisson deviance, D², exposure-weighted Gini, calibration by decile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import mean_poisson_deviance

from pricing.rulebook import ALWAYS_PROHIBITED, RELATIVITY_RANGE, Rulebook, parse_rulebook, settings_toml
from pricing.rulebook import toml_number as _num
from ubi.common.errors import PricingError

REF_KM_YEAR = 12_000.0
CONTROLS = ("vehicle_group", "age_band")


@dataclass(frozen=True)
class Experience:
    """One row per policy period; arrays of equal length."""

    exposure: np.ndarray  # policy-years
    claims: np.ndarray
    km: np.ndarray
    harsh_brakes: np.ndarray
    harsh_accels: np.ndarray
    driving_hours: np.ndarray
    controls: dict[str, np.ndarray]  # name -> labels (str)

    def feature(self, name: str) -> np.ndarray:
        """Rulebook features on the monthly scale the rulebook prices on (rates are scale-free)."""
        months = np.maximum(self.exposure * 12.0, 1e-9)
        per100 = np.where(self.km > 0, 100.0 / np.where(self.km > 0, self.km, 1.0), 0.0)
        return {
            "harsh_brakes_per_100km": lambda: self.harsh_brakes * per100,
            "harsh_accels_per_100km": lambda: self.harsh_accels * per100,
            "km": lambda: self.km / months,
            "driving_hours": lambda: self.driving_hours / months,
        }[name]()


@dataclass
class Design:
    X: np.ndarray
    names: list[str]
    factor_cols: dict[str, list[tuple[int, int | None]]]  # feature -> (band index, column or None for reference)
    km_col: int | None


@dataclass
class BandFit:
    feature: str
    label: str
    lo: float
    hi: float
    exposure_share: float
    claims: int
    relativity: float  # fitted, reference band = 1
    ci_low: float
    ci_high: float
    draft: float  # rebalanced so the book's exposure-weighted mean is 1, bounded to the rulebook's range
    reference: bool


@dataclass
class FitResult:
    policies: int
    exposure: float
    claims: int
    metrics: list[dict]  # model, deviance, d2, gini, predicted claims, actual claims (hold-out)
    bands: list[BandFit]
    km_elasticity: float | None
    km_elasticity_ci: tuple[float, float] | None
    calibration: dict[str, list[dict]]  # model -> deciles
    lorenz: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    draft_toml: str = field(repr=False, default="")
    # the traditional controls' relativities (vehicle group, age band), against their most common level
    control_relativities: list[dict] = field(default_factory=list)


def design(rb: Rulebook, exp: Experience, ref_bands: dict[str, int] | None = None) -> tuple[Design, dict[str, int]]:
    """Band one-hots (reference band dropped), log km per year, control one-hots (most common level dropped)."""
    cols: list[np.ndarray] = []
    names: list[str] = []
    factor_cols: dict[str, list[tuple[int, int | None]]] = {}
    refs = dict(ref_bands or {})
    w = exp.exposure
    for f in rb.factors:
        los = np.array([b.lo for b in f.bands])
        idx = np.clip(np.searchsorted(los, exp.feature(f.feature), side="right") - 1, 0, len(los) - 1)
        if f.feature not in refs:
            refs[f.feature] = int(np.argmax(np.bincount(idx, weights=w, minlength=len(los))))
        factor_cols[f.feature] = []
        for j, b in enumerate(f.bands):
            if j == refs[f.feature]:
                factor_cols[f.feature].append((j, None))
                continue
            factor_cols[f.feature].append((j, len(cols)))
            cols.append((idx == j).astype(float))
            names.append(f"{f.feature}={b.label}")
    km_col = None
    if "km" not in {f.feature for f in rb.factors}:
        km_col = len(cols)
        km_year = np.maximum(exp.km / np.maximum(exp.exposure, 1e-9), 1.0)
        cols.append(np.log(km_year / REF_KM_YEAR))
        names.append("log(km per year / 12000)")
    for name, labels in exp.controls.items():
        if name in rb.prohibited or name in ALWAYS_PROHIBITED:
            continue
        levels, counts = np.unique(labels, return_counts=True)
        base = levels[np.argmax(counts)]
        for lv in levels:
            if lv != base:
                cols.append((labels == lv).astype(float))
                names.append(f"{name}={lv}")
    X = np.column_stack(cols) if cols else np.zeros((len(w), 0))
    return Design(X, names, factor_cols, km_col), refs


def _glm(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> PoissonRegressor:
    return PoissonRegressor(alpha=1e-6, solver="newton-cholesky", max_iter=300).fit(X, y, sample_weight=w)


def _covariance(model: PoissonRegressor, X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Inverse Fisher information of (intercept, coefficients): sum of exposure * mu * x x'."""
    X1 = np.column_stack([np.ones(len(X)), X])
    mu = model.predict(X)
    info = (X1 * (w * mu)[:, None]).T @ X1
    return np.linalg.pinv(info)


def lorenz(y_freq: np.ndarray, pred: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Exposure-weighted Lorenz curve (policies ordered from safest predicted) and its Gini index."""
    order = np.argsort(pred, kind="stable")
    cum_exp = np.concatenate([[0.0], np.cumsum(w[order])]) / w.sum()
    claims = y_freq[order] * w[order]
    cum_claims = np.concatenate([[0.0], np.cumsum(claims)]) / max(claims.sum(), 1e-12)
    auc = float(np.sum((cum_exp[1:] - cum_exp[:-1]) * (cum_claims[1:] + cum_claims[:-1]) / 2))
    return cum_exp, cum_claims, 1.0 - 2.0 * auc


def calibration(y_freq: np.ndarray, pred: np.ndarray, w: np.ndarray, bins: int = 10) -> list[dict]:
    """Predicted and observed claims in deciles of predicted frequency (equal exposure per decile)."""
    order = np.argsort(pred, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    dec = np.minimum((cum * bins - 1e-12).astype(int), bins - 1)
    out = []
    for d in range(bins):
        sel = order[dec == d]
        e = float(w[sel].sum())
        out.append(
            {
                "decile": d + 1,
                "exposure": e,
                "predicted_claims": float((pred[sel] * w[sel]).sum()),
                "observed_claims": float((y_freq[sel] * w[sel]).sum()),
                "predicted_frequency": float((pred[sel] * w[sel]).sum() / e) if e else math.nan,
                "observed_frequency": float((y_freq[sel] * w[sel]).sum() / e) if e else math.nan,
            }
        )
    return out


def _hgb_features(exp: Experience) -> tuple[np.ndarray, list[bool]]:
    km_year = np.maximum(exp.km / np.maximum(exp.exposure, 1e-9), 1.0)
    cols = [exp.feature("harsh_brakes_per_100km"), exp.feature("harsh_accels_per_100km"), np.log(km_year)]
    cats = [False, False, False]
    for labels in exp.controls.values():
        cols.append(np.unique(labels, return_inverse=True)[1].astype(float))
        cats.append(True)
    return np.column_stack(cols), cats


def fit(rb: Rulebook, exp: Experience, seed: int = 0, boosting: bool = True) -> FitResult:
    """Fit both models, score them on a hold-out, and derive band relativities and the draft rulebook."""
    exp = Experience(
        exp.exposure,
        exp.claims,
        exp.km,
        exp.harsh_brakes,
        exp.harsh_accels,
        exp.driving_hours,
        {k: v for k, v in exp.controls.items() if k not in rb.prohibited and k not in ALWAYS_PROHIBITED},
    )
    keep = exp.exposure > 0
    n, total_claims = int(keep.sum()), int(exp.claims[keep].sum())
    if n < 50 or total_claims < 20:
        raise PricingError(
            f"too little experience to fit: {n} policy periods, {total_claims} claims (load claims and exposure first)"
        )
    exp = _subset(exp, keep)
    w, y = exp.exposure, exp.claims / exp.exposure
    d, refs = design(rb, exp)
    rng = np.random.default_rng(seed)
    test = rng.random(n) < 0.25
    train = ~test
    preds: dict[str, np.ndarray] = {
        "mean frequency (dummy)": np.full(test.sum(), np.average(y[train], weights=w[train]))
    }
    glm_train = _glm(d.X[train], y[train], w[train])
    preds["Poisson GLM"] = glm_train.predict(d.X[test])
    if boosting:
        Xh, cats = _hgb_features(exp)
        hgb = HistGradientBoostingRegressor(
            loss="poisson",
            max_leaf_nodes=31,
            learning_rate=0.05,
            max_iter=300,
            categorical_features=cats,
            random_state=seed,
        )
        hgb.fit(Xh[train], y[train], sample_weight=w[train])
        preds["gradient boosting (Poisson)"] = hgb.predict(Xh[test])
    metrics, lor, cal = [], {}, {}
    dummy_dev = mean_poisson_deviance(y[test], preds["mean frequency (dummy)"], sample_weight=w[test])
    for name, p in preds.items():
        p = np.maximum(p, 1e-12)
        dev = mean_poisson_deviance(y[test], p, sample_weight=w[test])
        cx, cy, gini = lorenz(y[test], p, w[test])
        lor[name] = (cx, cy)
        cal[name] = calibration(y[test], p, w[test])
        metrics.append(
            {
                "model": name,
                "mean_poisson_deviance": dev,
                "d2": 1.0 - dev / dummy_dev,
                "gini": gini,
                "predicted_claims": float((p * w[test]).sum()),
                "actual_claims": float(exp.claims[test].sum()),
            }
        )
    for f in rb.factors:  # a factor whose data all fall in one band cannot be fitted: 1.000 [1.000, 1.000] says nothing
        los = np.array([b.lo for b in f.bands])
        idx = np.clip(np.searchsorted(los, exp.feature(f.feature), side="right") - 1, 0, len(los) - 1)
        used = np.unique(idx)
        if used.size < 2:
            raise PricingError(
                f"no telematics data to fit {f.feature!r}: all {w.sum():,.0f} policy-years fall in its band "
                f"'{f.bands[int(used[0])].label}'; a book without telematics is fitted with `ubi actuary fit --book`"
            )
    glm = _glm(d.X, y, w)  # relativities from all the data once validated
    cov = _covariance(glm, d.X, w)
    bands = _bands(rb, exp, d, glm, cov)
    km_el = km_ci = None
    if d.km_col is not None:
        km_el = float(glm.coef_[d.km_col])
        se = math.sqrt(max(cov[d.km_col + 1, d.km_col + 1], 0.0))
        km_ci = (km_el - 1.96 * se, km_el + 1.96 * se)
    result = FitResult(n, float(w.sum()), total_claims, metrics, bands, km_el, km_ci, cal, lor)
    band_cols = {c for cols in d.factor_cols.values() for _, c in cols if c is not None} | {d.km_col}
    for j, name in enumerate(d.names):
        if j in band_cols:
            continue
        beta, se = float(glm.coef_[j]), math.sqrt(max(cov[j + 1, j + 1], 0.0))
        control, level = name.split("=", 1)
        m = exp.controls[control] == level
        result.control_relativities.append(
            {
                "control": control,
                "level": level,
                "exposure": float(w[m].sum()),
                "claims": int(exp.claims[m].sum()),
                "relativity": math.exp(beta),
                "ci_low": math.exp(beta - 1.96 * se),
                "ci_high": math.exp(beta + 1.96 * se),
            }
        )
    result.draft_toml = draft_rulebook(rb, result)
    return result


def _subset(exp: Experience, m: np.ndarray) -> Experience:
    return Experience(
        exp.exposure[m],
        exp.claims[m],
        exp.km[m],
        exp.harsh_brakes[m],
        exp.harsh_accels[m],
        exp.driving_hours[m],
        {k: v[m] for k, v in exp.controls.items()},
    )


def _bands(rb: Rulebook, exp: Experience, d: Design, glm: PoissonRegressor, cov: np.ndarray) -> list[BandFit]:
    out = []
    w = exp.exposure
    for f in rb.factors:
        los = np.array([b.lo for b in f.bands])
        idx = np.clip(np.searchsorted(los, exp.feature(f.feature), side="right") - 1, 0, len(los) - 1)
        share = np.bincount(idx, weights=w, minlength=len(los)) / w.sum()
        claims = np.bincount(idx, weights=exp.claims, minlength=len(los))
        rels, cis = [], []
        for _j, col in d.factor_cols[f.feature]:
            if col is None:
                rels.append(1.0)
                cis.append((1.0, 1.0))
            else:
                beta, se = glm.coef_[col], math.sqrt(max(cov[col + 1, col + 1], 0.0))
                rels.append(math.exp(beta))
                cis.append((math.exp(beta - 1.96 * se), math.exp(beta + 1.96 * se)))
        rels_a = np.array(rels)
        mean = float(np.dot(share, rels_a)) or 1.0
        lo_r, hi_r = RELATIVITY_RANGE
        for j, b in enumerate(f.bands):
            draft = round(min(max(rels_a[j] / mean, lo_r), hi_r), 3)
            out.append(
                BandFit(
                    f.feature,
                    b.label,
                    b.lo,
                    b.hi,
                    float(share[j]),
                    int(claims[j]),
                    float(rels_a[j]),
                    cis[j][0],
                    cis[j][1],
                    draft,
                    d.factor_cols[f.feature][j][1] is None,
                )
            )
    return out


def draft_rulebook(rb: Rulebook, r: FitResult, today: date | None = None) -> str:
    """The fitted relativities in the current rulebook's structure, as a draft to review; validated before return."""
    today = today or date.today()
    glm = next(m for m in r.metrics if m["model"] == "Poisson GLM")
    notes = (
        f"DRAFT from `ubi actuary fit` on {r.policies} policy periods, {r.exposure:.0f} policy-years, "
        f"{r.claims} claims. Hold-out: Poisson GLM deviance {glm['mean_poisson_deviance']:.4f}, "
        f"D2 {glm['d2']:.4f}, Gini {glm['gini']:.3f}."
        + (
            f" Frequency grows with km per year to the power {r.km_elasticity:.3f}."
            if r.km_elasticity is not None
            else ""
        )
        + " Relativities are rebalanced to an exposure-weighted mean of 1 per factor; review before use."
    )
    user_prohibited = [p for p in rb.prohibited if p not in ALWAYS_PROHIBITED] + ["gender"]
    lines = settings_toml(
        rb,
        header="# Draft rulebook written by `ubi actuary fit`: fitted relativities in the current rulebook's bands.",
        version=f"{rb.version}-fit-{today:%Y%m%d}-draft",
        today=today,
        notes=notes,
        prohibited=user_prohibited,
    )
    for f in rb.factors:
        lines += ["", "[[factors]]", f'feature = "{f.feature}"', f'label = "{f.label}"', "bands = ["]
        for b in (x for x in r.bands if x.feature == f.feature):
            to = "" if math.isinf(b.hi) else f"to = {_num(b.hi)}, "
            lines.append(
                f'  {{ from = {_num(b.lo)}, {to}relativity = {_num(b.draft)}, label = "{b.label}" }},'
                f"  # fitted {b.relativity:.3f} [{b.ci_low:.3f}, {b.ci_high:.3f}], "
                f"{b.exposure_share:.1%} of exposure"
            )
        lines.append("]")
    text = "\n".join(lines) + "\n"
    parse_rulebook(text, "<draft rulebook>")  # never hand out a draft that would be refused
    return text
