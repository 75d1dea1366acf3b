"""`ubi price --month YYYY-MM`: the monthly run with progress on stderr (stdout stays the JSON summary) and the run's
figures left for Prometheus in ``<home>/metrics/pricing.prom`` (node_exporter's textfile collector)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pricing.monthly import RunSummary, month_start
from pricing.rulebook import load_rulebook
from ubi.adapters import duckdb_store as store
from ubi.adapters.metrics import pricing_textfile, write_pricing_textfile
from ubi.common.config import Config
from ubi.common.errors import ConfigError


class StderrProgress:
    """``progress(done, total)`` for ``run_month``: a line at most every ``every_s`` seconds, and the last one."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.t0 = time.monotonic()
        self.every_s = every_s
        self._last = 0.0

    def phase(self, text: str) -> None:
        """A step of the run begins (reading the book, pricing, rows, publishing), with the time since the start."""
        sys.stderr.write(f"pricing: {time.monotonic() - self.t0:7.1f} s  {text}\n")
        sys.stderr.flush()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.every_s:
            return
        self._last = now
        secs = now - self.t0
        rate = done / secs if secs > 0 else 0.0
        sys.stderr.write(
            f"pricing: {done:,}/{total:,} policies' rows built ({done / max(total, 1):.0%}), {rate:,.0f}/s\n"
        )
        sys.stderr.flush()


def pricing_workers(cfg: Config) -> int:
    """``pricing_workers`` from the configuration, 0 meaning one per CPU core; a negative count is refused."""
    if cfg.pricing_workers < 0:
        raise ConfigError(f"pricing_workers: {cfg.pricing_workers} (expected 0 for one per core, or a count)")
    return cfg.pricing_workers or os.cpu_count() or 1


def price(cfg: Config, month: str, rulebook: Path | None = None) -> RunSummary:
    rb = load_rulebook(rulebook or cfg.rulebook)
    first_day = month_start(month)
    con = store.connect(cfg.db_path)
    t = time.perf_counter()
    try:
        s = store.run_month(
            con,
            rb,
            first_day,
            progress=StderrProgress(),
            memory_limit=cfg.pricing_memory_limit or None,
            workers=pricing_workers(cfg),
        )
    finally:
        con.close()
    write_pricing_textfile(pricing_textfile(cfg.home), s, time.perf_counter() - t)
    return s
