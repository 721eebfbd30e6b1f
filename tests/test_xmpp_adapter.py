"""The XMPP adapter against a real Prosody: rooms, the badge (message and avatar), invitations,
kicks, ``!police leave``, a server restart, TLS and hostile text.

The bot runs in-process (a real Runtime with the XMPP adapter and a SQLite store); the people are
separate slixmpp clients (:class:`tests.xmppservers.XmppUser`) on real sockets.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from presencebot import badge as badge_assets
from presencebot.adapters.xmpp import XmppAdapter, XmppSettings
from presencebot.badge import Badge
from presencebot.config import Config
from presencebot.events import Message
from presencebot.ids import RoomId
from presencebot.rule import Flag, RoomView, rule
from presencebot.rules.minor_whereabouts import RULE as WHEREABOUTS
from presencebot.runtime import RoomState, Runtime
from presencebot.store.sqlite import SQLiteStore
from presencebot.testing import capture_logs
from tests.support import require, until

if TYPE_CHECKING:
    from tests.xmppservers import ProsodyFactory, ProsodyServer, XmppUserFactory

pytest_plugins = ["tests.xmppservers"]
pytestmark = pytest.mark.slow

BOT_JID = "presencebot@localhost"
BOT_PASSWORD = "bot-secret"
KIDS = "kids@conference.localhost"
HEARD: list[Message] = []


@rule("hear_all_xmpp")
def hear_all(message: Message, room: RoomView) -> Iterator[Flag]:
    """Records what reached the rules, flags nothing."""
    HEARD.append(message)
    return iter(())


@pytest.fixture
def server(request: pytest.FixtureRequest) -> ProsodyServer:
    require(shutil.which("prosody") is not None, "prosody not installed (Debian package prosody)")
    prosody: ProsodyServer = request.getfixturevalue("prosody")
    return prosody


@dataclass
class Bot:
    runtime: Runtime
    task: asyncio.Task[int]
    store: SQLiteStore

    @property
    def adapter(self) -> XmppAdapter:
        adapter = self.runtime.networks["xmpp"].adapter
        assert isinstance(adapter, XmppAdapter)
        return adapter

    def room(self, name: str = KIDS) -> RoomState:
        return self.runtime.networks["xmpp"].rooms[RoomId(name)].state

    async def active(self, name: str = KIDS, timeout: float = 15.0) -> None:
        await until(lambda: self.room(name) is RoomState.ACTIVE, timeout)

    async def stop(self) -> int:
        self.runtime.stop()
        return await asyncio.wait_for(self.task, 15)


StartBot = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def start_bot(tmp_path: Path) -> AsyncIterator[StartBot]:
    bots: list[Bot] = []
    HEARD.clear()

    async def start(
        server: ProsodyServer,
        *,
        rooms: list[dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        invites: dict[str, Any] | None = None,
        register: bool = True,
        wait: bool = True,
    ) -> Bot:
        if register:
            server.register(BOT_JID, BOT_PASSWORD)
        xmpp = {
            "jid": BOT_JID,
            "password": BOT_PASSWORD,
            "host": server.host,
            "port": server.port,
            "tls": "optional",
            "ca_file": str(server.ca_file) if server.ca_file else None,
            "reconnect_base_seconds": 0.2,
            "reconnect_cap_seconds": 1.0,
            "connect_timeout": 10.0,
            "join_timeout": 10.0,
            **(settings or {}),
        }
        raw = {
            "networks": [
                {
                    "name": "xmpp",
                    "adapter": "xmpp",
                    "settings": xmpp,
                    "rooms": rooms if rooms is not None else [{"id": KIDS}],
                    "invites": invites or {},
                }
            ],
            "store": {"path": str(tmp_path / "bot.db")},
            "commands": {"cooldown_seconds": 0},
            "room_defaults": {"rules": ["minor_whereabouts", "hear_all_xmpp"]},
        }
        config = Config.model_validate(raw)
        runtime = Runtime(
            config,
            SQLiteStore(config.store.path),
            adapters={"xmpp": (XmppAdapter, XmppSettings.model_validate(xmpp))},
            rules=[WHEREABOUTS, hear_all],
        )
        bot = Bot(runtime, asyncio.create_task(runtime.run()), runtime.store)  # type: ignore[arg-type]
        bots.append(bot)
        if wait:
            await until(lambda: runtime.networks["xmpp"].connected, 15)
        return bot

    yield start
    for bot in bots:
        if not bot.task.done():
            await bot.stop()


def badge_text() -> str:
    return Badge.build(
        agency="Demo Police Service", info_url="https://example.org/presencebot", language="en"
    ).plain()


async def alerts_of(bot: Bot, expected: int = 1, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await bot.store.list()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_badge_on_join_avatar_for_anyone_and_a_flag_from_real_traffic(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    lily = await xmpp_user_factory(server, "lily")
    mark = await xmpp_user_factory(server, "mark")
    await lily.join(KIDS, "lily")
    await mark.join(KIDS, "mark")
    image = "https://police.example/presencebot/badge-96.png"
    bot = await start_bot(server, settings={"badge_image_url": image})
    badge = await lily.expect_groupchat(KIDS, "POLICE PRESENCE", nick="PolicePresence")
    assert badge["body"] == badge_text()
    assert badge["oob"]["url"] == image  # XEP-0066: clients show the badge picture
    await bot.active()
    # The avatar is the badge, byte for byte, readable by someone who is not a contact.
    png = badge_assets.png(96)
    for _ in range(50):
        try:
            avatar = await mark.fetch_avatar(BOT_JID)
            break
        except Exception:
            await asyncio.sleep(0.1)
    assert avatar == png
    assert await mark.fetch_vcard_photo(BOT_JID) == png

    lily.say(KIDS, "hiii im 12")
    await until(lambda: any(m.author.nick == "lily" for m in HEARD))
    mark.say(KIDS, "lily whats ur address")
    alerts = await alerts_of(bot)
    assert len(alerts) == 1
    assert alerts[0].target.nick == "lily" and alerts[0].category == "address"
    assert alerts[0].requester.nick == "mark"


async def test_real_jids_replies_and_private_reports(
    prosody_factory: ProsodyFactory, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    require(shutil.which("prosody") is not None, "prosody not installed (Debian package prosody)")
    server = prosody_factory(muc_settings={"muc_room_default_public_jids": True})
    kid = await xmpp_user_factory(server, "kid")
    await kid.join(KIDS, "kiddo")
    bot = await start_bot(server)
    await kid.expect_groupchat(KIDS, "POLICE PRESENCE")
    await bot.active()
    kid.say(KIDS, "hello")
    first = await kid.expect_groupchat(KIDS, "^hello$")  # as the room relayed it: from room/kiddo
    await until(lambda: any(m.text == "hello" for m in HEARD))
    heard = next(m for m in HEARD if m.text == "hello")
    assert heard.author.nick == "kiddo" and heard.author.account == "kid@localhost"  # the real JID
    kid.say(KIDS, "replying", reply_to=first)
    await until(lambda: any(m.text == "replying" for m in HEARD))
    reply = next(m for m in HEARD if m.text == "replying")
    assert reply.reply_to is not None and reply.reply_to.nick == "kiddo"

    kid.private(BOT_JID, "!report a man keeps asking where i live")
    thanks = await kid.expect_chat(sender=BOT_JID, timeout=10)
    alerts = await alerts_of(bot)
    assert len(alerts) == 1 and alerts[0].category == "report"
    assert alerts[0].id in thanks["body"]


async def test_invitations_allowed_and_refused(
    prosody_factory: ProsodyFactory, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    require(shutil.which("prosody") is not None, "prosody not installed (Debian package prosody)")
    server = prosody_factory(muc_settings={"muc_room_default_public_jids": True})
    officer = await xmpp_user_factory(server, "officer")
    stranger = await xmpp_user_factory(server, "stranger")
    await officer.join("club", "officer")
    await officer.join("games", "officer")
    await stranger.join("other", "stranger")
    with capture_logs() as logs:
        bot = await start_bot(server, rooms=[], invites={"allow": ["officer@localhost"]})
        stranger.invite_direct("other", BOT_JID)
        refusal = await stranger.expect_chat(sender=BOT_JID, timeout=10)
        assert "only joins a room at the invitation" in refusal["body"]
        officer.invite_direct("club", BOT_JID)
        await officer.expect_groupchat("club", "POLICE PRESENCE")
        await bot.active("club@conference.localhost")
        officer.invite_mediated("games", BOT_JID)
        await officer.expect_groupchat("games", "POLICE PRESENCE")
    assert sum(e["event"] == "room.invite_declined" for e in logs) == 1
    assert sum(e["event"] == "room.invite_accepted" for e in logs) == 2
    assert RoomId("other@conference.localhost") not in bot.runtime.networks["xmpp"].rooms


async def test_a_mediated_invitation_that_hides_the_inviter_is_declined(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    """In a semi-anonymous room the room names the inviter by nick only: not verifiable."""
    officer = await xmpp_user_factory(server, "officer")
    await officer.join("hidden", "officer")
    with capture_logs() as logs:
        bot = await start_bot(server, rooms=[], invites={"allow": ["officer@localhost"]})
        officer.invite_mediated("hidden", BOT_JID)
        await until(lambda: any(e["event"] == "room.invite_declined" for e in logs), 10)
    declined = [e for e in logs if e["event"] == "room.invite_declined"]
    assert len(declined) == 1 and declined[0]["mask"] is None
    assert bot.runtime.networks["xmpp"].rooms.get(RoomId("hidden@conference.localhost")) is None


async def test_kick_means_no_rejoin_and_police_leave_needs_a_moderator(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    owner = await xmpp_user_factory(server, "owner")
    kid = await xmpp_user_factory(server, "kid2")
    await owner.join(KIDS, "owner")  # first in: the room's owner
    await owner.join("teens", "owner")
    await kid.join(KIDS, "kid")
    teens = "teens@conference.localhost"
    bot = await start_bot(server, rooms=[{"id": KIDS}, {"id": teens}])
    await bot.active()
    await bot.active(teens)
    await kid.expect_groupchat(KIDS, "POLICE PRESENCE")
    await owner.expect_groupchat("teens", "POLICE PRESENCE")

    kid.say(KIDS, "!police leave")
    refusal = await kid.expect_groupchat(KIDS, "Only an operator", nick="PolicePresence")
    assert refusal is not None
    owner.say(KIDS, "!police leave")
    await owner.expect_presence(KIDS, nick="PolicePresence", unavailable=True)
    await until(lambda: bot.room() is RoomState.DISMISSED)

    await owner.kick("teens", "PolicePresence", "no bots")
    await until(lambda: bot.room(teens) is RoomState.KICKED)
    await asyncio.sleep(1.0)
    assert bot.room(teens) is RoomState.KICKED
    await owner.expect_no_groupchat("teens", "POLICE PRESENCE", within=0.5)
    states = {r.room: r.state for r in await bot.store.room_states()}
    assert states == {KIDS: "dismissed", teens: "kicked"}


async def test_server_restart_reconnects_rejoins_and_reannounces(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    bot = await start_bot(server)
    await bot.active()
    server.kill()
    await until(lambda: not bot.runtime.networks["xmpp"].connected, 15)
    killed = time.monotonic()
    server.start()
    await bot.active(timeout=20)
    took = time.monotonic() - killed
    print(f"rejoined {took:.2f} s after the server came back")
    assert took < 5.0, took  # backoff capped at 1 s here
    assert bot.adapter.connects == 2
    assert bot.runtime.networks["xmpp"].rooms[RoomId(KIDS)].announcements == 2
    watcher = await xmpp_user_factory(server, "watcher")
    await watcher.join(KIDS, "watcher")
    # The bot is back in the room (the MUC was emptied by the restart and rejoined).
    await until(lambda: "PolicePresence" in watcher.client.plugin["xep_0045"].get_roster(KIDS), 10)


async def test_odd_unicode_is_handled_and_nick_conflicts_get_a_suffix(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    squatter = await xmpp_user_factory(server, "squatter")
    await squatter.join(KIDS, "PolicePresence")
    bot = await start_bot(server)
    await bot.active()
    assert bot.adapter._nicks[KIDS] == "PolicePresence_2"
    hostile = [
        "where\u200b do\u200b u\u200b live",
        "\u202eevil reversed\u202c text",
        "x" * 10_000,
        "a" + "\u0301" * 5000,
    ]
    for text in hostile:
        squatter.say(KIDS, text)
    await until(lambda: len(HEARD) >= len(hostile), 10)
    assert [m.text for m in HEARD[: len(hostile)]] == hostile
    # Text the bot sends never carries what XML cannot (it would end the stream).
    await bot.adapter.send(RoomId(KIDS), "null\x00 escape\x1b bell\x07 ok")
    echoed = await squatter.expect_groupchat(KIDS, "^null", nick="PolicePresence_2")
    assert echoed["body"] == "null escape bell ok"
    assert bot.runtime.networks["xmpp"].connected and bot.adapter.connects == 1


async def test_wrong_password_fails_once_and_clearly(server: ProsodyServer, start_bot: StartBot) -> None:
    server.register(BOT_JID, "the-real-one")
    with capture_logs() as logs:
        bot = await start_bot(server, register=False, wait=False)
        assert await asyncio.wait_for(bot.task, 20) == 1
    fatal = [e for e in logs if e["event"] == "xmpp.fatal"]
    assert len(fatal) == 1 and "refused the credentials" in fatal[0]["reason"]
    assert sum(e["event"] == "xmpp.connecting" for e in logs) == 1
    assert not any(BOT_PASSWORD in str(e) for e in logs)


async def test_starttls_is_verified_with_the_ca_and_refused_without_it(
    server: ProsodyServer, start_bot: StartBot
) -> None:
    assert server.ca_file is not None
    bot = await start_bot(server, settings={"tls": "required", "ca_file": str(server.ca_file)})
    await bot.active()
    await bot.stop()
    with capture_logs() as logs:
        untrusted = await start_bot(
            server, settings={"tls": "required", "ca_file": None}, register=False, wait=False
        )
        assert await asyncio.wait_for(untrusted.task, 20) == 1
    fatal = [e for e in logs if e["event"] == "xmpp.fatal"]
    assert len(fatal) == 1 and "not trusted" in fatal[0]["reason"]


async def test_password_protected_room_and_the_status_naming_the_agency(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    owner = await xmpp_user_factory(server, "roomowner")
    await owner.join("locked", "owner")
    muc = owner.client.plugin["xep_0045"]
    form = await muc.get_room_config("locked@conference.localhost")
    form.set_values(
        {"muc#roomconfig_passwordprotectedroom": True, "muc#roomconfig_roomsecret": "open-sesame"}
    )
    await muc.set_room_config("locked@conference.localhost", form)
    locked = "locked@conference.localhost"
    bot = await start_bot(
        server,
        rooms=[{"id": locked}, {"id": KIDS}],
        settings={"room_passwords": {locked: "open-sesame"}},
    )
    await bot.active(locked)
    presence = await owner.expect_presence("locked", nick="PolicePresence", unavailable=False)
    assert "Demo Police Service" in presence["status"] and "example.org/presencebot" in presence["status"]
    # SASL was SCRAM, and stream management is on (Prosody offers both).
    client = bot.adapter.client
    assert client is not None
    assert client.plugin["feature_mechanisms"].mech.name.startswith("SCRAM")
    assert client.plugin["xep_0198"].enabled_out
    await bot.stop()

    wrong = await start_bot(server, rooms=[{"id": locked}], register=False)
    await until(lambda: wrong.room(locked) is RoomState.FAILED, 15)


async def test_history_is_marked_and_a_silent_drop_rejoins(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    """Delayed (history) messages are marked; XEP-0410 saying we dropped out makes the bot rejoin."""
    from slixmpp.jid import JID
    from slixmpp.plugins.xep_0410 import PingStatus

    bot = await start_bot(server)
    await bot.active()
    adapter = bot.adapter
    client = adapter.client
    assert client is not None
    old = client.make_message(mto=client.boundjid, mbody="im 12 (said yesterday)", mtype="groupchat")
    old["from"] = JID(f"{KIDS}/lily")
    old["delay"]["stamp"] = "2024-01-01T10:00:00Z"
    adapter._on_groupchat(old)
    await until(lambda: any(m.text.startswith("im 12 (said") for m in HEARD))
    said = next(m for m in HEARD if m.text.startswith("im 12 (said"))
    assert said.is_history and said.at.year == 2024

    before = bot.runtime.networks["xmpp"].rooms[RoomId(KIDS)].announcements
    adapter._on_self_ping(
        {"key": (JID(f"{KIDS}/PolicePresence"), client.boundjid), "result": PingStatus.DISCONNECTED}
    )
    await until(lambda: bot.runtime.networks["xmpp"].rooms[RoomId(KIDS)].announcements == before + 1, 10)


async def test_the_example_config_runs_as_shipped_against_a_real_server(
    prosody_factory: ProsodyFactory, xmpp_user_factory: XmppUserFactory, tmp_path: Path
) -> None:
    """`presencebot run --config config/examples/xmpp.toml`, with the password from the documented
    variable and only the port moved (the file says 5222, which a test cannot assume is free),
    against a local server without TLS, which is what ``tls = "optional"`` is for."""
    require(shutil.which("prosody") is not None, "prosody not installed (Debian package prosody)")
    server = prosody_factory(tls=False)
    import os
    import signal
    import subprocess
    import sys

    from tests.support import REPO

    server.register(BOT_JID, "example-secret")
    kid = await xmpp_user_factory(server, "examplekid")
    await kid.join(KIDS, "kid")
    env = {
        **os.environ,
        "PRESENCEBOT_NETWORKS__LOCAL__SETTINGS__PASSWORD": "example-secret",
        "PRESENCEBOT_NETWORKS__LOCAL__SETTINGS__PORT": str(server.port),
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("presencebot")),
            "run",
            "--config",
            str(REPO / "config/examples/xmpp.toml"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        badge = await kid.expect_groupchat(KIDS, "POLICE PRESENCE", timeout=20)
        assert badge["body"] == badge_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"example-secret" not in err
    assert (tmp_path / "presencebot.db").exists()


async def test_banned_from_a_room_is_recorded_without_a_retry(
    server: ProsodyServer, start_bot: StartBot, xmpp_user_factory: XmppUserFactory
) -> None:
    owner = await xmpp_user_factory(server, "banner")
    await owner.join(KIDS, "owner")
    with capture_logs() as logs:
        bot = await start_bot(server)
        await bot.active()
        await owner.ban(KIDS, BOT_JID, "no bots")
        await until(lambda: bot.room() is RoomState.BANNED, 10)
        await asyncio.sleep(1.0)
    assert bot.room() is RoomState.BANNED
    assert sum(e["event"] == "room.joining" for e in logs) == 1
    assert [(r.room, r.state) for r in await bot.store.room_states()] == [(KIDS, "banned")]
