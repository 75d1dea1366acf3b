"""Real recordings from ../shared/realdata (tests/realdata.py reads them): what issue 12 found broken must hold."""

import numpy as np
import polars as pl
import pytest

from scoring import features as F
from scoring.align import align_to_vehicle, smooth
from tests import realdata
from ubi.common.config import ScoringConfig
from ubi.stages.score_file import score_frames

pytestmark = pytest.mark.skipif(
    not realdata.available(), reason=f"real recordings not found at {realdata.RD} (the shared data checkout)"
)
CFG = ScoringConfig()


def arrays(gps: pl.DataFrame, imu: pl.DataFrame, lo_ms: int, hi_ms: int, gps_shift_s: float = 0.0):
    g = gps.filter(pl.col("t_ms").is_between(lo_ms, hi_ms)).sort("t_ms")
    i = imu.filter(pl.col("t_ms").is_between(lo_ms, hi_ms)).sort("t_ms")
    return (
        i["t_ms"].to_numpy() / 1e3,
        i["acc_lon"].to_numpy(),
        i["acc_lat"].to_numpy(),
        i["acc_vert"].to_numpy(),
        g["t_ms"].to_numpy() / 1e3 + gps_shift_s,
        g["speed_mps"].to_numpy(),
    )


def forward_corr(a, it, gt, gv) -> float:
    """Correlation of the aligned forward axis (1 s mean) with GPS dv/dt read at the fitted lag."""
    n = max(1, int(round(1.0 / np.median(np.diff(it)))))
    x = smooth(a.lon, n)
    dv = np.interp(it + a.lag_s, gt, np.gradient(gv, gt))
    ok = np.isfinite(x) & (it + a.lag_s > gt[0]) & (it + a.lag_s < gt[-1])
    return float(np.corrcoef(x[ok], dv[ok])[0, 1])


def test_quat_phone_turned_180_degrees_is_accepted_with_the_same_forward_sign():
    gps, imu = realdata.frames("quat-orient")
    out = {}
    for k, e in realdata.QUAT_EPOCH.items():
        lo = int(e.timestamp() * 1000)
        it, lon, lat, vert, gt, gv = arrays(gps, imu, lo, lo + 3_600_000)
        a = align_to_vehicle(it, lon, lat, vert, gt, gv, CFG)
        assert a.used, (k, a.reason)
        out[k] = (a, forward_corr(a, it, gt, gv))
    assert out["22"][0].status == "rotated"
    assert out["21"][1] > 0.3 and out["22"][1] > 0.3  # forward points forward on both


def test_gravity_free_iphone_is_accepted():
    rows = score_frames(*realdata.frames("ikhyd-user"), CFG)
    assert rows and all(r["imu_status"] in ("vehicle_frame", "rotated") for r in rows), [r["imu_reason"] for r in rows]
    assert all(r["imu_gravity"] == "removed" for r in rows)


def test_lag_is_measured_not_noise():
    gps, imu = realdata.frames("ikhyd")
    lo, hi = int(gps["t_ms"].min()), int(gps["t_ms"].max())
    base = align_to_vehicle(*arrays(gps, imu, lo, hi), CFG)
    late = align_to_vehicle(*arrays(gps, imu, lo, hi, gps_shift_s=1.4), CFG)
    assert base.used and late.used
    assert late.lag_s - base.lag_s == pytest.approx(1.4, abs=0.4)


def test_ublox_and_can_speed_give_the_same_speed_channel_events():
    got = []
    for name in ("comma2k19", "comma2k19-can"):
        g, _ = realdata.frames(name)
        g = g.sort("t_ms")
        ev = F.speed_events(
            g["t_ms"].to_numpy() / 1e3, g["speed_mps"].to_numpy(), g["accuracy_m"].fill_null(np.nan).to_numpy(), CFG
        )
        got.append((ev.brake.grades, ev.accel.grades, ev.artefacts))
    assert got[0] == got[1]


def test_obd_integer_speed_is_not_read_as_events():
    g, _ = realdata.frames("ikhyd-obd")
    g = g.sort("t_ms")
    ev = F.speed_events(g["t_ms"].to_numpy() / 1e3, g["speed_mps"].to_numpy(), None, CFG)
    assert sum(ev.brake.grades) <= 1 and ev.brake.harsh == 0 and ev.accel.harsh == 0


def test_no_real_recording_trips_the_plausibility_cap():
    for name in ("ndsbr", "comma2k19", "comma2k19-can", "ikhyd"):
        rows = score_frames(*realdata.frames(name), CFG)
        assert sum(r["speed_artefacts"] for r in rows) == 0, name
