"""The Discord stand-in (tests/discordstub.py) against the real discord.py client.

These prove the stand-in is faithful enough for the Discord adapter's tests: a plain
``discord.Client`` logs in, gets READY and its guild, receives messages, sends text, embeds and
files, survives a 429 and a dropped connection, and fails on a missing privileged intent.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import pytest
from discord import app_commands

if TYPE_CHECKING:
    from tests.discordstub import DiscordStub, StubChannel, StubGuild, StubUser

pytest_plugins = ["tests.discordstub"]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # not a real image: the bytes must survive exactly


class Recorder(discord.Client):
    """A plain client that keeps what it receives."""

    def __init__(self, *, intents: discord.Intents | None = None) -> None:
        if intents is None:
            intents = discord.Intents.default()
            intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.1)
        self.ready = asyncio.Event()
        self.messages: list[discord.Message] = []
        self.resumed = 0
        self.joined: list[discord.Guild] = []
        self.removed: list[discord.Guild] = []
        self.interactions: list[discord.Interaction] = []

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every IDENTIFY but the first (after INVALID_SESSION, say);
        the stand-in has no identify rate limit, so skip that here to keep the tests fast."""

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)

    async def on_resumed(self) -> None:
        self.resumed += 1

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.joined.append(guild)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.removed.append(guild)

    async def received(self, content: str, timeout: float = 5.0) -> discord.Message:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if message.content == content:
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"never received {content!r}; got {[m.content for m in self.messages]}")
            await asyncio.sleep(0.005)


@dataclass
class World:
    guild: StubGuild
    general: StubChannel
    readonly: StubChannel  # the bot may read but not send
    textonly: StubChannel  # the bot may send, but neither embed nor attach
    alice: StubUser
    bob: StubUser


@pytest.fixture
def world(discord_stub: DiscordStub) -> World:
    stub = discord_stub
    guild = stub.add_guild("Town Square")
    alice = stub.add_user("alice", global_name="Alice", member_of=[guild.id])
    bob = stub.add_user("bob", member_of=[guild.id])
    general = stub.add_channel(guild.id, "general", system=True)
    readonly = stub.add_channel(guild.id, "announcements")
    stub.set_bot_permissions(readonly.id, send=False)
    textonly = stub.add_channel(guild.id, "text-only")
    stub.set_bot_permissions(textonly.id, embed_links=False, attach_files=False)
    return World(guild, general, readonly, textonly, alice, bob)


@pytest.fixture
async def bot(discord_stub: DiscordStub, world: World) -> AsyncIterator[Recorder]:
    client = Recorder()
    task = asyncio.create_task(client.start(discord_stub.token))
    try:
        await asyncio.wait_for(client.ready.wait(), 5)
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)


async def test_login_ready_and_guild_state(discord_stub: DiscordStub, world: World, bot: Recorder) -> None:
    stub = discord_stub
    assert [r.path for r in stub.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    assert all(r.headers["Authorization"] == f"Bot {stub.token}" for r in stub.requests)
    assert bot.user is not None and bot.user.id == stub.bot.id and bot.user.bot
    assert bot.application_id == stub.application_id
    conn = await stub.wait_identified()
    assert conn.compress == "zlib-stream"
    assert conn.query["v"] == "10"
    assert conn.session is not None and conn.session.intents & (1 << 15)

    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Town Square"
    assert {c.name for c in guild.text_channels} == {"general", "announcements", "text-only"}
    assert guild.system_channel is not None and guild.system_channel.id == world.general.id
    assert guild.owner_id == world.guild.owner_id
    me = guild.me
    assert me is not None and me.joined_at is not None
    assert guild.get_role(world.guild.bot_role_id or 0) in me.roles

    def perms(channel: StubChannel) -> discord.Permissions:
        found = guild.get_channel(channel.id)
        assert isinstance(found, discord.TextChannel)
        return found.permissions_for(me)

    general, readonly, textonly = perms(world.general), perms(world.readonly), perms(world.textonly)
    assert general.send_messages and general.embed_links and general.attach_files
    assert readonly.view_channel and not readonly.send_messages
    assert textonly.send_messages and not textonly.embed_links and not textonly.attach_files
    # discord.py and the stand-in compute the same permissions
    for channel in (world.general, world.readonly, world.textonly):
        assert perms(channel).value == stub.permissions(channel.id)


async def test_incoming_message_with_mention_and_reply(
    discord_stub: DiscordStub, world: World, bot: Recorder
) -> None:
    stub = discord_stub
    first = await stub.send_message(world.general.id, world.bob.id, "where is everyone?")
    await stub.send_message(
        world.general.id,
        world.alice.id,
        f"<@{stub.bot.id}> hello officer",
        reference_message_id=int(first["id"]),
    )
    message = await bot.received(f"<@{stub.bot.id}> hello officer")
    assert message.guild is not None and message.guild.id == world.guild.id
    assert message.channel.id == world.general.id
    assert isinstance(message.author, discord.Member)
    assert message.author.id == world.alice.id and message.author.global_name == "Alice"
    assert [m.id for m in message.mentions] == [stub.bot.id]
    assert message.reference is not None and message.reference.message_id == int(first["id"])
    assert isinstance(message.reference.resolved, discord.Message)
    assert message.reference.resolved.content == "where is everyone?"
    assert message.type is discord.MessageType.reply

    dm = await stub.send_dm(world.bob.id, "psst")
    private = await bot.received("psst")
    assert private.guild is None and isinstance(private.channel, discord.DMChannel)
    assert private.author.id == world.bob.id and private.channel.id == int(dm["channel_id"])


async def test_send_text_embed_and_file(discord_stub: DiscordStub, world: World, bot: Recorder) -> None:
    stub = discord_stub
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    text = await channel.send("x")
    embed = discord.Embed(title="Police presence", description="Officers are watching this room.")
    with_file = await channel.send(embed=embed, file=discord.File(io.BytesIO(PNG), filename="badge.png"))
    reply = await text.reply("replying")

    sent = stub.messages_in(world.general.id)
    assert [m.content for m in sent] == ["x", "", "replying"]
    assert [m.id for m in sent] == [text.id, with_file.id, reply.id]
    assert sent[1].embeds[0]["title"] == "Police presence"
    assert sent[1].files == {"badge.png": PNG}
    assert sent[2].reply_to == text.id
    # what discord.py parsed from the responses
    assert with_file.embeds[0].title == "Police presence"
    assert with_file.attachments[0].filename == "badge.png"
    assert await with_file.attachments[0].read() == PNG
    multipart = stub.requests_to("/channels/{channel_id}/messages", "POST")[1]
    assert multipart.files == {"badge.png": PNG} and multipart.json["embeds"][0]["title"] == "Police presence"
    # the bot's own messages come back over the gateway, as on Discord
    await bot.received("replying")

    readonly = bot.get_channel(world.readonly.id)
    assert isinstance(readonly, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as denied:
        await readonly.send("not allowed")
    assert denied.value.code == 50013
    textonly = bot.get_channel(world.textonly.id)
    assert isinstance(textonly, discord.TextChannel)
    with pytest.raises(discord.Forbidden):
        await textonly.send("with file", file=discord.File(io.BytesIO(PNG), filename="badge.png"))
    assert stub.messages_in(world.readonly.id) == [] and stub.messages_in(world.textonly.id) == []


async def test_rate_limited_send_is_retried_once(
    discord_stub: DiscordStub, world: World, bot: Recorder
) -> None:
    stub = discord_stub
    channel = bot.get_channel(world.general.id)
    assert isinstance(channel, discord.TextChannel)
    stub.rate_limit("/channels/{channel_id}/messages", retry_after=0.3)
    started = time.monotonic()
    await channel.send("patience", file=discord.File(io.BytesIO(PNG), filename="badge.png"))
    assert time.monotonic() - started >= 0.3
    attempts = stub.requests_to(f"/channels/{world.general.id}/messages", "POST")
    assert [r.status for r in attempts] == [429, 200]
    assert attempts[0].files == attempts[1].files == {"badge.png": PNG}
    [sent] = stub.messages_in(world.general.id)
    assert sent.content == "patience" and sent.files == {"badge.png": PNG}


async def test_dropped_connection_resumes_and_replays(
    discord_stub: DiscordStub, world: World, bot: Recorder
) -> None:
    stub = discord_stub
    await stub.wait_identified()
    await stub.drop_connection()  # TCP cut, no close frame
    await stub.send_message(world.general.id, world.alice.id, "sent while you were away")
    resumed = await stub.wait_resumed()
    assert resumed.path == "/resume"  # the client used resume_gateway_url
    await bot.received("sent while you were away")
    await stub.drop_connection(4000)  # a resumable close code
    await stub.send_message(world.general.id, world.bob.id, "and again")
    await bot.received("and again")
    await stub.wait_resumed(2)
    assert stub.identify_count == 1 and stub.resume_count == 2
    await stub.wait_for(lambda: bot.resumed == 2, what="two on_resumed")
    contents = [m.content for m in bot.messages]
    assert contents.count("sent while you were away") == 1 and contents.count("and again") == 1

    await stub.invalidate_session()  # not resumable: the client must IDENTIFY again
    await stub.wait_identified(2)
    await stub.wait_for(lambda: bot.get_guild(world.guild.id) is not None, what="guild after re-IDENTIFY")


async def test_guild_join_remove_and_slash_command(
    discord_stub: DiscordStub, world: World, bot: Recorder
) -> None:
    stub = discord_stub
    tree = app_commands.CommandTree(bot)
    answered: list[str] = []

    @tree.command(name="presence", description="Is an officer here?")
    async def presence(interaction: discord.Interaction) -> None:
        answered.append(interaction.user.name)
        await interaction.response.send_message("An officer is present.", ephemeral=True)

    @tree.command(name="report", description="Report a concern")
    async def report(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("Thank you, an officer will look at it.")

    synced = await tree.sync()
    assert sorted(c.name for c in synced) == ["presence", "report"] and all(c.id for c in synced)
    interaction = await stub.slash_command(world.general.id, world.alice.id, "presence")
    callback = await stub.wait_interaction_response(interaction)
    assert callback.type == 4 and callback.data["data"]["content"] == "An officer is present."
    assert callback.data["data"]["flags"] == 64 and answered == ["alice"]
    assert stub.messages_in(world.general.id) == []  # ephemeral: nobody else sees it

    deferred = await stub.slash_command(world.general.id, world.bob.id, "report")
    await stub.wait_for(lambda: bool(deferred.followups), what="follow-up")
    assert deferred.callbacks[0].type == 5 and deferred.original is deferred.followups[0]
    [shown] = stub.messages_in(world.general.id)
    assert shown.content == "Thank you, an officer will look at it." and shown.interaction_id == deferred.id

    other = stub.add_guild("Later Guild", joined=False)
    stub.add_channel(other.id, "lobby")
    await stub.guild_join(other.id)
    await stub.wait_for(lambda: [g.id for g in bot.joined] == [other.id], what="on_guild_join")
    joined = bot.get_guild(other.id)
    assert joined is not None and [c.name for c in joined.text_channels] == ["lobby"]
    await stub.guild_remove(other.id)
    await stub.wait_for(lambda: [g.id for g in bot.removed] == [other.id], what="on_guild_remove")
    assert bot.get_guild(other.id) is None
    assert stub.unhandled == []


async def test_direct_messages_and_avatar(discord_stub: DiscordStub, world: World, bot: Recorder) -> None:
    stub = discord_stub
    alice = await bot.fetch_user(world.alice.id)
    sent = await alice.send("Hello Alice, this is the police presence bot.")
    [dm] = [c for c in stub.channels.values() if c.is_dm]
    assert dm.recipient_id == world.alice.id and sent.channel.id == dm.id
    assert stub.messages_in(dm.id)[0].content == "Hello Alice, this is the police presence bot."
    shy = stub.add_user("shy", accepts_dms=False, member_of=[world.guild.id])
    with pytest.raises(discord.Forbidden) as refused:
        await (await bot.fetch_user(shy.id)).send("hi")
    assert refused.value.code == 50007

    assert bot.user is not None
    avatar = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    edited = await bot.user.edit(avatar=avatar)
    assert stub.avatar == avatar and edited.avatar is not None and edited.avatar.key == stub.bot.avatar
    # USER_UPDATE over the gateway refreshes the cached user too
    await stub.wait_for(lambda: bot.user is not None and bot.user.avatar is not None, what="USER_UPDATE")


async def test_missing_privileged_intent_is_fatal(discord_stub: DiscordStub, world: World) -> None:
    discord_stub.privileged_message_content = False
    client = Recorder()
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.start(discord_stub.token), 5)
    finally:
        await client.close()
    assert discord_stub.connections[0].close_code == 4014


async def test_without_message_content_intent_content_is_blank(
    discord_stub: DiscordStub, world: World
) -> None:
    discord_stub.privileged_message_content = False
    client = Recorder(intents=discord.Intents.default())
    task = asyncio.create_task(client.start(discord_stub.token))
    try:
        await asyncio.wait_for(client.ready.wait(), 5)
        await discord_stub.send_message(world.general.id, world.alice.id, "secret")
        await discord_stub.send_message(world.general.id, world.alice.id, f"<@{discord_stub.bot.id}> hi")
        await client.received(f"<@{discord_stub.bot.id}> hi")  # mentions of the bot keep their content
        assert [m.content for m in client.messages] == ["", f"<@{discord_stub.bot.id}> hi"]
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)


async def _read_frame(ws: aiohttp.ClientWebSocketResponse, inflate: Any | None) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    if inflate is None:
        assert msg.type is aiohttp.WSMsgType.TEXT
        return dict(json.loads(msg.data))
    assert msg.type is aiohttp.WSMsgType.BINARY and msg.data.endswith(b"\x00\x00\xff\xff")
    return dict(json.loads(inflate.decompress(msg.data)))


@pytest.mark.parametrize("compress", [None, "zlib-stream"])
async def test_raw_gateway_plain_and_zlib_stream(
    discord_stub: DiscordStub, world: World, compress: str | None
) -> None:
    """The wire format by hand: plain JSON text frames, or one zlib stream with a sync flush per frame."""
    query = {"v": "10", "encoding": "json"} | ({"compress": compress} if compress else {})
    inflate = zlib.decompressobj() if compress else None
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(discord_stub.gateway_url, params=query) as ws,
    ):
        hello = await _read_frame(ws, inflate)
        assert hello == {"op": 10, "d": {"heartbeat_interval": 1000}}
        await ws.send_json({"op": 1, "d": None})
        assert await _read_frame(ws, inflate) == {"op": 11}
        await ws.send_json({"op": 2, "d": {"token": discord_stub.token, "intents": 513, "properties": {}}})
        ready = await _read_frame(ws, inflate)
        assert (ready["t"], ready["s"]) == ("READY", 1)
        assert ready["d"]["guilds"] == [{"id": str(world.guild.id), "unavailable": True}]
        create = await _read_frame(ws, inflate)
        assert (create["t"], create["s"]) == ("GUILD_CREATE", 2)
        assert len(create["d"]["channels"]) == 3
        # without GUILD_PRESENCES only the bot's own member comes with GUILD_CREATE
        assert [m["user"]["id"] for m in create["d"]["members"]] == [str(discord_stub.bot.id)]
        await ws.send_json({"op": 2, "d": {"token": discord_stub.token, "intents": 513, "properties": {}}})
        await asyncio.wait_for(ws.receive(), 5)
        assert ws.close_code == 4005  # already authenticated
