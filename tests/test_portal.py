"""The portal over HTTP (Starlette's test client; the same app the browser tests drive): sign-in refusals and rate
limiting, CSRF, one policy's session never reaching another's data, objections and reviews end to end."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from pricing.engine import MonthFeatures, price_policy
from tests import portal_data
from ubi.adapters import duckdb_store as store
from ubi.adapters import portal_store as ps
from ubi.common.config import Config
from ubi.common.errors import PortalError
from ubi.portal.app import create_app

NOV = date(2026, 11, 1)


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "portal.duckdb"
    portal_data.build(path)
    con = ps.connect(path)
    tokens = {pid: ps.invite(con, pid, 1, "test").token for pid in ("P1", "P2")}
    con.close()
    cfg = replace(Config(), db_path=path)
    return cfg, tokens


def with_db(cfg, fn, *args):
    con = ps.connect(cfg.db_path)
    try:
        return fn(con, *args)
    finally:
        con.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, token: str):
    form = client.get("/signin")
    return client.post("/signin", data={"csrf": csrf_of(form.text), "token": token}, follow_redirects=False)


def signed_in(cfg, token: str) -> TestClient:
    c = TestClient(create_app(cfg))
    assert sign_in(c, token).status_code == 303
    return c


def test_sign_in_refusals_say_why(env):
    cfg, tokens = env
    c = TestClient(create_app(cfg))
    r = sign_in(c, "not-a-token")
    assert r.status_code == 401 and "This sign-in code is not valid" in r.text
    assert COOKIE_NAME not in r.cookies
    # expired: the token's expiry moved into the past
    with_db(cfg, lambda con: con.execute("UPDATE portal_tokens SET expires_at = ? WHERE policy_id = 'P2'",
                                         [datetime(2026, 1, 2, 3, 4)]))  # fmt: skip
    r = sign_in(c, tokens["P2"])
    assert r.status_code == 401 and "This sign-in link expired on Jan 2, 2026" in r.text
    # revoked: and a session it opened before is ended too
    c1 = signed_in(cfg, tokens["P1"])
    assert c1.get("/trips").status_code == 200
    assert with_db(cfg, ps.revoke, "P1", "test") == 1
    assert c1.get("/trips", follow_redirects=False).headers["location"] == "/signin"
    r = sign_in(c, tokens["P1"])
    assert r.status_code == 401 and "was withdrawn on" in r.text
    # the refusal is in the sign-in page's language for a Chinese browser
    cz = TestClient(create_app(cfg), headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "此登录码无效" in sign_in(cz, "wrong").text


COOKIE_NAME = "ubi_session"


def test_sign_in_is_rate_limited_per_client(env):
    cfg, tokens = env
    c = TestClient(create_app(cfg))
    limit = cfg.portal.signin_max_failures
    for _ in range(limit):
        assert sign_in(c, "guess").status_code == 401
    r = sign_in(c, tokens["P1"])  # even the right token waits once the client is over the limit
    assert r.status_code == 429 and "Too many failed sign-in attempts" in r.text
    assert int(r.headers["retry-after"]) == int(cfg.portal.signin_window_s)
    # after the window the client may try again
    with_db(cfg, lambda con: con.execute("UPDATE portal_signins SET ts = ts - INTERVAL 1 DAY"))
    assert sign_in(c, tokens["P1"]).status_code == 303


def test_forms_without_the_csrf_token_are_refused(env):
    cfg, tokens = env
    c = TestClient(create_app(cfg))
    r = c.post("/signin", data={"csrf": "forged", "token": tokens["P1"]})
    assert r.status_code == 403
    c = signed_in(cfg, tokens["P1"])
    trip_id = "V1-202611-00"
    for data in ({"reason": "passenger"}, {"reason": "passenger", "csrf": "forged"}):
        assert c.post(f"/trips/{trip_id}/objection", data=data).status_code == 403
    assert with_db(cfg, lambda con: con.execute("SELECT count(*) FROM trip_objections").fetchone()[0]) == 0
    assert c.post("/statements/2026-11/review", data={"message": "x"}).status_code == 403


def test_a_session_sees_only_its_own_policy(env):
    cfg, tokens = env
    c = signed_in(cfg, tokens["P1"])
    page = c.get("/trips?month=2026-11&policy=P2").text
    assert "V1-202611-00" in page and "V2-" not in page
    assert c.get("/trips/V1-202611-01").status_code == 200
    for url in ("/trips/V2-202611-00", "/trips/V2-202610-03", "/statements/2026-12", "/statements/garbage"):
        r = c.get(url)
        assert r.status_code == 404 and "There is nothing here for your policy" in r.text, url
    csrf = csrf_of(c.get("/trips/V1-202611-01").text)
    r = c.post("/trips/V2-202611-00/objection", data={"csrf": csrf, "reason": "passenger"})
    assert r.status_code == 404
    assert with_db(cfg, lambda con: con.execute("SELECT count(*) FROM trip_objections").fetchone()[0]) == 0
    data = c.get("/statements/2026-10.json?policy=P2").json()
    assert data["policy_id"] == "P1"
    p1 = with_db(cfg, lambda con: con.execute(
        "SELECT premium FROM premiums WHERE policy_id = 'P1' AND month = '2026-10-01'").fetchone()[0])  # fmt: skip
    assert Decimal(data["facts"]["premium"]) == p1
    assert "P2" not in c.get("/premiums").text and "P2" not in c.get("/statements").text
    # no coordinates anywhere a policyholder can reach: no latitude/longitude words, no 4+ decimal numbers
    for url in ("/trips/V1-202611-01", "/trips?month=2026-11"):
        assert not re.search(r"latitude|longitude|\b\d{1,3}\.\d{4,}\b", c.get(url).text, re.I), url


def test_security_headers_and_cookie_flags(env):
    cfg, tokens = env
    c = TestClient(create_app(cfg))
    r = sign_in(c, tokens["P1"])
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = c.get("/statements")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    with_db(cfg, lambda con: con.execute("SELECT count(*) FROM portal_tokens WHERE token_sha256 = ?",
                                         [ps.sha(tokens["P1"])]).fetchone())  # fmt: skip
    stored = with_db(cfg, lambda con: con.execute("SELECT * FROM portal_tokens").fetchall())
    assert tokens["P1"] not in repr(stored)  # only the hash


def test_objection_leaves_pricing_until_a_reviewer_decides(env):
    cfg, tokens = env
    original = with_db(cfg, lambda con: con.execute(
        "SELECT premium FROM premiums WHERE policy_id = 'P1' AND month = ?", [NOV]).fetchone()[0])  # fmt: skip
    c = signed_in(cfg, tokens["P1"])
    trip_id = "V1-202611-00"  # carries one of November's harsh brakes
    csrf = csrf_of(c.get(f"/trips/{trip_id}").text)
    r = c.post(f"/trips/{trip_id}/objection", data={"csrf": csrf, "reason": "not_driving"}, follow_redirects=False)
    assert r.status_code == 303
    assert "waiting for review" in c.get(f"/trips/{trip_id}").text
    assert c.post(f"/trips/{trip_id}/objection", data={"csrf": csrf, "reason": "passenger"}).status_code == 409

    def reprice(con):
        store.run_month(con, portal_data.RB, NOV, actor="test")
        return con.execute(
            "SELECT p.premium, p.previous_premium, p.base_premium, f.trips, f.km, f.driving_hours, f.harsh_brakes,"
            " f.harsh_accels, p.trace FROM premiums p JOIN monthly_features f USING (policy_id, month)"
            " WHERE policy_id = 'P1' AND month = ?",
            [NOV],
        ).fetchone()

    prem, prev, base, trips, km, hours, brakes, accels, trace = with_db(cfg, reprice)
    assert (trips, km, brakes) == (15, 450.0, 5)  # 16 trips, 480 km, 6 brakes less the objected trip
    assert prem == price_policy(portal_data.RB, base, prev, MonthFeatures(trips, km, hours, brakes, accels)).premium
    assert prem != original
    assert '"excluded_trips"' in trace and trip_id in trace
    statement = c.get("/statements/2026-11").text
    assert "1 trip (30.0 km) you objected to is not counted" in statement

    pending = with_db(cfg, ps.pending_reviews)
    assert [(k, p, s) for _i, k, p, s, *_ in pending] == [("trip", "P1", trip_id)]
    assert pending[0][4] == "not_driving (trip 2026-11-02 07:30 UTC, 30.0 km, 1 harsh brakes)"  # for the reviewer
    with_db(cfg, ps.decide, pending[0][0], False, "reviewer", "telematics matches the policyholder's phone")
    prem2, _prev, _base, trips2, *_rest = with_db(cfg, reprice)
    assert (prem2, trips2) == (original, 16)  # rejected: the trip counts again, the premium is as before
    assert "not accepted; counted" in c.get(f"/trips/{trip_id}").text
    with pytest.raises(PortalError, match="already decided"):
        with_db(cfg, ps.decide, pending[0][0], True, "reviewer")
    # the audit trail: the objection, the run that left the trip out, the decision, the run that put it back
    trail = with_db(cfg, lambda con: con.execute(
        "SELECT action, detail FROM audit WHERE action IN ('trip_objection', 'price_month', 'review_rejected')"
        " AND ts >= (SELECT min(ts) FROM audit WHERE action = 'trip_objection') ORDER BY ts").fetchall())  # fmt: skip
    assert [a for a, _ in trail] == ["trip_objection", "price_month", "review_rejected", "price_month"]
    assert [json.loads(d).get("excluded_trips") for a, d in trail if a == "price_month"] == [1, 0]


def test_review_request_and_the_review_command(env, capsys, monkeypatch, tmp_path):
    from ubi.cli.main import main

    cfg, tokens = env
    c = signed_in(cfg, tokens["P1"])
    csrf = csrf_of(c.get("/statements/2026-11").text)
    r = c.post("/statements/2026-11/review", data={"csrf": csrf, "message": "Why did braking count?"})
    assert r.status_code == 200 and "A person will review this statement" in r.text
    from ubi.adapters.privacy import db_key

    key, _where = db_key(Config(), False)  # the commands get a home of their own: hand them the store's key
    if key:
        monkeypatch.setenv("UBI_DB_KEY", key)
    monkeypatch.setenv("UBI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UBI_DB", str(cfg.db_path))
    from ubi.common import config as config_mod

    config_mod.get_config.cache_clear()
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # main() points logging at this test's captured stderr: put it back after
    try:
        assert main(["review", "list"]) == 0
        out = capsys.readouterr().out
        rid = out.split()[0]
        assert "statement" in out and "Why did braking count?" in out
        assert main(["review", "accept", rid, "--note", "explained by phone"]) == 0
        assert "accepted" in capsys.readouterr().out
        assert main(["review", "accept", rid]) == 2  # a clear error, no traceback
        assert main(["portal", "invite", "NOPE"]) == 2
        assert main(["portal", "invite", "P1", "--days", "0.5"]) == 0
        out = capsys.readouterr().out
        link = re.search(r"sign-in  (\S+)", out).group(1)
        assert link.startswith(cfg.portal.url + "/signin#token=")
        token = link.split("#token=")[1]
        assert sign_in(TestClient(create_app(cfg)), token).status_code == 303
        # `ubi price` (the command, as an operator runs it) leaves an objected trip out and says so
        with_db(cfg, ps.object_to_trip, "P1", "V1-202611-05", "not_my_vehicle")
        capsys.readouterr()
        assert main(["price", "--month", "2026-11"]) == 0
        assert json.loads(capsys.readouterr().out)["excluded_trips"] == 1
        assert main(["portal", "language", "P1", "zh-CN"]) == 0
        assert main(["portal", "language", "P1", "fr"]) == 2
    finally:
        config_mod.get_config.cache_clear()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert "您2026年11月的保费为" in signed_in(cfg, token).get("/statements").text


def test_expired_session_is_signed_out(env):
    cfg, tokens = env
    c = signed_in(cfg, tokens["P1"])
    with_db(cfg, lambda con: con.execute("UPDATE portal_sessions SET expires_at = ?",
                                         [datetime.now() - timedelta(days=2)]))  # fmt: skip
    assert c.get("/statements", follow_redirects=False).headers["location"] == "/signin"


def test_the_demo_ends_with_the_portal_running_and_a_working_sign_in_link(env, capsys, tmp_path, monkeypatch):
    import os
    import signal
    import socket
    import urllib.request

    from ubi.cli.portal import print_demo_portal

    cfg, _tokens = env
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = replace(cfg, home=tmp_path / "home", portal=replace(cfg.portal, port=port))
    from ubi.adapters.privacy import db_key

    key, _where = db_key(Config(), False)  # the portal process gets its own home: hand it the store's key
    if key:
        monkeypatch.setenv("UBI_DB_KEY", key)
    print_demo_portal(cfg)
    out = capsys.readouterr().out
    pid = int(re.search(r"\(pid (\d+),", out).group(1))
    try:
        assert f"Policyholder portal: {cfg.portal.url}  (running at {cfg.portal.url}" in out
        assert "wrote 2 statements for 2026-11" in out
        assert (tmp_path / "home/statements/2026-11/P1-2026-11.html").exists()
        link = re.search(r"Sign in as (P\d) \(link valid 7 days\): (\S+)", out)
        assert link.group(1) == "P2"  # the policy whose premium moved most in November (52.35 -> 50.00)
        assert link.group(2).startswith(f"http://127.0.0.1:{port}/signin#token=")
        # the running portal (its own process) takes the link's token
        with urllib.request.urlopen(cfg.portal.url + "/signin") as r:
            assert r.status == 200
        client = TestClient(create_app(cfg))
        assert sign_in(client, link.group(2).split("#token=")[1]).status_code == 303
        assert "Policy P2" in client.get("/statements").text
        print_demo_portal(cfg)  # a second demo finds it running
        assert "already running at" in capsys.readouterr().out
    finally:
        os.kill(pid, signal.SIGTERM)


def test_while_another_process_writes_the_store_the_portal_says_busy(env):
    import subprocess
    import sys

    from ubi.common.errors import StoreError

    cfg, tokens = env
    c = signed_in(cfg, tokens["P1"])
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ubi.adapters import portal_store as ps; "
         f"con = ps.connect({str(cfg.db_path)!r}); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="busy"):
            ps.open_briefly(cfg.db_path, wait_s=0.2)
        r = c.get("/statements")
        assert r.status_code == 503 and "Please try again in a minute" in r.text
    finally:
        holder.kill()
        holder.wait()
    assert c.get("/statements").status_code == 200  # the writer gone, the portal answers again


def test_the_policyholder_chooses_the_language(env):
    cfg, tokens = env
    c = signed_in(cfg, tokens["P1"])
    csrf = csrf_of(c.get("/statements").text)
    assert c.post("/language", data={"csrf": csrf, "language": "fr"}).status_code == 400
    assert c.post("/language", data={"language": "zh-CN"}).status_code == 403  # CSRF
    r = c.post("/language", data={"csrf": csrf, "language": "zh-CN"})
    assert r.status_code == 200 and '<html lang="zh-CN">' in r.text and "保费账单" in r.text
    assert with_db(cfg, ps.language, "P1") == "zh-CN" and with_db(cfg, ps.language, "P2") == "en"


def test_concurrent_requests_all_answer(env):
    """DuckDB attaches a file once per process, so the portal's requests take turns on the store: under parallel
    requests every page still answers, none with an error."""
    import socket
    import threading
    import time
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn

    cfg, tokens = env
    cookie = sign_in(TestClient(create_app(cfg)), tokens["P1"]).cookies["ubi_session"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the portal did not start"
            time.sleep(0.05)

        def get(path: str) -> tuple[int, int]:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Cookie": f"ubi_session={cookie}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, len(r.read())

        paths = ["/statements", "/trips", "/premiums", "/statements/2026-10", "/trips/V1-202611-02"] * 4
        with ThreadPoolExecutor(len(paths)) as pool:
            results = list(pool.map(get, paths))
        assert [status for status, _ in results] == [200] * len(paths)
        by_path: dict[str, set[int]] = {}
        for path, (_status, size) in zip(paths, results, strict=True):
            by_path.setdefault(path, set()).add(size)
        assert all(len(sizes) == 1 for sizes in by_path.values())  # the same page each time
    finally:
        server.should_exit = True
        thread.join(10)
