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

    @property
    def scorer_state_topic(self) -> str:
        """The scorer group's durable trip-cutter state (compacted, keyed by vehicle): it belongs to the group, as
        its committed offsets do, so a new group starts from scratch on both."""
        return f"{self.scorer_group}.state.v1"


@dataclass(frozen=True)
class ScoringConfig:
    # Hard braking: speed drop >= 7 mph/s = 3.13 m/s^2 (Progressive Snapshot, second-hand; domain/telematics.md).
    harsh_brake_mps2: float = 3.13
    # Fast start: speed gain >= 9 mph/s = 4.02 m/s^2 (Progressive, second-hand).
    harsh_accel_mps2: float = 4.02
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
    # --- accelerometer-confirmed harsh events (10 Hz+ vehicle-frame IMU) ---
    # Minimum duration above threshold: Damoov SDK braking >= 600 ms (vendor manual).
    min_event_duration_s: float = 0.6
    # Qualifying runs closer than this merge into one event (bursts merged; our choice, Traccar does no merging).
    event_merge_gap_s: float = 1.0
    # An IMU gap longer than this ends a run (10 Hz devices: 5 missing samples; our choice).
    max_imu_gap_s: float = 0.5
    # GPS speed is unreliable while the receiver locks on (domain doc: 9 -> 79 km/h jumps in one second); speed
    # gating is not trusted for this long after the first fix and after every GPS gap (no published figure).
    gps_warmup_s: float = 3.0
    # Harsh cornering: lateral >= 5.5 m/s^2 (Digital Matter default, vendor manual), only at >= 30 km/h
    # (Teltonika FMB gating).
    harsh_corner_mps2: float = 5.5
    min_corner_speed_mps: float = 30 / 3.6
    # Severity grades by peak. Brake/accel: grade 1 from the event threshold, grade 2 from 11 mph/s = 4.92 m/s^2,
    # grade 3 from 14 mph/s = 6.26 m/s^2 (the upper cut points of So, Boucher & Valdez 2021).
    grade2_mps2: float = 4.92
    grade3_mps2: float = 6.26
    # Cornering grades (our choice: +1 and +2 m/s^2 above the Digital Matter threshold; no published grading).
    corner_grade2_mps2: float = 6.5
    corner_grade3_mps2: float = 7.5
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
    # Speed-limit map layer (docs/map-layer.md; empty = none): a fix takes the maxspeed of the nearest segment
    # within the radius (Traccar looks up OpenStreetMap maxspeed within 100 m; 30 m keeps parallel roads apart).
    speed_limit_map: str = ""
    speed_limit_radius_m: float = 30.0
    # --- speed x acceleration heatmap (Gao, Meng & Wuethrich 2019), fixed bins so per-driver sums make sense ---
    heatmap_speed_step_kmh: float = 10.0
    heatmap_speed_bins: int = 14  # 0-10, ..., >= 130 km/h (last bin open)
    heatmap_accel_step_mps2: float = 0.5
    heatmap_accel_bins: int = 12  # -3.0..+3.0 in 0.5 steps, both end bins open
    # --- trip score: 100 minus weighted penalties; each feature scaled to 0..1 at its cap. Weights follow the
    # CMT crash study's ranking (phone 3.4x, excessive speeding 3.0x, hard braking 1.8x); caps are our choice.
    score_w_phone: float = 25.0
    score_cap_phone_share: float = 0.10  # share of moving time with the phone handled
    score_w_speeding: float = 25.0
    score_cap_speeding_share: float = 0.20  # share of distance above limit + margin (or above high_speed_mps)
    score_w_brakes: float = 20.0
    score_cap_brakes_per_100km: float = 10.0
    score_w_accels: float = 10.0
    score_cap_accels_per_100km: float = 10.0
    score_w_corners: float = 10.0
    score_cap_corners_per_100km: float = 10.0
    score_w_night: float = 10.0
    score_cap_night_share: float = 0.5  # share of distance at night
    # Per-100-km rates of trips shorter than this are not scored (one event on 300 m would saturate the part).
    score_min_km: float = 1.0

    def __post_init__(self) -> None:
        """Fail when the configuration loads, not on the first trip: a bad zone or band would stop the scorer."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"scoring.time_zone: unknown time zone {self.time_zone!r}") from exc
        for name in ("night_start_h", "night_end_h", "rush_am_start_h", "rush_am_end_h", "rush_pm_start_h",
                     "rush_pm_end_h"):
            if not 0.0 <= getattr(self, name) <= 24.0:
                raise ConfigError(f"scoring.{name}: must be an hour in [0, 24]")
        for name in ("harsh_brake_mps2", "harsh_accel_mps2", "harsh_corner_mps2", "heatmap_speed_step_kmh",
                     "heatmap_accel_step_mps2", "max_integration_gap_s", "motion_stop_s", "max_jump_speed_kmh"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"scoring.{name}: must be > 0")
        if self.heatmap_speed_bins < 1 or self.heatmap_accel_bins < 1:
            raise ConfigError("scoring.heatmap_*_bins: at least one bin per axis")


@dataclass(frozen=True)
class IngestConfig:
    max_payload_bytes: int = 256 * 1024
    max_batch_window_s: float = 60.0
    # Accept sample times up to this far in the future of the bridge's clock (device clock drift).
    max_future_skew_s: float = 300.0
    # Store-and-forward may deliver old data; older than this is refused as time travel.
    max_age_days: float = 35.0
    max_in_flight: int = 2000
    # Prometheus text exposition of the bridge's counters on http://127.0.0.1:<port>/metrics (0 = off).
    metrics_port: int = 9464


@dataclass(frozen=True)
class Config:
    home: Path = PROJECT_ROOT / ".ubi"
    db_path: Path = PROJECT_ROOT / ".ubi" / "ubi.duckdb"
    rulebook: Path = PROJECT_ROOT / "pricing" / "rulebooks" / "starter.toml"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)

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
        elif isinstance(current, bool) or not isinstance(value, type(current)) and not (
            isinstance(current, float) and isinstance(value, int)
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
                cfg = replace(cfg, **{name: _apply(getattr(cfg, name), data[name], f"{path}:{name}")})
    if os.environ.get("UBI_DB"):
        cfg = replace(cfg, db_path=Path(os.environ["UBI_DB"]))
    if os.environ.get("UBI_KAFKA_BOOTSTRAP"):
        cfg = replace(cfg, kafka=replace(cfg.kafka, bootstrap=os.environ["UBI_KAFKA_BOOTSTRAP"]))
    if os.environ.get("UBI_MQTT_PORT"):
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, port=int(os.environ["UBI_MQTT_PORT"])))
    return cfg


@lru_cache(maxsize=1)
def get_config() -> Config:
    return load_config()
