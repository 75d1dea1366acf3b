"""The command's JSON logs (ubi/cli/logs.py)."""

from __future__ import annotations

import io
import json
import logging
import sys

from ubi.cli import logs


def test_a_log_line_goes_to_the_current_stderr_after_the_old_one_closed(monkeypatch):
    """CI printed '--- Logging error --- ValueError: I/O operation on closed file' when a command run in-process by
    one test had bound the handler to a captured stderr that pytest had since closed."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        logs.setup("INFO")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("ubi.test").info("key made in %s", "/x")
        line = json.loads(second.getvalue())
        assert line["msg"] == "key made in /x" and line["level"] == "info" and line["logger"] == "ubi.test"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
