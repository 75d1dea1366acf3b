"""Keep the pipeline's stages running: start each as its own process and start it again when it dies.

A stage already survives Kafka outages by itself (``run_with_retry``); what it cannot survive is being killed
(SIGKILL, OOM, a crash in a native library) or an error it does not retry (a DuckDB file busy beyond
``store_busy_timeout_s``). The supervisor restarts such a stage with a doubling back-off (reset after a minute of
good running), logs every exit with its code, and counts restarts; ``ubi pipeline`` runs it in the foreground and
``deploy/systemd/`` has units that do the same job under systemd. Every stage is safe to restart at any point:
at-least-once delivery with idempotent writes (docs/architecture.md).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field

from ubi.common.config import Config
from ubi.ops.processes import StageProcess, start_stage

log = logging.getLogger("ubi.supervisor")


@dataclass
class Supervised:
    name: str  # the ubi subcommand: bridge | score | store
    args: tuple[str, ...] = ()
    proc: StageProcess | None = None
    restarts: int = 0
    backoff_s: float = 0.5
    started_at: float = 0.0
    due_at: float = 0.0  # when a dead stage is started again
    exits: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self, cfg: Config, stages: list[tuple[str, tuple[str, ...]]], env: dict | None = None, max_backoff_s=30.0
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.max_backoff_s = max_backoff_s
        self.stages = [Supervised(name, tuple(args)) for name, args in stages]
        self._stop = threading.Event()

    def _start(self, s: Supervised) -> None:
        s.proc = start_stage(self.cfg, s.name, *s.args, env=self.env)
        s.started_at = time.monotonic()

    def start(self) -> None:
        for s in self.stages:
            self._start(s)

    def check(self) -> int:
        """Restart whatever died (once its back-off has passed); returns how many were started."""
        started = 0
        now = time.monotonic()
        for s in self.stages:
            if s.proc is None or s.proc.proc.poll() is None:
                if s.proc is not None and now - s.started_at > 60:
                    s.backoff_s = 0.5  # a minute of good running: start the back-off again
                continue
            if s.due_at == 0.0:
                code = s.proc.proc.returncode
                s.exits.append(code)
                s.due_at = now + s.backoff_s
                log.warning(
                    "%s exited with code %s; restarting in %.1f s (see %s)", s.name, code, s.backoff_s, s.proc.log
                )
                continue
            if now >= s.due_at:
                try:
                    self._start(s)
                except Exception as exc:  # noqa: BLE001 - a failed start is retried like a death
                    log.error("%s did not start: %s", s.name, exc)
                    s.due_at = now + s.backoff_s
                else:
                    s.restarts += 1
                    s.due_at = 0.0
                    started += 1
                    log.info("%s restarted (restart %d)", s.name, s.restarts)
                s.backoff_s = min(s.backoff_s * 2, self.max_backoff_s)
        return started

    def run(self, install_signals: bool = True, poll_s: float = 0.5) -> dict[str, int]:
        """Start everything and keep it running until SIGTERM/SIGINT; then stop every stage. Returns restarts."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
            signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        self.start()
        log.info("supervising %s", ", ".join(s.name for s in self.stages))
        try:
            while not self._stop.wait(poll_s):
                self.check()
        finally:
            self.stop_all()
        return self.restarts()

    def stop(self) -> None:
        self._stop.set()

    def stop_all(self) -> None:
        for s in reversed(self.stages):  # the store last: it writes what the scorer sent
            if s.proc is not None:
                s.proc.stop()

    def restarts(self) -> dict[str, int]:
        return {s.name: s.restarts for s in self.stages}

    def find(self, name: str) -> Supervised:
        return next(s for s in self.stages if s.name == name)
