"""The append-only, hash-chained audit log: who ran, read, exported or erased what, and review decisions.

Call ``record(actor, action, subject, detail)`` from anywhere (subject: a policy id or None). Entries are JSON lines
in one file (``privacy.audit_log``, default ``<home>/audit/audit.jsonl``, mode 0600 in a 0700 folder), each with
``seq``, ``ts``, ``actor``, ``action``, ``subject`` (the policy's keyed pseudonym, never the id), ``detail``,
``prev`` (the previous entry's hash) and ``hash`` = HMAC-SHA256 over ``prev`` and the entry's canonical JSON,
under the chain's own key (<home>/secrets/audit.key). ``verify`` recomputes the chain: an altered entry breaks its
own hash, a removed or reordered one breaks the next ``prev`` and ``seq``; without the key nobody can write a
chain that verifies.

Why a file and not a DuckDB table: DuckDB admits one writing process per file, and the store stage holds it while the
pipeline runs, so reads (``ubi sql``), exports and review decisions could not be recorded in a table then; a file
opened ``O_APPEND`` under an exclusive ``flock`` takes appends from every process. A log cut short at its end
verifies as a shorter chain: keep the head that ``ubi audit verify`` prints somewhere else (a ticket, write-once
storage) and check it with ``--expect-head``.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ubi.common.config import Config, load_config
from ubi.common.errors import PrivacyError

GENESIS = "0" * 64


def log_path(cfg: Config | None = None) -> Path:
    cfg = cfg or load_config()
    return Path(cfg.privacy.audit_log) if cfg.privacy.audit_log else cfg.home / "audit" / "audit.jsonl"


def subject_pseudonym(policy_id: str, key: bytes) -> str:
    from ubi.adapters.privacy import pseudonym

    return pseudonym(policy_id, key, "policy")


def _digest(key: bytes, prev: str, body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, (prev + "\n" + canonical).encode(), hashlib.sha256).hexdigest()


def _last(fd: int) -> tuple[int, str]:
    """(seq, hash) of the last entry of the open log (0, GENESIS when empty): reads the tail only."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS
    back = min(size, 1 << 16)
    lines = [line for line in os.pread(fd, back, size - back).decode(errors="replace").splitlines() if line.strip()]
    try:
        last = json.loads(lines[-1])
        return int(last["seq"]), str(last["hash"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise PrivacyError(f"the audit log's last line is not an entry ({exc!r}): run `ubi audit verify`") from None


def chain_key(cfg: Config) -> bytes:
    """The chain's HMAC key: its own file (<home>/secrets/audit.key, 0600), so rotating the pseudonym key does not
    break the chain."""
    from ubi.adapters.privacy import read_or_make_key

    key = read_or_make_key(cfg.secrets_dir / "audit.key", create=True)
    assert key is not None
    return key.encode()


def record(
    actor: str | None,
    action: str,
    subject: str | None = None,
    detail: dict | None = None,
    cfg: Config | None = None,
) -> dict:
    """Append one entry and return it. ``subject`` is a policy id; the log keeps its pseudonym only. A
    ``policy_id`` in ``detail`` becomes the subject, and an actor ``policyholder:<policy id>`` the pseudonym, so no
    caller writes a policy id into the log by accident."""
    from ubi.adapters.privacy import pseudonym_key

    cfg = cfg or load_config()
    detail = dict(detail or {})
    if subject is None and isinstance(detail.get("policy_id"), str):
        subject = detail.pop("policy_id")
    if actor and actor.startswith("policyholder:"):
        holder = actor.split(":", 1)[1]
        subject = subject if subject is not None else holder
        actor = "policyholder:" + subject_pseudonym(holder, pseudonym_key(cfg))
    key = chain_key(cfg)
    path = log_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        seq, prev = _last(fd)
        body = {
            "seq": seq + 1,
            "ts": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "actor": actor or getpass.getuser(),
            "action": action,
            "subject": None if subject is None else subject_pseudonym(subject, pseudonym_key(cfg)),
            "detail": detail,
            "prev": prev,
        }
        entry = {**body, "hash": _digest(key, prev, body)}
        os.write(fd, (json.dumps(entry, sort_keys=True, default=str) + "\n").encode())
        os.fsync(fd)
        return entry
    finally:
        os.close(fd)  # releases the lock


@dataclass
class Verdict:
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(cfg: Config | None = None, expect_head: str | None = None) -> Verdict:
    """Recompute the chain; every broken link is named by its line. ``expect_head`` = ``SEQ:HASH`` from an earlier
    verify: the log must still contain that entry unchanged (catches a log cut short at its end)."""
    cfg = cfg or load_config()
    key = chain_key(cfg)
    path = log_path(cfg)
    problems: list[str] = []
    seen: dict[int, str] = {}
    prev, seq, n = GENESIS, 0, 0
    if path.exists():
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                try:
                    entry = json.loads(line)
                    body = {k: v for k, v in entry.items() if k != "hash"}
                    claimed = entry["hash"]
                except (ValueError, KeyError, AttributeError) as exc:
                    problems.append(f"line {lineno}: not an audit entry ({exc})")
                    continue
                if body.get("seq") != seq + 1:
                    problems.append(f"line {lineno}: seq {body.get('seq')} follows {seq} (an entry removed or moved)")
                if body.get("prev") != prev:
                    problems.append(f"line {lineno}: prev does not match the entry before it (removed or altered)")
                if not hmac.compare_digest(_digest(key, str(body.get("prev")), body), str(claimed)):
                    problems.append(f"line {lineno}: hash does not match its content (entry altered)")
                seq = body.get("seq") if isinstance(body.get("seq"), int) else seq + 1
                prev = str(claimed)
                seen[seq] = prev
    if expect_head:
        want_seq, _, want_hash = expect_head.partition(":")
        if not want_seq.isdigit() or seen.get(int(want_seq)) != want_hash:
            problems.append(f"expected head {expect_head} is not in the log (entries removed from its end?)")
    return Verdict(n, seq, prev, problems)


def entries_about(policy_id: str, cfg: Config | None = None) -> list[dict]:
    """The entries whose subject is this policy (for a data-subject export)."""
    from ubi.adapters.privacy import pseudonym_key

    cfg = cfg or load_config()
    ps = subject_pseudonym(policy_id, pseudonym_key(cfg))
    path = log_path(cfg)
    if not path.exists():
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("subject") == ps:
                out.append(entry)
    return out
