"""The portal in a real headless Chromium (Debian's chromium driven through chromium-driver by Selenium), against
`ubi serve`'s app on uvicorn, started by these tests on a free local port. No Kafka: they run in `.ci/run` with the
rest. Set UBI_SAVE_SCREENSHOTS=1 to refresh the statement screenshots in docs/."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.engine import MonthFeatures, price_policy
from tests import portal_data
from ubi.adapters import duckdb_store as store
from ubi.adapters import portal_store as ps
from ubi.common.config import Config
from ubi.portal.app import create_app, sign_in_link
from ubi.portal.i18n import Lang

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
NOV = date(2026, 11, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """A priced store and the portal serving it on uvicorn in a thread of this process."""
    import uvicorn

    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.fail("chromium and chromedriver are needed: run deploy/local/install.sh (Debian chromium-driver)")
    path = tmp_path_factory.mktemp("browser") / "portal.duckdb"
    portal_data.build(path)
    port = _free_port()
    cfg = replace(Config(), db_path=path)
    cfg = replace(cfg, portal=replace(cfg.portal, port=port))
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the portal did not start")
        time.sleep(0.05)
    yield cfg
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=430,900"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "en-GB,en"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def db(cfg, fn, *args):
    con = ps.connect(cfg.db_path)
    try:
        return fn(con, *args)
    finally:
        con.close()


def text(driver, css: str) -> str:
    """The element's text once it is on the page (a form's submit navigates asynchronously)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, css))).text


def sign_in(driver, cfg, token: str) -> None:
    """Open the sign-in link as a policyholder would (token in the fragment) and press the button."""
    from selenium.webdriver.common.by import By

    driver.get(cfg.portal.url + "/signin")
    driver.delete_all_cookies()  # a fresh visitor (cookies are deleted for the page's own site)
    driver.get("about:blank")  # so the link below loads the page rather than only changing its fragment
    driver.get(sign_in_link(cfg, token))
    assert "#token" not in driver.current_url  # signin.js took it out of the address bar
    click_and_wait(driver, driver.find_element(By.ID, "signin-submit"))


def click_and_wait(driver, element) -> None:
    """Click something that loads a new page, and wait until the old one is gone. Chromedriver asked about the old
    page mid-navigation may answer "Node with given id does not belong to the document" (an unknown error, not a
    stale element: CI failed on it once); that too means the old page is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element("tag name", "html")
    element.click()

    def gone(_driver) -> bool:
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise

    WebDriverWait(driver, 15).until(gone)


def screenshot(driver, path: Path) -> None:
    """The whole page, not just the window."""
    import base64

    size = driver.execute_script("return [document.body.scrollWidth, document.body.scrollHeight]")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 430, "height": size[1], "deviceScaleFactor": 1, "mobile": True}
    )
    png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(png["data"]))


def test_statement_renders_in_both_languages_with_the_figures_in_duckdb(portal, browser, tmp_path):
    cfg = portal
    token = db(cfg, ps.invite, "P1", 1, "test").token
    sign_in(browser, cfg, token)
    assert browser.current_url.endswith("/statements")
    prem, prev, km, trips = db(cfg, lambda con: con.execute(
        "SELECT p.premium, p.previous_premium, f.km, f.trips FROM premiums p JOIN monthly_features f"
        " USING (policy_id, month) WHERE policy_id = 'P1' AND month = ?", [NOV]).fetchone())  # fmt: skip
    ex = db(cfg, ps.statement_facts, "P1", NOV)
    out = ROOT / "docs" if os.environ.get("UBI_SAVE_SCREENSHOTS") else tmp_path
    for code, title, headline in (
        ("en", "Premium statement, November 2026", "Your premium for November 2026 is {p}."),
        ("zh-CN", "2026年11月保费账单", "您2026年11月的保费为 {p}。"),
    ):
        db(cfg, ps.set_language, "P1", code)
        browser.get(cfg.portal.url + "/statements")
        lang = Lang(code)
        assert browser.find_element("css selector", "html").get_attribute("lang") == code
        assert text(browser, "#st-title") == title
        assert text(browser, "p.premium") == headline.format(p=lang.money(prem))
        body = text(browser, "article.statement")
        assert lang.money(prev) in body and lang.num(km, 0) in body
        for f in ex.factors:  # each factor's effect in money, in the table, as the facts say
            assert text(browser, f'td[data-effect="{f.feature}"]') == lang.signed_money(f.effect)
        assert browser.find_element("css selector", "svg.chart").is_displayed()
        # premium history page: every month's premium equals DuckDB's
        browser.get(cfg.portal.url + "/premiums")
        for month, premium in db(cfg, lambda con: con.execute(
                "SELECT month, premium FROM premiums WHERE policy_id = 'P1'").fetchall()):  # fmt: skip
            assert text(browser, f'tr[data-month="{month:%Y-%m}"] td[data-premium]') == lang.money(premium)
        # trip history: the month's trips, as many as DuckDB has and the km it has
        browser.get(cfg.portal.url + "/trips?month=2026-11")
        rows = browser.find_elements("css selector", "#trips tbody tr")
        assert len(rows) == trips
        shown_km = sum(Decimal(r.find_elements("css selector", "td")[2].text) for r in rows)
        assert shown_km == Decimal(str(km)).quantize(Decimal("0.1"))
        browser.get(cfg.portal.url + "/statements/2026-11")
        screenshot(browser, out / f"portal-statement-{code}.png")
    db(cfg, ps.set_language, "P1", "en")


def test_another_policy_is_unreachable_by_editing_urls_and_ids(portal, browser):
    cfg = portal
    sign_in(browser, cfg, db(cfg, ps.invite, "P1", 1, "test").token)
    for url in ("/trips/V2-202611-00", "/trips/V2-202610-01", "/statements/2027-01"):
        browser.get(cfg.portal.url + url)
        assert text(browser, "#error-message") == "There is nothing here for your policy.", url
    browser.get(cfg.portal.url + "/statements/2026-10.json?policy=P2")
    assert '"policy_id": "P1"' in browser.page_source or '"policy_id":"P1"' in browser.page_source
    # a form of P1's own trip, its action edited to P2's trip id before sending
    browser.get(cfg.portal.url + "/trips/V1-202611-03")
    browser.execute_script(
        "document.getElementById('objection-form').action = '/trips/V2-202611-00/objection';"
        "document.querySelector('input[value=passenger]').checked = true;"
    )
    click_and_wait(browser, browser.find_element("id", "objection-submit"))
    assert text(browser, "#error-message") == "There is nothing here for your policy."
    assert db(cfg, lambda con: con.execute("SELECT count(*) FROM trip_objections").fetchone()[0]) == 0


@pytest.mark.parametrize("kind", ["wrong", "expired", "revoked"])
def test_a_bad_sign_in_link_is_refused_clearly(portal, browser, kind):
    cfg = portal
    if kind == "wrong":
        token, expect = "x" * 43, "This sign-in code is not valid."
    else:
        inv = db(cfg, ps.invite, "P2", 1, "test")
        token = inv.token
        if kind == "expired":
            db(cfg, lambda con: con.execute(
                "UPDATE portal_tokens SET expires_at = ? WHERE token_id = ?", [datetime(2026, 3, 4, 5, 6), inv.token_id]
            ))  # fmt: skip
            expect = "This sign-in link expired on"
        else:
            db(cfg, ps.revoke, "P2", "test", inv.token_id)
            expect = "This sign-in link was withdrawn on"
    db(cfg, lambda con: con.execute("DELETE FROM portal_signins"))  # rate limiting is tested on its own
    sign_in(browser, cfg, token)
    assert expect in text(browser, "#signin-error")
    browser.get(cfg.portal.url + "/trips")
    assert browser.current_url.endswith("/signin")


def test_an_objection_in_the_browser_changes_the_next_premium_run_as_the_rulebook_says(portal, browser):
    from selenium.webdriver.common.by import By

    cfg = portal
    sign_in(browser, cfg, db(cfg, ps.invite, "P1", 1, "test").token)
    trip_id = "V1-202611-01"  # carries one of November's six harsh brakes
    browser.get(cfg.portal.url + "/trips?month=2026-11")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, f'tr[data-trip="{trip_id}"] a'))
    browser.find_element(By.CSS_SELECTOR, "input[value=passenger]").click()
    click_and_wait(browser, browser.find_element(By.ID, "objection-submit"))
    assert "Your objection is recorded" in text(browser, "p.notice")
    assert "waiting for review" in text(browser, f'tr[data-trip="{trip_id}"]')

    def run(con):
        before = con.execute("SELECT premium FROM premiums WHERE policy_id = 'P1' AND month = ?", [NOV]).fetchone()[0]
        store.run_month(con, portal_data.RB, NOV, actor="test")
        return before

    before = db(cfg, run)
    base, prev, after = db(cfg, lambda con: con.execute(
        "SELECT base_premium, previous_premium, premium FROM premiums WHERE policy_id = 'P1' AND month = ?", [NOV]
    ).fetchone())  # fmt: skip
    # November without that trip: 15 trips, 450 km, 5 brakes, 3 fast starts; hours as the store sums them
    hours = 15 * 1700.0 / 3600.0
    expected = price_policy(portal_data.RB, base, prev, MonthFeatures(15, 450.0, hours, 5, 3)).premium
    assert after == expected and after != before
    browser.get(cfg.portal.url + "/premiums")
    assert text(browser, 'tr[data-month="2026-11"] td[data-premium]') == Lang("en").money(after)
    browser.get(cfg.portal.url + "/statements/2026-11")
    assert "1 trip (30.0 km) you objected to is not counted" in text(browser, "article.statement")
