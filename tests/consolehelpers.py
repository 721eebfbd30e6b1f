"""Helpers for the console's browser tests: the app served by uvicorn on loopback inside the test's
event loop, Debian's Chromium driven by Playwright, accounts and alerts written straight to the
store (as ``presencebot users add`` and the runtime would).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import uvicorn
from playwright.async_api import Browser, BrowserContext, Dialog, Page, async_playwright

from presencebot import accounts, audit
from presencebot.alerts import Alert, EvidenceItem, new_alert_id
from presencebot.config import Config
from presencebot.console.server import server
from presencebot.events import Author, RoomRef, utcnow
from presencebot.ids import AccountId, EventId, RoomId
from presencebot.rule import Severity
from presencebot.store.sqlite import SQLiteStore
from tests.support import free_port, require

PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
Say = Callable[[str, str, str], Awaitable[None]]


def console_config(store_path: str, **raw: Any) -> Config:
    """A config for a test console over plain HTTP on a free loopback port."""
    data: dict[str, Any] = {
        "agency": {"name": "Test Constabulary"},
        "store": {"path": store_path},
        "console": {"host": "127.0.0.1", "port": free_port(), "secure_cookies": False},
    }
    data.update(raw)
    return Config.model_validate(data)


def person(nick: str, account: str | None = None) -> Author:
    return Author(nick, AccountId(account) if account else None)


def make_alert(
    lines: Sequence[tuple[Author, str, bool]],
    *,
    room: RoomRef | None = None,
    severity: Severity = Severity.HIGH,
    category: str = "location",
    target: Author | None = None,
    requester: Author | None = None,
    explanation: str = "lily stated age 12; mark asked where they live",
    age: timedelta = timedelta(minutes=7),
) -> Alert:
    """An alert as the runtime raises it: ``lines`` are (author, text, flagged), oldest first."""
    created = utcnow() - age
    start = created - timedelta(seconds=len(lines))
    alert_id = new_alert_id()
    return Alert(
        id=alert_id,
        created_at=created,
        room=room or RoomRef("libera", RoomId("#kids")),
        rule_id="minor_whereabouts",
        rule_version="1.0",
        category=category,
        severity=severity,
        target=target or person("lily", "lily"),
        requester=requester if requester is not None else person("mark", "mark"),
        explanation=explanation,
        evidence=tuple(
            EvidenceItem(
                EventId(f"{alert_id}-{i}"), None, author, start + timedelta(seconds=i), text, flagged
            )
            for i, (author, text, flagged) in enumerate(lines)
        ),
    )


def plain_alert(**kwargs: Any) -> Alert:
    """The usual conversation: a child says her age, a stranger asks where she lives."""
    lily, mark = person("lily", "lily"), person("mark", "mark")
    return make_alert(
        [(lily, "hiii im 12", False), (mark, "lily where do u live", True), (lily, "why", False)], **kwargs
    )


@dataclass
class Console:
    """One running console: its URL, store and config, and a browser to open sessions with."""

    url: str
    store: SQLiteStore
    config: Config
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def user(
        self, username: str, *, role: str = "officer", force: str = "uk", public_id: str = "PC 4521"
    ) -> accounts.User:
        now = utcnow()
        user, _ = await self.store.transaction(
            lambda conn: accounts.add_user(
                conn,
                username=username,
                password=PASSWORD,
                public_id=public_id,
                force=force,
                role=role,
                now=now,
            )
        )
        return user

    async def raise_alert(self, alert: Alert, *, force: str | None = "uk") -> Alert:
        return await self.store.add(alert, [], force=force)

    async def page(self) -> Page:
        """A fresh browser context (its own cookies): one officer at one machine."""
        context = await self.browser.new_context(base_url=self.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("dialog", self._dialog)
        return page

    async def _dialog(self, dialog: Dialog) -> None:
        """No page of the console opens a dialog: one would mean injected script ran."""
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def sign_in(self, page: Page, username: str, password: str = PASSWORD) -> None:
        await page.goto("/login")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", password)
        await page.click("button[type=submit]")
        await page.wait_for_load_state()

    async def login(self, username: str) -> Page:
        page = await self.page()
        await self.sign_in(page, username)
        assert page.url == self.url + "/", f"login as {username} failed: {await page.content()}"
        return page

    async def audit(self, **match: str | None) -> list[audit.AuditEntry]:
        """Audit entries whose fields equal every ``match`` value."""
        entries = await self.store.read(lambda conn: audit.entries(conn, limit=None))
        return [e for e in entries if all(getattr(e, k) == v for k, v in match.items())]


@contextlib.asynccontextmanager
async def running_console(
    config: Config, store: SQLiteStore, *, say: Say | None = None
) -> AsyncIterator[Console]:
    """Serve the console the way the bot does (``presencebot.console.server.server``, embedded:
    the signals stay with the test) and launch Chromium; stop both on exit."""
    require(shutil.which("chromium") is not None, "chromium not installed (Debian package chromium)")
    await store.open()
    uvi: uvicorn.Server = server(config, store, say=say, embedded=True)
    serving = asyncio.create_task(uvi.serve())
    try:
        for _ in range(500):
            if uvi.started or serving.done():
                break
            await asyncio.sleep(0.01)
        if serving.done():
            serving.result()  # raises what stopped it (a port already taken)
        assert uvi.started, "uvicorn did not start"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            console = Console(f"http://{config.console.host}:{config.console.port}", store, config, browser)
            try:
                yield console
            finally:
                for context in console.contexts:
                    await context.close()
                await browser.close()
    finally:
        uvi.should_exit = True
        await asyncio.wait_for(serving, 10)
