"""The officers' web console: a Starlette app with server-rendered, auto-escaped templates.

Follow one request: :class:`SecurityHeaders` adds the strict Content-Security-Policy (scripts
and styles only from this server: no inline code, so injected markup cannot run); the route
loads the session (:func:`_session`) — server-side, revocable, cookie ``HttpOnly``,
``SameSite=Strict`` and ``Secure`` unless configured off for local HTTP —, checks the role and
the force scoping, checks the CSRF token on every POST, does its work in one store transaction
that also appends to the hash-chained audit log, and renders a template. Chat text is written by
strangers: it only ever reaches the page through Jinja2's autoescaping or ``textContent``.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from presencebot import accounts, audit, evidence
from presencebot.config import Config
from presencebot.console import queries
from presencebot.events import utcnow
from presencebot.ids import AlertId
from presencebot.store import delivery
from presencebot.store.sql import SQLStore

log = structlog.get_logger("presencebot.console")
HERE: Final = Path(__file__).resolve().parent
COOKIE: Final = "pb_session"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
TEMPLATES: Final = {
    "reminder": "A reminder from the police: never share your address, your school or where you will be "
    "with people you only know online.",
    "not_ok": "Asking children where they live, which school they go to or to meet up is not OK. "
    "Police are present in this room.",
    "help": "If anyone here makes you uncomfortable, tell an adult you trust, or send this bot a private "
    "message starting with !report.",
}
ACTIONS: Final = ("claim", "acknowledge", "note", "disposition", "snooze")
"""What ``POST /alerts/{id}/{action}`` may do; each is also an :data:`audit.ACTIONS` name."""
Say = Callable[[str, str, str], Awaitable[None]]


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response


class Console:
    """The console's state: config, store, how to speak in rooms, templates."""

    def __init__(
        self,
        config: Config,
        store: SQLStore,
        *,
        say: Say | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.say = say
        self.clock = clock
        self.secure = config.console.secure_cookies
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            enable_async=False,
        )

    # --- plumbing ------------------------------------------------------------------------------
    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("agency", self.config.agency.name)
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    async def session(self, request: Request, *, touch: bool = True) -> tuple[accounts.User, str] | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        now = self.clock()
        idle = self.config.console.idle_minutes
        return await self.store.transaction(
            lambda conn: accounts.session_user(conn, token, now=now, idle=_minutes(idle), touch=touch)
        )

    async def audit(
        self, user: str | None, action: str, obj: str | None, outcome: str, detail: str = ""
    ) -> None:
        now = self.clock()
        await self.store.transaction(
            lambda conn: audit.record(
                conn, actor=user, action=action, object=obj, outcome=outcome, detail=detail, at=now
            )
        )

    @staticmethod
    async def form(request: Request) -> dict[str, str]:
        data = await request.form()
        return {k: str(v) for k, v in data.items() if isinstance(v, str)}

    async def checked(self, request: Request, action: str) -> tuple[accounts.User, dict[str, str]] | Response:
        """A POST's user and form, after the session, the CSRF token and the role are checked.

        ``action`` is what the POST attempts, one of :data:`audit.ACTIONS`: a refusal is audited
        under the action that was refused (``audit.record`` rejects any other name, and a URL
        segment such as ``preview`` is not one), with the alert as its object.
        """
        found = await self.session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        user, csrf = found
        form = await self.form(request)
        alert_id = request.path_params.get("alert_id")
        if not accounts.csrf_ok(csrf, form.get("csrf")):  # bytes: compare_digest raises on non-ASCII str
            await self.audit(user.username, action, alert_id, "denied", "CSRF token missing or wrong")
            return self.render("error.html", 403, message="This form has expired: go back and try again.")
        if not user.can_act:
            await self.audit(user.username, action, alert_id, "denied", "read-only role")
            return self.render("error.html", 403, message="Your role can read alerts but not act on them.")
        return user, form

    # --- pages ---------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render("login.html", error=None)
        form = await self.form(request)
        # Usernames have at most 32 characters; the cap keeps a junk one out of the audit log.
        username = form.get("username", "").strip().lower()[:64]
        now = self.clock()
        try:
            user = await self.store.transaction(
                lambda conn: accounts.authenticate(
                    conn, username, form.get("password", ""), form.get("totp") or None, now=now
                )
            )
        except accounts.LoginFailed as failed:
            await self.audit(username or None, "login", username or None, "failed", failed.why)
            return self.render("login.html", 401, error=str(failed))
        token, _csrf = await self.store.transaction(
            lambda conn: accounts.create_session(
                conn, user, now=now, ttl=_hours(self.config.console.session_hours)
            )
        )
        await self.audit(user.username, "login", user.username, "ok")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=self.secure, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        checked = await self.session(request)
        token = request.cookies.get(COOKIE)
        if checked is not None and token:
            user, csrf = checked
            form = await self.form(request)
            if accounts.csrf_ok(csrf, form.get("csrf")):
                await self.store.transaction(lambda conn: accounts.revoke_session(conn, token))
                await self.audit(user.username, "logout", user.username, "ok")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _filters(self, request: Request) -> dict[str, str | None]:
        q = request.query_params
        return {
            "state": q.get("state", "open") or None,
            "network": q.get("network") or None,
            "room": q.get("room") or None,
            "category": q.get("category") or None,
            "force": q.get("force") or None,
        }

    async def queue_page(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        user, csrf = found
        filters = self._filters(request)
        now = self.clock()
        rows = await self.store.read(lambda conn: queries.queue(conn, user, now=now, **filters))  # type: ignore[arg-type]
        if any(v for k, v in filters.items() if k != "state") or filters["state"] != "open":
            await self.audit(
                user.username, "search", None, "ok", " ".join(f"{k}={v}" for k, v in filters.items() if v)
            )
        return self.render("queue.html", user=user, csrf=csrf, rows=rows, filters=filters, now=now)

    async def queue_json(self, request: Request) -> Response:
        found = await self.session(request, touch=False)  # polling is not activity
        if found is None:
            return JSONResponse({"error": "not signed in"}, status_code=401)
        user, _ = found
        filters = self._filters(request)
        now = self.clock()
        rows = await self.store.read(lambda conn: queries.queue(conn, user, now=now, **filters))  # type: ignore[arg-type]
        return JSONResponse({"now": now.isoformat(), "alerts": [r.to_json(now) for r in rows]})

    async def _viewable(
        self, request: Request, action: str
    ) -> tuple[accounts.User, str, str, queries.QueueRow] | Response:
        """For a page about one alert: the signed-in user, their CSRF token, the alert id and its
        row — or the response to send instead (sign in; or "no such alert", audited as denied,
        whether it does not exist or belongs to a force the user may not see)."""
        found = await self.session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        user, csrf = found
        alert_id = request.path_params["alert_id"]
        row = await self._visible(user, action, alert_id)
        if isinstance(row, Response):
            return row
        return user, csrf, alert_id, row

    async def _visible(
        self, user: accounts.User, action: str, alert_id: str, detail: str = ""
    ) -> queries.QueueRow | Response:
        """The alert's row, or "no such alert" (audited as denied) when it does not exist or
        belongs to a force the user may not see — the two look the same to the user."""
        row = await self.store.read(lambda conn: queries.visible(conn, user, alert_id))
        if row is None:
            await self.audit(user.username, action, alert_id, "denied", detail)
            return self.render("error.html", 404, message="No such alert.")
        return row

    async def alert_page(self, request: Request) -> Response:
        viewable = await self._viewable(request, "view_alert")
        if isinstance(viewable, Response):
            return viewable
        user, csrf, alert_id, row = viewable
        alert = await self.store.get(AlertId(alert_id))
        requester = alert.requester
        earlier = await self.store.read(
            lambda conn: queries.earlier_alerts(
                conn,
                user,
                row,
                requester.account if requester else None,
                requester.nick if requester else None,
            )
        )
        done = await self.store.read(lambda conn: queries.actions(conn, alert_id))
        trace = await self.store.read(lambda conn: delivery.traces(conn, alert_id))
        await self.audit(user.username, "view_alert", alert_id, "ok")
        return self.render(
            "alert.html",
            user=user,
            csrf=csrf,
            row=row,
            alert=alert,
            earlier=earlier,
            actions=done,
            trace=trace,
            dispositions=queries.DISPOSITIONS,
            templates=TEMPLATES,
            can_intervene=self.say is not None,
            now=self.clock(),
        )

    async def alert_action(self, request: Request) -> Response:
        kind = request.path_params["action"]
        if kind not in ACTIONS:  # before anything is audited: the name comes from the URL
            return self.render("error.html", 404, message="No such action.")
        checked = await self.checked(request, kind)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        alert_id = request.path_params["alert_id"]
        row = await self._visible(user, kind, alert_id, "not visible to this user")
        if isinstance(row, Response):
            return row
        now = self.clock()
        reason = form.get("reason", "").strip() or None
        text = form.get("text", "").strip() or None
        until = None
        if kind == "disposition":
            if text not in queries.DISPOSITIONS or not reason:
                return self.render("error.html", 400, message="A disposition needs a type and a reason.")
        elif kind == "note" and not text:
            return self.render("error.html", 400, message="An empty note was not saved.")
        elif kind == "snooze":
            if not reason:
                return self.render("error.html", 400, message="Snoozing needs a reason.")
            try:
                minutes = int(form.get("minutes", "30") or 30)
            except ValueError:  # the field is type=number, but a hand-made POST is not checked
                return self.render("error.html", 400, message="Snooze for a whole number of minutes.")
            until = queries.snooze_until(now, minutes)
        await self.store.transaction(
            lambda conn: queries.act(
                conn,
                user,
                alert_id,
                kind,
                now,
                reason=reason,
                text=text,
                until=until,
                request_id=form.get("request_id") or None,
            )
        )
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    def _signed(self, user: accounts.User, text: str) -> str:
        return f"{text} — {user.public_id}, {self.config.agency.name} ({user.force}), police, via presencebot"

    async def intervene(self, request: Request) -> Response:
        if request.path_params["step"] not in ("preview", "send"):
            return self.render("error.html", 404, message="No such step.")
        checked = await self.checked(request, "intervene")
        if isinstance(checked, Response):
            return checked
        user, form = checked
        alert_id = request.path_params["alert_id"]
        row = await self._visible(user, "intervene", alert_id, "not visible to this user")
        if isinstance(row, Response):
            return row
        text = (TEMPLATES.get(form.get("template", "")) or form.get("text", "")).strip()
        if not text:
            return self.render("error.html", 400, message="Write a message or choose a template.")
        message = self._signed(user, text[:400])
        if request.path_params["step"] == "preview":
            return self.render(
                "intervene.html",
                user=user,
                csrf=form["csrf"],
                row=row,
                message=message,
                text=text[:400],
                request_id=secrets.token_urlsafe(16),
                can_send=self.say is not None,
            )
        if self.say is None:
            return self.render(
                "error.html", 503, message="The console runs without the bot: it cannot speak in rooms."
            )
        now = self.clock()
        # Recorded before it is said, so that a double click sends once; a hand-made POST
        # without an id gets one, so that a failed send can be taken back out of the history.
        request_id = form.get("request_id") or secrets.token_urlsafe(16)
        fresh = await self.store.transaction(
            lambda conn: queries.act(
                conn, user, alert_id, "intervene", now, text=message, request_id=request_id
            )
        )
        if fresh:
            try:
                await self.say(row.network, row.room, message)
            except ConnectionError as exc:
                failed, why = self.clock(), str(exc)
                await self.store.transaction(
                    lambda conn: queries.unsent(conn, user, alert_id, request_id, why, failed)
                )
                return self.render("error.html", 503, message=f"Not sent: {why}")
        return RedirectResponse(f"/alerts/{alert_id}", status_code=303)

    async def export(self, request: Request) -> Response:
        viewable = await self._viewable(request, "export")
        if isinstance(viewable, Response):
            return viewable
        user, _csrf, alert_id, _row = viewable
        now = self.clock()
        try:
            bundle = await self.store.transaction(
                lambda conn: evidence.export(
                    conn, alert_id, exporter=f"{user.username} ({user.public_id})", at=now
                )
            )
        except evidence.EvidenceTampered as exc:
            # The export's own transaction rolled back: record the refusal in one of its own.
            await self.audit(user.username, "export", alert_id, "failed", "; ".join(exc.problems))
            return self.render(
                "error.html", 409, message="Not exported: the stored evidence no longer matches its hashes."
            )
        return Response(
            bundle,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="evidence-{alert_id}.json"'},
        )

    async def audit_page(self, request: Request) -> Response:
        found = await self.session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        user, csrf = found
        if user.role not in ("auditor", "admin"):
            await self.audit(user.username, "view_audit", None, "denied")
            return self.render("error.html", 403, message="The audit log is for auditors and administrators.")
        entries = await self.store.read(lambda conn: audit.entries(conn, limit=200))
        problems = await self.store.read(audit.verify)
        return self.render("audit.html", user=user, csrf=csrf, entries=entries, problems=problems)


def _minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def _hours(value: float) -> timedelta:
    return timedelta(hours=value)


def create_app(
    config: Config,
    store: SQLStore,
    *,
    say: Say | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    console = Console(config, store, say=say, clock=clock)
    routes = [
        Route("/login", console.login_page, methods=["GET", "POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/", console.queue_page),
        Route("/api/queue", console.queue_json),
        Route("/alerts/{alert_id}", console.alert_page),
        Route("/alerts/{alert_id}/export", console.export),
        Route("/alerts/{alert_id}/intervene/{step:str}", console.intervene, methods=["POST"]),
        Route("/alerts/{alert_id}/{action:str}", console.alert_action, methods=["POST"]),
        Route("/audit", console.audit_page),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.console = console
    return app
