"""`ubi serve`: the policyholder portal, a small server-rendered Starlette application behind uvicorn.

Why Starlette (not FastAPI): the portal is a handful of HTML pages and forms, no JSON API to describe; Starlette
is the ASGI toolkit FastAPI is built on, with routing, forms, static files and Jinja2 templates, and nothing more
to keep up to date. uvicorn is the production ASGI server both use.

Security, in the order a request meets it: every response carries a strict Content-Security-Policy (no inline
script, forms only to this site, no framing), no-referrer and no-store; a sign-in token travels in the link's
fragment, which no server or log sees, and is posted once; failed sign-ins are counted per client in DuckDB and
refused past ``portal.signin_max_failures`` in ``portal.signin_window_s``; the session cookie is random, stored
hashed, HttpOnly and SameSite=Strict, and ends with its token; every form carries the session's CSRF token (the
sign-in form a double-submit cookie); every read takes the policy from the session, never from the URL, and a
trip or month of another policy answers exactly like one that does not exist (404).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import date
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pricing.monthly import month_start
from ubi.adapters import portal_store as ps
from ubi.common.config import Config
from ubi.common.errors import PortalError, PricingError, StoreError
from ubi.portal import statement_view
from ubi.portal.i18n import Lang

COOKIE = "ubi_session"
PRE_CSRF = "ubi_signin_csrf"
STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response


def browser_language(request: Request) -> str:
    """Before sign-in there is no policy to ask: Chinese when the browser prefers it, else English."""
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "zh-CN" if first.startswith("zh") else "en"


def create_app(cfg: Config) -> Starlette:
    env = statement_view.environment()
    pc = cfg.portal
    secure = pc.url.startswith("https://")
    retention = {"raw_h": getattr(getattr(cfg, "privacy", None), "telemetry_retention_h", None)}

    def lang_for(code: str) -> Lang:
        return Lang(code, pc.currency, pc.time_zone)

    # DuckDB attaches a file once per process: requests take turns on the store (the page work is ~0.1 s), and a
    # writer in another process (ubi price, ubi review) is waited for in portal_store.open_briefly.
    store_turn = asyncio.Lock()

    async def with_store(fn: Callable[..., Any], *args: Any) -> Any:
        async with store_turn:
            return await run_in_threadpool(db, fn, *args)

    def db(fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(con, *args)`` on a connection held for this call only (see ``portal_store.open_briefly``)."""
        con = ps.open_briefly(cfg.db_path)
        try:
            return fn(con, *args)
        finally:
            con.close()

    async def on_con(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(con, *args)`` on the request's connection, off the event loop."""
        return await run_in_threadpool(fn, request.state.con, *args)

    def render(name: str, lang: Lang, status: int = 200, **ctx: Any) -> HTMLResponse:
        body = env.get_template(name).render(lang=lang, t=lang.t, retention=retention, **ctx)
        return HTMLResponse(body, status_code=status)

    def error(lang: Lang, status: int, key: str, signed_in: bool = False, csrf: str = "", **kw: Any) -> HTMLResponse:
        return render(
            "error.html", lang, status, heading=lang.t(f"{key}.title"), message=lang.t(f"{key}.message", **kw),
            signed_in=signed_in, csrf=csrf,
        )  # fmt: skip

    async def who(request: Request) -> tuple[ps.Session | None, Lang]:
        def look(con):
            s = ps.session(con, request.cookies.get(COOKIE))
            return s, ps.language(con, s.policy_id) if s else browser_language(request)

        s, code = await with_store(look)
        return s, lang_for(code)

    def signed_in_only(handler: Callable) -> Callable:
        """Session and CSRF checks, with one store connection for the whole request (``request.state.con``)."""

        async def wrapped(request: Request) -> Response:
            async with store_turn:
                return await with_connection(request)

        async def with_connection(request: Request) -> Response:
            try:
                con = await run_in_threadpool(ps.open_briefly, cfg.db_path)
            except StoreError:
                return error(lang_for(browser_language(request)), 503, "error.busy")
            try:

                def look(con):
                    s = ps.session(con, request.cookies.get(COOKIE))
                    return s, ps.language(con, s.policy_id) if s else browser_language(request)

                s, code = await run_in_threadpool(look, con)
                lang = lang_for(code)
                if s is None:
                    return RedirectResponse("/signin", status_code=303)
                if request.method == "POST":
                    form = await request.form()
                    if not ps.csrf_ok(s, form.get("csrf")):  # type: ignore[arg-type]
                        return error(lang, 403, "error.csrf", True, s.csrf)
                    request.state.form = form
                request.state.con = con
                return await handler(request, s, lang)
            finally:
                await run_in_threadpool(con.close)

        return wrapped

    def months_nav(lang: Lang, months: list[date]) -> list[dict]:
        return [{"key": f"{m:%Y-%m}", "label": lang.month(m)} for m in months]

    def parse_month(text: str) -> date | None:
        try:
            return month_start(text)
        except PricingError:
            return None

    # --- sign-in ----------------------------------------------------------------------------------------------

    async def signin_form(request: Request) -> Response:
        lang = lang_for(browser_language(request))
        pre = request.cookies.get(PRE_CSRF) or secrets.token_urlsafe(24)
        resp = render("signin.html", lang, csrf=pre, signed_in=False)
        resp.set_cookie(PRE_CSRF, pre, httponly=True, samesite="strict", secure=secure, path="/signin")
        return resp

    async def signin(request: Request) -> Response:
        lang = lang_for(browser_language(request))
        form = await request.form()
        pre = request.cookies.get(PRE_CSRF, "")
        if not pre or not hmac.compare_digest(pre, str(form.get("csrf", ""))):
            return error(lang, 403, "error.csrf")
        client = request.client.host if request.client else "unknown"
        token = str(form.get("token", ""))[:200]

        def attempt(con):
            if ps.recent_failures(con, client, pc.signin_window_s) >= pc.signin_max_failures:
                return "limited", None
            try:
                return "ok", ps.sign_in(con, token, client, pc.session_ttl_h, max(pc.signin_window_s, 3600.0))
            except PortalError as exc:
                return exc.reason, exc.when

        try:
            outcome, value = await with_store(attempt)
        except StoreError:
            return error(lang, 503, "error.busy")
        if outcome == "limited":
            minutes = max(1, round(pc.signin_window_s / 60))
            resp = render(
                "signin.html", lang, 429, csrf=pre, signed_in=False,
                error=lang.t("signin.refused.limited", minutes=lang.integer(minutes)),
            )  # fmt: skip
            resp.headers["Retry-After"] = str(int(pc.signin_window_s))
            return resp
        if outcome != "ok":
            when = lang.datetime(value) if value is not None else ""
            msg = lang.t(f"signin.refused.{outcome}", when=when)
            return render("signin.html", lang, 401, csrf=pre, signed_in=False, error=msg)
        resp = RedirectResponse("/statements", status_code=303)
        resp.set_cookie(
            COOKIE, value.cookie, httponly=True, samesite="strict", secure=secure,
            max_age=int(pc.session_ttl_h * 3600),
        )  # fmt: skip
        resp.delete_cookie(PRE_CSRF, path="/signin")
        return resp

    @signed_in_only
    async def signout(request: Request, s: ps.Session, lang: Lang) -> Response:
        await on_con(request, ps.sign_out, s.cookie)
        resp = RedirectResponse("/signin", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    async def home(request: Request) -> Response:
        s, _ = await who(request)
        return RedirectResponse("/statements" if s else "/signin", status_code=303)

    # --- statements -------------------------------------------------------------------------------------------

    @signed_in_only
    async def statements(request: Request, s: ps.Session, lang: Lang) -> Response:
        key = request.path_params.get("month")
        wanted = parse_month(key) if key else None
        if key and wanted is None:
            return error(lang, 404, "error.not_found", True, s.csrf)

        def load(con):
            months = ps.months(con, s.policy_id)
            m = wanted or (months[0] if months else None)
            if m is None or m not in months:
                return months, None
            return months, ps.statement_facts(con, s.policy_id, m)

        months, ex = await on_con(request, load)
        if key and ex is None:
            return error(lang, 404, "error.not_found", True, s.csrf)
        ctx = statement_view.context(ex, lang) if ex else None
        flash = lang.t("review.recorded") if request.query_params.get("done") == "review" else ""
        return render(
            "statements.html", lang, s=ctx, months=months_nav(lang, months),
            current=f"{ex.month:%Y-%m}" if ex else "", signed_in=True, csrf=s.csrf, flash=flash,
        )  # fmt: skip

    @signed_in_only
    async def statement_json(request: Request, s: ps.Session, lang: Lang) -> Response:
        m = parse_month(request.path_params["month"])

        def load(con):
            return ps.statement_facts(con, s.policy_id, m) if m and m in ps.months(con, s.policy_id) else None

        ex = await on_con(request, load)
        if ex is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(statement_view.as_json(ex, lang))

    @signed_in_only
    async def review(request: Request, s: ps.Session, lang: Lang) -> Response:
        m = parse_month(request.path_params["month"])
        message = str(request.state.form.get("message", ""))
        if m is None:
            return error(lang, 404, "error.not_found", True, s.csrf)
        try:
            await on_con(request, ps.request_review, s.policy_id, m, message)
        except PortalError:
            return error(lang, 404, "error.not_found", True, s.csrf)
        return RedirectResponse(f"/statements/{m:%Y-%m}?done=review", status_code=303)

    # --- trips ------------------------------------------------------------------------------------------------

    def trip_view(lang: Lang, t: dict) -> dict:
        objection = ""
        if t["objection"]:
            objection = lang.t(
                f"objection.status.{t['objection_status']}", reason=lang.t(f"objection.reason.{t['objection']}")
            )
        parts = [
            {
                "label": lang.t(f"part.{name}") if lang.t(f"part.{name}") != f"part.{name}" else name,
                "value": lang.num(float(p.get("value") or 0), 2),
                "lost": lang.num(float(p.get("points_lost") or 0), 1),
            }
            for name, p in sorted(t["score_parts"].items())
            if isinstance(p, dict)
        ]
        minutes = round(float(t["duration_s"]) / 60)
        return {
            "id": t["trip_id"],
            "day": lang.day(t["start_ts"]),
            "day_short": lang.day_short(t["start_ts"]),
            "start": lang.time(t["start_ts"]),
            "end": lang.time(t["end_ts"]),
            "km": lang.num(float(t["distance_km"]), 1),
            "duration": lang.t("unit.minutes", v=lang.integer(minutes)),
            "brakes": lang.integer(int(t["harsh_brakes"])),
            "accels": lang.integer(int(t["harsh_accels"])),
            "corners": "–" if t["harsh_corners"] is None else lang.integer(int(t["harsh_corners"])),
            "score": "–" if t["score"] is None else lang.num(float(t["score"]), 0),
            "objection": objection,
            "parts": parts,
        }

    @signed_in_only
    async def trips(request: Request, s: ps.Session, lang: Lang) -> Response:
        key = request.query_params.get("month")
        wanted = parse_month(key) if key else None

        def load(con):
            months = ps.months(con, s.policy_id)
            m = wanted or (months[0] if months else None)
            return months, m, ps.trips(con, s.policy_id, m)

        months, m, rows = await on_con(request, load)
        flash = lang.t("objection.recorded") if request.query_params.get("done") == "objection" else ""
        return render(
            "trips.html", lang, trips=[trip_view(lang, t) for t in rows], months=months_nav(lang, months),
            current=f"{m:%Y-%m}" if m else "", tz=pc.time_zone, signed_in=True, csrf=s.csrf, flash=flash,
        )  # fmt: skip

    @signed_in_only
    async def trip(request: Request, s: ps.Session, lang: Lang) -> Response:
        t = await on_con(request, ps.trip, s.policy_id, request.path_params["trip_id"])
        if t is None:
            return error(lang, 404, "error.not_found", True, s.csrf)
        reasons = [{"key": r, "label": lang.t(f"objection.reason.{r}")} for r in ps.REASONS]
        return render(
            "trip.html", lang, tr=trip_view(lang, t), reasons=reasons, tz=pc.time_zone, signed_in=True, csrf=s.csrf
        )

    @signed_in_only
    async def objection(request: Request, s: ps.Session, lang: Lang) -> Response:
        trip_id = request.path_params["trip_id"]
        reason = str(request.state.form.get("reason", ""))
        if reason not in ps.REASONS:
            return error(lang, 400, "error.reason", True, s.csrf)

        def record(con):
            if ps.trip(con, s.policy_id, trip_id) is None:
                return "missing"
            try:
                ps.object_to_trip(con, s.policy_id, trip_id, reason)
            except PortalError:
                return "exists"
            return "ok"

        outcome = await on_con(request, record)
        if outcome == "missing":
            return error(lang, 404, "error.not_found", True, s.csrf)
        if outcome == "exists":
            return error(lang, 409, "error.objection_exists", True, s.csrf)
        return RedirectResponse("/trips?done=objection", status_code=303)

    @signed_in_only
    async def language(request: Request, s: ps.Session, lang: Lang) -> Response:
        code = str(request.state.form.get("language", ""))
        if code not in ps.LANGUAGES:
            return error(lang, 400, "error.language", True, s.csrf)
        await on_con(request, ps.set_language, s.policy_id, code, f"policyholder:{s.policy_id}")
        return RedirectResponse("/statements", status_code=303)

    @signed_in_only
    async def premiums(request: Request, s: ps.Session, lang: Lang) -> Response:
        rows = await on_con(request, ps.premium_history, s.policy_id)
        view = [
            {
                "key": f"{m:%Y-%m}",
                "month": lang.month(m),
                "previous": lang.money(prev),
                "premium": lang.money(prem),
                "factor": lang.num(float(factor), 4),
                "trips": "–" if trips_n is None else lang.integer(int(trips_n)),
                "km": "–" if km is None else lang.num(float(km), 0),
                "cap": lang.t(f"cap.{cap}"),
            }
            for m, prev, prem, factor, cap, trips_n, km, _b, _a in rows
        ]
        return render("premiums.html", lang, rows=view, signed_in=True, csrf=s.csrf)

    routes = [
        Route("/", home),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/statements", statements),
        Route("/statements/{month}.json", statement_json),
        Route("/statements/{month}", statements),
        Route("/statements/{month}/review", review, methods=["POST"]),
        Route("/trips", trips),
        Route("/trips/{trip_id}", trip),
        Route("/trips/{trip_id}/objection", objection, methods=["POST"]),
        Route("/premiums", premiums),
        Route("/language", language, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


def sign_in_link(cfg: Config, token: str) -> str:
    """The link a policyholder opens: the token after '#', so it reaches only their browser."""
    return f"{cfg.portal.url}/signin#token={token}"


def serve(cfg: Config) -> None:
    import uvicorn

    con = ps.connect(cfg.db_path)  # create or upgrade the schema once, before the first request
    con.close()
    # access_log off: paths carry no secrets, but policyholders' trip ids and timings need not sit in a log
    uvicorn.run(create_app(cfg), host=cfg.portal.host, port=cfg.portal.port, access_log=False, log_level="info")
