"""The fit report of a claims book: CSV tables and one self-contained HTML page (charts embedded).

Everything is written into a fresh folder beside the target and renamed into place at the end, so a report folder
is either complete or absent: a failure half-way leaves the previous report as it was.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib.pyplot as plt
import numpy as np

from pricing.book_fit import BookFit
from pricing.report import page, png, table, write_csv


def lorenz_rows(r: BookFit, points: int = 101) -> list[dict]:
    grid = np.linspace(0, 1, points)
    return [
        {"holdout": h, "model": m, "exposure_share": float(gx), "loss_share": float(gy)}
        for (h, m), (x, y) in r.lorenz.items()
        for gx, gy in zip(grid, np.interp(grid, x, y), strict=True)
    ]


def _oneway(r: BookFit, model: str) -> str:
    """Observed vs fitted mean per level of each factor (bars: exposure), one small chart per factor."""
    rows = [x for x in r.relativities if x["model"] == model]
    factors = list(dict.fromkeys(x["factor"] for x in rows))
    if not factors:
        return "<p>(no factor)</p>"
    cols = 3
    nrow = (len(factors) + cols - 1) // cols
    fig, axes = plt.subplots(nrow, cols, figsize=(5 * cols, 3.2 * nrow), squeeze=False)
    for ax, f in zip(axes.ravel(), factors, strict=False):
        fr = [x for x in rows if x["factor"] == f]
        xs = np.arange(len(fr))
        ax2 = ax.twinx()
        ax2.bar(xs, [x["exposure"] for x in fr], color="#dddddd")
        ax2.set_yticks([])
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot(xs, [x["observed"] for x in fr], "s--", color="#b5804a", label="observed")
        ax.plot(xs, [x["fitted_mean"] for x in fr], "o-", color="#4a7ab5", label="fitted")
        ax.set_xticks(xs, [x["level"] for x in fr], rotation=45, ha="right", fontsize=7)
        ax.set_title(f, fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(factors) :]:
        ax.axis("off")
    fig.tight_layout()
    return png(fig)


def _lorenz_chart(r: BookFit, target: str) -> str:
    keys = [k for k in r.lorenz if k[1].startswith(target)]
    if not keys:
        return ""
    holdouts = list(dict.fromkeys(h for h, _ in keys))
    fig, axes = plt.subplots(1, len(holdouts), figsize=(5.5 * len(holdouts), 5), squeeze=False)
    for ax, h in zip(axes[0], holdouts, strict=True):
        for hh, m in keys:
            if hh != h:
                continue
            x, y = r.lorenz[(hh, m)]
            gini = next(
                (x["gini"] for x in r.metrics if x["holdout"] == h and f"{x['target']}: {x['model']}" == m), np.nan
            )
            ax.plot(x, y, label=f"{m.split(': ', 1)[1]} (Gini {gini:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_title(f"{target}, hold-out: {h}")
        ax.set_xlabel("share of exposure (lowest predicted first)")
        ax.set_ylabel("share of observed")
        ax.legend(fontsize=7)
    return png(fig)


def _calibration_chart(r: BookFit) -> str:
    models = list(dict.fromkeys((c["holdout"], c["model"]) for c in r.calibration))
    if not models:
        return ""
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.3), squeeze=False)
    for ax, (h, m) in zip(axes[0], models, strict=True):
        rows = [c for c in r.calibration if c["holdout"] == h and c["model"] == m]
        ax.plot([c["decile"] for c in rows], [c["predicted"] for c in rows], "o-", label="predicted")
        ax.plot([c["decile"] for c in rows], [c["observed"] for c in rows], "s--", label="observed")
        ax.set_title(f"{m}\n({h})", fontsize=8)
        ax.set_xlabel("decile of prediction")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def _double_lift_chart(r: BookFit) -> str:
    holdouts = list(dict.fromkeys(x["holdout"] for x in r.double_lift))
    if not holdouts:
        return "<p>(no challenger fitted)</p>"
    fig, axes = plt.subplots(1, len(holdouts), figsize=(5.5 * len(holdouts), 3.5), squeeze=False)
    for ax, h in zip(axes[0], holdouts, strict=True):
        rows = [x for x in r.double_lift if x["holdout"] == h]
        d = [x["decile"] for x in rows]
        ax.plot(d, [x["observed"] for x in rows], "ks--", label="observed")
        ax.plot(d, [x["model_a"] for x in rows], "o-", label="Poisson GLM")
        ax.plot(d, [x["model_b"] for x in rows], "^-", label="gradient boosting")
        ax.set_xlabel("decile of GLM / boosting")
        ax.set_ylabel("frequency / book mean")
        ax.set_title(f"double lift, hold-out: {h}")
        ax.legend(fontsize=7)
    return png(fig)


def sections(r: BookFit, draft_note: str) -> list[tuple[str, str]]:
    head = (
        f"<p>Book <b>{html.escape(r.book)}</b> (spec sha256 {r.spec_sha256[:12]}): {r.rows:,} rows, "
        f"{r.exposure:,.0f} policy-years, {r.claims:,} claims. Pearson dispersion: "
        + ", ".join(f"{k} {v:.3f}" for k, v in r.dispersion.items())
        + " (standard errors and intervals are scaled by it).</p>"
    )
    if r.notes:
        head += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in r.notes) + "</ul>"
    lift = r.telematics_lift
    lift_html = f"<p><b>{html.escape(str(lift['verdict']))}</b></p>" + table(
        [{"item": k, "value": v} for k, v in lift.items() if k != "verdict"]
    )
    out = [
        ("Book and split", head + table(r.split.description)),
        ("Does telematics add lift over the traditional tariff?", lift_html),
        ("Model comparison on the hold-outs", table(r.metrics)),
        ("Factor significance (drop-one tests, F with Pearson dispersion)", table(r.tests)),
    ]
    for model in dict.fromkeys(x["model"] for x in r.relativities):
        rows = [x for x in r.relativities if x["model"] == model]
        out.append((f"Relativities: {model}", _oneway(r, model) + table(rows)))
    out += [
        ("Lorenz curves: frequency", _lorenz_chart(r, "frequency")),
        ("Lorenz curves: pure premium", _lorenz_chart(r, "pure premium")),
        ("Calibration by decile", _calibration_chart(r) + table(r.calibration)),
        ("Double lift: GLM vs gradient boosting", _double_lift_chart(r) + table(r.double_lift)),
        ("Draft rulebook", draft_note),
        ("Timings (s)", table([r.timings])),
    ]
    return out


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling folder to write into, renamed onto ``out`` (replacing it) only if the block succeeds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_report(r: BookFit, out: Path) -> dict[str, Path]:
    """All files into a temporary sibling folder, then renamed onto ``out`` (replacing a previous report)."""
    out = Path(out)
    with atomic_folder(out) as tmp:
        files = {
            "metrics": tmp / "metrics.csv",
            "relativities": tmp / "relativities.csv",
            "tests": tmp / "tests.csv",
            "split": tmp / "split.csv",
            "calibration": tmp / "calibration.csv",
            "double_lift": tmp / "double_lift.csv",
            "lorenz": tmp / "lorenz.csv",
        }
        write_csv(files["metrics"], r.metrics)
        write_csv(files["relativities"], r.relativities)
        write_csv(files["tests"], r.tests)
        write_csv(files["split"], r.split.description)
        write_csv(files["calibration"], r.calibration)
        write_csv(files["double_lift"], r.double_lift)
        write_csv(files["lorenz"], lorenz_rows(r))
        if r.draft_toml:
            (tmp / "draft_rulebook.toml").write_text(r.draft_toml)
            note = (
                f"<p>Written to <code>{html.escape(str(out / 'draft_rulebook.toml'))}</code> (validated); compare "
                "it with the live one: <code>ubi actuary whatif --rulebook FILE</code>.</p>"
                f"<pre>{html.escape(r.draft_toml)}</pre>"
            )
        else:
            note = (
                "<p>No draft rulebook: no factor of this spec maps to a feature the monthly rulebook prices "
                "(<code>rulebook_feature</code>). The traditional tariff's relativities are in relativities.csv.</p>"
            )
        (tmp / "report.html").write_text(page(f"Claims book fit: {r.book}", sections(r, note)))
    return {k: out / v.name for k, v in files.items()} | {"report": out / "report.html"}
