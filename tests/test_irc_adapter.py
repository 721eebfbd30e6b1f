"""The IRC adapter against real servers: ngircd for the channel life, InspIRCd + Atheme for SASL,
the bot mode and account tags, and the real ``ii`` client as a person in the room.

The bot runs in-process (a real :class:`~presencebot.runtime.Runtime` with the IRC adapter and a
SQLite store), so tests can look at its rooms and logs; everyone else is a separate client on a
real socket, so what is asserted is what a person in the channel would see.
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

from presencebot.adapters.irc import IrcAdapter, IrcSettings
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
    from tests.ircservers import (
        IiFactory,
        InspircdServer,
        NgircdFactory,
        NgircdServer,
        RawClientFactory,
        RawIrcClient,
    )

pytest_plugins = ["tests.ircservers"]
pytestmark = pytest.mark.slow

BOT = "PolicePresence"
HEARD: list[Message] = []


@rule("hear_all")
def hear_all(message: Message, room: RoomView) -> Iterator[Flag]:
    """Records what reached the rules (text as decoded, author account), flags nothing."""
    HEARD.append(message)
    return iter(())


def need(*programs: str) -> None:
    packages = {"ngircd": "ngircd", "inspircd": "inspircd", "atheme-services": "atheme-services", "ii": "ii"}
    for program in programs:
        require(
            shutil.which(program) is not None, f"{program} not installed (Debian package {packages[program]})"
        )


@pytest.fixture
def server(request: pytest.FixtureRequest) -> NgircdServer:
    need("ngircd")
    ngircd: NgircdServer = request.getfixturevalue("ngircd")
    return ngircd


@pytest.fixture
def inspircd(request: pytest.FixtureRequest) -> InspircdServer:
    need("inspircd", "atheme-services")
    server: InspircdServer = request.getfixturevalue("inspircd_atheme")
    return server


@dataclass
class Bot:
    runtime: Runtime
    task: asyncio.Task[int]
    store: SQLiteStore

    @property
    def adapter(self) -> IrcAdapter:
        adapter = self.runtime.networks["irc"].adapter
        assert isinstance(adapter, IrcAdapter)
        return adapter

    def room(self, name: str = "#kids") -> RoomState:
        return self.runtime.networks["irc"].rooms[RoomId(name)].state

    async def active(self, name: str = "#kids", timeout: float = 10.0) -> None:
        await until(lambda: self.room(name) is RoomState.ACTIVE, timeout)

    async def stop(self) -> int:
        self.runtime.stop()
        return await asyncio.wait_for(self.task, 15)


StartBot = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def start_bot(tmp_path: Path) -> AsyncIterator[StartBot]:
    """``await start_bot(port, rooms=[...], settings={...}, invites={...})``: a running bot."""
    bots: list[Bot] = []
    HEARD.clear()

    async def start(
        port: int,
        *,
        rooms: list[dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        invites: dict[str, Any] | None = None,
        wait: bool = True,
    ) -> Bot:
        irc = {
            "host": "127.0.0.1",
            "port": port,
            "tls": False,
            "nick": BOT,
            "reconnect_base_seconds": 0.2,
            "reconnect_cap_seconds": 1.0,
            "flood_burst": 50,
            "flood_rate": 50.0,
            "connect_timeout": 10.0,
            **(settings or {}),
        }
        raw = {
            "networks": [
                {
                    "name": "irc",
                    "adapter": "irc",
                    "settings": irc,
                    "rooms": rooms if rooms is not None else [{"id": "#kids"}],
                    "invites": invites or {},
                }
            ],
            "store": {"path": str(tmp_path / "bot.db")},
            "commands": {"cooldown_seconds": 0},
            "room_defaults": {"rules": ["minor_whereabouts", "hear_all"]},
        }
        config = Config.model_validate(raw)
        store = SQLiteStore(config.store.path)
        runtime = Runtime(
            config,
            store,
            adapters={"irc": (IrcAdapter, IrcSettings.model_validate(irc))},
            rules=[WHEREABOUTS, hear_all],
        )
        bot = Bot(runtime, asyncio.create_task(runtime.run()), store)
        bots.append(bot)
        if wait:
            await until(lambda: runtime.networks["irc"].connected, 15)
        return bot

    yield start
    for bot in bots:
        if not bot.task.done():
            await bot.stop()


def badge_lines(language: str = "en") -> tuple[str, str, str]:
    return Badge.build(
        agency="Demo Police Service", info_url="https://example.org/presencebot", language=language
    ).irc_lines()


async def expect_badge(client: RawIrcClient, channel: str = "#kids") -> None:
    """The three badge lines arrive in order, byte for byte as rendered."""
    for line in badge_lines():
        raw = await client.expect_bytes(rb"^:" + BOT.encode() + rb"!\S+ PRIVMSG " + channel.encode() + rb" :")
        assert raw.split(b" :", 1)[1] == line.encode()


# --- ngircd -----------------------------------------------------------------------------------


async def test_joins_posts_the_exact_badge_and_flags_real_traffic(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    lily = await raw_client_factory(server.host, server.port, "lily")
    mark = await raw_client_factory(server.host, server.port, "mark")
    await lily.join("#kids")
    await mark.join("#kids")
    bot = await start_bot(server.port)
    await lily.expect(rf"^:{BOT}!\S+ JOIN :?#kids")
    await expect_badge(lily)
    await bot.active()
    # The bot is labelled as a bot (+B), and says who runs it in its realname.
    mark.send(f"WHOIS {BOT}")
    whois = await mark.expect(rf" 311 mark {BOT} ")
    assert "Demo Police Service" in whois and "https://example.org/presencebot" in whois
    await mark.expect(rf" 335 mark {BOT} ")

    lily.privmsg("#kids", "hiii im 12")
    await asyncio.sleep(0.2)
    mark.privmsg("#kids", "lily where do u live?")
    await until(lambda: len(HEARD) >= 2)
    alerts = await _alerts(bot)
    assert len(alerts) == 1
    assert alerts[0].target.nick == "lily" and alerts[0].category == "location"
    assert HEARD[0].text == "hiii im 12" and HEARD[0].author.nick == "lily"


async def _alerts(bot: Bot, expected: int = 1, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await bot.store.list()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_cr_cannot_inject_a_command_and_long_text_is_split_on_words(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    await watcher.join("#kids")
    bot = await start_bot(server.port)
    await expect_badge(watcher)
    await bot.active()
    await bot.adapter.send(RoomId("#kids"), "hello\rPART #kids")
    line = await watcher.expect(rf"^:{BOT}!\S+ PRIVMSG #kids :hello")
    assert line.endswith("hello PART #kids")
    await watcher.expect_none(rf"^:{BOT}!\S+ PART", within=0.5)
    assert bot.room() is RoomState.ACTIVE

    words = [f"word{i:04d}" for i in range(250)]  # 2,249 characters
    text = " ".join(words)
    assert len(text) >= 2000
    await bot.adapter.send(RoomId("#kids"), text)
    pieces: list[str] = []
    while len(" ".join(pieces)) < len(text):
        raw = await watcher.expect_bytes(rb"^:" + BOT.encode() + rb"!\S+ PRIVMSG #kids :word")
        assert len(raw) + 2 <= 512  # the relayed line, CR LF included
        pieces.append(raw.split(b" :", 1)[1].decode())
    assert len(pieces) >= 5
    assert " ".join(pieces) == text  # split on word boundaries, nothing lost, nothing cut


async def test_latin1_and_garbage_input_neither_crash_nor_disconnect(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    kid = await raw_client_factory(server.host, server.port, "kid")
    await kid.join("#kids")
    bot = await start_bot(server.port)
    await expect_badge(kid)
    await bot.active()
    kid.send_bytes(b"PRIVMSG #kids :caf\xe9 cr\xe8me, \xff\xfe im 12\r\n")
    kid.send_bytes(b"PRIVMSG #kids :\x0304,01colour\x03 \x02bold\x02\r\n")
    kid.send_bytes(b"PRIVMSG #kids :" + "utf-8 ok: où".encode() + b"\r\n")
    await until(lambda: len(HEARD) >= 3)
    assert HEARD[0].text == "café crème, ÿþ im 12"
    assert HEARD[1].text == "colour bold"
    assert HEARD[2].text == "utf-8 ok: où"
    assert bot.adapter.connects == 1


async def test_kick_means_no_rejoin_and_ban_means_no_retry_loop(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    op = await raw_client_factory(server.host, server.port, "op")
    await op.join("#kids")  # first in: channel operator
    await op.join("#banned")
    op.send(f"MODE #banned +b {BOT}!*@*")
    await op.expect(r" MODE #banned \+b ")
    with capture_logs() as logs:
        bot = await start_bot(server.port, rooms=[{"id": "#kids"}, {"id": "#banned"}])
        await bot.active()
        await op.expect(rf"^:{BOT}!\S+ JOIN :?#kids")
        await until(lambda: bot.room("#banned") is RoomState.BANNED)
        op.send(f"KICK #kids {BOT} :no bots please")
        await op.expect(rf" KICK #kids {BOT} ")
        await until(lambda: bot.room() is RoomState.KICKED)
        await asyncio.sleep(1.0)
    assert bot.room() is RoomState.KICKED and bot.room("#banned") is RoomState.BANNED
    assert sum(e["event"] == "room.banned" for e in logs) == 1  # one attempt, no loop
    assert sum(e["event"] == "room.joining" for e in logs) == 2  # the first joins only
    await op.expect_none(rf"^:{BOT}!\S+ JOIN :?#kids", within=0.3)
    states = {r.room: r.state for r in await bot.store.room_states()}
    assert states == {"#kids": "kicked", "#banned": "banned"}


async def test_invite_policy_accepts_a_channel_operator_and_declines_anyone_else(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    op = await raw_client_factory(server.host, server.port, "roomop")
    stranger = await raw_client_factory(server.host, server.port, "stranger")
    await op.join("#club")  # roomop is the operator of #club
    await stranger.join("#other")
    await stranger.join("#club")  # a member, not an operator
    with capture_logs() as logs:
        bot = await start_bot(server.port, rooms=[], invites={"room_operators": True})
        stranger.send(f"INVITE {BOT} #club")
        stranger.send(f"INVITE {BOT} #other")  # operator of #other (first in), but see below
        await until(lambda: any(e["event"] == "room.invite_declined" for e in logs), 10)
        op.send(f"INVITE {BOT} #club")
        await expect_badge(op, "#club")
        await bot.active("#club")
    declined = [e for e in logs if e["event"] == "room.invite_declined"]
    accepted = [e for e in logs if e["event"] == "room.invite_accepted"]
    assert [e["because"] for e in accepted].count("an operator of the room") >= 1
    # stranger was not an operator of #club: declined. (stranger *is* the operator of #other,
    # so that invite is accepted too: consent comes from the room's own operators.)
    assert any("stranger" in e["inviter"] for e in declined)
    rooms = bot.runtime.networks["irc"].rooms
    assert RoomId("#club") in rooms


async def test_police_leave_from_a_channel_operator(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    op = await raw_client_factory(server.host, server.port, "chanop")
    kid = await raw_client_factory(server.host, server.port, "kiddo")
    await op.join("#kids")
    await kid.join("#kids")
    bot = await start_bot(server.port)
    await expect_badge(op)
    await expect_badge(kid)
    await bot.active()
    kid.privmsg("#kids", "!police leave")
    refusal = await kid.expect(rf"^:{BOT}!\S+ PRIVMSG #kids :")
    assert "Only an operator" in refusal
    op.privmsg("#kids", "!police leave")
    part = await op.expect(rf"^:{BOT}!\S+ PART #kids")
    assert "operator" in part and "invited again" in part
    await until(lambda: bot.room() is RoomState.DISMISSED)
    assert [(r.room, r.state) for r in await bot.store.room_states()] == [("#kids", "dismissed")]


async def test_server_restart_reconnects_rejoins_and_reannounces_within_the_backoff_bound(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    bot = await start_bot(server.port, rooms=[{"id": "#kids"}, {"id": "#teens"}])
    await bot.active("#kids")
    await bot.active("#teens")
    server.kill()
    await until(lambda: not bot.runtime.networks["irc"].connected, 10)
    assert bot.room("#kids") is RoomState.WANTED
    killed = time.monotonic()
    server.start()
    await until(lambda: bot.room("#kids") is RoomState.ACTIVE and bot.room("#teens") is RoomState.ACTIVE, 15)
    took = time.monotonic() - killed
    # Backoff cap 1 s, after at most a few failed attempts while the server was down: well inside.
    assert took < 5.0, took
    assert bot.adapter.connects == 2
    assert bot.runtime.networks["irc"].rooms[RoomId("#kids")].announcements == 2
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    watcher.send(f"WHOIS {BOT}")
    channels = await watcher.expect(rf" 319 watcher {BOT} ")
    assert "#kids" in channels and "#teens" in channels


async def test_nick_too_long_for_the_server_is_shortened_to_its_nicklen(
    ngircd_factory: NgircdFactory, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    need("ngircd")
    server = ngircd_factory(nicklen=None)  # ngircd's default MaxNickLength: 9
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    await watcher.join("#kids")
    bot = await start_bot(server.port)
    await bot.active()
    assert bot.adapter.state.my_nick == BOT[:9]
    await watcher.expect(rf"^:{BOT[:9]}!\S+ JOIN :?#kids")


async def test_nick_in_use_takes_the_next_one(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    await raw_client_factory(server.host, server.port, BOT)
    bot = await start_bot(server.port, settings={"alt_nicks": ["PolicePresence2"]})
    await bot.active()
    assert bot.adapter.state.my_nick == "PolicePresence2"


async def test_two_hundred_lines_under_the_default_flood_penalty_without_a_disconnect(
    ngircd_factory: NgircdFactory, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    """ngircd's default penalty lets a client through at about 3 lines/s; the bot's bucket keeps
    it under that (2.5 lines/s here, 1 line/s by default), so every line arrives and the bot is
    never throttled into a disconnect. Takes about 80 s."""
    need("ngircd")
    server = ngircd_factory(penalty=True)
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    await watcher.join("#kids")
    bot = await start_bot(server.port, settings={"flood_burst": 5, "flood_rate": 2.5})
    await expect_badge(watcher)
    await bot.active()
    for i in range(200):
        await bot.adapter.send(RoomId("#kids"), f"line {i:03d} of a long announcement")
    for i in range(200):
        await watcher.expect(rf"^:{BOT}!\S+ PRIVMSG #kids :line {i:03d} ", timeout=30)
    assert bot.adapter.connects == 1 and bot.runtime.networks["irc"].connected
    assert bot.adapter.undelivered == 0


# --- InspIRCd + Atheme ------------------------------------------------------------------------


async def test_sasl_plain_bot_mode_and_account_tags(
    inspircd: InspircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    await inspircd.register_account("presencebot1", "good-password")
    await inspircd.register_account("lilyacct", "lily-password")
    bot = await start_bot(
        inspircd.port,
        settings={
            "nick": "PoliceBotA",
            "sasl": "plain",
            "sasl_username": "presencebot1",
            "sasl_password": "good-password",
        },
    )
    await bot.active()
    assert bot.adapter._neg.sasl_done
    assert {"account-tag", "server-time", "message-tags"} <= bot.adapter._neg.enabled
    lily = await raw_client_factory(
        inspircd.host, inspircd.port, "lily_nick", sasl=("lilyacct", "lily-password")
    )
    await lily.join("#kids")
    lily.send("WHOIS PoliceBotA")
    await lily.expect(r" 335 lily_nick PoliceBotA ")  # +B: "is a bot"
    await lily.expect(r" 330 lily_nick PoliceBotA presencebot1 ")  # logged in by SASL
    lily.privmsg("#kids", "hello from an account")
    await until(lambda: any(m.author.nick == "lily_nick" for m in HEARD), 10)
    heard = next(m for m in HEARD if m.author.nick == "lily_nick")
    assert heard.author.account == "lilyacct"


async def test_wrong_sasl_password_fails_once_and_clearly(
    inspircd: InspircdServer, start_bot: StartBot
) -> None:
    await inspircd.register_account("presencebot2", "right-password")
    with capture_logs() as logs:
        bot = await start_bot(
            inspircd.port,
            settings={
                "nick": "PoliceBotB",
                "sasl": "plain",
                "sasl_username": "presencebot2",
                "sasl_password": "wrong-password",
            },
            wait=False,
        )
        status = await asyncio.wait_for(bot.task, 20)
    assert status == 1
    fatal = [e for e in logs if e["event"] == "irc.fatal"]
    assert len(fatal) == 1
    assert "presencebot2" in fatal[0]["reason"] and "wrong account or password" in fatal[0]["reason"]
    assert sum(e["event"] == "irc.connecting" for e in logs) == 1  # no retry loop
    assert not any("wrong-password" in str(e) for e in logs)


# --- ii, a real client nobody here wrote --------------------------------------------------------


async def test_ii_user_sees_the_badge_and_a_request_typed_in_ii_raises_an_alert(
    server: NgircdServer,
    start_bot: StartBot,
    raw_client_factory: RawClientFactory,
    ii_factory: IiFactory,
) -> None:
    need("ii")
    mark = ii_factory(server.host, server.port, "mark")
    await mark.join("#kids")
    lily = await raw_client_factory(server.host, server.port, "lily")
    await lily.join("#kids")
    bot = await start_bot(server.port)
    await bot.active()
    for line in badge_lines():
        await mark.wait_out("#kids", line.encode(), timeout=10)
    lily.privmsg("#kids", "im 11 and bored")
    await mark.wait_out("#kids", b"im 11 and bored")
    mark.say("#kids", "lily what school do u go to")
    alerts = await _alerts(bot)
    assert len(alerts) == 1
    assert alerts[0].target.nick == "lily" and alerts[0].category == "school"
    assert alerts[0].requester is not None and alerts[0].requester.nick == "mark"


async def test_tls_verifies_the_server_certificate(
    ngircd_factory: NgircdFactory, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    need("ngircd")
    server = ngircd_factory(tls=True)
    assert server.tls_port is not None and server.ca_file is not None
    tls = {"tls": True, "port": server.tls_port, "ca_file": str(server.ca_file)}
    bot = await start_bot(server.tls_port, settings=tls)
    await bot.active()
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    watcher.send(f"WHOIS {BOT}")
    await watcher.expect(rf" 319 watcher {BOT} :\S*#kids")
    await bot.stop()

    # Without the CA the certificate is not trusted: one clear failure, no retry loop.
    with capture_logs() as logs:
        untrusted = await start_bot(server.tls_port, settings={"tls": True}, wait=False)
        assert await asyncio.wait_for(untrusted.task, 20) == 1
    fatal = [e for e in logs if e["event"] == "adapter.fatal"]
    assert len(fatal) == 1 and "not trusted" in fatal[0]["error"] and "ca_file" in fatal[0]["error"]
    assert sum(e["event"] == "irc.connecting" for e in logs) == 1


async def test_a_dead_connection_is_detected_within_the_ping_timeout(
    server: NgircdServer, start_bot: StartBot
) -> None:
    import os
    import signal

    bot = await start_bot(server.port, settings={"ping_interval": 0.5, "ping_timeout": 1.5})
    await bot.active()
    assert server.pid is not None
    with capture_logs() as logs:
        os.kill(server.pid, signal.SIGSTOP)  # the server hangs: the socket stays open, silent
        try:
            frozen = time.monotonic()
            await until(lambda: not bot.runtime.networks["irc"].connected, 10)
            detected = time.monotonic() - frozen
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await bot.active(timeout=15)
    assert detected < 1.5 + 1.0, detected  # ping_timeout plus one keepalive tick and slack
    assert any(e["event"] == "irc.ping_timeout" for e in logs)
    assert bot.runtime.networks["irc"].rooms[RoomId("#kids")].announcements == 2


async def test_private_report_and_ctcp_version(
    server: NgircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    kid = await raw_client_factory(server.host, server.port, "worried")
    bot = await start_bot(server.port)
    await bot.active()
    kid.privmsg(BOT, "!report someone in #kids keeps asking for my address")
    thanks = await kid.expect(rf"^:{BOT}!\S+ PRIVMSG worried :")
    alerts = await _alerts(bot)
    assert len(alerts) == 1 and alerts[0].category == "report"
    assert alerts[0].id in thanks
    kid.privmsg(BOT, "\x01VERSION\x01")
    version = await kid.expect(rf"^:{BOT}!\S+ NOTICE worried :\x01VERSION ")
    assert "Demo Police Service" in version and "https://example.org/presencebot" in version


async def test_server_password_is_sent_and_a_wrong_one_is_a_clear_failure(
    ngircd_factory: NgircdFactory, start_bot: StartBot
) -> None:
    need("ngircd")
    server = ngircd_factory(extra="[Global]\n\tPassword = letmein\n")
    bot = await start_bot(server.port, settings={"server_password": "letmein"})
    await bot.active()
    await bot.stop()
    with capture_logs() as logs:
        wrong = await start_bot(server.port, settings={"server_password": "guess"}, wait=False)
        assert await asyncio.wait_for(wrong.task, 20) == 1
    assert sum(e["event"] == "irc.connecting" for e in logs) == 1
    assert any("server password" in e.get("reason", "") for e in logs if e["event"] == "irc.fatal")
    assert not any("guess" in str(e) for e in logs)


async def test_nickserv_identify_when_sasl_is_off(
    inspircd: InspircdServer, start_bot: StartBot, raw_client_factory: RawClientFactory
) -> None:
    await inspircd.register_account("PoliceBotC", "ns-password")
    bot = await start_bot(inspircd.port, settings={"nick": "PoliceBotC", "nickserv_password": "ns-password"})
    await bot.active()
    watcher = await raw_client_factory(inspircd.host, inspircd.port, "watcher_c")
    for _ in range(50):  # IDENTIFY goes through services: give it a moment
        watcher.send("WHOIS PoliceBotC")
        line = await watcher.expect(r" (330|318) watcher_c PoliceBotC ")
        if " 330 " in line:
            break
        await asyncio.sleep(0.1)
    assert " 330 watcher_c PoliceBotC PoliceBotC " in line


async def test_the_example_config_runs_as_shipped_against_a_real_server(
    server: NgircdServer, raw_client_factory: RawClientFactory, tmp_path: Path
) -> None:
    """`presencebot run --config config/examples/irc.toml`, the console script, with only the port
    moved by the environment (the file says 6667, which a test cannot assume is free)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.support import REPO

    watcher = await raw_client_factory(server.host, server.port, "watcher")
    await watcher.join("#kids")
    script = Path(sys.executable).with_name("presencebot")
    env = {**os.environ, "PRESENCEBOT_NETWORKS__LOCAL__SETTINGS__PORT": str(server.port)}
    proc = subprocess.Popen(
        [str(script), "run", "--config", str(REPO / "config/examples/irc.toml")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await expect_badge(watcher)
        watcher.send("WHOIS PolicePresence")
        await watcher.expect(r" 335 watcher PolicePresence ")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert (tmp_path / "presencebot.db").exists()  # the store, in the working directory
