"""A one-line progress display: redrawn in place on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, unit: str = "") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.t0 = time.monotonic()
        self._last = 0.0
        self.tty = sys.stdout.isatty()

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        rate = done / max(now - self.t0, 1e-9)
        if self.total:
            pct = min(done / self.total, 1.0)
            bar = "#" * int(pct * 30)
            text = f"{self.label:<22} [{bar:<30}] {done:>8}/{self.total} {self.unit} {rate:,.0f}/s {extra}"
        else:
            text = f"{self.label:<22} {done:>8} {self.unit} {rate:,.0f}/s {extra}"
        if self.tty:
            sys.stdout.write("\r" + text[:150].ljust(150))
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def done(self, done: int, extra: str = "") -> None:
        self.update(done, extra, force=True)
        if self.tty:
            sys.stdout.write("\n")
        secs = time.monotonic() - self.t0
        sys.stdout.write(f"{'':<22} done in {secs:.1f}s\n")
        sys.stdout.flush()
