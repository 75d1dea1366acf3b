"""Report sections and CSV rows for a frequency fit: metrics, relativities, Lorenz curves, calibration."""

from __future__ import annotations

import html
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np

from pricing.fit import FitResult
from pricing.report import png, table


def relativity_rows(r: FitResult) -> list[dict]:
    return [{**asdict(b), "hi": None if np.isinf(b.hi) else b.hi} for b in r.bands]


def calibration_rows(r: FitResult) -> list[dict]:
    return [{"model": m, **row} for m, rows in r.calibration.items() for row in rows]


def lorenz_rows(r: FitResult, points: int = 101) -> list[dict]:
    """Each model's Lorenz curve at evenly spaced shares of exposure (the full curve has one point per policy)."""
    grid = np.linspace(0, 1, points)
    out = []
    for m, (x, y) in r.lorenz.items():
        for gx, gy in zip(grid, np.interp(grid, x, y), strict=False):
            out.append({"model": m, "exposure_share": float(gx), "claims_share": float(gy)})
    return out


def html_sections(r: FitResult, draft_path: str) -> list[tuple[str, str]]:
    head = (
        f"<p>{r.policies:,} policy periods, {r.exposure:,.0f} policy-years, {r.claims:,} claims. Models are "
        "scored on a 25% hold-out; relativities come from the GLM refitted on all data.</p>"
    )
    if r.km_elasticity is not None:
        lo, hi = r.km_elasticity_ci or (float("nan"), float("nan"))
        head += (
            f"<p>Claim frequency grows with km per year to the power <b>{r.km_elasticity:.3f}</b> "
            f"(95% CI {lo:.3f} to {hi:.3f}).</p>"
        )
    fig, ax = plt.subplots(figsize=(5, 5))
    for m, (x, y) in r.lorenz.items():
        gini = next(mm["gini"] for mm in r.metrics if mm["model"] == m)
        ax.plot(x, y, label=f"{m} (Gini {gini:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("cumulative share of exposure (safest first)")
    ax.set_ylabel("cumulative share of claims")
    ax.legend(fontsize=8)
    lor = png(fig)
    models = [m for m in r.calibration if "dummy" not in m]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
    for ax, m in zip(axes[0], models, strict=False):
        rows = r.calibration[m]
        d = [c["decile"] for c in rows]
        ax.plot(d, [c["predicted_frequency"] for c in rows], "o-", label="predicted")
        ax.plot(d, [c["observed_frequency"] for c in rows], "s--", label="observed")
        ax.set_title(m)
        ax.set_xlabel("decile of predicted frequency")
        ax.set_ylabel("claims per policy-year")
        ax.legend(fontsize=8)
    cal = png(fig)
    feats = list(dict.fromkeys(b.feature for b in r.bands))
    if not feats:  # a rulebook without telematics factors: the GLM fits km and the controls only
        rel = "<p>The rulebook has no telematics factor: no band relativities to fit.</p>"
        return _sections(r, head, lor, cal, rel, draft_path)
    fig, axes = plt.subplots(1, len(feats), figsize=(5 * len(feats), 3.2), squeeze=False)
    for ax, f in zip(axes[0], feats, strict=False):
        bs = [b for b in r.bands if b.feature == f]
        x = np.arange(len(bs))
        ax.bar(
            x,
            [b.relativity for b in bs],
            color="#4a7ab5",
            yerr=[[b.relativity - b.ci_low for b in bs], [b.ci_high - b.relativity for b in bs]],
        )
        ax.set_xticks(x, [b.label for b in bs], rotation=20)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_title(f"{f} (fitted, 95% CI)")
    rel = png(fig)
    return _sections(r, head, lor, cal, rel, draft_path)


def _sections(r: FitResult, head: str, lor: str, cal: str, rel: str, draft_path: str) -> list[tuple[str, str]]:
    return [
        ("Data and exposure", head),
        ("Model comparison (hold-out)", table(r.metrics)),
        ("Fitted relativities", rel + table(relativity_rows(r))),
        ("Traditional controls (relative to the most common level)", table(r.control_relativities)),
        ("Exposure-weighted Lorenz curves", lor),
        ("Calibration by decile", cal + table(calibration_rows(r))),
        (
            "Draft rulebook",
            f"<p>Written to <code>{html.escape(draft_path)}</code> (validated).</p>"
            f"<pre>{html.escape(r.draft_toml)}</pre>",
        ),
    ]
