"""Privacy safeguards every stage shares: topic retention, coarse positions, keys, the encrypted DuckDB file and
keyed pseudonyms. The choices and their defaults are in ``PrivacyConfig`` (ubi/common/config.py); what is kept
where, and for how long, is in README "Data inventory".

- **Retention** (``topic_configs``): raw telemetry only as long as the scorer can still need it, dead letters a
  week, each applied when a topic is created and to topics that already exist (``apply_topic_configs``).
- **Encryption at rest** (``open_database``): every DuckDB connection of the project is made here, through
  DuckDB's own database encryption (``ATTACH ... (ENCRYPTION_KEY ...)``); a missing or wrong key is a
  ``DatabaseKeyError``, never a silently unencrypted file. An existing unencrypted file is encrypted in place the
  first time it is opened for writing (``COPY FROM DATABASE``), and that is logged.
- **Pseudonyms** (``pseudonym``): HMAC-SHA256 of an id under a key that is not in the database, so whoever reads
  the actuary views cannot get back to a policy or vehicle without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

import duckdb

from ubi.common.config import Config, PrivacyConfig, load_config
from ubi.common.errors import ConfigError, DatabaseKeyError, PrivacyError, StoreError

log = logging.getLogger("ubi.privacy")

HOUR_MS = 3600 * 1000
DB_ALIAS = "ubi"  # the attached, encrypted database every connection USEs


# --- retention ---------------------------------------------------------------------------------------------------


def topic_configs(cfg: Config) -> dict[str, dict[str, str]]:
    """The Kafka topic settings privacy asks for, per topic of this configuration. Refuses a raw-telemetry retention
    shorter than a trip may stay open (the scorer would lose the start of a long trip before cutting it)."""
    p, k = cfg.privacy, cfg.kafka
    open_max_h = (cfg.ingest.max_trip_s + cfg.scoring.close_grace_s) / 3600.0
    if p.telemetry_retention_h < open_max_h:
        raise ConfigError(
            f"privacy.telemetry_retention_h = {p.telemetry_retention_h:g} h is shorter than a trip may stay open "
            f"(ingest.max_trip_s + scoring.close_grace_s = {open_max_h:.2f} h): the scorer could lose raw data of a "
            "trip it has not cut yet"
        )
    ms = lambda h: str(int(h * HOUR_MS))  # noqa: E731

    def timed(hours: float) -> dict[str, str]:
        # Kafka deletes whole closed segments only, and rolls one after 7 days by default: a segment rolls at least
        # hourly here, so a record is gone within about an hour (plus the 5-minute check) after its retention
        return {"cleanup.policy": "delete", "retention.ms": ms(hours), "segment.ms": ms(min(1.0, hours))}

    return {
        k.telemetry_topic: timed(p.telemetry_retention_h),
        k.dead_letter_topic: timed(p.dlq_retention_h),
        k.trips_topic: timed(p.trips_retention_h),
        # one small record per vehicle, kept for ever (compaction keeps the latest); an erasure writes a tombstone,
        # which compaction removes after delete.retention.ms (1 day, Kafka's default)
        k.scorer_state_topic: {"cleanup.policy": "compact", "retention.ms": "-1"},
    }


def apply_topic_configs(admin, wanted: dict[str, dict[str, str]], existing: set[str]) -> dict[str, dict[str, str]]:
    """Set the wanted settings on topics that already exist (created before these settings, or by an older
    version). Returns what was changed, per topic ({} when everything already matched)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    present = [t for t in wanted if t in existing]
    if not present:
        return {}
    keys = sorted({k for conf in wanted.values() for k in conf})
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t, configs=dict.fromkeys(keys)) for t in present],
        config_filter="Dynamic",
    ).get("topic", {})
    current = {t: {k: v.get("value") for k, v in entries.items()} for t, entries in described.items()}
    changed = {}
    for topic in present:
        diff = {k: v for k, v in wanted[topic].items() if current.get(topic, {}).get(k) != v}
        if diff:
            changed[topic] = diff
    if changed:
        # one resource per topic with the keys that differ (incremental SET: other settings stay as they are)
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=c) for t, c in changed.items()])
        log.info("topic retention applied: %s", changed)
    return changed


def coarsen_numbers(payload: bytes, decimals: int) -> bytes:
    """Every decimal number in the text cut to ``decimals`` fraction digits. Used on the dead-letter payloads that
    are kept (``privacy.dlq_keep_payload``): a payload that broke the contract may not even parse, so coordinates
    are found as numbers anywhere in the text, not as JSON fields (integers such as times are left alone)."""
    pattern = re.compile(rb"(-?\d+\.\d{%d})\d+" % decimals) if decimals else re.compile(rb"(-?\d+)\.\d+")
    return pattern.sub(rb"\1", payload)


# --- keys ----------------------------------------------------------------------------------------------------------


def _key_path(cfg: Config, configured: str, default_name: str) -> Path:
    return Path(configured) if configured else cfg.secrets_dir / default_name


def read_or_make_key(path: Path, create: bool) -> str | None:
    """The key in ``path`` (mode 0600 in a 0700 folder), made when missing and ``create``. Two processes making it
    at once end with the same key: it is written aside and linked into place, which fails if one is already there."""
    if path.exists():
        key = path.read_text().strip()
        if not key:
            raise DatabaseKeyError(f"the key file {path} is empty")
        return key
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        log.info("generated a new key in %s (mode 0600)", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def db_key(cfg: Config, create: bool) -> tuple[str | None, str]:
    """(key, where it came from) for the DuckDB file: the environment variable, else the key file."""
    p = cfg.privacy
    env = os.environ.get(p.db_key_env)
    if env:
        return env, f"${p.db_key_env}"
    path = _key_path(cfg, p.db_key_file, "db.key")
    return read_or_make_key(path, create), str(path)


def ensure_keys(cfg: Config) -> str:
    """Make the keys that are missing (``ubi stack up``), so that they exist, 0600, before any stage needs them. The
    DuckDB key only while no encrypted database file exists: a lost key must stay an error, not a new key."""
    made = []
    for name in ("pseudonym.key", "audit.key", "erasure.key"):
        path = cfg.secrets_dir / name
        if not path.exists():
            read_or_make_key(path, create=True)
            made.append(name)
    p = cfg.privacy
    if p.encrypt_db and not os.environ.get(p.db_key_env) and file_is_encrypted(cfg.db_path) is not True:
        path = _key_path(cfg, p.db_key_file, "db.key")
        if not path.exists():
            read_or_make_key(path, create=True)
            made.append(path.name)
    return f"made {', '.join(made)}" if made else "present"


def pseudonym_key(cfg: Config | None = None) -> bytes:
    """The HMAC key for pseudonyms: the environment variable, else the key file (made on first use)."""
    cfg = cfg or load_config()
    p = cfg.privacy
    env = os.environ.get(p.pseudonym_key_env)
    if env:
        return env.encode()
    key = read_or_make_key(_key_path(cfg, p.pseudonym_key_file, "pseudonym.key"), create=True)
    assert key is not None
    return key.encode()


def pseudonym(value: str, key: bytes, kind: str = "") -> str:
    """A stable, keyed pseudonym (HMAC-SHA256, 16 hex digits = 64 bits: no collision in any real book). ``kind``
    separates the namespaces, so a policy and a vehicle with the same id get different pseudonyms."""
    return "ps_" + hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:16]


def pseudonym_sql(column: str, kind: str) -> str:
    """The same pseudonym computed by DuckDB (HMAC-SHA256 spelled out with its ``sha256``: the key's inner and outer
    pads are the query parameters ``$ipad`` and ``$opad``, from ``hmac_pads``): the actuary tables of a 600 k-trip
    store in 6.9 s instead of 13.0 s with a Python function per row. ``tests/test_privacy.py`` compares it with
    ``pseudonym``."""
    inner = f"sha256($ipad || encode('{kind}:' || CAST({column} AS VARCHAR)))"
    return f"'ps_' || substr(sha256($opad || unhex({inner})), 1, 16)"


def hmac_pads(key: bytes) -> dict[str, bytes]:
    """RFC 2104: the key (hashed if longer than SHA-256's 64-byte block) padded and XORed with 0x36 and 0x5c."""
    k = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return {"ipad": bytes(b ^ 0x36 for b in k), "opad": bytes(b ^ 0x5C for b in k)}


# --- the encrypted DuckDB file -------------------------------------------------------------------------------------


def file_is_encrypted(path: Path) -> bool | None:
    """None when there is no DuckDB file; else whether its main header says encrypted (flag bit 0 after the magic
    and the version: checked against files DuckDB 2.0 wrote, both ways)."""
    try:
        with open(path, "rb") as f:
            head = f.read(28)
    except FileNotFoundError:
        return None
    if len(head) < 28 or head[8:12] != b"DUCK":
        raise PrivacyError(f"{path} is not a DuckDB database file")
    return bool(int.from_bytes(head[20:28], "little") & 1)


_warned_mbedtls = False
_httpfs_missing = False  # LOAD httpfs failed once in this process: not tried on every connection again


def _crypto_for_writing(con: duckdb.DuckDBPyConnection, mode: str) -> str:
    """Make the connection able to write encrypted pages; returns which library does it."""
    global _warned_mbedtls, _httpfs_missing
    if mode in ("auto", "openssl") and not (_httpfs_missing and mode == "auto"):
        try:
            con.execute("LOAD httpfs")
            return "openssl"
        except duckdb.Error as exc:
            _httpfs_missing = True
            if mode == "openssl":
                raise PrivacyError(
                    "privacy.db_crypto = 'openssl' needs DuckDB's httpfs extension, which is not installed "
                    f"({str(exc).splitlines()[0]})"
                ) from exc
    con.execute("SET force_mbedtls_unsafe = true")
    if not _warned_mbedtls:
        _warned_mbedtls = True
        log.warning(
            "DuckDB file encrypted with DuckDB's built-in mbedtls: the httpfs extension (OpenSSL) is not installed, "
            "and DuckDB marks mbedtls as unsafe for writing (nonces from a non-cryptographic generator); see "
            "docs/privacy.md"
        )
    return "mbedtls"


_temp_seq = itertools.count()
_swept: set[Path] = set()  # databases whose dead processes' spill directories this process has removed


def private_temp_dir(path: Path) -> Path:
    """A temporary directory of the connection's own, beside its database file. Without it an encrypted connection
    (in-memory, the file attached) spills into ``./.tmp`` of the working directory, shared by every process started
    there, and DuckDB refuses to switch temp-file encryption on while another process's files lie in it: the store
    died that way while a pricing run spilled. DuckDB creates it on the first spill and removes it on close; those
    of processes that died are removed here, once per process and database (the store opens a connection for each
    write)."""
    stem = f".{path.name}.tmp-"
    if path not in _swept:
        _swept.add(path)
        for d in path.parent.glob(stem + "*"):
            pid = d.name[len(stem) :].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)
    return path.parent / f"{stem}{os.getpid()}-{next(_temp_seq)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def open_database(path: Path | str, read_only: bool = False, cfg: Config | None = None) -> duckdb.DuckDBPyConnection:
    """The one way this project opens its DuckDB file: encrypted with the configured key (``privacy.encrypt_db``),
    the database attached and made the default, so every query reads as before."""
    cfg = cfg or load_config()
    p: PrivacyConfig = cfg.privacy
    path = Path(path)
    state = file_is_encrypted(path)
    if not p.encrypt_db:
        if state:
            raise DatabaseKeyError(f"{path} is encrypted but privacy.encrypt_db is false: set it true and give the key")
        return duckdb.connect(str(path), read_only=read_only)
    if state is None and read_only:
        raise StoreError(f"{path}: no such database file")
    key, source = db_key(cfg, create=state is not True)
    if key is None:
        raise DatabaseKeyError(
            f"{path} is encrypted and no key was given: set ${p.db_key_env} or restore {source} (mode 0600)"
        )
    if state is False:
        if read_only:
            raise DatabaseKeyError(
                f"{path} is not encrypted: open it once for writing (e.g. `ubi privacy encrypt-db`), which encrypts "
                "it in place"
            )
        encrypt_in_place(path, key, p.db_crypto)
    con = duckdb.connect()
    try:
        # readers too: a large query spills to temporary files, which are encrypted as well
        _crypto_for_writing(con, p.db_crypto)
        con.execute(f"SET temp_directory = {_sql_text(str(private_temp_dir(path.absolute())))}")
        con.execute("SET temp_file_encryption = true")
        opts = f"ENCRYPTION_KEY {_sql_text(key)}" + (", READ_ONLY" if read_only else "")
        con.execute(f"ATTACH {_sql_text(str(path))} AS {DB_ALIAS} ({opts})")
        con.execute(f"USE {DB_ALIAS}")
    except duckdb.InvalidInputException as exc:
        con.close()
        if "encryption key" in str(exc).lower():
            raise DatabaseKeyError(f"{path}: wrong encryption key (from {source})") from None
        raise PrivacyError(f"cannot open {path}: {exc}") from None
    except duckdb.Error as exc:
        con.close()
        # the same kind of error as a plain connect (a lock held by the writer stays a lock error for the callers
        # that wait on it); never the statement, which holds the key
        raise type(exc)(str(exc).splitlines()[0].replace(key, "***")) from None
    return con


def encrypt_in_place(path: Path, key: str, crypto: str = "auto") -> None:
    """Encrypt an existing unencrypted DuckDB file: everything copied (``COPY FROM DATABASE``) into an encrypted
    file beside it, which then replaces the original (an interrupted run leaves the original untouched)."""
    tmp = path.with_name(path.name + ".encrypting")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        _crypto_for_writing(con, crypto)
        con.execute(f"ATTACH {_sql_text(str(path))} AS plain_src")
        con.execute("CHECKPOINT plain_src")  # fold its write-ahead log in first
        con.execute(f"ATTACH {_sql_text(str(tmp))} AS enc_dst (ENCRYPTION_KEY {_sql_text(key)})")
        con.execute("COPY FROM DATABASE plain_src TO enc_dst")
        con.execute("DETACH enc_dst")
        con.execute("DETACH plain_src")
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        raise PrivacyError(f"could not encrypt {path}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    log.warning("%s was not encrypted: encrypted it in place (COPY FROM DATABASE)", path)


def rekey_database(path: Path | str, cfg: Config | None = None) -> Path:
    """Re-encrypt the DuckDB file under a fresh key in the key file (the old key stops working). The new key is
    written beside the old one first, the data copied into a new file under it, then the file and the key are
    renamed into place; if the run is cut between those two renames, ``db.key.new`` holds the key of the file."""
    cfg = cfg or load_config()
    p = cfg.privacy
    path = Path(path)
    if os.environ.get(p.db_key_env):
        raise PrivacyError(
            f"the key comes from ${p.db_key_env}: re-encrypt with a key file, or copy the database yourself "
            "(ATTACH old and new with their keys, COPY FROM DATABASE) and change the variable"
        )
    if file_is_encrypted(path) is not True:
        raise PrivacyError(f"{path} is not an encrypted database (run `ubi privacy encrypt-db` first)")
    key_file = _key_path(cfg, p.db_key_file, "db.key")
    old, _ = db_key(cfg, create=False)
    if old is None:
        raise DatabaseKeyError(f"no key for {path} in {key_file}")
    pending = key_file.with_name(key_file.name + ".new")
    pending.unlink(missing_ok=True)
    new = read_or_make_key(pending, create=True)
    assert new is not None
    tmp = path.with_name(path.name + ".rekeying")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        _crypto_for_writing(con, p.db_crypto)
        con.execute(f"ATTACH {_sql_text(str(path))} AS old_db (ENCRYPTION_KEY {_sql_text(old)})")
        con.execute("CHECKPOINT old_db")
        con.execute(f"ATTACH {_sql_text(str(tmp))} AS new_db (ENCRYPTION_KEY {_sql_text(new)})")
        con.execute("COPY FROM DATABASE old_db TO new_db")
        con.execute("DETACH new_db")
        con.execute("DETACH old_db")
    except duckdb.InvalidInputException:
        tmp.unlink(missing_ok=True)
        pending.unlink()
        raise DatabaseKeyError(f"{path}: wrong encryption key (from {key_file})") from None
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        pending.unlink()
        raise PrivacyError(f"could not re-encrypt {path}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    os.replace(pending, key_file)
    log.warning("%s re-encrypted under a new key in %s; the old key no longer opens it", path, key_file)
    return key_file
