"""The Discord adapter: a bot application in guilds (servers), through discord.py.

Discord differs from IRC and XMPP in one way that shapes this module: a bot does not join and
leave channels — it is in a guild, and sees the text channels its permissions let it read. So
"joining" a room means starting to watch a channel, and it happens once per channel for the
life of the adapter: the first time, the badge is posted; a dropped gateway connection that
discord.py resumes changes nothing (``Disconnected(resumable=True)`` / ``Connected(resumed=True)``),
so the badge is never posted twice for one presence.

Being added to a guild takes the Manage Server permission, so each guild's channels reach the
runtime as invitations from an operator (``Invited(by_operator=True)``): the network's
``invites.room_operators`` decides whether the bot watches every readable channel.

discord.py dispatches each event as its own task; handlers here only queue presencebot events
(in the order the gateway sent them) and one task hands them to the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import Any, Final

import discord
import structlog
import yarl
from discord import app_commands
from pydantic import BaseModel

from presencebot import badge as badge_assets
from presencebot import catalogue
from presencebot.adapter import Adapter, AdapterHost, Capabilities
from presencebot.badge import Badge
from presencebot.errors import FatalAdapterError
from presencebot.events import (
    Author,
    Connected,
    Disconnected,
    Event,
    Invited,
    Joined,
    JoinFailed,
    Kicked,
    Message,
    RoomRef,
)
from presencebot.ids import AccountId, RoomId

from .settings import DiscordSettings

log = structlog.get_logger("presencebot.discord")
logging.getLogger("discord").setLevel(logging.WARNING)

MAX_MESSAGE: Final = 2000
"""Discord's limit on a message's content, in characters."""
BADGE_COLOUR: Final = 0x1F3A93
BADGE_FILE: Final = "badge.png"
BADGE_SIZE: Final = 512


def intents() -> discord.Intents:
    """Guilds and their messages, DMs (for ``!report``), and message content — privileged: without
    it Discord sends empty text and the bot would watch nothing while looking present."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


class _Client(discord.Client):
    """discord.py's client, forwarding the events the adapter needs."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        # One shard per adapter (None: discord.py's single shard): a [[networks]] entry per shard
        # is what lets a fleet lease shards to different workers.
        super().__init__(
            intents=intents(), shard_id=adapter.opts.shard_id, shard_count=adapter.opts.shard_count
        )
        self.adapter = adapter
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        await self.adapter._setup(self)

    async def on_ready(self) -> None:
        await self.adapter._on_ready(self)

    async def on_resumed(self) -> None:
        self.adapter._emit(Connected(self.adapter.network, resumed=True))

    async def on_disconnect(self) -> None:
        self.adapter._on_disconnect()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.adapter._guild_available(guild, joined=True)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.adapter._guild_removed(guild)

    async def on_message(self, message: discord.Message) -> None:
        self.adapter._on_message(message)


class DiscordAdapter(Adapter):
    Settings = DiscordSettings
    capabilities = Capabilities(
        max_line_bytes=None, images=True, embeds=True, replies=True, direct_messages=True
    )

    def __init__(self, network: str, settings: BaseModel, host: AdapterHost) -> None:
        super().__init__(network, settings, host)
        assert isinstance(settings, DiscordSettings)
        self.opts = settings
        self.client: _Client | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._watched: set[int] = set()
        """Channels joined (watched and announced) by this adapter instance."""
        self._offered: set[int] = set()
        """Channels already offered to the runtime as invitations."""
        self._connected = False
        self._avatar_done = False

    # --- life cycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        token = self.opts.token
        if token is None:
            variable = f"PRESENCEBOT_NETWORKS__{self.network.upper().replace('-', '_')}__SETTINGS__TOKEN"
            raise FatalAdapterError(f"no Discord bot token: set {variable}")
        # Module-wide in discord.py: one Discord-compatible service per process.
        discord.http.Route.BASE = self.opts.api_base_url.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.opts.gateway_url)
        client = self.client = _Client(self)
        pump = asyncio.create_task(self._pump(), name=f"discord-events:{self.network}")
        try:
            await client.start(token.get_secret_value(), reconnect=True)
        except discord.PrivilegedIntentsRequired as exc:
            raise FatalAdapterError(
                "Discord refused the Message Content intent (close code 4014): turn on "
                "'MESSAGE CONTENT INTENT' under Bot -> Privileged Gateway Intents in the Developer "
                "Portal (https://discord.com/developers/applications); without it the bot would "
                "see empty messages"
            ) from exc
        except discord.LoginFailure as exc:
            raise FatalAdapterError(f"Discord refused the bot token: {exc}") from exc
        finally:
            if not client.is_closed():
                await client.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), 2.0)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def close(self) -> None:
        client = self.client
        if client is not None and not client.is_closed():
            await client.close()

    async def _setup(self, client: _Client) -> None:
        if not self.opts.slash_command:
            return
        identity = self.host.identity

        @client.tree.command(name="police", description="Who this bot is, who runs it, and why")
        async def police(interaction: discord.Interaction) -> None:
            language = "fr" if str(interaction.guild_locale or interaction.locale).startswith("fr") else "en"
            text = catalogue.text(
                language, "police.reply", agency=identity.agency, info_url=identity.info_url
            )
            await interaction.response.send_message(text)

        try:
            await client.tree.sync()
        except discord.HTTPException as exc:
            log.warning("discord.commands_not_synced", error=str(exc))

    async def _on_ready(self, client: _Client) -> None:
        first = not self._connected
        self._connected = True
        if client.user is not None:
            log.info("discord.ready", user=str(client.user), guilds=len(client.guilds), first=first)
        self._emit(Connected(self.network))
        activity = discord.CustomActivity(name=self.host.identity.describe()[:128])
        with contextlib.suppress(discord.HTTPException, ConnectionError):
            await client.change_presence(activity=activity)
        await self._maybe_set_avatar(client)
        for guild in client.guilds:
            self._guild_available(guild, joined=False)

    def _on_disconnect(self) -> None:
        if self._connected:
            self._emit(Disconnected(self.network, "gateway connection lost", resumable=True))

    async def _maybe_set_avatar(self, client: _Client) -> None:
        """The badge as the bot's avatar, once: Discord rate-limits avatar changes, so an account
        that already has an avatar is left alone (remove it in the portal to get the badge)."""
        user = client.user
        if self._avatar_done or not self.opts.set_avatar or user is None:
            return
        self._avatar_done = True
        if user.avatar is not None:
            return
        try:
            await user.edit(avatar=badge_assets.png(BADGE_SIZE))
            log.info("discord.avatar_set")
        except discord.HTTPException as exc:
            log.warning("discord.avatar_failed", error=str(exc))

    # --- guilds and rooms ----------------------------------------------------------------------
    def _watching(self, guild: discord.Guild) -> bool:
        return not self.opts.guilds or guild.id in self.opts.guilds

    def _guild_available(self, guild: discord.Guild, *, joined: bool) -> None:
        """Offer the guild's announce channel and every readable (configured) text channel."""
        if not self._watching(guild):
            return
        me = guild.me
        readable = [
            channel
            for channel in guild.text_channels
            if channel.permissions_for(me).read_messages
            and (not self.opts.channels or channel.id in self.opts.channels)
        ]
        postable = [c for c in guild.text_channels if c.permissions_for(me).send_messages]
        system = guild.system_channel
        announce = (
            system if system is not None and system in postable else (postable[0] if postable else None)
        )
        rooms = ([announce] if announce is not None else []) + [c for c in readable if c is not announce]
        owner_id = guild.owner_id
        owner = guild.owner
        by = Author(
            owner.display_name if owner is not None else f"owner of {guild.name}",
            AccountId(str(owner_id)) if owner_id is not None else None,
        )
        log.info("discord.guild", guild=guild.name, channels=len(rooms), joined=joined)
        for channel in rooms:
            if channel.id in self._offered:
                continue
            self._offered.add(channel.id)
            # Adding a bot to a guild takes Manage Server: the guild's operators invited it.
            self._emit(Invited(self._ref(channel.id), by, by_operator=True))

    def _guild_removed(self, guild: discord.Guild) -> None:
        for channel in guild.text_channels:
            if channel.id in self._watched:
                self._watched.discard(channel.id)
                self._emit(Kicked(self._ref(channel.id), None, f"removed from the server {guild.name}"))
            self._offered.discard(channel.id)

    def _ref(self, channel_id: int) -> RoomRef:
        return self.room(str(channel_id))

    def _channel(self, room: RoomId) -> Any:
        client = self.client
        if client is None or not room.isdigit():
            return None
        return client.get_channel(int(room))

    async def join(self, room: RoomId) -> None:
        channel = self._channel(room)
        if channel is None:
            self._emit(JoinFailed(self.room(room), "no such channel, or the bot cannot see it"))
            return
        if channel.id in self._watched:
            return  # already watched (and announced) by this adapter: Discord has no rejoin
        me = channel.guild.me if getattr(channel, "guild", None) is not None else None
        if me is not None and not channel.permissions_for(me).read_messages:
            self._emit(JoinFailed(self.room(room), "the bot may not read this channel"))
            return
        self._watched.add(channel.id)
        self._emit(Joined(self.room(room)))

    async def leave(self, room: RoomId, reason: str) -> None:
        """Discord has no leaving a channel: say goodbye there and stop watching it."""
        channel = self._channel(room)
        if channel is None:
            return
        self._watched.discard(channel.id)
        with contextlib.suppress(discord.HTTPException):
            await self._send_text(channel, reason)

    # --- saying things -------------------------------------------------------------------------
    async def send(self, room: RoomId, text: str) -> None:
        client = self.client
        if client is None:
            log.error("discord.undelivered", room=str(room), reason="not connected")
            return
        try:
            if room.startswith("@"):
                user = client.get_user(int(room[1:])) or await client.fetch_user(int(room[1:]))
                target: Any = user.dm_channel or await user.create_dm()
            else:
                target = self._channel(room)
                if target is None:
                    log.error("discord.undelivered", room=str(room), reason="no such channel")
                    return
            await self._send_text(target, text)
        except (discord.HTTPException, ValueError) as exc:
            log.error("discord.undelivered", room=str(room), reason=str(exc))

    async def _send_text(self, target: Any, text: str) -> None:
        for start in range(0, max(len(text), 1), MAX_MESSAGE):
            await target.send(
                text[start : start + MAX_MESSAGE], allowed_mentions=discord.AllowedMentions.none()
            )

    async def announce(self, room: RoomId, badge: Badge) -> None:
        """An embed with the badge attached (no hosting needed); plain text where the bot may
        not embed or attach, saying why in the log; an error if it may not post at all."""
        channel = self._channel(room)
        if channel is None:
            raise ConnectionError("the channel is not available")
        perms = channel.permissions_for(channel.guild.me)
        if not perms.send_messages:
            raise PermissionError("the bot may not send messages in this channel")
        if not (perms.embed_links and perms.attach_files):
            missing = [
                name
                for name, ok in (("Embed Links", perms.embed_links), ("Attach Files", perms.attach_files))
                if not ok
            ]
            log.warning("discord.badge_degraded", room=str(room), missing=missing)
            await self._send_text(channel, badge.plain())
            return
        embed = discord.Embed(
            title=badge.title,
            description=f"{badge.who}\n\n{badge.what}",
            url=badge.info_url,
            colour=BADGE_COLOUR,
        )
        embed.add_field(name="Help", value=f"{badge.help}\n`/police`", inline=False)
        embed.set_thumbnail(url=f"attachment://{BADGE_FILE}")
        picture = discord.File(io.BytesIO(badge_assets.png(BADGE_SIZE)), filename=BADGE_FILE)
        await channel.send(embed=embed, file=picture, allowed_mentions=discord.AllowedMentions.none())

    # --- hearing things ------------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self.host.emit(event)
            except Exception as exc:
                log.error("discord.emit_failed", kind=type(event).__name__, error=repr(exc))
            finally:
                self._events.task_done()

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _on_message(self, message: discord.Message) -> None:
        client = self.client
        author = message.author
        if author.bot or message.webhook_id is not None:
            return  # bots (ourselves included) and webhooks are not people
        if client is not None and client.user is not None and author.id == client.user.id:
            return
        direct = isinstance(message.channel, discord.DMChannel)
        channel_id = message.channel.id
        if isinstance(message.channel, discord.Thread) and message.channel.parent_id is not None:
            channel_id = message.channel.parent_id  # a thread is part of its channel's room
        room = RoomId(f"@{author.id}") if direct else RoomId(str(channel_id))
        reply_to: Author | None = None
        reply_id: str | None = None
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            reply_id = str(reference.message_id)
            resolved = reference.resolved
            if isinstance(resolved, discord.Message):
                reply_to = _person(resolved.author)
        operator = False
        if not direct and isinstance(author, discord.Member):
            perms = message.channel.permissions_for(author)
            operator = perms.manage_channels or perms.manage_guild or perms.administrator
        self._emit(
            Message(
                room=self.room(room),
                author=_person(author),
                # "<@123> where do u live" reads as "@lily where do u live", as people see it.
                text=message.clean_content,
                at=message.created_at,
                native_id=str(message.id),
                reply_to=reply_to,
                reply_to_id=reply_id,
                mentions=tuple(_person(m) for m in message.mentions),
                is_direct=direct,
                by_operator=operator,
            )
        )


def _person(user: discord.abc.User) -> Author:
    """The stable user id as the account, the name people see as the nick."""
    return Author(user.display_name, AccountId(str(user.id)))
