"""The dislocation report for a proposed rulebook: who pays how much more or less than under the current one.

Pure arrays in, rows and figures out; the caller prices the book under both rulebooks (``pricing.vector``) and
supplies the reporting segments. Region may be a segment here though it is a prohibited rating factor:
reporting on it is how one checks the rule does not reintroduce it by proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from pricing.report import png, table
from pricing.vector import CAP_DOWN, CAP_UP

BINS = np.array([-1.0, -0.15, -0.10, -0.05, -0.02, -0.005, 0.005, 0.02, 0.05, 0.10, 0.15, 10.0])
BIN_LABELS = [
    "< -15%",
    "-15..-10%",
    "-10..-5%",
    "-5..-2%",
    "-2..-0.5%",
    "about 0",
    "+0.5..+2%",
    "+2..+5%",
    "+5..+10%",
    "+10..+15%",
    "> +15%",
]


@dataclass
class Dislocation:
    summary: dict
    histogram: list[dict]
    segments: list[dict]
    change: np.ndarray  # relative change per policy, proposed vs current


def _quantiles(x: np.ndarray) -> dict:
    if x.size == 0:
        return {k: float("nan") for k in ("p05", "p25", "median", "p75", "p95")}
    q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    return dict(zip(("p05", "p25", "median", "p75", "p95"), map(float, q), strict=False))


def dislocation(
    current_c: np.ndarray,
    proposed_c: np.ndarray,
    proposed_cap: np.ndarray,
    segments: dict[str, np.ndarray],
    current_cap: np.ndarray | None = None,
    off_balance: float | None = None,
) -> Dislocation:
    """Change per policy, its distribution, caps hit, revenue effect, and the same by each segment."""
    cur = current_c.astype(np.float64)
    prop = proposed_c.astype(np.float64)
    change = np.divide(prop - cur, cur, out=np.zeros_like(cur), where=cur > 0)
    cents_cur, cents_prop = int(current_c.sum()), int(proposed_c.sum())  # integers: exact money
    rev_cur, rev_prop = cents_cur / 100, cents_prop / 100
    summary = {
        "policies": int(cur.size),
        "revenue_current": rev_cur,
        "revenue_proposed": rev_prop,
        "revenue_change": (cents_prop - cents_cur) / 100,
        "revenue_change_pct": (rev_prop / rev_cur - 1) * 100 if rev_cur else 0.0,
        "mean_change_pct": float(change.mean() * 100) if cur.size else 0.0,
        **{f"{k}_change_pct": v * 100 for k, v in _quantiles(change).items()},
        "share_up": float((change > 0.005).mean()) if cur.size else 0.0,
        "share_down": float((change < -0.005).mean()) if cur.size else 0.0,
        "share_up_over_10pct": float((change > 0.10).mean()) if cur.size else 0.0,
        "capped_up_proposed": int((proposed_cap == CAP_UP).sum()),
        "capped_down_proposed": int((proposed_cap == CAP_DOWN).sum()),
        "capped_up_current": int((current_cap == CAP_UP).sum()) if current_cap is not None else None,
        "capped_down_current": int((current_cap == CAP_DOWN).sum()) if current_cap is not None else None,
        "off_balance_proposed": off_balance,
    }
    counts = np.histogram(np.clip(change, -0.999, 9.99), BINS)[0]
    hist = [
        {"change": lab, "lo": float(lo), "hi": float(hi), "policies": int(c)}
        for lab, lo, hi, c in zip(BIN_LABELS, BINS[:-1], BINS[1:], counts, strict=False)
    ]
    seg_rows = []
    for name, labels in segments.items():
        labels = np.asarray(labels).astype(str)
        for value in np.unique(labels):
            m = labels == value
            rc, rp = int(current_c[m].sum()) / 100, int(proposed_c[m].sum()) / 100
            q = _quantiles(change[m])
            seg_rows.append(
                {
                    "segment": name,
                    "value": value,
                    "policies": int(m.sum()),
                    "revenue_current": rc,
                    "revenue_proposed": rp,
                    "revenue_change_pct": (rp / rc - 1) * 100 if rc else 0.0,
                    "mean_change_pct": float(change[m].mean() * 100),
                    "p05_change_pct": q["p05"] * 100,
                    "median_change_pct": q["median"] * 100,
                    "p95_change_pct": q["p95"] * 100,
                    "share_up": float((change[m] > 0.005).mean()),
                    "share_down": float((change[m] < -0.005).mean()),
                    "capped_up": int((proposed_cap[m] == CAP_UP).sum()),
                    "capped_down": int((proposed_cap[m] == CAP_DOWN).sum()),
                }
            )
    return Dislocation(summary, hist, seg_rows, change)


def html_sections(d: Dislocation, current: str, proposed: str) -> list[tuple[str, str]]:
    """Report sections: headline numbers, the histogram, and a bar chart and table per segment."""
    s = d.summary
    head = (
        f"<p>Current rulebook <b>{current}</b>, proposed <b>{proposed}</b>. {s['policies']:,} policies. "
        f"Revenue {s['revenue_current']:,.2f} → {s['revenue_proposed']:,.2f} "
        f"({s['revenue_change_pct']:+.2f}%). {s['share_up']:.1%} pay more, {s['share_down']:.1%} pay less; "
        f"caps hit under the proposal: {s['capped_up_proposed']:,} up, {s['capped_down_proposed']:,} down.</p>"
    )
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(len(d.histogram)), [h["policies"] for h in d.histogram], color="#4a7ab5")
    ax.set_xticks(range(len(d.histogram)), [h["change"] for h in d.histogram], rotation=40, ha="right")
    ax.set_ylabel("policies")
    ax.set_title("Premium change, proposed vs current")
    sections = [("Summary", head + table([s])), ("Distribution of changes", png(fig) + table(d.histogram))]
    for name in dict.fromkeys(r["segment"] for r in d.segments):
        rows = [r for r in d.segments if r["segment"] == name]
        fig, ax = plt.subplots(figsize=(7, 2.8))
        ax.bar([r["value"] for r in rows], [r["mean_change_pct"] for r in rows], color="#b5804a")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("mean change %")
        ax.set_title(f"Mean premium change by {name}")
        sections.append((f"By {name}", png(fig) + table(rows)))
    return sections
