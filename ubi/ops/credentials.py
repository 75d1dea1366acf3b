"""Per-device MQTT credentials, stored hashed in Mosquitto's password file.

Mosquitto 2.x reads PBKDF2-SHA512 entries (``user:$7$iterations$salt$hash``, base64). We write them ourselves so
that a fleet of thousands can be enrolled in one pass; `mosquitto_passwd` reads the same file. A device's plain
password is shown once (``ubi devices add``) or handed in memory to the bundled simulator (``Stack.enrol``), never
stored: only the hash is kept. Only the accounts we run ourselves (the bridge) keep theirs, in
``.ubi/secrets/mqtt.json`` (mode 0600), never in the repository.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from ubi.common.errors import ConfigError

ITERATIONS = 101
_VALID_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_identity(name: str) -> str:
    """Vehicle ids become topic levels and usernames: keep them to a safe alphabet."""
    if not _VALID_ID.match(name):
        raise ConfigError(f"invalid id {name!r}: use 1-64 letters, digits, '_' or '-'")
    return name


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, entry: str) -> bool:
    _, kind, iterations, salt, digest = entry.split("$")
    if kind != "7":
        return False
    mine = hash_password(password, base64.b64decode(salt), int(iterations))
    return secrets.compare_digest(mine.split("$")[-1], digest)


class CredentialStore:
    """The Mosquitto password file plus the operator-side secrets file (0600) for accounts we run ourselves."""

    def __init__(self, passwd_file: Path, secrets_file: Path) -> None:
        self.passwd_file = passwd_file
        self.secrets_file = secrets_file

    def _read_passwd(self) -> dict[str, str]:
        if not self.passwd_file.exists():
            return {}
        out = {}
        for line in self.passwd_file.read_text().splitlines():
            if ":" in line:
                user, entry = line.split(":", 1)
                out[user] = entry
        return out

    def _read_secrets(self) -> dict[str, str]:
        if not self.secrets_file.exists():
            return {}
        return json.loads(self.secrets_file.read_text())

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def add(self, names: list[str], keep_secret: bool = False) -> dict[str, str]:
        """Create (or rotate) credentials; returns the new plain passwords (kept on disk only with keep_secret, for
        our own service accounts)."""
        entries = self._read_passwd()
        kept = self._read_secrets()
        new = {}
        for name in names:
            check_identity(name)
            password = secrets.token_urlsafe(18)
            entries[name] = hash_password(password)
            new[name] = password
            if keep_secret:
                kept[name] = password
            else:
                kept.pop(name, None)
        self._write_private(self.passwd_file, "".join(f"{u}:{e}\n" for u, e in sorted(entries.items())))
        self._write_private(self.secrets_file, json.dumps(kept, indent=0, sort_keys=True))
        return new

    def revoke(self, names: list[str]) -> list[str]:
        entries = self._read_passwd()
        kept = self._read_secrets()
        gone = [n for n in names if entries.pop(n, None) is not None]
        for n in names:
            kept.pop(n, None)
        self._write_private(self.passwd_file, "".join(f"{u}:{e}\n" for u, e in sorted(entries.items())))
        self._write_private(self.secrets_file, json.dumps(kept, indent=0, sort_keys=True))
        return gone

    def password(self, name: str) -> str:
        kept = self._read_secrets()
        if name not in kept:
            raise ConfigError(f"no stored credential for {name!r}: run `ubi devices add {name}`")
        return kept[name]

    def ensure(self, names: list[str]) -> None:
        """Enrol these service accounts if they have no stored credential yet (idempotent). Any other plain
        password found in the secrets file (devices enrolled by an older version) is removed: devices keep a hash
        only."""
        known = self._read_passwd()
        kept = self._read_secrets()
        stale = set(kept) - set(names)
        if stale:
            self._write_private(
                self.secrets_file, json.dumps({n: kept[n] for n in names if n in kept}, indent=0, sort_keys=True)
            )
        missing = [n for n in names if n not in known or n not in kept]
        if missing:
            self.add(missing, keep_secret=True)

    def users(self) -> list[str]:
        return sorted(self._read_passwd())
