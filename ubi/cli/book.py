"""`ubi actuary load-book | fit --book | fairness --book`: claims books of any shape, declared by a model spec.

Loading validates first and writes in one transaction; fitting and the fairness audit read the stored book and
write their reports into a folder that is complete or absent. docs/book.md describes the spec and the tables.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pricing import book_fairness, book_report
from pricing.book import load_spec
from pricing.book_fit import fit_book
from pricing.report import page, write_csv
from pricing.rulebook import load_rulebook
from ubi.adapters import book_store
from ubi.adapters import duckdb_store as store
from ubi.common.errors import ConfigError, StoreError


def spec_path(args) -> Path:
    if getattr(args, "spec", None):
        return Path(args.spec)
    if args.book is None:
        raise ConfigError("load-book needs --spec FILE (the model spec, docs/book.md) or --book DIR with book.toml")
    p = Path(args.book) / "book.toml"
    if not p.exists():
        raise ConfigError(f"{args.book}: no book.toml (the model spec) in it; give --spec FILE (docs/book.md)")
    return p


def load_book_cmd(cfg, args) -> int:
    spec = load_spec(spec_path(args))
    t0 = time.perf_counter()
    checked, timing = book_store.check_files(spec)  # every problem is found before the store is opened
    con = store.connect(cfg.db_path)
    try:
        t1 = time.perf_counter()
        book_store.store_book(con, spec, checked)
        timing["store_s"] = time.perf_counter() - t1
    finally:
        con.close()
    a = checked.accounting
    print(
        f"book {spec.name}: {a['rows']:,} rows, {a['policies']:,} policies, {a['exposure_years']:,.1f} policy-years, "
        f"{a['claims']:,} claims, claim amounts {a['claim_amount_total']:,.2f}"
    )
    if "claims_in_file" in a:
        print(
            f"claims file: {a['claims_in_file']:,} loaded, {a['claims_matched']:,} matched to a policy period, "
            f"{a['claims_unmatched']:,} unmatched (amount {a['claims_unmatched_amount']:,.2f}; kept in "
            f"book_{spec.name}_claims with matched = false, not in any model)"
        )
        if a.get("rows_where_count_differs_from_claims_file"):
            print(
                f"  {a['rows_where_count_differs_from_claims_file']:,} rows' claim count differs from their matched "
                "claims: the count column is used for frequency, the matched claims' amounts for severity"
            )
    print(f"loaded in {time.perf_counter() - t0:.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in timing.items())})")
    return 0


def _read(cfg, name: str):
    if not Path(cfg.db_path).exists():
        raise StoreError(f"no database at {cfg.db_path}; load a book first (`ubi actuary load-book --spec FILE`)")
    con = store.connect(cfg.db_path, read_only=True)
    try:
        return book_store.read_book(con, name)
    finally:
        con.close()


def _out(cfg, args, name: str) -> Path:
    return Path(args.out) if args.out else Path(cfg.home) / "reports" / name


def fit_book_cmd(cfg, args) -> int:
    spec, frame, _ = _read(cfg, args.book)
    rb = load_rulebook(args.rulebook or cfg.rulebook)
    res = fit_book(spec, frame, rb)
    out = _out(cfg, args, f"fit-{spec.name}")
    book_report.write_report(res, out)
    print(
        f"book {spec.name}: {res.rows:,} rows, {res.exposure:,.0f} policy-years, {res.claims:,} claims; "
        f"dispersion " + ", ".join(f"{k} {v:.3f}" for k, v in res.dispersion.items())
    )
    for s in res.split.description:
        print(f"  split {s['holdout']:<12} {s['rows']:>9,} rows: {s['how']}")
    for m in res.metrics:
        print(
            f"  [{m['holdout']}] {m['target']:<12} {m['model']:<36} deviance {m['deviance']:.4f}  "
            f"D2 {m['d2']:+.4f}  Gini {m['gini']:.3f}  predicted {m['predicted']:,.0f} / observed {m['observed']:,.0f}"
        )
    for t in res.tests:
        print(f"  {t['model']:<10} {t['test']:<44} df {t['df']:>3}  F {t['f']:9.2f}  p {t['f_p']:.3g}")
    print(f"telematics: {res.telematics_lift['verdict']}")
    for note in res.notes:
        print(f"note: {note}")
    print(f"fit in {res.timings['fit_total_s']:.1f} s; report: {out / 'report.html'}  tables: {out}/*.csv")
    print(
        f"draft rulebook: {out / 'draft_rulebook.toml'}"
        if res.draft_toml
        else "no draft rulebook: no factor maps to a rulebook feature (relativities.csv holds the tariff)"
    )
    return 0


def fairness_book_cmd(cfg, args) -> int:
    spec, frame, _ = _read(cfg, args.book)
    threshold = args.threshold if args.threshold is not None else book_fairness.DEFAULT_THRESHOLD
    res = book_fairness.audit_book(spec, frame, threshold)
    out = _out(cfg, args, f"fairness-{spec.name}")
    with book_report.atomic_folder(out) as tmp:
        write_csv(tmp / "groups.csv", res.groups)
        write_csv(tmp / "disparities.csv", res.disparities)
        write_csv(tmp / "proxies.csv", res.proxies)
        html = page(f"Fairness of premiums: {spec.name}", book_fairness.html_sections(res, spec.name))
        (tmp / "report.html").write_text(html)
    for n in res.notes:
        print(f"note: {n}")
    for g in res.groups:
        print(
            f"  {g['attribute']:<10} {g['group']:<10} {g['exposure']:>11,.0f} policy-years  level before "
            f"{g['level_before']:.3f}  after {g['level_after']:.3f}"
        )
    for d in res.disparities:
        mark = "FLAG" if d["flagged"] else "ok  "
        print(
            f"{mark} {d['attribute']:<10} {d['metric']:<13} gap {d['gap']:+.4f} ({d['highest']} vs {d['lowest']}), "
            f"threshold {threshold}"
        )
    for p in res.proxies:
        print(
            f"{'PROXY' if p['proxy'] else 'ok   '} rating factors predict {p['attribute']} with AUC "
            f"{p['auc_from_rating_factors']:.3f}"
        )
    print(f"report: {out / 'report.html'}")
    if res.flagged:
        print("disparity above threshold: review before this tariff goes live", file=sys.stderr)
        return 1
    return 0
