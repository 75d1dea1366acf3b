"""GLMs an actuary prices with: frequency (Poisson), severity (Gamma), pure premium (Tweedie), on declared factors.

Fitted with glum (Quantco's GLM library for insurance pricing: offsets, Tweedie, IRLS with a Cholesky step; on
the Belgian book's 163k x 56 design it fits in ~2 s where statsmodels' IRLS took 83 s and scikit-learn's 15 s):
log link, log exposure as the frequency model's offset, dispersion estimated by Pearson's chi-square over the
residual degrees of freedom (quasi-likelihood), so standard errors and confidence intervals widen with
overdispersion instead of assuming a pure Poisson. The design is built here
from the model spec's factors (``pricing.book.FactorSpec``): dummies for categorical levels and bands (the base
level dropped, so exp(beta) is the level's relativity), a cubic B-spline for a spline, the value or its log for a
linear term. Every factor gets a relativity table row per level (exposure, claims, observed, fitted, SE, CI) and a
drop-one F test; the telematics factors together get the lift test.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from glum import GeneralizedLinearRegressor, TweedieDistribution
from scipy import stats
from scipy.interpolate import BSpline

from pricing.book import FactorSpec
from ubi.common.errors import PricingError

Z95 = 1.959963984540054


@dataclass
class Term:
    """One factor's part of the design, built once on the whole book so train and hold-out share the encoding."""

    spec: FactorSpec
    levels: list[str]  # relativity-table rows
    base_level: int
    columns: list[str]
    # categorical / bands
    level_map: dict[str, int] = field(default_factory=dict)
    # numeric
    knots: np.ndarray | None = None  # full B-spline knot vector
    lo: float = 0.0
    hi: float = 0.0
    ref: float = 0.0  # base value
    table_edges: np.ndarray | None = None

    def level_index(self, x: np.ndarray) -> np.ndarray:
        """Relativity-table row of each value."""
        if self.spec.kind == "categorical":
            u, inv = np.unique(np.asarray(x).astype(str), return_inverse=True)
            lut = np.array([self.level_map.get(v, -1) for v in u], dtype=np.int64)
            if (lut < 0).any():
                raise PricingError(f"factor {self.spec.name!r}: levels {u[lut < 0].tolist()} were not in the book")
            return lut[inv.ravel()]
        edges = np.asarray(self.spec.edges if self.spec.kind == "bands" else self.table_edges, float)
        return np.clip(np.searchsorted(edges, x.astype(float), side="right") - 1, 0, len(edges) - 1)

    def _basis(self, x: np.ndarray) -> np.ndarray:
        """Numeric basis before centring: spline columns (first dropped) or the (log) value."""
        x = x.astype(float)
        if self.spec.kind == "spline":
            assert self.knots is not None
            xc = np.clip(x, self.lo, self.hi)
            m = BSpline.design_matrix(xc, self.knots, 3).toarray()
            return m[:, 1:]
        return (np.log(x) if self.spec.log else x)[:, None]

    def encode(self, x: np.ndarray) -> np.ndarray:
        if self.spec.kind in ("categorical", "bands"):
            idx = self.level_index(x)
            cols = [j for j in range(len(self.levels)) if j != self.base_level]
            return (idx[:, None] == np.array(cols)[None, :]).astype(float)
        return self._basis(x) - self._basis(np.array([self.ref]))

    def points(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Numeric terms: the design row at each table level's exposure-weighted mean value (relative to the base)."""
        idx = self.level_index(x)
        xs = np.array(
            [
                np.average(x[idx == j], weights=w[idx == j]) if (idx == j).any() else self.ref
                for j in range(len(self.levels))
            ]
        )
        return self.encode(xs)


def _fmt(v: float) -> str:
    return f"{v:g}"


def build_term(spec: FactorSpec, x: np.ndarray, w: np.ndarray) -> Term:
    """The encoding of one factor on the whole book: levels, base, spline knots, table bands."""
    if spec.kind == "categorical":
        raw = np.asarray(x).astype(str)
        to_group = {lv: g for g, lvs in spec.groups.items() for lv in lvs}
        u, inv = np.unique(raw, return_inverse=True)
        levels = sorted({to_group.get(v, v) for v in u.tolist()})
        level_map = {lv: levels.index(to_group.get(lv, lv)) for lv in u.tolist()}
        codes = np.array([level_map[v] for v in u.tolist()], dtype=np.int64)[inv.ravel()]
        expo = np.bincount(codes, weights=w, minlength=len(levels))
        if spec.base is not None:
            b = to_group.get(str(spec.base), str(spec.base))
            if b not in levels:
                raise PricingError(f"factor {spec.name!r}: base level {spec.base!r} is not in the book ({levels})")
            base = levels.index(b)
        else:
            base = int(np.argmax(expo))
        cols = [f"{spec.name}={lv}" for j, lv in enumerate(levels) if j != base]
        return Term(spec, levels, base, cols, level_map=level_map)
    x = x.astype(float)
    if spec.kind == "linear" and spec.log and (x <= 0).any():
        raise PricingError(
            f"factor {spec.name!r}: log of {int((x <= 0).sum()):,} values at or below 0 in column {spec.column!r}"
        )
    if spec.kind == "bands":
        e = spec.edges
        levels = [f"<{_fmt(e[1])}"] + [f"{_fmt(a)}-{_fmt(b)}" for a, b in zip(e[1:-1], e[2:], strict=False)]
        levels += [f"{_fmt(e[-1])}+"]
        if e[0] == 0.0:
            levels[0] = f"0-{_fmt(e[1])}"
        t = Term(spec, levels, 0, [])
        idx = t.level_index(x)
        expo = np.bincount(idx, weights=w, minlength=len(levels))
        if spec.base is not None:
            t.base_level = int(t.level_index(np.array([float(spec.base)]))[0])
        else:
            t.base_level = int(np.argmax(expo))
        empty = [levels[j] for j in range(len(levels)) if expo[j] <= 0]
        if empty:
            raise PricingError(f"factor {spec.name!r}: band(s) {empty} hold no exposure; merge them into a neighbour")
        t.columns = [f"{spec.name}={lv}" for j, lv in enumerate(levels) if j != t.base_level]
        return t
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order]) / w.sum()
    median = float(x[order][np.searchsorted(cw, 0.5)])
    ref = float(spec.base) if spec.base is not None else median
    lo, hi = float(x.min()), float(x.max())
    if spec.report_edges:
        tedges = np.array(spec.report_edges, float)
    elif spec.kind == "spline":
        tedges = np.array([lo, *spec.knots])
    else:
        q = np.unique(x[order][np.searchsorted(cw, [0.0, 0.2, 0.4, 0.6, 0.8], side="left").clip(0, len(x) - 1)])
        tedges = q
    levels = [f"<{_fmt(tedges[1])}" if len(tedges) > 1 else f"{_fmt(tedges[0])}+"]
    levels += [f"{_fmt(a)}-{_fmt(b)}" for a, b in zip(tedges[1:-1], tedges[2:], strict=False)]
    if len(tedges) > 1:
        levels.append(f"{_fmt(tedges[-1])}+")
    t = Term(spec, levels, 0, [], lo=lo, hi=hi, ref=ref, table_edges=tedges)
    t.base_level = int(t.level_index(np.array([ref]))[0])
    if spec.kind == "spline":
        inner = [k for k in spec.knots if lo < k < hi]
        if len(inner) < len(spec.knots):
            raise PricingError(f"factor {spec.name!r}: knots {list(spec.knots)} must lie inside the data ({lo}, {hi})")
        t.knots = np.r_[[lo] * 4, inner, [hi] * 4]
        t.columns = [f"{spec.name}:s{j + 1}" for j in range(len(inner) + 3)]
    else:
        t.columns = [f"log({spec.name})" if spec.log else spec.name]
    return t


@dataclass
class Design:
    terms: list[Term]
    X: np.ndarray  # without intercept
    names: list[str]
    slices: dict[str, slice]  # factor name -> its columns in X

    def without(self, names: set[str]) -> np.ndarray:
        keep = np.ones(self.X.shape[1], bool)
        for n in names:
            keep[self.slices[n]] = False
        return self.X[:, keep]


def build_design(factors: list[FactorSpec], values: dict[str, np.ndarray], w: np.ndarray) -> Design:
    terms, blocks, names, slices = [], [], [], {}
    col = 0
    for f in factors:
        t = build_term(f, values[f.column], w)
        block = t.encode(values[f.column])
        terms.append(t)
        blocks.append(block)
        names += t.columns
        slices[f.name] = slice(col, col + block.shape[1])
        col += block.shape[1]
    X = np.column_stack(blocks) if blocks else np.zeros((len(w), 0))
    return Design(terms, X, names, slices)


# ---------------------------------------------------------------- fitting


@dataclass
class Fitted:
    kind: str  # frequency | severity | pure_premium
    params: np.ndarray  # intercept first
    cov: np.ndarray  # Pearson-scaled
    scale: float  # Pearson dispersion
    deviance: float
    df_resid: float
    nobs: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean per unit of exposure (frequency, pure premium) or per claim (severity)."""
        return np.exp(self.params[0] + X @ self.params[1:])


def _variance(kind: str, mu: np.ndarray, power: float) -> np.ndarray:
    return mu if kind == "frequency" else mu**2 if kind == "severity" else mu**power


def fit_glm(kind: str, X: np.ndarray, y: np.ndarray, w: np.ndarray, tweedie_power: float = 1.5) -> Fitted:
    """y is the rate (claims or amount per policy-year, or the mean claim), w its weight (exposure or claims).

    Frequency is fitted as claim counts with log exposure as the offset; severity (Gamma) and pure premium
    (Tweedie) as rates with weights. Unpenalised (alpha 0): the relativities are maximum likelihood. Dispersion is
    Pearson's chi-square over the residual degrees of freedom; the covariance is the inverse Fisher information
    times it (glum, robust=False)."""
    family: str | TweedieDistribution = {"frequency": "poisson", "severity": "gamma"}.get(kind, "")
    if kind == "pure_premium":
        family = TweedieDistribution(tweedie_power)
    model = GeneralizedLinearRegressor(
        family=family, link="log", alpha=0, fit_intercept=True, robust=False, gradient_tol=1e-7, max_iter=200
    )
    if kind == "frequency":
        target, sw, offset = y * w, None, np.log(w)
    else:
        target, sw, offset = y, w, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X if X.shape[1] else np.zeros((len(y), 1)), target, sample_weight=sw, offset=offset)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise PricingError(f"{kind} GLM did not fit: {exc}") from None
    Xf = X if X.shape[1] else np.zeros((len(y), 1))
    mu_rate = np.exp(model.intercept_ + Xf @ model.coef_)
    ww = w  # the weight of each row on the rate scale (exposure for frequency and pure premium, claims for severity)
    p = X.shape[1] + 1
    dof = max(len(y) - p, 1)
    scale = float(np.sum(ww * (y - mu_rate) ** 2 / _variance(kind, mu_rate, tweedie_power)) / dof)
    dist = model._family_instance
    deviance = float(dist.deviance(y, mu_rate, sample_weight=ww))
    cov = np.asarray(
        model.covariance_matrix(Xf, target, sample_weight=sw, offset=offset, dispersion=scale, robust=False)
    )
    params = np.r_[model.intercept_, model.coef_]
    if not X.shape[1]:
        params, cov = params[:1], cov[:1, :1]
    if not np.all(np.isfinite(params)):
        raise PricingError(f"{kind} GLM diverged (a level with no claims?); group sparse levels in the spec")
    return Fitted(kind, params, cov, scale, deviance, float(dof), len(y))


# ---------------------------------------------------------------- relativities and tests


def relativity_table(
    d: Design, fitted: Fitted, values: dict[str, np.ndarray], w: np.ndarray, counts: np.ndarray, pred: np.ndarray
) -> list[dict]:
    """Per factor and level: exposure, claims (or weight), observed and fitted mean, observed relativity (to the
    base level), fitted relativity with its Pearson-scaled SE (of log relativity) and 95% CI."""
    rows = []
    for t in d.terms:
        x = values[t.spec.column]
        idx = t.level_index(x)
        sl = d.slices[t.spec.name]
        beta = fitted.params[1:][sl]
        cov = fitted.cov[1:, 1:][sl, sl]
        if t.spec.kind in ("categorical", "bands"):
            G = np.eye(len(t.levels))[:, [j for j in range(len(t.levels)) if j != t.base_level]]
        else:
            G = t.points(x, w)
        expo = np.bincount(idx, weights=w, minlength=len(t.levels))
        cl = np.bincount(idx, weights=counts, minlength=len(t.levels))
        fit_sum = np.bincount(idx, weights=pred * w, minlength=len(t.levels))
        obs = np.divide(cl, expo, out=np.full(len(expo), np.nan), where=expo > 0)
        fitm = np.divide(fit_sum, expo, out=np.full(len(expo), np.nan), where=expo > 0)
        for j, lv in enumerate(t.levels):
            g = G[j]
            lr = float(g @ beta)
            se = float(math.sqrt(max(g @ cov @ g, 0.0)))
            rows.append(
                {
                    "model": fitted.kind,
                    "factor": t.spec.name,
                    "telematics": t.spec.telematics,
                    "level": lv,
                    "base": j == t.base_level,
                    "exposure": float(expo[j]),
                    "claims": float(cl[j]),
                    "observed": float(obs[j]),
                    "fitted_mean": float(fitm[j]),
                    "observed_relativity": float(obs[j] / obs[t.base_level]) if obs[t.base_level] > 0 else math.nan,
                    "relativity": math.exp(lr),
                    "se_log": se,
                    "ci_low": math.exp(lr - Z95 * se),
                    "ci_high": math.exp(lr + Z95 * se),
                }
            )
    return rows


def f_test(full: Fitted, reduced: Fitted) -> dict:
    """Deviance difference of nested models: chi-square LR statistic and the F test with the full model's
    Pearson dispersion (the quasi-likelihood test, valid under overdispersion)."""
    ddf = reduced.df_resid - full.df_resid
    dd = reduced.deviance - full.deviance
    f = (dd / ddf) / full.scale if ddf > 0 else math.nan
    return {
        "df": int(round(ddf)),
        "deviance_change": dd,
        "lr_chi2_p": float(stats.chi2.sf(dd, ddf)) if ddf > 0 else math.nan,
        "f": f,
        "f_p": float(stats.f.sf(f, ddf, full.df_resid)) if ddf > 0 else math.nan,
    }


# ---------------------------------------------------------------- ranking and calibration


def lorenz(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Exposure-weighted Lorenz curve of the observed losses ordered by prediction (lowest first) and its Gini.

    Policies with equal predictions form one step (their order carries no information), so a constant prediction
    has a Gini of exactly 0."""
    order = np.argsort(pred, kind="stable")
    p = pred[order]
    ww, loss = w[order], y[order] * w[order]
    last = np.r_[np.flatnonzero(p[1:] != p[:-1]), len(p) - 1]  # end of each group of equal predictions
    cx = np.r_[0.0, np.cumsum(ww)[last]] / ww.sum()
    cy = np.r_[0.0, np.cumsum(loss)[last]] / max(loss.sum(), 1e-300)
    cx[-1] = cy[-1] = 1.0  # exact end points: rounding must not give a constant prediction a Gini of -1e-16
    auc = float(np.sum((cx[1:] - cx[:-1]) * (cy[1:] + cy[:-1]) / 2))
    return cx, cy, 1.0 - 2.0 * auc


def deciles(pred: np.ndarray, w: np.ndarray, bins: int = 10) -> np.ndarray:
    order = np.argsort(pred, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    dec = np.empty(len(pred), np.int64)
    dec[order] = np.minimum((cum * bins - 1e-12).astype(int), bins - 1)
    return dec


def calibration(y: np.ndarray, pred: np.ndarray, w: np.ndarray, bins: int = 10) -> list[dict]:
    dec = deciles(pred, w, bins)
    out = []
    for d in range(bins):
        m = dec == d
        e = float(w[m].sum())
        out.append(
            {
                "decile": d + 1,
                "exposure": e,
                "predicted": float((pred[m] * w[m]).sum() / e) if e else math.nan,
                "observed": float((y[m] * w[m]).sum() / e) if e else math.nan,
            }
        )
    return out


def double_lift(y: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray, bins: int = 10) -> list[dict]:
    """Deciles of the ratio a / b: observed and both models' means, each over the book mean (a wins where its line
    follows the observed one)."""
    dec = deciles(a / b, w, bins)
    mo, ma, mb = (np.average(v, weights=w) for v in (y, a, b))
    out = []
    for d in range(bins):
        m = dec == d
        out.append(
            {
                "decile": d + 1,
                "exposure": float(w[m].sum()),
                "observed": float(np.average(y[m], weights=w[m]) / mo),
                "model_a": float(np.average(a[m], weights=w[m]) / ma),
                "model_b": float(np.average(b[m], weights=w[m]) / mb),
            }
        )
    return out
