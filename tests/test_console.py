"""The officers' web console in a real browser: Debian's Chromium driven by Playwright against the
app served by uvicorn on loopback, with a real store, a real ngircd for interventions, and the
audit log checked after each story.

What a person would see is what is asserted: rows appearing in the queue without a reload, the
flagged message highlighted, hostile chat text shown as inert text, and the refusals (CSRF, role,
force, lockout) both on the page and in the hash-chained audit log.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import Page, Response

from presencebot import accounts, audit, evidence
from presencebot.adapters.irc import IrcAdapter, IrcSettings
from presencebot.alerts import AlertState
from presencebot.console.app import TEMPLATES
from presencebot.events import RoomRef
from presencebot.ids import RoomId
from presencebot.rule import Severity
from presencebot.rules.minor_whereabouts import RULE as WHEREABOUTS
from presencebot.runtime import RoomState, Runtime
from presencebot.store.sqlite import SQLiteStore
from tests.consolehelpers import (
    PASSWORD,
    Console,
    console_config,
    make_alert,
    person,
    plain_alert,
    running_console,
)
from tests.support import require, until

if TYPE_CHECKING:
    from tests.ircservers import NgircdServer, RawClientFactory

pytest_plugins = ["tests.ircservers"]
GENERIC = "wrong username, password or code"
POLL = 6_000  # ms: the queue polls every 2 s
Form = dict[str, str | float | bool]  # what Playwright's request.post(form=...) takes


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    """A console with its own store; it "speaks" into a list (the IRC test uses a real bot)."""
    config = console_config(str(tmp_path / "console.db"))
    store = SQLiteStore(config.store.path)
    said: list[tuple[str, str, str]] = []

    async def say(network: str, room: str, line: str) -> None:
        if room == "#gone":  # as Runtime.say answers for a room the bot is not in
            raise ConnectionError(f"the bot is not in {room} on {network}")
        said.append((network, room, line))

    try:
        async with running_console(config, store, say=say) as running:
            yield running
            assert running.dialogs == [], "a page opened a dialog: injected script ran"
            assert await store.read(audit.verify) == []
    finally:
        await store.close()


def assert_strict_headers(response: Response | None) -> None:
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


async def csrf_of(page: Page) -> str:
    """The session's CSRF token, as every signed-in page carries it (the sign-out form)."""
    return await page.locator("form[action='/logout'] input[name=csrf]").input_value()


async def error_text(page: Page) -> str:
    return (await page.locator(".error").inner_text()).strip()


async def test_an_officer_sees_a_live_alert_acknowledges_it_and_disposes_of_it(
    console: Console, tmp_path: Path
) -> None:
    await console.user("alice", public_id="PC 4521")
    page = await console.page()
    assert_strict_headers(await page.goto("/login"))
    async with page.expect_response(lambda r: r.request.method == "POST") as posted:
        await console.sign_in(page, "alice")
    set_cookie = (await (await posted.value).all_headers())["set-cookie"]
    assert "pb_session=" in set_cookie and "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert page.url == console.url + "/"
    assert await page.locator("#queue tbody tr.empty").inner_text() == "No alerts."

    # A new alert appears while the page is open, without a reload.
    await page.evaluate("window.__sameDocument = true")
    alert = await console.raise_alert(plain_alert(severity=Severity.CRITICAL))
    row = page.locator(f'#queue tr[data-id="{alert.id}"]')
    await row.wait_for(timeout=POLL)
    assert await page.evaluate("window.__sameDocument") is True
    cells = await row.locator("td").all_inner_texts()
    assert cells == [
        "critical", alert.id, "7 min", "libera/#kids", "location", "lily (lily)", "mark (mark)", "—", "open",
    ]  # fmt: skip
    assert await page.locator("#updated").inner_text() != ""

    async with page.expect_navigation():
        await row.locator("a").click()
    assert page.url == f"{console.url}/alerts/{alert.id}"
    assert await page.locator("p.explanation").inner_text() == alert.explanation
    flagged = page.locator("ol.evidence li.flagged")
    assert await flagged.count() == 1
    assert "<mark> lily where do u live" in await flagged.inner_text()
    assert await flagged.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 243, 196)"
    assert await page.locator("ol.evidence li").count() == 3

    async with page.expect_navigation():
        await page.click("#ack")
    facts = await page.locator("dl.facts").inner_text()
    assert "acknowledged by alice (PC 4521, uk)" in facts
    await page.select_option("#disposition", "referred")
    await page.fill("#disposition-reason", "passed to the child protection team, ref 77")
    async with page.expect_navigation():
        await page.click("#dispose")
    history = await page.locator("ul.history").inner_text()
    assert "acknowledge" in history
    assert "disposition: referred — passed to the child protection team, ref 77" in history
    stored = await console.store.get(alert.id)
    assert stored.state is AlertState.ACKNOWLEDGED
    disposition = await console.store.read(
        lambda conn: conn.execute("SELECT disposition FROM alerts WHERE id = ?", (alert.id,)).fetchone()
    )
    assert disposition == ("referred",)

    # The evidence export is a bundle that verifies, and the export is audited.
    async with page.expect_download() as downloading:
        await page.click("a[href$='/export']")
    bundle = tmp_path / "bundle.json"
    await (await downloading.value).save_as(bundle)
    assert evidence.verify_bundle(bundle.read_bytes()) == []

    actions = [(e.actor, e.action, e.outcome) for e in await console.audit(object=alert.id)]
    assert actions == [
        ("alice", "view_alert", "ok"),
        ("alice", "acknowledge", "ok"),
        ("alice", "view_alert", "ok"),
        ("alice", "disposition", "ok"),
        ("alice", "view_alert", "ok"),
        ("alice (PC 4521)", "export", "ok"),
    ]
    # Disposed of: it left the open queue.
    await page.goto("/")
    assert await page.locator(f'#queue tr[data-id="{alert.id}"]').count() == 0

    # Her account is disabled (she left, or it was compromised): the open queue page does not
    # go on looking live, it returns to the sign-in page at the next poll.
    await console.store.transaction(lambda conn: accounts.disable_user(conn, "alice"))
    await page.wait_for_url(f"{console.url}/login", timeout=POLL)


async def test_an_officer_speaks_openly_in_the_room_signed_and_only_once(
    request: pytest.FixtureRequest, raw_client_factory: RawClientFactory, tmp_path: Path
) -> None:
    require(shutil.which("ngircd") is not None, "ngircd not installed (Debian package ngircd)")
    server: NgircdServer = request.getfixturevalue("ngircd")
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    await watcher.join("#kids")
    irc = {"host": "127.0.0.1", "port": server.port, "tls": False, "flood_burst": 50, "flood_rate": 50.0}
    network = {"name": "irc", "adapter": "irc", "settings": irc, "rooms": [{"id": "#kids"}]}
    config = console_config(str(tmp_path / "bot.db"), networks=[network])
    store = SQLiteStore(config.store.path)
    runtime = Runtime(
        config, store, adapters={"irc": (IrcAdapter, IrcSettings.model_validate(irc))}, rules=[WHEREABOUTS]
    )
    task = asyncio.create_task(runtime.run())
    try:
        rooms = runtime.networks["irc"].rooms
        await until(lambda: all(r.state is RoomState.ACTIVE for r in rooms.values()), 15)
        async with running_console(config, store, say=runtime.say) as console:
            await console.user("pc4521", public_id="PC 4521", force="uk")
            alert = await console.raise_alert(plain_alert(room=RoomRef("irc", RoomId("#kids"))))
            page = await console.login("pc4521")
            await page.goto(f"/alerts/{alert.id}")
            await page.select_option("#template", "not_ok")
            async with page.expect_navigation():
                await page.click("#preview")
            signed = f"{TEMPLATES['not_ok']} — PC 4521, Test Constabulary (uk), police, via presencebot"
            assert await page.locator("#preview-text").inner_text() == signed
            await watcher.expect_none("Asking children", within=0.3)  # a preview says nothing
            form = page.locator("form[action$='/intervene/send']")
            fields: Form = {
                name: await form.locator(f"input[name={name}]").input_value()
                for name in ("csrf", "text", "request_id")
            }

            sends: list[str] = []
            page.on("request", lambda r: sends.append(r.url) if r.method == "POST" else None)
            async with page.expect_navigation():
                await page.dblclick("#send")
            line = await watcher.expect(r"PRIVMSG #kids :Asking children", timeout=10)
            assert line.startswith(":PolicePresence!") and line.endswith(f":{signed}")
            # The same form again (a double submit that got past the disabled button, a
            # reload of the POST): the request id makes it a no-op.
            again = await page.request.post(f"/alerts/{alert.id}/intervene/send", form=fields)
            assert again.ok
            await watcher.expect_none("Asking children", within=1.0)

            assert page.url == f"{console.url}/alerts/{alert.id}"
            assert sends == [f"{console.url}/alerts/{alert.id}/intervene/send"]  # the button disabled itself
            history = await page.locator("ul.history").inner_text()
            assert f"pc4521 (PC 4521, uk) · intervene: {signed}" in history
            kinds = await store.read(
                lambda conn: conn.execute(
                    "SELECT kind, text FROM alert_actions WHERE alert_id = ?", (alert.id,)
                ).fetchall()
            )
            assert kinds == [("intervene", signed)]
            assert [e.outcome for e in await console.audit(object=alert.id, action="intervene")] == ["ok"]
            assert console.dialogs == []
    finally:
        runtime.stop()
        await asyncio.wait_for(task, 15)


async def test_an_intervention_the_bot_cannot_say_is_not_recorded_as_said(console: Console) -> None:
    await console.user("alice")
    alert = await console.raise_alert(plain_alert(room=RoomRef("libera", RoomId("#gone"))))
    page = await console.login("alice")
    await page.goto(f"/alerts/{alert.id}")
    await page.fill("#intervene-text", "Police are present in this room.")
    async with page.expect_navigation():
        await page.click("#preview")
    async with page.expect_navigation():
        await page.click("#send")
    assert await error_text(page) == "Not sent: the bot is not in #gone on libera"
    await page.goto(f"/alerts/{alert.id}")
    assert await page.locator("ul.history").inner_text() == "Nothing yet."
    outcomes = [(e.outcome, e.detail) for e in await console.audit(object=alert.id, action="intervene")]
    assert outcomes[1] == ("failed", "the bot is not in #gone on libera") and len(outcomes) == 2


HOSTILE = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    '<a href="javascript:alert(1)">javascript:alert(1)</a> click for free robux',
)


async def test_hostile_chat_text_is_shown_as_inert_text(console: Console) -> None:
    await console.user("alice")
    page = await console.login("alice")
    scripts = await page.locator("script").count()  # the console's own script only
    assert scripts == 1

    # Through the live queue: the nick is markup too.
    nick = '<img src=x onerror="window.__pwned=3">'
    mark = person(nick, "<b>acct</b>")
    lines = [(person("lily"), "im 12", False), *((mark, text, True) for text in HOSTILE)]
    alert = await console.raise_alert(
        make_alert(lines, requester=mark, explanation=f"{nick} asked <i>lily</i> where she lives")
    )
    row = page.locator(f'#queue tr[data-id="{alert.id}"]')
    await row.wait_for(timeout=POLL)
    assert await row.locator("td").nth(6).inner_text() == f"{nick} (<b>acct</b>)"
    assert await page.locator("#queue img, #queue b").count() == 0
    assert await page.evaluate("typeof window.__pwned") == "undefined"

    await page.goto(f"/alerts/{alert.id}")
    texts = await page.locator("ol.evidence li .text").all_inner_texts()
    assert texts == ["im 12", *HOSTILE]
    for text in HOSTILE:
        assert await page.get_by_text(text, exact=True).is_visible()
    assert await page.locator("p.explanation").inner_text() == f"{nick} asked <i>lily</i> where she lives"
    assert await page.locator("script").count() == scripts
    assert await page.locator("img").count() == 0
    assert await page.locator("main i, main b").count() == 0
    assert await page.locator("a[href^='javascript' i]").count() == 0
    assert await page.evaluate("typeof window.__pwned") == "undefined"


async def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    await console.user("alice")
    alert = await console.raise_alert(plain_alert())
    page = await console.login("alice")
    url = f"/alerts/{alert.id}/claim"
    forms: list[Form] = [{}, {"csrf": "forged"}, {"csrf": "é" + (await csrf_of(page))[1:]}]
    for form in forms:
        refused = await page.request.post(url, form=form, max_redirects=0)
        assert refused.status == 403, form
        assert "This form has expired" in await refused.text()
    assert await console.store.read(
        lambda conn: conn.execute("SELECT claimed_by FROM alerts WHERE id = ?", (alert.id,)).fetchone()
    ) == (None,)
    denied = await console.audit(actor="alice", action="claim", object=alert.id, outcome="denied")
    assert len(denied) == 3 and all("CSRF" in e.detail for e in denied)

    # The same POST with the page's token works: the session and the cookie were fine.
    done = await page.request.post(url, form={"csrf": await csrf_of(page)}, max_redirects=0)
    assert done.status == 303
    await page.goto(f"/alerts/{alert.id}")
    assert "alice (PC 4521, uk)" in await page.locator("dl.facts").inner_text()


async def test_five_bad_passwords_lock_the_account_with_a_generic_message(console: Console) -> None:
    await console.user("bob")
    page = await console.page()
    for _ in range(5):
        await console.sign_in(page, "bob", "not the password at all")
        assert page.url == console.url + "/login"
        assert await error_text(page) == GENERIC
    await console.sign_in(page, "bob", PASSWORD)
    assert page.url == console.url + "/login"
    assert await error_text(page) == GENERIC
    await console.sign_in(page, "nobody-here", PASSWORD)
    assert await error_text(page) == GENERIC
    assert await page.context.cookies() == []
    assert (await page.goto("/")) is not None and page.url == console.url + "/login"
    failures = [e.detail for e in await console.audit(actor="bob", action="login")]
    assert failures == ["bad_password"] * 5 + ["locked"]


async def test_an_auditor_reads_but_cannot_act(console: Console) -> None:
    await console.user("audrey", role="auditor", force="uk", public_id="Auditor 7")
    elsewhere = await console.raise_alert(plain_alert(), force="au")
    page = await console.login("audrey")
    await page.locator(f'#queue tr[data-id="{elsewhere.id}"]').wait_for()  # auditors see every force
    response = await page.goto(f"/alerts/{elsewhere.id}")
    assert response is not None and response.status == 200
    assert await page.locator("ol.evidence li.flagged").count() == 1
    assert await page.locator("main button, main form").count() == 0
    assert await page.locator("#ack, #dispose, #preview").count() == 0

    csrf = await csrf_of(page)
    for path in ("claim", "disposition", "intervene/preview"):
        form: Form = {"csrf": csrf, "text": "false_positive", "reason": "because", "template": "reminder"}
        crafted = await page.request.post(f"/alerts/{elsewhere.id}/{path}", form=form, max_redirects=0)
        assert crafted.status == 403, path
        assert "can read alerts but not act on them" in await crafted.text()
    denied = await console.audit(actor="audrey", object=elsewhere.id, outcome="denied")
    assert [(e.action, e.detail) for e in denied] == [
        ("claim", "read-only role"),
        ("disposition", "read-only role"),
        ("intervene", "read-only role"),
    ]
    stored = await console.store.get(elsewhere.id)
    assert stored.state is AlertState.OPEN
    assert await console.store.read(
        lambda conn: conn.execute("SELECT COUNT(*) FROM alert_actions").fetchone()
    ) == (0,)

    await page.goto("/audit")
    assert await page.locator("p.ok").inner_text() == "The hash chain verifies."
    assert await page.locator("table tbody tr").count() >= 5

    # Signing out ends the session on the server, not only in this browser.
    (cookie,) = await page.context.cookies()
    async with page.expect_navigation():
        await page.click("header button")
    assert page.url == console.url + "/login" and await page.context.cookies() == []
    await page.context.add_cookies([{"name": cookie["name"], "value": cookie["value"], "url": console.url}])
    assert (await page.request.get("/api/queue")).status == 401
    assert [e.outcome for e in await console.audit(actor="audrey", action="logout")] == ["ok"]


async def test_an_officer_cannot_see_another_forces_alert(console: Console) -> None:
    await console.user("olly", force="uk")
    ours = await console.raise_alert(plain_alert(), force="uk")
    shared = await console.raise_alert(plain_alert(severity=Severity.MEDIUM), force=None)
    theirs = await console.raise_alert(plain_alert(severity=Severity.CRITICAL), force="au")
    page = await console.login("olly")
    ids = await page.locator("#queue tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == [ours.id, shared.id]
    listed = await (await page.request.get("/api/queue")).json()
    assert [a["id"] for a in listed["alerts"]] == [ours.id, shared.id]
    assert (await (await page.request.get("/api/queue?force=au")).json())["alerts"] == []

    response = await page.goto(f"/alerts/{theirs.id}")
    assert response is not None and response.status == 404
    assert await error_text(page) == "No such alert."
    missing = await page.goto("/alerts/no-such-alert")
    assert missing is not None and missing.status == 404 and await error_text(page) == "No such alert."
    exported = await page.request.get(f"/alerts/{theirs.id}/export")
    assert exported.status == 404
    await page.goto("/")
    claimed = await page.request.post(
        f"/alerts/{theirs.id}/claim", form={"csrf": await csrf_of(page)}, max_redirects=0
    )
    assert claimed.status == 404
    denied = await console.audit(actor="olly", object=theirs.id)
    assert [(e.action, e.outcome) for e in denied] == [
        ("view_alert", "denied"),
        ("export", "denied"),
        ("claim", "denied"),
    ]
    assert await console.store.read(
        lambda conn: conn.execute("SELECT claimed_by FROM alerts WHERE id = ?", (theirs.id,)).fetchone()
    ) == (None,)


async def test_screenshots_of_the_queue_and_of_an_alert_page(console: Console, tmp_path: Path) -> None:
    await console.user("alice", public_id="PC 4521")
    await console.user("sarge", role="supervisor", public_id="Sgt 118")
    lily, sam, mark, dave = person("lily", "lily"), person("sam"), person("mark", "mark"), person("dave99")
    first = await console.raise_alert(
        make_alert(
            [
                (lily, "hiii im 12 and bored", False),
                (mark, "lily what school do u go to", False),
                (lily, "why?", False),
                (mark, "lily where do u live? i could meet u after school", True),
            ],
            severity=Severity.CRITICAL,
            category="meetup",
            explanation="lily stated age 12; mark asked to meet her ('meet u after school')",
            age=timedelta(minutes=12),
        )
    )
    second = await console.raise_alert(
        make_alert(
            [(sam, "i'm 11", False), (dave, "sam what school", True)],
            target=sam,
            requester=dave,
            category="school",
            explanation="sam stated age 11; dave99 asked which school they go to",
            age=timedelta(minutes=3),
        )
    )
    later = await console.raise_alert(plain_alert(severity=Severity.CRITICAL), force=None)
    supervisor = await console.login("sarge")
    await supervisor.goto(f"/alerts/{first.id}")
    async with supervisor.expect_navigation():
        await supervisor.locator("form[action$='/claim'] button").click()
    await supervisor.goto(f"/alerts/{later.id}")
    snooze = supervisor.locator("form[action$='/snooze']")
    await snooze.locator("input[name=minutes]").fill("45")
    await snooze.locator("input[name=reason]").fill("waiting for the platform to confirm the account")
    async with supervisor.expect_navigation():
        await snooze.locator("button").click()
    assert "Snoozed until" in await supervisor.locator("dl.facts").inner_text()

    page = await console.login("alice")
    rows = page.locator("#queue tbody tr")
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == [first.id, second.id, later.id]
    assert "snoozed until" in await rows.nth(2).inner_text()  # still listed, last
    await page.locator("#updated").filter(has_text="updated").wait_for(timeout=POLL)  # the live view
    assert "snoozed until" in await rows.nth(2).inner_text()
    queue = tmp_path / "console-queue.png"
    await page.screenshot(path=queue, full_page=True)
    await page.goto(f"/alerts/{first.id}")
    await page.fill("form[action$='/note'] input[name=text]", "called the school liaison officer")
    async with page.expect_navigation():
        await page.locator("form[action$='/note'] button").click()
    alert_page = tmp_path / "console-alert.png"
    await page.screenshot(path=alert_page, full_page=True)
    for shot in (queue, alert_page):
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, shot
