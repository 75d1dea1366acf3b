"""The supervisor restarts a stage that dies (SIGKILL here), with back-off, and stops everything it started."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import ubi.ops.supervisor as sup
from ubi.common.config import Config
from ubi.ops.processes import StageProcess


def fake_start(started: list):
    def start(cfg, name, *args, env=None):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append((name, args))
        return StageProcess(name, proc, log=Path("/dev/null"))

    return start


def test_a_killed_stage_is_restarted_with_backoff_and_all_stop(monkeypatch):
    started: list = []
    monkeypatch.setattr(sup, "start_stage", fake_start(started))
    s = sup.Supervisor(Config(), [("bridge", ("--client-id", "b1")), ("score", ()), ("store", ())], max_backoff_s=1)
    s.start()
    assert [n for n, _ in started] == ["bridge", "score", "store"]
    assert s.check() == 0  # all alive
    scorer = s.find("score")
    first = scorer.proc.proc
    first.kill()
    first.wait()
    assert s.check() == 0 and scorer.exits == [-9]  # seen dead; restarted once the back-off passed
    deadline = time.monotonic() + 5
    while s.check() == 0:
        assert time.monotonic() < deadline, "the scorer was not restarted"
        time.sleep(0.05)
    assert scorer.restarts == 1 and scorer.proc.proc is not first and scorer.proc.proc.poll() is None
    assert started[-1] == ("score", ()) and s.restarts() == {"bridge": 0, "score": 1, "store": 0}
    procs = [x.proc.proc for x in s.stages]
    s.stop_all()
    assert all(p.poll() is not None for p in procs)


def test_a_killed_child_is_not_taken_for_a_live_broker(tmp_path):
    """A broker this process started and then SIGKILLed is a zombie until reaped; signal 0 still reaches it, so
    the stack took it for alive and waited 300 s for it to "save and exit"."""
    import os
    import signal

    from ubi.ops.stack import _pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(str(proc.pid))
    assert _pid_alive(pid_file) == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    time.sleep(0.3)  # now a zombie: nobody has waited for it
    assert _pid_alive(pid_file) is None
