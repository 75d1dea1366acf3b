"""`ubi privacy export|erase|consent|encrypt-db` and `ubi audit verify`: data-subject rights, consent, encryption
and the audit trail (issue 13), registered by a few lines in main.py; `sql_command` serves `ubi sql`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from ubi.common.config import get_config
from ubi.common.errors import PrivacyError


def _db(args) -> Path:
    return args.db or get_config().db_path


def sql_command(args) -> int:
    """`ubi sql`: read-only SQL, recorded in the audit log; with --actuary on the pseudonymised tables only."""
    from ubi.adapters import audit
    from ubi.adapters import duckdb_store as store

    db = _db(args)
    audit.record(getpass.getuser(), "sql", None, {"query": args.query, "actuary": args.actuary, "db": str(db)})
    if args.actuary:
        from ubi.adapters.actuary_views import actuary_connection

        con, _tables = actuary_connection(db)
    else:
        con = store.connect(db, read_only=True)
    print(con.sql(args.query))
    return 0


def _export(args) -> int:
    from ubi.adapters import audit, subject
    from ubi.adapters import duckdb_store as store
    from ubi.ops.stack import Stack

    cfg = get_config()
    con = store.connect(_db(args), read_only=True)
    try:
        enrolled = set(Stack(cfg).credentials().users())
        data = subject.export(con, args.policy, cfg, kafka=not args.no_kafka, enrolled=enrolled)
    finally:
        con.close()
    text = json.dumps(data, indent=1, sort_keys=True)
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(args.out)
    else:
        print(text)
    counts = {t: len(rows) for t, rows in data["tables"].items()}
    audit.record(getpass.getuser(), "privacy_export", args.policy, {"rows": counts, "out": str(args.out or "-")})
    print(
        f"exported {args.policy}: {sum(counts.values())} rows from {len(counts)} tables "
        f"({', '.join(f'{t} {n}' for t, n in counts.items())}), {len(data['audit_entries'])} audit entries"
        + (f" -> {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0


def _erase(args) -> int:
    from ubi.adapters import duckdb_store as store
    from ubi.adapters import subject
    from ubi.common.errors import StoreError
    from ubi.ops.stack import Stack

    cfg = get_config()
    if not args.yes:
        raise PrivacyError(f"erasing {args.policy} cannot be undone: run again with --yes")
    try:
        con = store.connect(_db(args))
    except StoreError as exc:
        raise StoreError(f"{exc}\n(the erasure writes the store: stop `ubi store` and other writers first)") from None
    try:
        revoke = None if args.keep_credentials else Stack(cfg).revoke
        r = subject.erase(con, args.policy, getpass.getuser(), cfg, kafka=not args.no_kafka, revoke=revoke)
    finally:
        con.close()
    print(f"erased {r.policy_id}")
    print("  deleted: " + (", ".join(f"{t} {n}" for t, n in r.deleted.items() if n) or "nothing left to delete"))
    print(f"  pseudonymised under {r.token}: " + (", ".join(f"{t} {n}" for t, n in r.pseudonymised.items()) or "-"))
    print(f"  kafka: {r.kafka}")
    print(f"  credentials: {r.credentials}")
    print("what remains, and why:")
    for line in r.remains:
        print(f"  - {line}")
    return 0 if not r.kafka.startswith("NOT") else 1


def _consent(args) -> int:
    from pricing.consent import PURPOSES
    from ubi.adapters import audit, consent
    from ubi.adapters import duckdb_store as store

    changes = {}
    for item in args.set:
        purpose, _, value = item.partition("=")
        if purpose not in PURPOSES or value not in ("yes", "no"):
            raise PrivacyError(f"{item!r}: expected PURPOSE=yes|no with PURPOSE one of {', '.join(PURPOSES)}")
        changes[purpose] = value == "yes"
    con = store.connect(_db(args), read_only=not changes)
    try:
        if changes:
            consent.set_consents(con, args.policy, changes)
            audit.record(getpass.getuser(), "consent_change", args.policy, {"changes": changes})
        current = consent.consents_of(con, args.policy)
    finally:
        con.close()
    for purpose in PURPOSES:
        print(f"{purpose:<16} {'yes' if current[purpose] else 'no'}")
    return 0


def _encrypt_db(args) -> int:
    from ubi.adapters import duckdb_store as store
    from ubi.adapters.privacy import file_is_encrypted

    db = _db(args)
    before = file_is_encrypted(db)
    store.connect(db).close()  # the first writer encrypts an unencrypted file in place
    print(f"{db}: {'already encrypted' if before else 'encrypted' if before is False else 'created, encrypted'}")
    return 0


def _rekey_db(args) -> int:
    from ubi.adapters import audit
    from ubi.adapters.privacy import rekey_database

    db = _db(args)
    key_file = rekey_database(db)
    audit.record(getpass.getuser(), "rekey_db", None, {"db": str(db), "key_file": str(key_file)})
    print(f"{db}: re-encrypted under a new key in {key_file}")
    return 0


def _audit(args) -> int:
    from ubi.adapters import audit

    v = audit.verify(get_config(), args.expect_head)
    for p in v.problems:
        print(p)
    print(f"{'ok' if v.ok else 'TAMPERED'}: {v.entries} entries; head {v.head_seq}:{v.head_hash}")
    return 0 if v.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("privacy", help="data-subject export and erasure, consent, DuckDB encryption")
    ps = s.add_subparsers(dest="privacy_action", required=True, metavar="ACTION")
    e = ps.add_parser("export", help="everything held on a policyholder, as JSON")
    e.add_argument("policy")
    e.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    e.add_argument("--no-kafka", action="store_true", help="leave out the scorer's state record in Kafka")
    e.add_argument("--db", type=Path, default=None)
    e.set_defaults(func=_export)
    e = ps.add_parser("erase", help="remove or pseudonymise a policyholder's data everywhere the project controls")
    e.add_argument("policy")
    e.add_argument("--yes", action="store_true", help="confirm: an erasure cannot be undone")
    e.add_argument("--no-kafka", action="store_true", help="skip the Kafka state tombstone (say so in the summary)")
    e.add_argument("--keep-credentials", action="store_true", help="do not revoke the vehicle's MQTT credential")
    e.add_argument("--db", type=Path, default=None)
    e.set_defaults(func=_erase)
    e = ps.add_parser("consent", help="show or set what a policyholder agreed to (PURPOSE=yes|no ...)")
    e.add_argument("policy")
    e.add_argument("set", nargs="*", metavar="PURPOSE=yes|no")
    e.add_argument("--db", type=Path, default=None)
    e.set_defaults(func=_consent)
    e = ps.add_parser("encrypt-db", help="encrypt an existing unencrypted DuckDB file in place")
    e.add_argument("--db", type=Path, default=None)
    e.set_defaults(func=_encrypt_db)
    e = ps.add_parser("rekey-db", help="re-encrypt the DuckDB file under a fresh key (stop every writer first)")
    e.add_argument("--db", type=Path, default=None)
    e.set_defaults(func=_rekey_db)

    s = sub.add_parser("audit", help="check the hash-chained audit log")
    s.add_argument("action", choices=["verify"])
    s.add_argument("--expect-head", default=None, metavar="SEQ:HASH", help="a head printed by an earlier verify")
    s.set_defaults(func=_audit)
