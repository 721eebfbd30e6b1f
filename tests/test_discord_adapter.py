"""The Discord adapter: the real discord.py client, driven by the runtime, against the local
stand-in in tests/discordstub.py (Discord itself cannot be reached from here).

What is asserted is what the stand-in recorded the bot sending (content, embed, attachment
bytes), what the runtime stored, and how the session behaved (IDENTIFY, RESUME).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from presencebot import badge as badge_assets
from presencebot.adapters.discord import DiscordAdapter, DiscordSettings
from presencebot.config import Config
from presencebot.events import Message
from presencebot.ids import RoomId
from presencebot.rule import Flag, RoomView, rule
from presencebot.rules.minor_whereabouts import RULE as WHEREABOUTS
from presencebot.runtime import RoomState, Runtime
from presencebot.store.sqlite import SQLiteStore
from presencebot.testing import capture_logs
from tests.support import until

if TYPE_CHECKING:
    from tests.discordstub import DiscordStub

pytest_plugins = ["tests.discordstub"]
pytestmark = pytest.mark.slow
HEARD: list[Message] = []


@rule("hear_all_discord")
def hear_all(message: Message, room: RoomView) -> Iterator[Flag]:
    HEARD.append(message)
    return iter(())


@dataclass
class Bot:
    runtime: Runtime
    task: asyncio.Task[int]
    store: SQLiteStore

    @property
    def adapter(self) -> DiscordAdapter:
        adapter = self.runtime.networks["discord"].adapter
        assert isinstance(adapter, DiscordAdapter)
        return adapter

    def room(self, channel_id: int) -> RoomState | None:
        record = self.runtime.networks["discord"].rooms.get(RoomId(str(channel_id)))
        return record.state if record is not None else None

    async def watching(self, *channel_ids: int, timeout: float = 10.0) -> None:
        await until(lambda: all(self.room(c) is RoomState.ACTIVE for c in channel_ids), timeout)

    async def stop(self) -> int:
        self.runtime.stop()
        return await asyncio.wait_for(self.task, 15)


StartBot = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def start_bot(tmp_path: Path) -> AsyncIterator[StartBot]:
    bots: list[Bot] = []
    HEARD.clear()

    async def start(
        stub: DiscordStub, *, settings: dict[str, Any] | None = None, wait: bool = True, **config: Any
    ) -> Bot:
        discord_settings = {
            "token": stub.token,
            "api_base_url": stub.rest_base,
            "gateway_url": stub.gateway_url,
            **(settings or {}),
        }
        raw = {
            "networks": [
                {
                    "name": "discord",
                    "adapter": "discord",
                    "settings": discord_settings,
                    "invites": {"room_operators": True},
                    **config,
                }
            ],
            "store": {"path": str(tmp_path / "bot.db")},
            "commands": {"cooldown_seconds": 0},
            "room_defaults": {"rules": ["minor_whereabouts", "hear_all_discord"]},
        }
        cfg = Config.model_validate(raw)
        runtime = Runtime(
            cfg,
            SQLiteStore(cfg.store.path),
            adapters={"discord": (DiscordAdapter, DiscordSettings.model_validate(discord_settings))},
            rules=[WHEREABOUTS, hear_all],
        )
        store = runtime.store
        assert isinstance(store, SQLiteStore)
        bot = Bot(runtime, asyncio.create_task(runtime.run()), store)
        bots.append(bot)
        if wait:
            await until(lambda: runtime.networks["discord"].connected, 15)
        return bot

    yield start
    for bot in bots:
        if not bot.task.done():
            await bot.stop()


async def alerts_of(bot: Bot, expected: int = 1, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await bot.store.list()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def badges(stub: DiscordStub, channel_id: int) -> list[Any]:
    return [m for m in stub.messages_in(channel_id) if m.embeds or "POLICE PRESENCE" in m.content]


async def test_badge_embed_with_the_png_on_startup_and_on_guild_join(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    town = stub.add_guild("Town")
    system = stub.add_channel(town.id, "welcome", system=True)
    general = stub.add_channel(town.id, "general")
    bot = await start_bot(stub)
    await bot.watching(system.id, general.id)
    for channel in (system, general):
        (badge,) = badges(stub, channel.id)
        embed = badge.embeds[0]
        assert embed["title"] == "POLICE PRESENCE"
        assert "Demo Police Service" in embed["description"]
        assert embed["url"] == "https://example.org/presencebot"
        assert embed["thumbnail"]["url"] == "attachment://badge.png"
        assert badge.files == {"badge.png": badge_assets.png(512)}
        assert badge.allowed_mentions is not None and not badge.allowed_mentions.get("parse")
    # The avatar is the badge, set once; the presence names the agency.
    assert stub.avatar == badge_assets.png(512)
    # A guild the bot is added to later: announced in its system channel.
    club = stub.add_guild("Club", joined=False)
    lobby = stub.add_channel(club.id, "lobby", system=True)
    await stub.guild_join(club.id)
    await bot.watching(lobby.id)
    assert len(badges(stub, lobby.id)) == 1
    # Removed from a guild: recorded as a kick (and remembered).
    await stub.guild_remove(club.id)
    await until(lambda: bot.room(lobby.id) is RoomState.KICKED)
    assert [r.state for r in await bot.store.room_states() if r.room == str(lobby.id)] == ["kicked"]


async def test_age_then_address_request_by_reply_raises_an_alert_naming_the_child(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    guild = stub.add_guild("Kids Server")
    chat = stub.add_channel(guild.id, "chat", system=True)
    lily = stub.add_user("lily", global_name="Lily", member_of=[guild.id])
    mark = stub.add_user("mark", member_of=[guild.id])
    bot = await start_bot(stub)
    await bot.watching(chat.id)
    said = await stub.send_message(chat.id, lily.id, "hiii im 12")
    await stub.send_message(chat.id, mark.id, "whats ur address", reference_message_id=int(said["id"]))
    alerts = await alerts_of(bot)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.category == "address"
    assert alert.target.account == str(lily.id) and alert.target.nick == "Lily"
    assert "by reply" in alert.explanation
    # Mentions reach the rules as people see them, and as the message's mentions.
    await stub.send_message(chat.id, mark.id, f"<@{lily.id}> hi")
    await until(lambda: any(m.text == "@Lily hi" for m in HEARD))
    heard = next(m for m in HEARD if m.text == "@Lily hi")
    assert [p.account for p in heard.mentions] == [str(lily.id)]


async def test_a_dm_report_raises_an_alert_and_is_answered_privately(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    guild = stub.add_guild("G")
    stub.add_channel(guild.id, "chat", system=True)
    kid = stub.add_user("worried", member_of=[guild.id])
    bot = await start_bot(stub)
    await stub.send_dm(kid.id, "!report someone keeps asking for my address")
    alerts = await alerts_of(bot)
    assert len(alerts) == 1 and alerts[0].category == "report"
    dm = stub.dm_channel(kid.id)
    (thanks,) = await stub.wait_messages(dm.id)
    assert alerts[0].id in thanks.content


async def test_a_gateway_drop_is_resumed_without_a_second_badge(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    guild = stub.add_guild("G")
    chat = stub.add_channel(guild.id, "chat", system=True)
    kid = stub.add_user("kid", member_of=[guild.id])
    bot = await start_bot(stub)
    await bot.watching(chat.id)
    await stub.drop_connection()
    await stub.wait_resumed()
    await stub.send_message(chat.id, kid.id, "still here?")
    await until(lambda: any(m.text == "still here?" for m in HEARD))
    await asyncio.sleep(0.3)
    assert stub.identify_count == 1 and stub.resume_count == 1
    assert len(badges(stub, chat.id)) == 1
    assert bot.room(chat.id) is RoomState.ACTIVE


async def test_a_429_on_send_is_retried_after_retry_after_and_nothing_is_lost(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    guild = stub.add_guild("G")
    chat = stub.add_channel(guild.id, "chat", system=True)
    kid = stub.add_user("kid", member_of=[guild.id])
    bot = await start_bot(stub)
    await bot.watching(chat.id)
    stub.rate_limit("/channels/{channel_id}/messages", times=1, retry_after=0.5)
    await stub.send_message(chat.id, kid.id, "!police")
    await until(lambda: any("Demo Police Service" in m.content for m in stub.messages_in(chat.id)), 10)
    replies = [m for m in stub.messages_in(chat.id) if "Demo Police Service" in m.content and not m.embeds]
    assert len(replies) == 1
    statuses = [r.status for r in stub.requests_to("/channels/{channel_id}/messages", "POST")]
    assert 429 in statuses


async def test_a_refused_privileged_intent_stops_with_a_clear_error(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    discord_stub.privileged_message_content = False
    with capture_logs() as logs:
        bot = await start_bot(discord_stub, wait=False)
        assert await asyncio.wait_for(bot.task, 20) == 1
    fatal = [e for e in logs if e["event"] == "adapter.fatal"]
    assert len(fatal) == 1 and "MESSAGE CONTENT INTENT" in fatal[0]["error"]


async def test_without_embed_links_the_badge_is_plain_text(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    guild = stub.add_guild("G")
    chat = stub.add_channel(guild.id, "chat", system=True)
    stub.set_bot_permissions(chat.id, embed_links=False)
    with capture_logs() as logs:
        bot = await start_bot(stub)
        await bot.watching(chat.id)
    (badge,) = badges(stub, chat.id)
    assert not badge.embeds and not badge.files
    assert badge.content.startswith("[POLICE PRESENCE]")
    degraded = [e for e in logs if e["event"] == "discord.badge_degraded"]
    assert degraded and degraded[0]["missing"] == ["Embed Links"]


async def test_slash_police_and_police_leave_from_a_channel_manager(
    discord_stub: DiscordStub, start_bot: StartBot
) -> None:
    stub = discord_stub
    guild = stub.add_guild("G")
    chat = stub.add_channel(guild.id, "chat", system=True)
    other = stub.add_channel(guild.id, "other")
    kid = stub.add_user("kid", member_of=[guild.id])
    bot = await start_bot(stub)
    await bot.watching(chat.id, other.id)
    assert any(c["name"] == "police" for cmds in stub.commands.values() for c in cmds)
    interaction = await stub.slash_command(chat.id, kid.id, "police")
    response = await stub.wait_interaction_response(interaction)
    assert response.type == 4  # CHANNEL_MESSAGE_WITH_SOURCE
    assert "Demo Police Service" in response.data["data"]["content"]
    # The guild owner has Manage Channels: "!police leave" is obeyed there.
    await stub.send_message(other.id, kid.id, "!police leave")
    await until(lambda: any("Only an operator" in m.content for m in stub.messages_in(other.id)))
    await stub.send_message(other.id, guild.owner_id, "!police leave")
    await until(lambda: bot.room(other.id) is RoomState.DISMISSED)
    assert any("invited again" in m.content for m in stub.messages_in(other.id))


async def test_two_shards_as_two_network_entries_split_the_guilds(
    discord_stub: DiscordStub, tmp_path: Path
) -> None:
    """Above 2,500 guilds Discord requires sharding: one [[networks]] entry per shard (the unit a
    fleet leases). Each entry's client identifies with its shard and hears only its guilds."""
    stub = discord_stub
    # A guild belongs to shard (id >> 22) % shard_count.
    east = stub.add_guild("East", id=(stub.new_id() >> 23) << 23)
    west = stub.add_guild("West", id=((stub.new_id() >> 23) << 23) | (1 << 22))
    east_chat = stub.add_channel(east.id, "chat", system=True)
    west_chat = stub.add_channel(west.id, "chat", system=True)
    lily = stub.add_user("lily", member_of=[east.id, west.id])
    base = {"token": stub.token, "api_base_url": stub.rest_base, "gateway_url": stub.gateway_url}
    shards = {f"shard{n}": {**base, "shard_id": n, "shard_count": 2} for n in range(2)}
    cfg = Config.model_validate(
        {
            "networks": [
                {"name": name, "adapter": "discord", "settings": s, "invites": {"room_operators": True}}
                for name, s in shards.items()
            ],
            "store": {"path": str(tmp_path / "bot.db")},
            "room_defaults": {"rules": ["hear_all_discord"]},
        }
    )
    runtime = Runtime(
        cfg,
        SQLiteStore(cfg.store.path),
        adapters={name: (DiscordAdapter, DiscordSettings.model_validate(s)) for name, s in shards.items()},
        rules=[hear_all],
    )
    HEARD.clear()
    task = asyncio.create_task(runtime.run())
    try:

        def active(network: str, channel: int) -> bool:
            record = runtime.networks[network].rooms.get(RoomId(str(channel)))
            return record is not None and record.state is RoomState.ACTIVE

        await until(lambda: active("shard0", east_chat.id) and active("shard1", west_chat.id), 15)
        assert RoomId(str(west_chat.id)) not in runtime.networks["shard0"].rooms
        assert RoomId(str(east_chat.id)) not in runtime.networks["shard1"].rooms
        assert len(badges(stub, east_chat.id)) == len(badges(stub, west_chat.id)) == 1
        await stub.send_message(west_chat.id, lily.id, "hello west")
        await until(lambda: any(m.text == "hello west" for m in HEARD))
        (heard,) = [m for m in HEARD if m.text == "hello west"]
        assert heard.room.network == "shard1"
    finally:
        runtime.stop()
        await asyncio.wait_for(task, 15)


def test_shard_settings_go_together() -> None:
    with pytest.raises(ValueError, match="go together"):
        DiscordSettings.model_validate({"shard_id": 0})
    with pytest.raises(ValueError, match="below shard_count"):
        DiscordSettings.model_validate({"shard_id": 2, "shard_count": 2})
