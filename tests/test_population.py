"""The population-calibrated trip score (scoring/population.py) and the device profiles it must not depend on."""

from __future__ import annotations

import numpy as np
import pytest

from scoring import population as P
from tests import realdata
from ubi.common.config import ScoringConfig
from ubi.common.errors import ConfigError

CFG = ScoringConfig()
KNOTS = [0.0] * 41 + list(np.linspace(0.1, 6.0, 60))  # a point mass at 0 (40 %), then spread


def test_percentile_is_monotone_never_saturates_and_costs_nothing_at_the_best():
    assert P.percentile(0.0, KNOTS) == 0.0 and P.percentile(-1.0, KNOTS) == 0.0
    xs = np.linspace(1e-6, 100.0, 2000)
    f = [P.percentile(float(x), KNOTS) for x in xs]
    assert all(b >= a for a, b in zip(f, f[1:], strict=False))
    assert f[0] == pytest.approx(P.TABLE_TOP * 0.4, abs=0.01)  # just above the mass at 0: 40 % are better
    assert P.percentile(6.0, KNOTS) == pytest.approx(P.TABLE_TOP)
    assert P.TABLE_TOP < P.percentile(12.0, KNOTS) < P.percentile(1e6, KNOTS) < 1.0  # beyond the table: still ranks
    assert P.percentile(3.0, []) == 0.0


def test_shipped_table_covers_every_part():
    q = P.table_for(CFG)["quantiles"]
    for name in CFG.score_weights:
        knots = q[name]
        assert len(knots) == 101 and knots == sorted(knots)


def test_issue_tie_is_broken_and_parts_sum_to_the_score():
    """91 % vs 34 % of the distance over the limit no longer tie; a trip with more of every measure scores lower."""
    mild = {p: None for p in P.PARTS}
    s91 = P.population_score({**mild, "speeding_risk": 0.91 * 3.0}, CFG)[0]
    s34 = P.population_score({**mild, "speeding_risk": 0.34 * 3.0}, CFG)[0]
    assert s91 < s34
    calm = dict(zip(P.PARTS, [0.0, 0.0, 0.0, 0.05, 0.3, 0.3, 0.1, 0.02, 0.05, 0.1, 0.0], strict=True))
    wild = {k: v * 3 + 0.1 for k, v in calm.items()}
    (sc, pc), (sw, pw) = P.population_score(calm, CFG), P.population_score(wild, CFG)
    assert sw < sc
    for s, parts in ((sc, pc), (sw, pw)):
        assert s == pytest.approx(100 - sum(p["points_lost"] for p in parts.values()), abs=1e-6)


def test_config_refuses_bad_weights_and_unknown_classes():
    with pytest.raises(ConfigError, match="summing to 100"):
        ScoringConfig(score_weights={"phone_share": 50.0})
    with pytest.raises(ConfigError, match="unknown device class"):
        ScoringConfig(device_classes={"V1": "tractor"})
    with pytest.raises(ConfigError, match="not a per-device setting"):
        ScoringConfig(device_profiles={"dongle": {"no_such_setting": 1.0}})
    d = CFG.for_device("dongle")
    assert d.speed_smooth_s == 2.0 and not d.imu_expected and d.device_class == "dongle"
    assert d.for_device("phone").speed_smooth_s == CFG.speed_smooth_s  # a profile applies to the base config
    assert ScoringConfig(device_classes={"V1": "oem"}).device_class_of("V1") == "oem"
    # a profile a user sets in TOML merges over the shipped ones
    assert ScoringConfig(device_profiles={"dongle": {"speed_smooth_s": 3.0}}).device_profiles["oem"]


need_real = pytest.mark.skipif(not realdata.available(), reason=f"no real recordings at {realdata.RD}")


@need_real
def test_real_trips_no_longer_tie_at_100():
    """Scorer 4 gave 12 of the 29 Omaha drives exactly 100 (7 distinct scores); each now has its own score."""
    from ubi.stages.score_file import score_frames

    rows = score_frames(*realdata.frames("driveplotr-nds"), CFG)
    scores = [r["score"] for r in rows]
    assert len(rows) == 29 and len(set(scores)) == len(scores) and max(scores) < 100
    assert max(scores) - min(scores) > 20  # the spread ranks, not only breaks ties


@need_real
def test_same_drive_same_score_whichever_channel():
    """comma2k19: the u-blox GNSS and the car's CAN speed (oem profile) as the speed channel, same IMU."""
    from ubi.stages.score_file import score_frames

    a = score_frames(*realdata.frames("comma2k19"), CFG)[0]
    b = score_frames(*realdata.frames("comma2k19-can"), ScoringConfig(device_class="oem"))[0]
    assert b["device_class"] == "oem"
    assert abs(a["score"] - b["score"]) < 2.0


def test_device_classes_and_profiles_from_toml(tmp_path):
    """The live path reads a vehicle's class from the configuration (the device contract carries none)."""
    from ubi.common.config import load_config

    p = tmp_path / "ubi.toml"
    p.write_text('[scoring.device_classes]\nV1 = "dongle"\n[scoring.device_profiles.dongle]\nspeed_smooth_s = 3\n')
    c = load_config(p).scoring
    assert c.device_class_of("V1") == "dongle" and c.device_class_of("V2") == "phone"
    assert c.for_device("dongle").speed_smooth_s == 3.0 and c.for_device("oem").speed_smooth_s == 0.0


@need_real
def test_a_missing_imu_is_said_where_the_class_expects_one():
    """ndsbr logged GPS only: as phones that is worth saying (and counting); as dongles it is normal."""
    from ubi.stages.score_file import imu_summary, score_frames

    gps, _ = realdata.frames("ndsbr")
    phone = score_frames(gps, None, CFG)
    dongle = score_frames(gps, None, ScoringConfig(device_class="dongle"))
    assert all(r["imu_status"] == "none" for r in phone + dongle)
    assert all(r["imu_reason"].startswith("no IMU data") for r in phone)
    assert all(r["imu_reason"] is None for r in dongle)
    line = imu_summary(phone)
    assert f"none on {len(phone)} ({len(phone)} of them from a class that should have one)" in line
    assert "continuous measures from speed" in line and "(" not in imu_summary(dongle).split("none on")[1][:8]
