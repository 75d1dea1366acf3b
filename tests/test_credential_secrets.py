"""Device passwords are never stored in plain text (issue 11, item 8): only the bridge's own account is kept."""

from __future__ import annotations

import json
import stat

from ubi.ops.credentials import CredentialStore, verify_password


def test_devices_keep_a_hash_only_and_old_plain_passwords_are_purged(tmp_path):
    secrets = tmp_path / "secrets" / "mqtt.json"
    secrets.parent.mkdir()
    secrets.write_text(json.dumps({"OLDDEVICE": "plain-from-an-older-version"}))
    store = CredentialStore(tmp_path / "passwd", secrets)
    store.ensure(["bridge"])
    pw = store.add(["V1", "V2"])
    kept = json.loads(secrets.read_text())
    assert set(kept) == {"bridge"}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    text = (tmp_path / "passwd").read_text()
    assert pw["V1"] not in text and pw["V2"] not in text and "plain-from" not in secrets.read_text()
    entries = dict(line.split(":", 1) for line in text.splitlines())
    assert verify_password(pw["V1"], entries["V1"]) and verify_password(kept["bridge"], entries["bridge"])
