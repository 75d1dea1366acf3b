"""Fit a claims book: frequency x severity and pure-premium GLMs on the spec's factors, honest hold-outs, the
relativity table of every factor, significance tests, the telematics lift test, and a draft rulebook.

Validation: two hold-outs, both recorded with the results. Policies are split by a hash of their id (every period
of a policy falls on one side: no policy is seen in training and judged in the hold-out), and, when the book
spans enough months, the last ``out_of_time_months`` months of periods are held out of training as well. The
models are trained on what is in neither hold-out and scored on each; relativities come from the GLMs refitted
on the whole book once validated. Challengers on the same split: scikit-learn's PoissonRegressor on the same
design (the deviance reference) and gradient boosting on the raw factor columns.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import mean_gamma_deviance, mean_poisson_deviance, mean_tweedie_deviance

from pricing import glm
from pricing.book import BookSpec, FactorSpec, stored_column
from pricing.rulebook import RELATIVITY_RANGE, Rulebook, parse_rulebook, settings_toml
from pricing.rulebook import toml_number as _num
from ubi.common.errors import PricingError

MIN_CLAIMS = 20


@dataclass
class Split:
    train: np.ndarray
    holdouts: dict[str, np.ndarray]  # name -> mask
    description: list[dict]


@dataclass
class BookFit:
    book: str
    spec_sha256: str
    rows: int
    exposure: float
    claims: int
    split: Split
    metrics: list[dict]
    relativities: list[dict]
    tests: list[dict]
    telematics_lift: dict
    calibration: list[dict]
    double_lift: list[dict]
    lorenz: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(repr=False)
    dispersion: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    draft_toml: str = ""
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # whole-book refits, per row


def policy_fold(policy_id: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per policy from a hash of its id (BLAKE2b keyed by the seed: the same on every machine and
    library version), so the same policy always lands on the same side."""
    key = seed.to_bytes(8, "little")
    u, inv = np.unique(policy_id.astype(str), return_inverse=True)
    h = np.array(
        [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8, key=key).digest(), "little") for s in u.tolist()],
        dtype=np.uint64,
    )
    return (h >> np.uint64(11)).astype(float)[inv.ravel()] / float(2**53)


def make_split(spec: BookSpec, policy_id: np.ndarray, period_start: np.ndarray) -> Split:
    n = len(policy_id)
    policy_out = policy_fold(policy_id, spec.seed) < spec.holdout_share
    months = period_start.astype("datetime64[M]")
    distinct = np.unique(months)
    desc = [
        {
            "holdout": "policies",
            "how": f"{spec.holdout_share:.0%} of policies by a hash of the policy id (seed {spec.seed}); all of a "
            "policy's periods on one side",
            "rows": int(policy_out.sum()),
        }
    ]
    holdouts = {"policies": policy_out}
    oot = np.zeros(n, bool)
    if spec.out_of_time_months and len(distinct) > spec.out_of_time_months + 1:
        cut = distinct[-spec.out_of_time_months]
        oot = months >= cut
        holdouts["out of time"] = oot
        desc.append(
            {
                "holdout": "out of time",
                "how": f"periods starting from {str(cut)} (the last {spec.out_of_time_months} months of "
                f"{len(distinct)}), all policies",
                "rows": int(oot.sum()),
            }
        )
        holdouts["policies"] = policy_out & ~oot
        desc[0]["rows"] = int(holdouts["policies"].sum())
    else:
        desc.append(
            {
                "holdout": "out of time",
                "how": f"not possible: the book's periods start in {len(distinct)} month(s); "
                f"needs more than {spec.out_of_time_months + 1}",
                "rows": 0,
            }
        )
    train = ~policy_out & ~oot
    desc.insert(0, {"holdout": "(training)", "how": "rows in neither hold-out", "rows": int(train.sum())})
    return Split(train, holdouts, desc)


def _hgb_matrix(factors: list[FactorSpec], values: dict[str, np.ndarray]) -> tuple[np.ndarray, list[bool]]:
    cols, cats = [], []
    for f in factors:
        x = values[f.column]
        if f.kind == "categorical":
            cols.append(np.unique(np.asarray(x).astype(str), return_inverse=True)[1].astype(float))
            cats.append(True)
        else:
            cols.append(x.astype(float))
            cats.append(False)
    X = np.column_stack(cols) if cols else np.zeros((len(next(iter(values.values()), [])), 0))
    return X, cats


def _hgb(loss: str, X: np.ndarray, cats: list[bool], y: np.ndarray, w: np.ndarray, seed: int):
    """The challenger. scikit-learn's HistGradientBoosting has no Tweedie loss: the pure premium uses Poisson
    (a valid quasi-likelihood for any non-negative rate with a log link)."""
    m = HistGradientBoostingRegressor(
        loss=loss,
        max_leaf_nodes=31,
        learning_rate=0.05,
        max_iter=200,
        min_samples_leaf=200,
        categorical_features=cats if any(cats) else None,
        random_state=seed,
    )
    return m.fit(X, y, sample_weight=w) if X.shape[1] else None


def fit_book(spec: BookSpec, frame: pl.DataFrame, rulebook: Rulebook | None = None, boosting: bool = True) -> BookFit:
    """Everything ``ubi actuary fit --book`` reports, computed from the stored rows."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    w = frame["exposure"].to_numpy().astype(float)
    counts = frame["claim_count"].to_numpy().astype(float)
    amount = frame["claim_amount"].to_numpy().astype(float)
    n_amt = frame["claims_with_amount"].to_numpy().astype(float)
    pid = frame["policy_id"].to_numpy().astype(str)
    start = frame["period_start"].to_numpy().astype("datetime64[D]")
    if len(w) < 50 or counts.sum() < MIN_CLAIMS:
        raise PricingError(f"too little experience to fit: {len(w)} rows, {counts.sum():.0f} claims")
    if not spec.factors:
        notes.append("the spec declares no rating factor: every model is the book mean")
    values = {c: frame[stored_column(c)].to_numpy() for c in spec.factor_columns}
    d = glm.build_design(list(spec.factors), values, w)
    split = make_split(spec, pid, start)
    tr = split.train
    freq = counts / w
    if counts[tr].sum() < MIN_CLAIMS:
        raise PricingError(f"too few claims in the training rows ({counts[tr].sum():.0f}) to fit")
    t0 = time.perf_counter()
    f_glm = glm.fit_glm("frequency", d.X[tr], freq[tr], w[tr])
    timings["frequency_glm_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = PoissonRegressor(alpha=0.0, solver="newton-cholesky", max_iter=500).fit(d.X[tr], freq[tr], sample_weight=w[tr])
    timings["sklearn_glm_s"] = time.perf_counter() - t0
    tele_names = {f.name for f in spec.factors if f.telematics}
    Xh, cats = _hgb_matrix(list(spec.factors), values)
    hgb = None
    if boosting and Xh.shape[1]:
        t0 = time.perf_counter()
        hgb = _hgb("poisson", Xh[tr], cats, freq[tr], w[tr], spec.seed)
        timings["boosting_s"] = time.perf_counter() - t0
    f_trad = glm.fit_glm("frequency", d.without(tele_names)[tr], freq[tr], w[tr]) if tele_names else None

    # severity: the mean claim on rows with claims and amounts, weighted by their number of claims
    has = (n_amt > 0) & (amount > 0)
    sev = np.divide(amount, n_amt, out=np.zeros_like(amount), where=has)
    s_glm = None
    if (has & tr).sum() >= MIN_CLAIMS:
        t0 = time.perf_counter()
        s_glm = glm.fit_glm("severity", d.X[has & tr], sev[has & tr], n_amt[has & tr])
        timings["severity_glm_s"] = time.perf_counter() - t0
    else:
        notes.append(f"no severity model: {int((has & tr).sum())} training rows with claim amounts")
    pp = amount / w
    t0 = time.perf_counter()
    p_glm = glm.fit_glm("pure_premium", d.X[tr], pp[tr], w[tr], spec.tweedie_power) if s_glm else None
    timings["tweedie_glm_s"] = time.perf_counter() - t0
    p_hgb = _hgb("poisson", Xh[tr], cats, pp[tr], w[tr], spec.seed) if (boosting and s_glm and Xh.shape[1]) else None

    metrics: list[dict] = []
    lor: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    cal: list[dict] = []
    dl: list[dict] = []
    for hname, m in split.holdouts.items():
        if not m.any() or counts[m].sum() == 0:
            notes.append(f"hold-out '{hname}' has no claims: not scored")
            continue
        fpred = {
            "mean (dummy)": np.full(m.sum(), np.average(freq[tr], weights=w[tr])),
            "Poisson GLM (glum)": f_glm.predict(d.X[m]),
            "Poisson GLM (scikit-learn)": sk.predict(d.X[m]),
        }
        if f_trad is not None:
            fpred["Poisson GLM without telematics"] = f_trad.predict(d.without(tele_names)[m])
        if hgb is not None:
            fpred["gradient boosting (Poisson)"] = hgb.predict(Xh[m])
        base_dev = mean_poisson_deviance(freq[m], fpred["mean (dummy)"], sample_weight=w[m])
        for name, p in fpred.items():
            p = np.maximum(p, 1e-12)
            dev = mean_poisson_deviance(freq[m], p, sample_weight=w[m])
            cx, cy, gini = glm.lorenz(freq[m], p, w[m])
            lor[(hname, f"frequency: {name}")] = (cx, cy)
            metrics.append(
                {
                    "holdout": hname,
                    "target": "frequency",
                    "model": name,
                    "deviance": dev,
                    "d2": 1 - dev / base_dev,
                    "gini": gini,
                    "predicted": float((p * w[m]).sum()),
                    "observed": float(counts[m].sum()),
                }
            )
            if name != "mean (dummy)":
                cal += [
                    {"holdout": hname, "target": "frequency", "model": name, **r}
                    for r in glm.calibration(freq[m], p, w[m])
                ]
        if hgb is not None:
            dl += [
                {"holdout": hname, "a": "Poisson GLM", "b": "gradient boosting", **r}
                for r in glm.double_lift(
                    freq[m],
                    np.maximum(fpred["Poisson GLM (glum)"], 1e-12),
                    np.maximum(fpred["gradient boosting (Poisson)"], 1e-12),
                    w[m],
                )
            ]
        if s_glm is not None and p_glm is not None:
            hs = has & m
            if hs.sum() > 0:
                sp = s_glm.predict(d.X[hs])
                sm = np.full(hs.sum(), np.average(sev[has & tr], weights=n_amt[has & tr]))
                sdev = mean_gamma_deviance(sev[hs], sp, sample_weight=n_amt[hs])
                sdev0 = mean_gamma_deviance(sev[hs], sm, sample_weight=n_amt[hs])
                metrics.append(
                    {
                        "holdout": hname,
                        "target": "severity",
                        "model": "Gamma GLM",
                        "deviance": sdev,
                        "d2": 1 - sdev / sdev0,
                        "gini": glm.lorenz(sev[hs], sp, n_amt[hs])[2],
                        "predicted": float((sp * n_amt[hs]).sum()),
                        "observed": float(amount[hs].sum()),
                    }
                )
            ppred = {
                "mean (dummy)": np.full(m.sum(), np.average(pp[tr], weights=w[tr])),
                "frequency x severity GLMs": f_glm.predict(d.X[m]) * s_glm.predict(d.X[m]),
                f"Tweedie GLM (p={spec.tweedie_power})": p_glm.predict(d.X[m]),
            }
            if p_hgb is not None:
                ppred["gradient boosting (pure premium)"] = p_hgb.predict(Xh[m])
            pdev0 = mean_tweedie_deviance(pp[m], ppred["mean (dummy)"], sample_weight=w[m], power=spec.tweedie_power)
            for name, p in ppred.items():
                p = np.maximum(p, 1e-9)
                dev = mean_tweedie_deviance(pp[m], p, sample_weight=w[m], power=spec.tweedie_power)
                cx, cy, gini = glm.lorenz(pp[m], p, w[m])
                lor[(hname, f"pure premium: {name}")] = (cx, cy)
                metrics.append(
                    {
                        "holdout": hname,
                        "target": "pure premium",
                        "model": name,
                        "deviance": dev,
                        "d2": 1 - dev / pdev0,
                        "gini": gini,
                        "predicted": float((p * w[m]).sum()),
                        "observed": float(amount[m].sum()),
                    }
                )
    timings["validation_s"] = time.perf_counter() - t_start

    # whole-book refits: relativities, tests
    t0 = time.perf_counter()
    F = glm.fit_glm("frequency", d.X, freq, w)
    fpred_all = F.predict(d.X)
    rel = glm.relativity_table(d, F, values, w, counts, fpred_all)
    preds = {"frequency": fpred_all}
    S = P = None
    if s_glm is not None:
        S = glm.fit_glm("severity", d.X[has], sev[has], n_amt[has])
        vals_s = {k: v[has] for k, v in values.items()}
        rel += glm.relativity_table(d, S, vals_s, n_amt[has], amount[has], S.predict(d.X[has]))
        P = glm.fit_glm("pure_premium", d.X, pp, w, spec.tweedie_power)
        rel += glm.relativity_table(d, P, values, w, amount, P.predict(d.X))
        preds["severity"] = S.predict(d.X)
        preds["pure_premium"] = fpred_all * preds["severity"]
    timings["refit_s"] = time.perf_counter() - t0
    for x in rel:
        if x["model"] == "frequency" and x["claims"] == 0 and not x["base"]:
            notes.append(
                f"{x['factor']} = {x['level']} has no claims: its relativity is not estimable; group it with a "
                "neighbour in the spec"
            )
    t0 = time.perf_counter()
    tests = []
    for f in spec.factors:
        Xr = d.without({f.name})
        tests.append(
            {"model": "frequency", "test": f"drop {f.name}", **glm.f_test(F, glm.fit_glm("frequency", Xr, freq, w))}
        )
        if S is not None:
            tests.append(
                {
                    "model": "severity",
                    "test": f"drop {f.name}",
                    **glm.f_test(S, glm.fit_glm("severity", Xr[has], sev[has], n_amt[has])),
                }
            )
    lift: dict = {"telematics_factors": sorted(tele_names)}
    if tele_names:
        Xr = d.without(tele_names)
        lt = glm.f_test(F, glm.fit_glm("frequency", Xr, freq, w))
        tests.append({"model": "frequency", "test": "add telematics over the traditional tariff", **lt})
        lift |= lt
        for row in metrics:
            if row["target"] == "frequency" and row["model"] == "Poisson GLM without telematics":
                full = next(
                    r
                    for r in metrics
                    if r["holdout"] == row["holdout"]
                    and r["target"] == "frequency"
                    and r["model"] == "Poisson GLM (glum)"
                )
                lift[f"{row['holdout']}: gini traditional -> with telematics"] = (
                    f"{row['gini']:.4f} -> {full['gini']:.4f}"
                )
                lift[f"{row['holdout']}: D2 traditional -> with telematics"] = f"{row['d2']:.4f} -> {full['d2']:.4f}"
        lift["verdict"] = (
            f"telematics adds significant lift (F test p = {lt['f_p']:.2g})"
            if lt["f_p"] < 0.05
            else f"no significant lift from telematics (F test p = {lt['f_p']:.2g})"
        )
    else:
        lift["verdict"] = "no telematics factor in this spec: the lift test needs telematics columns in the book"
    timings["tests_s"] = time.perf_counter() - t0
    timings["fit_total_s"] = time.perf_counter() - t_start
    res = BookFit(
        book=spec.name,
        spec_sha256=spec.sha256,
        rows=len(w),
        exposure=float(w.sum()),
        claims=int(counts.sum()),
        split=split,
        metrics=metrics,
        relativities=rel,
        tests=tests,
        telematics_lift=lift,
        calibration=cal,
        double_lift=dl,
        lorenz=lor,
        dispersion={
            "frequency": F.scale,
            **({"severity": S.scale} if S else {}),
            **({"pure_premium": P.scale} if P else {}),
        },
        timings=timings,
        notes=notes,
        predictions=preds,
    )
    if rulebook is not None:
        res.draft_toml = draft_rulebook(spec, rulebook, res)
    return res


def draft_rulebook(spec: BookSpec, rb: Rulebook, r: BookFit, today: date | None = None) -> str:
    """The fitted telematics bands as a draft of the live rulebook (its other settings kept), validated; '' when no
    factor maps to a rulebook feature (a draft of 1.0s would say nothing)."""
    mapped = [f for f in spec.factors if f.rulebook_feature]
    if not mapped:
        return ""
    today = today or date.today()
    lo_r, hi_r = RELATIVITY_RANGE
    clamped = 0
    blocks = []
    for f in mapped:
        rows = [x for x in r.relativities if x["model"] == "frequency" and x["factor"] == f.name]
        e = np.array([x["exposure"] for x in rows])
        rel = np.array([x["relativity"] for x in rows])
        mean = float(np.dot(e, rel) / e.sum())
        lines = ["", "[[factors]]", f'feature = "{f.rulebook_feature}"', f'label = "{f.name}"', "bands = ["]
        for j, x in enumerate(rows):
            v = rel[j] / mean
            clamped += int(not lo_r <= v <= hi_r)
            v = round(min(max(v, lo_r), hi_r), 3)
            hi = f"to = {_num(f.edges[j + 1])}, " if j + 1 < len(f.edges) else ""
            lines.append(
                f'  {{ from = {_num(f.edges[j])}, {hi}relativity = {_num(v)}, label = "{x["level"]}" }},'
                f"  # fitted {x['relativity']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}], "
                f"{x['exposure']:.0f} policy-years, {x['claims']:.0f} claims"
            )
        lines.append("]")
        blocks.append(lines)
    fitted_features = {f.rulebook_feature for f in mapped}
    kept = [f for f in rb.factors if f.feature not in fitted_features]
    lift = r.telematics_lift.get("verdict", "")
    notes = (
        f"DRAFT from `ubi actuary fit --book {spec.name}` (spec sha256 {spec.sha256[:12]}): {r.rows} rows, "
        f"{r.exposure:.0f} policy-years, {r.claims} claims; {lift}. Relativities rebalanced to an exposure-weighted "
        f"mean of 1 per factor; {clamped} clamped into {list(RELATIVITY_RANGE)}. Review before use."
    )
    text = settings_toml(
        rb,
        header="# Draft rulebook written by `ubi actuary fit --book`: the fitted telematics bands in the live "
        "rulebook.",
        version=f"{rb.version}-{spec.name}-{today:%Y%m%d}-draft",
        today=today,
        notes=notes,
        prohibited=list(rb.prohibited),
    )
    for b in blocks:
        text += b
    for lf in kept:  # live factors the book has no data for stay as they are
        text += [
            "",
            "[[factors]]",
            f'feature = "{lf.feature}"',
            f'label = "{lf.label}  (kept from {rb.version})"',
            "bands = [",
        ]
        for band in lf.bands:
            hi = "" if math.isinf(band.hi) else f"to = {_num(band.hi)}, "
            text.append(
                f'  {{ from = {_num(band.lo)}, {hi}relativity = {_num(band.relativity)}, label = "{band.label}" }},'
            )
        text.append("]")
    out = "\n".join(text) + "\n"
    parse_rulebook(out, "<draft rulebook>")  # never hand out a draft that would be refused
    return out
