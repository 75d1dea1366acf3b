"""`ubi actuary whatif | fit | fairness`: the actuary's tools against DuckDB. Reports go to HTML + CSV files.

Database access is in ``ubi.adapters.duckdb_store``; the analysis is in ``pricing.whatif``, ``pricing.fit`` and
``pricing.fairness``. The tools read; none writes premiums. ``ubi actuary load-book --book DIR`` loads a
simulated book (``ubi actuary simulate-book``) or any Parquet set of the same shape for ``fit``.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import duckdb

from pricing import fairness, fit, fit_report, whatif
from pricing.book_report import atomic_folder
from pricing.monthly import month_start, price_month_book
from pricing.report import page, write_csv
from pricing.rulebook import Rulebook, load_rulebook, parse_rulebook
from ubi.adapters import duckdb_store as store
from ubi.common.errors import PricingError, StoreError


def _open(cfg) -> duckdb.DuckDBPyConnection:
    if not Path(cfg.db_path).exists():
        raise StoreError(f"no database at {cfg.db_path}; price a month first")
    return store.connect(cfg.db_path, read_only=True)


def _month(con: duckdb.DuckDBPyConnection, text: str | None) -> date:
    """The asked month, or the latest month that has premiums."""
    if text:
        return month_start(text)
    latest = store.latest_priced_month(con)
    if latest is None:
        raise PricingError("no priced month in the store; run `ubi price --month YYYY-MM` first")
    return latest


def _out(cfg, args, name: str) -> Path:
    out = Path(args.out) if args.out else Path(cfg.home) / "reports" / name
    out.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------- what-if


def whatif_report(con: duckdb.DuckDBPyConnection, proposed: Rulebook, month: date, out: Path) -> whatif.Dislocation:
    """Price the month's book under the proposed rulebook and compare with the live premiums; write the report."""
    pm = store.priced_month(con, month)
    priced, ob = price_month_book(proposed, pm.book)
    d = whatif.dislocation(pm.premium_c, priced.premium_c, priced.cap, pm.segments, pm.cap, ob.factor if ob else None)
    write_csv(
        out / "summary.csv",
        [
            {
                "month": f"{month:%Y-%m}",
                "current_rulebook": "+".join(pm.rulebook_versions),
                "proposed_rulebook": proposed.version,
                **d.summary,
            }
        ],
    )
    write_csv(out / "histogram.csv", d.histogram)
    write_csv(out / "segments.csv", d.segments)
    title = f"What-if {month:%Y-%m}: {proposed.version} vs {'+'.join(pm.rulebook_versions)}"
    (out / "report.html").write_text(
        page(title, whatif.html_sections(d, "+".join(pm.rulebook_versions), proposed.version))
    )
    return d


def whatif_cmd(cfg, args) -> int:
    if not args.rulebook:
        raise PricingError("whatif needs the proposed rulebook: --rulebook FILE")
    proposed = load_rulebook(args.rulebook)
    con = _open(cfg)
    try:
        month = _month(con, args.month)
        out = _out(cfg, args, "whatif")
        d = whatif_report(con, proposed, month, out)
    finally:
        con.close()
    s = d.summary
    print(
        f"what-if {month:%Y-%m}, {proposed.version}: {s['policies']:,} policies, revenue "
        f"{s['revenue_current']:,.2f} -> {s['revenue_proposed']:,.2f} ({s['revenue_change_pct']:+.2f}%), "
        f"median change {s['median_change_pct']:+.2f}%, {s['share_up']:.1%} up / {s['share_down']:.1%} down, "
        f"caps {s['capped_up_proposed']} up / {s['capped_down_proposed']} down"
        + (f", off-balance {s['off_balance_proposed']:.6f}" if s["off_balance_proposed"] else "")
    )
    print(f"report: {out / 'report.html'}  numbers: {out}/*.csv")
    return 0


# ---------------------------------------------------------------- fit


def fit_report_files(rb: Rulebook, exp: fit.Experience, out: Path) -> fit.FitResult:
    """Fit, then write every file into a temporary folder renamed onto ``out``: a report is whole or absent."""
    res = fit.fit(rb, exp)
    draft = out / "draft_rulebook.toml"
    with atomic_folder(out) as tmp:
        (tmp / draft.name).write_text(res.draft_toml)
        parse_rulebook((tmp / draft.name).read_text(), str(draft))
        write_csv(tmp / "metrics.csv", res.metrics)
        write_csv(tmp / "relativities.csv", fit_report.relativity_rows(res))
        write_csv(tmp / "control_relativities.csv", res.control_relativities)
        write_csv(tmp / "calibration.csv", fit_report.calibration_rows(res))
        write_csv(tmp / "lorenz.csv", fit_report.lorenz_rows(res))
        (tmp / "report.html").write_text(
            page(f"Claim-frequency fit against {rb.version}", fit_report.html_sections(res, str(draft)))
        )
    return res


def fit_cmd(cfg, args) -> int:
    rb = load_rulebook(args.rulebook or cfg.rulebook)
    con = _open(cfg)
    try:
        exp = store.experience(con)
    finally:
        con.close()
    out = Path(args.out) if args.out else Path(cfg.home) / "reports" / "fit"
    res = fit_report_files(rb, exp, out)
    for m in res.metrics:
        print(
            f"{m['model']:<30} deviance {m['mean_poisson_deviance']:.4f}  D2 {m['d2']:+.4f}  Gini {m['gini']:.3f}  "
            f"claims predicted {m['predicted_claims']:.0f} / actual {m['actual_claims']:.0f}"
        )
    for b in res.bands:
        print(
            f"  {b.feature:<24} {b.label:<14} fitted {b.relativity:.3f} [{b.ci_low:.3f}, {b.ci_high:.3f}]  "
            f"draft {b.draft:.3f}  ({b.exposure_share:.1%} of exposure)"
        )
    for c in res.control_relativities:
        print(
            f"  {c['control']:<24} {c['level']:<14} fitted {c['relativity']:.3f} [{c['ci_low']:.3f}, "
            f"{c['ci_high']:.3f}]  ({c['claims']} claims)"
        )
    if res.km_elasticity is not None:
        print(f"  km per year elasticity {res.km_elasticity:.3f}")
    print(f"draft rulebook: {out / 'draft_rulebook.toml'}  report: {out / 'report.html'}")
    return 0


# ---------------------------------------------------------------- fairness


def fairness_cmd(cfg, args) -> int:
    threshold = args.threshold if args.threshold is not None else fairness.DEFAULT_THRESHOLD
    con = _open(cfg)
    try:
        month = _month(con, args.month)
        r = store.fairness_inputs(con, month)
    finally:
        con.close()
    if len(r["change"]) == 0:
        raise PricingError(f"no premiums for {month:%Y-%m}")
    res = fairness.audit(
        r["change"].astype(float),
        r["telematics_factor"].astype(float),
        r["capped_up"].astype(bool),
        {"gender": r["gender"].astype(str), "age_band": r["age_band"].astype(str)},
        threshold,
    )
    out = _out(cfg, args, "fairness")
    write_csv(out / "groups.csv", res.groups)
    write_csv(out / "disparities.csv", res.disparities)
    (out / "report.html").write_text(
        page(f"Fairness audit {month:%Y-%m}", fairness.html_sections(res, f"{month:%Y-%m}"))
    )
    for d in res.disparities:
        mark = "FLAG" if d["flagged"] else "ok  "
        print(
            f"{mark} {d['attribute']:<9} {d['metric']:<12} gap {d['gap']:.4f} ({d['highest']} vs {d['lowest']}), "
            f"threshold {threshold}"
        )
    print(f"report: {out / 'report.html'}")
    if res.flagged:
        print("disparity above threshold: review before this rulebook goes live", file=sys.stderr)
        return 1
    return 0
