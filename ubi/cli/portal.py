"""`ubi statements`, `ubi serve`, `ubi portal invite|revoke|tokens|language` and `ubi review list|accept|reject`:
the policyholder's side of the platform (statements, portal, objections), registered by a few lines in main.py."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from pricing.monthly import month_start
from ubi.adapters import portal_store as ps
from ubi.common.config import Config, get_config
from ubi.common.errors import PortalError


def retention(cfg: Config) -> dict:
    """What the statement says about keeping data, from the configuration that does the keeping."""
    privacy = getattr(cfg, "privacy", None)
    return {"raw_h": getattr(privacy, "telemetry_retention_h", None)}


def write_statements(cfg: Config, month_text: str, out: Path | None) -> tuple[int, Path]:
    """One HTML and one JSON file per priced policy of the month, in the policy's language. Each file is written
    to a temporary name and renamed, so a failure leaves no half-written statement."""
    from ubi.portal.i18n import Lang
    from ubi.portal.statement_view import as_json, render_file

    month = month_start(month_text)
    out = out or cfg.home / "statements" / f"{month:%Y-%m}"
    con = ps.connect(cfg.db_path)
    try:
        # premiums of an erased policy stay for accounting under a token, without their trace: no statement
        rows = con.execute(
            """SELECT p.policy_id, pol.policy_id IS NOT NULL FROM premiums p LEFT JOIN policies pol USING (policy_id)
               WHERE p.month = ? ORDER BY 1""",
            [month],
        ).fetchall()
        if not rows:
            raise PortalError(f"no premiums for {month:%Y-%m}; run `ubi price --month {month:%Y-%m}` first")
        ids = [pid for pid, known in rows if known]
        erased = len(rows) - len(ids)
        out.mkdir(parents=True, exist_ok=True)
        langs: dict[str, int] = {}
        for pid in ids:
            lang = Lang(ps.language(con, pid), cfg.portal.currency, cfg.portal.time_zone)
            ex = ps.statement_facts(con, pid, month)
            for suffix, text in (
                (".html", render_file(ex, lang, retention(cfg))),
                (".json", json.dumps(as_json(ex, lang), ensure_ascii=False, indent=1)),
            ):
                path = out / f"{pid}-{month:%Y-%m}{suffix}"
                tmp = path.with_suffix(suffix + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
            langs[lang.code] = langs.get(lang.code, 0) + 1
    finally:
        con.close()
    print(
        f"wrote {len(ids)} statements for {month:%Y-%m} to {out} (HTML + JSON; "
        + ", ".join(f"{n} in {code}" for code, n in sorted(langs.items()))
        + ")"
        + (f"; {erased} premium rows of erased policies have no statement" if erased else "")
    )
    return len(ids), out


def _statements(args) -> int:
    write_statements(get_config(), args.month, args.out)
    return 0


def _serve(args) -> int:
    from dataclasses import replace

    from ubi.portal.app import serve

    cfg = get_config()
    changes = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if changes:
        cfg = replace(cfg, portal=replace(cfg.portal, **changes))
    print(f"portal on {cfg.portal.url} (DuckDB {cfg.db_path}); Ctrl-C stops it", file=sys.stderr)
    serve(cfg)
    return 0


def _portal(args) -> int:
    from ubi.portal.app import sign_in_link

    cfg = get_config()
    con = ps.connect(cfg.db_path)
    try:
        if args.action == "invite":
            inv = ps.invite(con, args.policy, args.days or cfg.portal.token_ttl_days, getpass.getuser())
            print(f"policy   {inv.policy_id}\ntoken id {inv.token_id}\nexpires  {inv.expires_at:%Y-%m-%d %H:%M} UTC")
            print(f"sign-in  {sign_in_link(cfg, inv.token)}")
            print("# the token is shown once; only its hash is stored (ubi portal revoke POLICY withdraws it)",
                  file=sys.stderr)  # fmt: skip
        elif args.action == "revoke":
            n = ps.revoke(con, args.policy, getpass.getuser(), args.token_id)
            print(f"revoked {n} token(s) of {args.policy}; their sessions are ended")
        elif args.action == "tokens":
            for tid, pid, created, expires, revoked in ps.list_tokens(con, args.policy):
                state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else f"expires {expires:%Y-%m-%d %H:%M}"
                print(f"{tid}  {pid}  created {created:%Y-%m-%d %H:%M}  {state}")
        else:  # language
            if not args.language:
                print(ps.language(con, args.policy))
            else:
                ps.set_language(con, args.policy, args.language)
                print(f"{args.policy}: statements and portal in {args.language}")
    finally:
        con.close()
    return 0


def _review(args) -> int:
    cfg = get_config()
    con = ps.connect(cfg.db_path)
    try:
        if args.action == "list":
            rows = ps.pending_reviews(con, all_=args.all)
            for rid, kind, pid, subject, detail, status, created in rows:
                print(f"{rid}  {kind:<9} {pid:<10} {subject:<18} {status:<8} {created:%Y-%m-%d %H:%M}  {detail}")
            print(f"{len(rows)} {'items' if args.all else 'pending'}", file=sys.stderr)
        else:
            if not args.id:
                raise PortalError(f"review {args.action} needs the id shown by `ubi review list`")
            kind, pid = ps.decide(con, args.id, args.action == "accept", getpass.getuser(), args.note or "")
            effect = ""
            if kind == "trip":
                effect = (
                    "; the trip stays out of pricing"
                    if args.action == "accept"
                    else "; the trip counts again from the next premium run"
                )
            print(f"{args.id} ({kind}, {pid}) {args.action}ed{effect}")
    finally:
        con.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to `ubi`."""
    s = sub.add_parser("statements", help="write each policy's monthly statement (HTML + JSON, in its language)")
    s.add_argument("--month", required=True, help="YYYY-MM")
    s.add_argument("--out", type=Path, default=None, help="folder (default .ubi/statements/YYYY-MM)")
    s.set_defaults(func=_statements)

    s = sub.add_parser("serve", help="the policyholder portal (statements, trips, premiums, objections)")
    s.add_argument("--host", default=None, help="default: portal.host (127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="default: portal.port (8765)")
    s.set_defaults(func=_serve)

    s = sub.add_parser("portal", help="sign-in links for policyholders (stored hashed, expiring, revocable)")
    s.add_argument("action", choices=["invite", "revoke", "tokens", "language"])
    s.add_argument("policy", nargs="?", default=None)
    s.add_argument("language", nargs="?", default=None, help="language: en | zh-CN")
    s.add_argument("--days", type=float, default=None, help="invite: lifetime (default portal.token_ttl_days)")
    s.add_argument("--token-id", default=None, help="revoke: only this token (default: all of the policy's)")
    s.set_defaults(func=_portal_checked)

    s = sub.add_parser("review", help="objections and review requests from policyholders: list, accept, reject")
    s.add_argument("action", choices=["list", "accept", "reject"])
    s.add_argument("id", nargs="?", default=None)
    s.add_argument("--note", default=None, help="the reviewer's note, kept with the decision")
    s.add_argument("--all", action="store_true", help="list: decided items too")
    s.set_defaults(func=_review)


def _portal_checked(args) -> int:
    if args.action != "tokens" and not args.policy:
        raise PortalError(f"portal {args.action} needs a POLICY id")
    return _portal(args)


def portal_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a portal answers at ``url`` (its sign-in page carries the sign-in form)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/signin", timeout=timeout) as r:
            return r.status == 200 and b'id="signin-submit"' in r.read()
    except OSError:
        return False


def start_portal(cfg: Config, wait_s: float = 30.0) -> str:
    """`ubi serve` in the background for the demo (its own process and session, log in .ubi/logs/serve.log), unless
    a portal already answers at the address; returns what to tell the user."""
    import socket
    import time

    from ubi.ops.processes import start_stage

    url = cfg.portal.url
    if portal_answers(url):
        return f"already running at {url} (it opens the store by path for each request, so it serves this one)"
    with socket.socket() as sock:
        if sock.connect_ex((cfg.portal.host, cfg.portal.port)) == 0:
            raise PortalError(f"port {cfg.portal.port} is taken by something that is not the portal; set portal.port")
    stage = start_stage(cfg, "serve", "--host", cfg.portal.host, "--port", str(cfg.portal.port))
    deadline = time.monotonic() + wait_s
    while not portal_answers(url):
        if stage.proc.poll() is not None or time.monotonic() > deadline:
            stage.kill()
            raise PortalError(f"the portal did not start; see {stage.log}")
        time.sleep(0.2)
    return f"running at {url} (pid {stage.proc.pid}, log {stage.log}; stop it with: kill {stage.proc.pid})"


def print_demo_portal(cfg: Config, start: bool = True) -> None:
    """The end of `ubi demo`: the month's statements written, the portal started on the demo's store, and a
    sign-in link for the policy whose premium moved most."""
    con = ps.connect(cfg.db_path)
    try:
        row = con.execute(
            """SELECT policy_id, month FROM premiums WHERE month = (SELECT max(month) FROM premiums)
               ORDER BY abs(premium - previous_premium) DESC, policy_id LIMIT 1"""
        ).fetchone()
        if row is None:
            raise PortalError("the demo priced no month, so there is no statement to show")
        inv = ps.invite(con, row[0], 7, "demo")
    finally:
        con.close()
    from ubi.portal.app import sign_in_link

    print()
    write_statements(cfg, f"{row[1]:%Y-%m}", None)
    state = start_portal(cfg) if start else f"start it with: UBI_DB={cfg.db_path} .venv/bin/ubi serve"
    print(f"\nPolicyholder portal: {cfg.portal.url}  ({state})")
    print(f"Sign in as {row[0]} (link valid 7 days): {sign_in_link(cfg, inv.token)}")
