"""Fairness audit: premium change and telematics factor by protected group, with a disparity flag.

Protected attributes (gender) are never rating factors; this audit is the only reader, and it looks at the
outcome (behaviour-based prices can still differ by group through correlated driving). The disparity of an
attribute is the largest gap between two of its groups in mean premium change (percentage points / 100) or in
mean telematics factor; a gap above the threshold is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from pricing.report import png, table
from ubi.common.errors import PricingError

DEFAULT_THRESHOLD = 0.03  # 3 points of mean premium change, or 0.03 of mean telematics factor


@dataclass
class FairnessResult:
    groups: list[dict]
    disparities: list[dict]
    threshold: float

    @property
    def flagged(self) -> bool:
        return any(d["flagged"] for d in self.disparities)


def audit(
    change: np.ndarray,
    factor: np.ndarray,
    capped_up: np.ndarray,
    attributes: dict[str, np.ndarray],
    threshold: float = DEFAULT_THRESHOLD,
    min_group: int = 30,
) -> FairnessResult:
    """Per group: count, mean change, mean factor, share with an increase, share capped up; per attribute: gaps.

    Groups smaller than ``min_group`` are reported but not used for the gap (their means are noise). A group whose
    mean is not a number, or fewer than two groups to compare, is a PricingError: no verdict is not a pass."""
    groups, disparities = [], []
    for attr, labels in attributes.items():
        labels = np.asarray(labels).astype(str)
        rows: list[dict[str, Any]] = []
        for g in np.unique(labels):
            m = labels == g
            rows.append(
                {
                    "attribute": attr,
                    "group": str(g),
                    "policies": int(m.sum()),
                    "mean_change": float(change[m].mean()),
                    "mean_factor": float(factor[m].mean()),
                    "share_increase": float((change[m] > 0.005).mean()),
                    "share_capped_up": float(capped_up[m].mean()),
                }
            )
        groups += rows
        bad = [str(r["group"]) for r in rows if not (np.isfinite(r["mean_change"]) and np.isfinite(r["mean_factor"]))]
        if bad:  # a NaN mean compares false with everything: the gap would be nan and pass
            raise PricingError(
                f"fairness: {attr} group(s) {bad} have premium changes or factors that are not numbers "
                "(a previous premium of 0?); no verdict"
            )
        big = [r for r in rows if r["policies"] >= min_group]
        if len(big) < 2:
            raise PricingError(
                f"fairness: {attr} has {len(big)} group(s) with at least {min_group} policies "
                f"(groups: {[str(r['group']) for r in rows]}): nothing to compare, so no verdict"
            )
        for metric in ("mean_change", "mean_factor"):
            hi = max(big, key=lambda r: r[metric])
            lo = min(big, key=lambda r: r[metric])
            gap = hi[metric] - lo[metric]
            disparities.append(
                {
                    "attribute": attr,
                    "metric": metric,
                    "gap": gap,
                    "highest": hi["group"],
                    "lowest": lo["group"],
                    "threshold": threshold,
                    "flagged": gap > threshold,
                }
            )
    return FairnessResult(groups, disparities, threshold)


def html_sections(r: FairnessResult, month: str) -> list[tuple[str, str]]:
    flagged = [d for d in r.disparities if d["flagged"]]
    verdict = (
        f"<p class='flag'>DISPARITY FLAGGED: {len(flagged)} gap(s) above {r.threshold}.</p>"
        if flagged
        else f"<p class='ok'>No gap above the threshold {r.threshold}.</p>"
    )
    sections = [
        (
            "Verdict",
            f"<p>Month {month}. Protected attributes are read for this audit only; no rating "
            f"factor uses them.</p>{verdict}" + table(r.disparities),
        )
    ]
    for attr in dict.fromkeys(g["attribute"] for g in r.groups):
        rows = [g for g in r.groups if g["attribute"] == attr]
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
        axes[0].bar([g["group"] for g in rows], [g["mean_change"] * 100 for g in rows], color="#4a7ab5")
        axes[0].set_title(f"mean premium change % by {attr}")
        axes[1].bar([g["group"] for g in rows], [g["mean_factor"] for g in rows], color="#b5804a")
        axes[1].set_title(f"mean telematics factor by {attr}")
        axes[1].set_ylim(min(g["mean_factor"] for g in rows) * 0.95, max(g["mean_factor"] for g in rows) * 1.02)
        sections.append((f"By {attr}", png(fig) + table(rows)))
    return sections
