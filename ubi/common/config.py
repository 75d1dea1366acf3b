"""The one configuration object, loaded once.

Values come from defaults below, then an optional TOML file (``UBI_CONFIG`` or ``./ubi.toml``), then
environment variables ``UBI_<SECTION>_<KEY>`` for the handful that deployments change. Every scoring threshold
lives here (never in a kernel), with the source it comes from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

from ubi.common.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "ubi/v1/vehicles"
    bridge_user: str = "bridge"
    share_group: str = "ubi-bridge"
    keepalive_s: int = 30
    tls_port: int = 8883
    tls_bind: str = "127.0.0.1"
    # How long the broker keeps the bridge's session (and queues for it) while no bridge is connected.
    bridge_session_expiry_s: int = 7 * 24 * 3600


@dataclass(frozen=True)
class KafkaConfig:
    # One broker's host:port, or a comma list of every broker of a cluster (`ubi stack up --brokers 3` records its
    # list in <home>/kafka-cluster/bootstrap, used when this is that list's first address; docs/kafka-cluster.md).
    bootstrap: str = "127.0.0.1:9092"
    telemetry_topic: str = "ubi.telemetry.v1"
    dead_letter_topic: str = "ubi.telemetry.dlq.v1"
    trips_topic: str = "ubi.trips.v1"
    partitions: int = 6
    scorer_group: str = "ubi-scorer"
    store_group: str = "ubi-store"
    # Every client authenticates with SASL/SCRAM-SHA-512 as its stage's principal (ubi/adapters/kafka.py); the
    # passwords are in this JSON file (mode 0600), "" = <home>/secrets/kafka.json, written by `ubi stack up`.
    sasl_secrets: str = ""
    # The bridge's Kafka client: "librdkafka" (confluent-kafka, ~10x cheaper a record) or "kafka-python". Same
    # guarantees either way (ubi/adapters/kafka.py).
    bridge_client: str = "librdkafka"

    def __post_init__(self) -> None:
        if self.bridge_client not in ("librdkafka", "kafka-python"):
            raise ConfigError(f"kafka.bridge_client: {self.bridge_client!r} is not 'librdkafka' or 'kafka-python'")
        self.addresses  # noqa: B018 - a malformed bootstrap is refused here, not at a stage's first connect

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The brokers named by ``bootstrap``: one ``host:port``, or a comma list naming every broker of a cluster
        (so a client can start while any one of them is down)."""
        out = []
        for item in self.bootstrap.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"kafka.bootstrap: {item.strip()!r} is not host:port (in {self.bootstrap!r})")
            out.append((host, int(port)))
        return out

    @property
    def replication_factor(self) -> int:
        """Every topic's replication factor: as many copies as brokers, at most 3 (rack-free; docs/kafka-cluster.md)."""
        return min(3, len(self.addresses))

    @property
    def min_insync_replicas(self) -> int:
        """With 3 copies a write needs 2 (one broker may be down without losing an acknowledged record)."""
        return 2 if self.replication_factor >= 3 else 1

    @property
    def scorer_state_topic(self) -> str:
        """The scorer group's durable trip-cutter state (compacted, keyed by vehicle): it belongs to the group, as
        its committed offsets do, so a new group starts from scratch on both."""
        return f"{self.scorer_group}.state.v1"


@dataclass(frozen=True)
class ScoringConfig:
    # Below this a GPS speed counts as standing still (GPS jitter at rest is ~0.1-0.3 m/s); every kernel takes it.
    moving_mps: float = 0.5
    # Graded events: three nested bands per kind (moderate / harsh / severe), one detection pass at the moderate
    # band, each event graded by its peak. Moderate sits near the p99 and harsh near the p99.9 of ordinary real
    # driving (1 s means, 37 k moving samples of four real recordings: lon -2.34/+1.75 and -3.05/+2.91, |lat|
    # 2.73 and 3.93 m/s^2), i.e. published cut points and real distributions agree.
    # Braking: moderate 250 mg = 2.45 (Positrace "industry standard" deceleration); harsh 7 mph/s = 3.13
    # (Progressive Snapshot, second-hand; domain/telematics.md); severe 0.45 g = 4.41 (Digital Matter 4.4; the
    # median labelled aggressive brake of Ferreira et al. 2017, driverBehaviorDataset).
    brake_moderate_mps2: float = 2.45
    harsh_brake_mps2: float = 3.13
    brake_severe_mps2: float = 4.41
    # Acceleration: moderate 200 mg = 1.96 (Positrace); harsh 300 mg = 2.94 (the top of Ferreira's labelled
    # aggressive accelerations, 1.3-2.9); severe 9 mph/s = 4.02 (Progressive; beyond most family cars' launch).
    accel_moderate_mps2: float = 1.96
    harsh_accel_mps2: float = 2.94
    accel_severe_mps2: float = 4.02
    # Longitudinal events only at >= 10 km/h (Teltonika FMB gating).
    min_event_speed_mps: float = 10 / 3.6
    # A gap in the GPS longer than this is not integrated from the speed channel (no speed evidence across it)...
    max_integration_gap_s: float = 10.0
    # ...but, up to this long (tunnels, urban canyons), dead-reckoned on the accelerometer anchored at the speeds on
    # both sides (scoring/gapfill.py; our choice: few tunnels take more than 5 minutes).
    max_gap_fill_s: float = 300.0
    # Data gap that ends a trip when no ignition-off arrives (Traccar default: 3600 s).
    trip_gap_end_s: float = 3600.0
    # Motion-based trips for data without ignition events (Traccar defaults): a trip starts once the vehicle moved
    # 200 m, and ends after 180 s without moving 200 m (or at a trip_gap_end_s data gap).
    motion_move_m: float = 200.0
    motion_stop_s: float = 180.0
    # Fixes whose reported horizontal accuracy is worse than this are dropped (our choice; no published figure).
    max_gps_accuracy_m: float = 50.0
    # A trip whose ignition_off arrived but that still misses messages closes after this much of its partition's
    # receive time (the bridge's clock, restored with the scorer's commit).
    close_grace_s: float = 600.0
    # --- GPS cleaning ---
    # A fix implying a jump faster than this from the last kept fix is dropped (scikit-mobility: 500 km/h).
    max_jump_speed_kmh: float = 500.0
    # After this many jump-rejected fixes in a row the cleaner re-anchors on the current fix (our choice: a
    # glitch in the anchor itself must not reject the rest of the trip).
    max_jump_rejects: int = 3
    # --- accelerometer events (any rate, vehicle frame after scoring/align.py) ---
    # Minimum duration above the band: Damoov SDK braking >= 600 ms (vendor manual). Detection runs on the
    # event_mean_window_s moving mean, so the mean is held for min_event_duration_s - window (at least one sample
    # interval): a raw pulse of 0.6 s at the band just qualifies, a single-sample spike never does.
    min_event_duration_s: float = 0.6
    event_mean_window_s: float = 0.5
    # Qualifying runs closer than this merge into one event (bursts merged; our choice, Traccar does no merging).
    event_merge_gap_s: float = 1.0
    # An IMU gap longer than max(this, max_imu_gap_samples / rate) ends a run (10 Hz: 5 missing samples; at 1 Hz a
    # fixed 0.5 s would end every run after one sample, so no event could ever fire).
    max_imu_gap_s: float = 0.5
    max_imu_gap_samples: float = 1.5
    # GPS speed is unreliable while the receiver locks on (domain doc: 9 -> 79 km/h jumps in one second); the
    # motion cutter moves a trip's start back over this much of standing fixes (no published figure).
    gps_warmup_s: float = 3.0
    # Events (both paths: IMU speed gate and speed channel) only from this long after the first fix and after
    # every GPS gap above max_integration_gap_s: 3 s is too short for a phone receiver's Doppler speed to settle
    # (the cold start: 0 -> 82 km/h in one second at 30 m accuracy; our choice).
    event_warmup_s: float = 10.0
    # Cornering, only at >= 30 km/h (Teltonika FMB gating): moderate 300 mg = 2.94 (Positrace harsh turn); harsh
    # 400 mg = 3.92 ("a family sedan rarely exceeds"); severe 0.5 g = 4.90 (above Ferreira's labelled aggressive
    # turns, 3.5-5.1, median 4.3; Digital Matter's 5.5 default sits above every labelled turn).
    corner_moderate_mps2: float = 2.94
    harsh_corner_mps2: float = 3.92
    corner_severe_mps2: float = 4.90
    min_corner_speed_mps: float = 30 / 3.6
    # --- accelerometer acceptance (scoring/align.py) ---
    # GPS speed lags the accelerometer by 0.1-1.5 s on real devices (u-blox 0.15 s behind CAN, phones 0.85-1.5 s):
    # the lag is fitted per trip over 0..imu_max_lag_s in imu_lag_step_s steps; the IMU is used when the multiple
    # correlation of GPS dv/dt with the two horizontal axes at that lag reaches imu_min_r (our choice).
    imu_max_lag_s: float = 3.0
    imu_lag_step_s: float = 0.1
    imu_min_r: float = 0.3
    # |mean acceleration| within this of g = raw input (gravity included); at most imu_gravity_free_max_mps2 =
    # gravity already removed (phones' linear acceleration has |mean| 0.1-0.3); between = unusable.
    imu_gravity_tol_mps2: float = 2.5
    imu_gravity_free_max_mps2: float = 1.5
    # Gravity-removed input loses sustained acceleration to the phone's attitude filter (scoring/align.py
    # restore_sustained): its forward axis gets the slow part back from GPS dv/dt over this window (our choice:
    # 3 s restored the most on ikhyd's iPhone, correlation with its raw axis 0.41 -> 0.68; 0 = off).
    imu_removed_blend_s: float = 3.0
    # --- speed channel (events from GPS / OBD / CAN speed when no IMU is usable) ---
    # Fixes less accurate than this give no events (distance keeps them up to max_gps_accuracy_m; our choice).
    speed_event_max_accuracy_m: float = 20.0
    # A speed equal to the previous one while above this, followed by a change, is a stale repeat and is dropped, so
    # the step spreads over the real interval (84.8, 84.8, 69.0 km/h is not a 1 s drop; our choice).
    speed_repeat_min_mps: float = 2.0
    # |dv/dt| above this is an artefact, never an event, and is counted: tyre-road friction (mu 0.8-1.0) bounds
    # ABS braking at 8-9.8 m/s^2, and 0-100 km/h in 3.5 s = 7.9 m/s^2 is a supercar launch.
    speed_max_plausible_mps2: float = 8.0
    # --- exposure in the vehicle's local time ---
    # IANA zone of the book's market; DST handled per sample.
    time_zone: str = "Europe/Amsterdam"
    # Night: midnight to 4 am (Progressive Snapshot; Allstate 23-04, academic work 22-07). A band may wrap
    # midnight (start > end).
    night_start_h: float = 0.0
    night_end_h: float = 4.0
    # Rush hours, Monday to Friday (our choice: the domain doc names rush hours as a risk factor without times).
    rush_am_start_h: float = 7.0
    rush_am_end_h: float = 9.0
    rush_pm_start_h: float = 16.0
    rush_pm_end_h: float = 19.0
    # --- speeding ---
    # Margin above the posted limit for the second speeding band: 10 km/h (our choice; Traccar multiplies the limit).
    speeding_margin_mps: float = 10 / 3.6
    # Absolute high speed, the fallback where no limit is known: 80 mph = 35.76 m/s (Allstate).
    high_speed_mps: float = 80 * 0.44704
    # Risk-weighted speeding: relative crash risk roughly doubles per 5 km/h over the limit (Kloeden et al. 1997,
    # 60 km/h urban: RR 2.0 at 65, 4.2 at 70, 10.6 at 75, 31.8 at 80). Each interval's extra risk is
    # min(cap, 2 ** (excess_kmh / doubling) - 1), over the posted limit, or over high_speed_mps where none is known.
    speeding_risk_doubling_kmh: float = 5.0
    speeding_risk_cap: float = 31.0
    # Speed-limit map layer (docs/map-layer.md; empty = none): a fix takes the maxspeed of the nearest segment
    # within the radius (Traccar looks up OpenStreetMap maxspeed within 100 m; 30 m keeps parallel roads apart).
    speed_limit_map: str = ""
    speed_limit_radius_m: float = 30.0
    # --- speed x acceleration heatmap (Gao, Meng & Wuethrich 2019), fixed bins so per-driver sums make sense ---
    heatmap_speed_step_kmh: float = 10.0
    heatmap_speed_bins: int = 14  # 0-10, ..., >= 130 km/h (last bin open)
    heatmap_accel_step_mps2: float = 0.5
    heatmap_accel_bins: int = 12  # -3.0..+3.0 in 0.5 steps, both end bins open
    # Per-100-km rates of trips shorter than this are not scored (one event on 300 m would swamp the part).
    score_min_km: float = 1.0
    # --- continuous measures (scoring/intensity.py) on a 1 Hz channel of 1 s means ---
    # Speed is smoothed by a moving mean over this many seconds before the 1 Hz channel (0 = none: a phone's
    # Doppler speed is already filtered); the device profiles below set it where the class differs.
    speed_smooth_s: float = 0.0
    # Intensity levels per kind: this fraction of the moderate band, the moderate band, the harsh band. Half the
    # moderate band (brake 1.23, accel 0.98, lateral 1.47 m/s^2) lies near the p90-p95 of ordinary real driving
    # (1 s means of the real recordings), where most trips spend some seconds, so the share ranks every trip.
    intensity_low_fraction: float = 0.5
    # Jerk of the 1 s mean longitudinal acceleration: share of 1 s steps with |jerk| at or above this (m/s^3)
    # and its RMS. 1.0 m/s^3 sits near the p95 of the real recordings' 1 s steps; comfort limits for passengers
    # lie around 0.6-2 m/s^3 (rail/lift design practice), so calm driving rarely crosses it.
    jerk_level_mps3: float = 1.0
    # Speed x acceleration heatmap in two numbers: the share of moving seconds at or above this speed with |a| at
    # or above the low brake/accel level (Gao, Meng & Wuethrich 2019 read heatmaps per speed band), and the
    # relative positive acceleration sum(v * a+) / sum(v) (RPA, Ericsson 2001, a standard aggressiveness measure).
    intensity_high_speed_kmh: float = 80.0
    # The accelerometer feeds the 1 Hz channel only at this rate or more, so a 1 s mean averages road vibration
    # (a 1 Hz logger's point samples doubled the RMS jerk of the Omaha drives against phones' 1 s means).
    intensity_min_imu_hz: float = 5.0
    # Steady cruise: windows of this many 1 Hz samples all at or above cruise_min_kmh; speed fluctuation is the
    # window's coefficient of variation, weaving the std of lateral acceleration in windows whose |mean| lateral
    # acceleration is at most cruise_max_mean_lat_mps2 (a straight road: at 80 km/h a radius >= 1 km). Our choice.
    cruise_window_s: float = 30.0
    cruise_min_kmh: float = 50.0
    cruise_max_mean_lat_mps2: float = 0.5
    # Speeding graded by how far over the limit: +0-10, +10-20 and > 20 km/h (share of the trip's distance).
    speeding_band2_kmh: float = 10.0
    speeding_band3_kmh: float = 20.0
    # Fatigue: a break is at least this long standing or without data (15 min: EU Regulation 561/2006 lets a
    # driver split the 45 min break into 15 + 30); driving beyond fatigue_after_s without one is the fatigue part
    # (UK Highway Code rule 91: a break of at least 15 minutes every two hours).
    break_min_s: float = 900.0
    fatigue_after_s: float = 7200.0
    # --- device classes: phone | dongle (OBD) | oem (the car's own bus); see DEVICE_PROFILES for what differs ---
    # The class of a trip: score-file's device_class column, else device_classes[vehicle] (the live path: the
    # device contract carries no device type), else device_class. A class's profile overrides these settings.
    device_class: str = "phone"
    device_classes: dict[str, str] = field(default_factory=dict)
    device_profiles: dict[str, dict] = field(default_factory=dict)  # merged over DEVICE_PROFILES
    # Whether the class is expected to deliver an accelerometer (a trip without one is counted, not an error).
    imu_expected: bool = True
    # --- the trip score (scoring/population.py): 100 - sum of weight x percentile in a reference population ---
    # Weights per part (they must sum to 100). Phone use and speeding keep the CMT crash study's top ranks
    # (3.4x, 3.0x); events and the continuous longitudinal measures share the hard-braking rank (1.8x); the rest
    # are the weaker or less certain signs. Our choice; the percentiles come from the reference population.
    score_weights: dict[str, float] = field(default_factory=lambda: dict(SCORE_WEIGHTS))
    # The reference table ("" = scoring/reference_population.json, built by bench/reference_population.py).
    reference_population: str = ""

    def __post_init__(self) -> None:
        """Fail when the configuration loads, not on the first trip: a bad zone or band would stop the scorer."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        _check_profiles(self)
        if set(self.score_weights) - set(SCORE_WEIGHTS) or abs(sum(self.score_weights.values()) - 100.0) > 1e-6:
            raise ConfigError(f"scoring.score_weights: parts of {sorted(SCORE_WEIGHTS)} summing to 100")

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"scoring.time_zone: unknown time zone {self.time_zone!r}") from exc
        for name in (
            "night_start_h",
            "night_end_h",
            "rush_am_start_h",
            "rush_am_end_h",
            "rush_pm_start_h",
            "rush_pm_end_h",
        ):
            if not 0.0 <= getattr(self, name) <= 24.0:
                raise ConfigError(f"scoring.{name}: must be an hour in [0, 24]")
        for name in (
            "harsh_brake_mps2",
            "harsh_accel_mps2",
            "harsh_corner_mps2",
            "heatmap_speed_step_kmh",
            "heatmap_accel_step_mps2",
            "max_integration_gap_s",
            "motion_stop_s",
            "max_jump_speed_kmh",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"scoring.{name}: must be > 0")
        if self.heatmap_speed_bins < 1 or self.heatmap_accel_bins < 1:
            raise ConfigError("scoring.heatmap_*_bins: at least one bin per axis")

    def for_device(self, device_class: str | None = None) -> "ScoringConfig":
        """This configuration with a device class's profile applied (None: this one's ``device_class``)."""
        cls = device_class or self.device_class
        if cls not in self.device_profiles:
            raise ConfigError(f"unknown device class {cls!r} (known: {', '.join(sorted(self.device_profiles))})")
        up = _BASE.get(id(self))
        base = up[1] if up is not None and up[0] is self else self  # a profile applies to the unprofiled config
        key = (id(base), cls)
        hit = _PROFILED.get(key)
        if hit is None or hit[0] is not base:
            made = replace(base, device_class=cls, **base.device_profiles[cls])
            hit = (base, made)
            _PROFILED[key] = hit
            _BASE[id(made)] = (made, base)
        return hit[1]

    def device_class_of(self, vehicle: str) -> str:
        """A vehicle's device class from the configuration (the live path)."""
        return self.device_classes.get(vehicle, self.device_class)


# What really differs between device classes (the rest of ScoringConfig is physics and holds for all):
# - phone: the defaults (GPS Doppler speed 1 Hz lagging the accelerometer 0.85-1.5 s, arbitrary mount, gravity
#   included or removed, accuracy reported).
# - dongle (OBD-II): speed is the ECU's PID 010D, an integer km/h polled at ~2-5 Hz: a 1 km/h step between 4 Hz
#   samples reads as 1.1 m/s^2, so speed is averaged over 2 s before differencing (quantisation of a 1 s
#   difference then ~0.14 m/s^2); an accelerometer is optional (many dongles have none); the polled speed lags
#   less than a phone's GPS, so the lag search stops at 1.5 s.
# - oem (CAN / the car's own bus): wheel speed at 10-100 Hz with no receiver filter (u-blox 10 Hz runs 0.15 s
#   behind CAN on comma2k19), so no smoothing and a lag search to 1 s; the accelerometer is part of the ESC cluster.
SCORE_WEIGHTS: dict[str, float] = {
    "phone_share": 20.0,
    "speeding_risk": 20.0,
    "events_per_100km": 10.0,
    "lon_intensity": 10.0,
    "jerk_rms": 10.0,
    "rpa": 5.0,
    "lat_intensity": 5.0,
    "cruise_speed_cv": 5.0,
    "weaving": 5.0,
    "fatigue_h": 5.0,
    "night_share": 5.0,
}
DEVICE_PROFILES: dict[str, dict] = {
    "phone": {},
    "dongle": {"speed_smooth_s": 2.0, "imu_max_lag_s": 1.5, "imu_expected": False},
    "oem": {"speed_smooth_s": 0.0, "imu_max_lag_s": 1.0, "imu_expected": True},
}
_PROFILED: dict[tuple[int, str], tuple[ScoringConfig, ScoringConfig]] = {}  # (id(base), class) -> (base, cfg)
_BASE: dict[int, tuple[ScoringConfig, ScoringConfig]] = {}  # id(profiled) -> (profiled, base)
_NOT_IN_PROFILE = {"device_class", "device_classes", "device_profiles", "score_weights", "reference_population"}


def _check_profiles(cfg: ScoringConfig) -> None:
    """Merge device_profiles over DEVICE_PROFILES and check every override names a setting of the right type."""
    merged = {k: dict(v) for k, v in DEVICE_PROFILES.items()}
    for cls, over in cfg.device_profiles.items():
        if not isinstance(over, dict):
            raise ConfigError(f"scoring.device_profiles.{cls}: expected a table of settings")
        merged.setdefault(cls, {}).update(over)
    known = {f.name: f for f in fields(ScoringConfig)}
    for cls, over in merged.items():
        for k, val in over.items():
            if k not in known or k in _NOT_IN_PROFILE:
                raise ConfigError(f"scoring.device_profiles.{cls}.{k}: not a per-device setting")
            cur = known[k].default  # the setting's type is its default's (a profiled value may be an int)
            ok = isinstance(val, type(cur)) or (isinstance(cur, float) and isinstance(val, int))
            if not ok or (isinstance(val, bool) != isinstance(cur, bool)):
                raise ConfigError(f"scoring.device_profiles.{cls}.{k}: expected {type(cur).__name__}, got {val!r}")
            if isinstance(cur, float):
                over[k] = float(val)
    object.__setattr__(cfg, "device_profiles", merged)
    for v, cls in [("device_class", cfg.device_class), *cfg.device_classes.items()]:
        if cls not in merged:
            raise ConfigError(f"scoring.device_classes: {v}: unknown device class {cls!r}")


@dataclass(frozen=True)
class IngestConfig:
    max_payload_bytes: int = 256 * 1024
    max_batch_window_s: float = 60.0
    # Accept sample times up to this far in the future of the bridge's clock (device clock drift).
    max_future_skew_s: float = 300.0
    # Store-and-forward may deliver old data; older than this is refused as time travel.
    max_age_days: float = 35.0
    max_in_flight: int = 2000
    # How often the bridge tells each device which of its seqs Kafka confirmed (end-to-end ack; device-contract.md).
    e2e_ack_interval_s: float = 0.2
    # How long the store waits for the DuckDB file while another process holds it (a pricing run, a long query),
    # its Kafka offsets uncommitted; beyond it the store stops with an error (a supervisor restarts it).
    store_busy_timeout_s: float = 600.0
    # Prometheus text exposition of the bridge's counters on http://127.0.0.1:<port>/metrics (0 = off).
    metrics_port: int = 9464
    # The scorer's and the store's Prometheus endpoints (ubi/adapters/metrics.py; 0 = off). A second process of
    # the same stage on one host needs its own port (`--metrics-port`).
    scorer_metrics_port: int = 9465
    store_metrics_port: int = 9466
    # The store lists this many of the longest-silent devices (silent over a day) by vehicle id in its metrics: the
    # only per-device series, so the bound on their number whatever the fleet size.
    metrics_silent_listed: int = 20
    # --- trip plausibility (scoring/trips.py; docs/architecture.md) ---
    # An ignition trip longer than this (ignition_on to ignition_off, device time) is quarantined as
    # trip_too_long, never stored (a day: no private car trip runs longer; our choice).
    max_trip_s: float = 24 * 3600.0
    # A telemetry batch with a sample more than this before its trip's ignition_on or after its ignition_off (or,
    # with no ignition_off, after ignition_on + max_trip_s) is quarantined as outside_trip_window and its trip
    # flagged incomplete (covers a batch's 60 s window and some clock skew between events and samples; our choice).
    trip_window_margin_s: float = 300.0
    # A device's message that arrives before an earlier seq of the same device waits this long (partition receive
    # time) for the gap to close before the trip cutter goes on without it (scoring/resequence.py): covers devices
    # resending after a broker crash (reconnect back-off, resend timeout) and bridges forwarding at different speeds.
    reorder_window_s: float = 120.0
    # A vehicle the scorer has never seen waits for its first ignition_on (its first batches may come first); a
    # device without ignition events is started when the window above ends, or when the scorer's polls have returned
    # nothing for this long (wall clock): without traffic the receive-time watermark never moves.
    reorder_quiet_s: float = 5.0
    # The scorer stops (and does not commit) after this many trips in a row could not be scored, or this many
    # records in a row broke the trip cutter: a code bug, not poison, so the stream is not quarantined whole.
    max_consecutive_failures: int = 20


@dataclass(frozen=True)
class PrivacyConfig:
    """What is kept, how long, and how it is protected (README "Data inventory"). Telemetry shows where people
    live, work and sleep: keep as little as pricing needs, for as short as the pipeline allows."""

    # Raw telemetry (ubi.telemetry.v1: every fix, exact coordinates) stays in Kafka only while the scorer may still
    # need it: an open trip holds the commit back for up to ingest.max_trip_s (24 h) plus close_grace_s, and a day
    # is left for a scorer outage; so 48 h (our choice; refused below max_trip_s + close_grace_s, see
    # ubi/adapters/privacy.py). Trips (no coordinates) and the data-completeness counters are kept in DuckDB.
    telemetry_retention_h: float = 48.0
    # Dead letters (ubi.telemetry.dlq.v1) are kept a week: long enough to investigate a device that sends bad data.
    dlq_retention_h: float = 7 * 24.0
    # A bridge dead letter keeps the reason, the topic, the payload's size and SHA-256, and not the payload itself
    # unless this is true (then at most 64 KiB of it, coordinates rounded to position_decimals).
    dlq_keep_payload: bool = False
    # Scored trips in Kafka (ubi.trips.v1: aggregates, no coordinates) for the store to rebuild DuckDB from.
    trips_retention_h: float = 30 * 24.0
    # Anything positional kept longer than raw telemetry is rounded to this many decimals of a degree: 2 = about
    # 1.1 km of latitude (a neighbourhood, not a house). Trips store no start/end point at all.
    position_decimals: int = 2
    # DuckDB encryption at rest (DuckDB's AES-256-GCM database encryption). The key comes from this environment
    # variable, else from db_key_file ("" = <home>/secrets/db.key, mode 0600, generated on first use).
    encrypt_db: bool = True
    db_key_env: str = "UBI_DB_KEY"
    db_key_file: str = ""
    # Who writes the encrypted pages: "auto" = OpenSSL through DuckDB's httpfs extension when it is installed,
    # else DuckDB's built-in mbedtls, which DuckDB marks unsafe for writing (its nonces come from a
    # non-cryptographic generator) and which is logged as such; "openssl" = refuse without httpfs; "mbedtls".
    db_crypto: str = "auto"
    # Keyed pseudonyms (HMAC-SHA256) for actuary views and exports; key from this variable, else pseudonym_key_file
    # ("" = <home>/secrets/pseudonym.key, 0600, generated on first use). Rotation: docs/privacy.md.
    pseudonym_key_env: str = "UBI_PSEUDONYM_KEY"
    pseudonym_key_file: str = ""
    # The append-only, hash-chained audit log (JSON lines; ubi/adapters/audit.py): "" = <home>/audit/audit.jsonl.
    audit_log: str = ""

    def __post_init__(self) -> None:
        for name in ("telemetry_retention_h", "dlq_retention_h", "trips_retention_h"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"privacy.{name}: must be > 0 hours")
        if not 0 <= self.position_decimals <= 6:
            raise ConfigError("privacy.position_decimals: must be 0..6")
        if self.db_crypto not in ("auto", "openssl", "mbedtls"):
            raise ConfigError(f"privacy.db_crypto: {self.db_crypto!r} is not 'auto', 'openssl' or 'mbedtls'")


@dataclass(frozen=True)
class PortalConfig:
    """The policyholder portal (`ubi serve`) and statements (`ubi statements`)."""

    host: str = "127.0.0.1"
    port: int = 8765
    # The address in sign-in links ("" = http://host:port); an https:// address also marks cookies Secure.
    public_url: str = ""
    token_ttl_days: float = 30.0  # a sign-in link's lifetime (`ubi portal invite --days` overrides it)
    session_ttl_h: float = 12.0  # a signed-in session's, never past its token's expiry
    # Sign-in attempts: after this many failures from one client within the window, refuse until it has passed.
    signin_max_failures: int = 5
    signin_window_s: float = 900.0
    # Trip times are shown in this zone (policyholders read local time); the book's currency for amounts.
    time_zone: str = "Europe/Amsterdam"
    currency: str = "EUR"

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"portal.time_zone: unknown time zone {self.time_zone!r}") from exc
        if self.signin_max_failures < 1 or self.signin_window_s <= 0:
            raise ConfigError("portal.signin_max_failures must be >= 1 and portal.signin_window_s > 0")

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@dataclass(frozen=True)
class Config:
    home: Path = PROJECT_ROOT / ".ubi"
    db_path: Path = PROJECT_ROOT / ".ubi" / "ubi.duckdb"
    rulebook: Path = PROJECT_ROOT / "pricing" / "rulebooks" / "starter.toml"
    # DuckDB's memory during `ubi price` ("" = DuckDB's default, 80% of RAM): its sorts and aggregations spill to
    # disk beyond it. With 2GB a 10 M-policy book prices within 8 GB in all (docs/capacity.md, bench/pricing.py).
    pricing_memory_limit: str = "2GB"
    # Processes that build a pricing run's rows (trace, statement, engine cross-check) once the book is priced;
    # 0 = one per CPU core. The rows are ~40 us a policy on one core (docs/capacity.md#pricing).
    pricing_workers: int = 0
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"


def _apply(section: object, values: dict, where: str) -> object:
    known = {f.name: f for f in fields(section)}  # type: ignore[arg-type]
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown setting")
        current = getattr(section, key)
        if isinstance(current, Path):
            value = Path(value)
        elif (
            isinstance(current, bool) != isinstance(value, bool)  # (a bool is an int to isinstance)
            or not isinstance(value, type(current))
            and not (isinstance(current, float) and isinstance(value, int))
        ):
            raise ConfigError(f"{where}.{key}: expected {type(current).__name__}, got {value!r}")
        changes[key] = value
    return replace(section, **changes)  # type: ignore[type-var]


def load_config(path: Path | None = None) -> Config:
    """Build the configuration from defaults, an optional TOML file and ``UBI_*`` environment variables."""
    cfg = Config()
    home = os.environ.get("UBI_HOME")
    if home:
        cfg = replace(cfg, home=Path(home), db_path=Path(home) / "ubi.duckdb")
    path = path or (Path(os.environ["UBI_CONFIG"]) if os.environ.get("UBI_CONFIG") else None)
    if path is None and (Path.cwd() / "ubi.toml").exists():
        path = Path.cwd() / "ubi.toml"
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        sections = {f.name for f in fields(cfg) if not isinstance(getattr(cfg, f.name), (Path,))}
        top = {k: v for k, v in data.items() if k not in sections}
        cfg = _apply(cfg, top, str(path))  # type: ignore[assignment]
        for name in sections:
            if name in data:
                section = _apply(getattr(cfg, name), data[name], f"{path}:{name}")
                cfg = replace(cfg, **{name: section})  # type: ignore[arg-type]
    if os.environ.get("UBI_DB"):
        cfg = replace(cfg, db_path=Path(os.environ["UBI_DB"]))
    if os.environ.get("UBI_KAFKA_BOOTSTRAP"):
        cfg = replace(cfg, kafka=replace(cfg.kafka, bootstrap=os.environ["UBI_KAFKA_BOOTSTRAP"]))
    cluster = cfg.home / "kafka-cluster" / "bootstrap"  # written by `ubi stack up --brokers 3`
    if "," not in cfg.kafka.bootstrap and cluster.exists():
        listed = cluster.read_text().strip()
        if listed.split(",")[0] == cfg.kafka.bootstrap:  # the cluster started from this address: name all brokers
            cfg = replace(cfg, kafka=replace(cfg.kafka, bootstrap=listed))
    if os.environ.get("UBI_MQTT_PORT"):
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, port=int(os.environ["UBI_MQTT_PORT"])))
    return cfg


@lru_cache(maxsize=1)
def get_config() -> Config:
    return load_config()
