"""Gravity-removed phone input (scoring/align.py restore_sustained): the phone's attitude filter leaks sustained
acceleration into its gravity estimate, so a 4 s brake reads weaker in the 'linear acceleration' channel; the
forward axis gets its slow part back from GPS dv/dt."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.align import Alignment, restore_sustained, smooth
from tests import realdata
from ubi.common.config import ScoringConfig

CFG = ScoringConfig()


def high_pass(x: np.ndarray, hz: float, tau: float) -> np.ndarray:
    """First-order high-pass: what a gravity estimate with time constant tau leaves of x."""
    a = np.exp(-1.0 / (hz * tau))
    low = np.zeros_like(x)
    for k in range(1, x.shape[0]):
        low[k] = a * low[k - 1] + (1 - a) * x[k]
    return x - low


def test_a_sustained_brake_is_restored_from_gps():
    hz = 25.0
    gt = np.arange(0.0, 120.0, 1.0)
    true_a = np.where((gt >= 60) & (gt < 64), -3.5, 0.0)  # a harsh 4 s brake
    gv = 25.0 + np.concatenate([[0.0], np.cumsum(true_a[:-1])])
    it = np.arange(0.0, 119.0, 1 / hz)
    a_true = np.interp(it, gt + 0.5, true_a)
    user = high_pass(a_true, hz, tau=1.5)
    before = smooth(user, 25).min()
    al = Alignment(user, np.zeros_like(user), "vehicle_frame", 0.0, 0.6, "removed", "test")
    after = smooth(restore_sustained(al, it, gt, gv, CFG).lon, 25).min()
    assert before > -2.45  # the leak alone drops a harsh brake below even the moderate band
    assert after < -CFG.harsh_brake_mps2  # restored: harsh again
    assert after == pytest.approx(-3.5, abs=0.4)


@pytest.mark.skipif(not realdata.available(), reason=f"no real recordings at {realdata.RD}")
def test_gravity_free_iphone_scores_near_its_raw_channel():
    """ikhyd: the same drives through the iPhone's raw and gravity-removed channels (scorer 4: 6 brakes vs 0);
    restoring the forward axis closes most of the score gap (the lateral axis stays attenuated)."""
    from dataclasses import replace

    from ubi.stages.score_file import score_frames

    raw = score_frames(*realdata.frames("ikhyd"), CFG)[0]
    user = score_frames(*realdata.frames("ikhyd-user"), CFG)[0]
    unrestored = score_frames(*realdata.frames("ikhyd-user"), replace(CFG, imu_removed_blend_s=0.0))[0]
    assert sum(unrestored["harsh_brake_grades"]) == 0  # the gap the issue reported
    assert sum(user["harsh_brake_grades"]) >= 1
    assert abs(raw["score"] - user["score"]) < 0.6 * abs(raw["score"] - unrestored["score"])
