"""Alert delivery end to end: the officers' room on a real IRC server (ngircd) with ``!ack``,
grouping of repeated requests, and a SIGKILL of the bot in the middle of a webhook delivery.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from presencebot.adapters.irc import IrcAdapter, IrcSettings
from presencebot.alerts import AlertState
from presencebot.config import Config
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, RoomId
from presencebot.rules.minor_whereabouts import RULE as WHEREABOUTS
from presencebot.runtime import RoomState, Runtime
from presencebot.sinks.webhook import verify
from presencebot.store import delivery as outbox
from presencebot.store.sqlite import SQLiteStore
from tests.support import REPO, RuntimeHarness, ScriptedAdapter, announced, make_config, require, until

if TYPE_CHECKING:
    from tests.ircservers import NgircdServer, RawClientFactory

pytest_plugins = ["tests.ircservers"]
SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"


async def test_the_officers_room_on_irc_gets_the_notice_and_ack_stops_escalation(
    request: pytest.FixtureRequest, raw_client_factory: RawClientFactory, tmp_path: Path
) -> None:
    require(shutil.which("ngircd") is not None, "ngircd not installed (Debian package ngircd)")
    server: NgircdServer = request.getfixturevalue("ngircd")
    officer = await raw_client_factory(server.host, server.port, "sgt_smith")
    await officer.join("#officers")
    officer.send("MODE #officers +k s3cret")
    lily = await raw_client_factory(server.host, server.port, "lily")
    mark = await raw_client_factory(server.host, server.port, "mark")
    await lily.join("#kids")
    await mark.join("#kids")
    irc = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": False,
        "flood_burst": 50,
        "flood_rate": 50.0,
        "room_keys": {"#officers": "s3cret"},
    }
    raw = {
        "networks": [
            {
                "name": "irc",
                "adapter": "irc",
                "settings": irc,
                "rooms": [{"id": "#kids"}, {"id": "#officers", "rules": []}],
            }
        ],
        "notify": [
            {"name": "officers-room", "sink": "room", "settings": {"network": "irc", "room": "#officers"}}
        ],
        "escalation": {"steps": [{"after_minutes": 10, "notify": "on_duty"}]},
        "store": {"path": str(tmp_path / "bot.db")},
    }
    config = Config.model_validate(raw)
    store = SQLiteStore(config.store.path)
    runtime = Runtime(
        config, store, adapters={"irc": (IrcAdapter, IrcSettings.model_validate(irc))}, rules=[WHEREABOUTS]
    )
    task = asyncio.create_task(runtime.run())
    try:
        rooms = runtime.networks["irc"].rooms
        await until(lambda: all(r.state is RoomState.ACTIVE for r in rooms.values()), 15)
        lily.privmsg("#kids", "hiii im 12")
        await asyncio.sleep(0.2)
        mark.privmsg("#kids", "lily where do u live")
        line = await officer.expect(r"PRIVMSG #officers :\[ALERT\] ", timeout=10)
        (alert,) = await store.list()
        assert alert.id in line and "irc/#kids" in line
        facts = await officer.expect(rf"PRIVMSG #officers :.*!ack {alert.id}", timeout=10)
        assert facts
        seen = "\n".join(officer.lines)
        notice = seen.split(":[ALERT]")[1]
        # The explanation quotes the matched words; the chat lines themselves stay in the store.
        assert "lily where do u live" not in notice and "hiii im 12" not in notice
        officer.privmsg("#officers", f"!ack {alert.id}")
        await officer.expect(rf"alert {alert.id} acknowledged by sgt_smith", timeout=10)
        stored = await store.get(alert.id)
        assert stored.state is AlertState.ACKNOWLEDGED and "sgt_smith" in (stored.acknowledged_by or "")
        trace = [line for _, line in await store.read(lambda conn: outbox.traces(conn, alert.id))]
        assert "alert notice delivered to officers-room (attempt 1)" in trace
        assert trace[-1].startswith("acknowledged by sgt_smith")
        # "!ack" outside the officers' room is ignored.
        mark.privmsg("#kids", f"!ack {alert.id}")
        await mark.expect_none(r"acknowledged", within=0.5)
    finally:
        runtime.stop()
        await asyncio.wait_for(task, 15)


async def test_the_same_request_again_updates_one_alert_and_pages_once(
    start_runtime: Any, scripted: type[ScriptedAdapter], tmp_path: Path
) -> None:
    config = make_config(
        notify=[{"name": "room", "sink": "room", "settings": {"network": "net", "room": "#kids"}}]
    )
    h: RuntimeHarness = start_runtime(
        config, {"net": scripted}, [WHEREABOUTS], SQLiteStore(tmp_path / "g.db")
    )
    adapter = await announced(scripted)
    kids = RoomRef("net", RoomId("#kids"))

    def say(nick: str, text: str) -> Message:
        return Message(kids, Author(nick, AccountId(nick)), text)

    await adapter.inbox.put(say("lily", "im 12"))
    await adapter.inbox.put(say("mark", "lily where do u live"))
    await adapter.inbox.put(say("mark", "lily where do u live??"))
    await adapter.inbox.put(say("mark", "lily what school do u go to"))  # another category: new
    await until(lambda: h.runtime.pipeline.stats["minor_whereabouts"].calls == 4)
    await asyncio.sleep(0.2)
    alerts = sorted(await h.store.list(), key=lambda a: a.created_at)
    assert [a.category for a in alerts] == ["location", "school"]
    first = alerts[0]
    assert sum(e.flagged for e in first.evidence) == 2  # both requests are evidence
    trace = [line for _, line in await h.store.read(lambda conn: outbox.traces(conn, first.id))]
    assert any(line.startswith("grouped: the same request again") for line in trace)
    rows = await h.store.read(lambda conn: outbox.rows(conn, alert_id=first.id))
    assert len(rows) == 1  # paged once


@dataclass
class StallingReceiver:
    """Stalls its first request (the bot is killed meanwhile), then accepts; dedupes by id."""

    stall: bool = True
    attempts: list[str] = field(default_factory=list)
    accepted: dict[str, Any] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(SECRET, request.headers, body)
        webhook_id = request.headers["webhook-id"]
        self.attempts.append(webhook_id)
        if self.stall:
            self.stall = False
            await asyncio.sleep(30)
        self.accepted.setdefault(webhook_id, json.loads(body))  # exactly once, whatever the retries
        return web.Response(status=204)


@pytest.fixture
async def stalling_receiver() -> AsyncIterator[tuple[StallingReceiver, str]]:
    receiver = StallingReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield receiver, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


async def test_sigkill_during_a_webhook_delivery_loses_nothing_and_delivers_once(
    stalling_receiver: tuple[StallingReceiver, str], tmp_path: Path
) -> None:
    receiver, url = stalling_receiver
    config = tmp_path / "bot.toml"
    config.write_text(
        f"""
[store]
path = "{tmp_path / "bot.db"}"

[[networks]]
name = "local"
adapter = "terminal"
[[networks.rooms]]
id = "#local"

[[notify]]
name = "hq"
sink = "webhook"
[notify.settings]
url = "{url}"
timeout_seconds = 60
"""
    )
    script = Path(sys.executable).with_name("presencebot")
    env = {
        **os.environ,
        "PRESENCEBOT_NOTIFY__HQ__SETTINGS__SECRETS": f"an-old-secret-being-rotated-out {SECRET}",
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(script), "run", "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )

    bot = start()
    assert bot.stdin is not None
    bot.stdin.write(b"lily: hiii im 12\nmark: lily where do u live?\n")
    bot.stdin.flush()
    deadline = time.monotonic() + 20
    while not receiver.attempts and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert receiver.attempts, "the bot never tried to deliver"
    os.kill(bot.pid, signal.SIGKILL)  # in the middle of the delivery: the receiver is stalling
    bot.wait(10)
    assert receiver.accepted == {}

    again = start()  # stdin stays open: the bot keeps running and its dispatcher delivers
    try:
        deadline = time.monotonic() + 20
        while not receiver.accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        again.send_signal(signal.SIGTERM)
        _out, err = again.communicate(timeout=15)
    assert len(receiver.accepted) == 1, err.decode()[-2000:]
    (webhook_id,) = receiver.accepted
    assert receiver.attempts.count(webhook_id) >= 2  # the same id before and after the crash
    (payload,) = receiver.accepted.values()
    assert payload["data"]["target"]["nick"] == "lily"
    store = SQLiteStore(tmp_path / "bot.db")
    await store.open()
    try:
        rows = await store.read(lambda conn: outbox.rows(conn))
        assert [(r.id, r.state) for r in rows] == [(webhook_id, "delivered")]
    finally:
        await store.close()
    assert REPO.exists()
