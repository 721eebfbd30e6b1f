"""A stand-in for Discord (REST API v10 + gateway) that the real discord.py 2.x client talks to.

Load the fixture with ``pytest_plugins = ["tests.discordstub"]`` in a test module and import the types
only under ``TYPE_CHECKING`` (importing the fixture by name makes ruff report test arguments as
redefinitions).

:class:`DiscordStub` is an aiohttp server on 127.0.0.1 (free port) in the test's own event loop:

- **World model**: the bot user and its application, guilds with roles (``@everyone`` and a managed
  bot role), text channels with permission overwrites, users and guild members. Set it up with
  :meth:`~DiscordStub.add_guild`, :meth:`~DiscordStub.add_channel`, :meth:`~DiscordStub.add_user`,
  :meth:`~DiscordStub.add_member`, :meth:`~DiscordStub.set_bot_permissions` *before* the client
  connects (the gateway sends the state in GUILD_CREATE); at run time push changes with
  :meth:`~DiscordStub.channel_update`, :meth:`~DiscordStub.guild_join`, ...
- **REST** under ``/api/v10``: login (``/users/@me``, ``/oauth2/applications/@me``), sending,
  editing and deleting messages (JSON or multipart with ``payload_json`` + ``files[n]``), DMs,
  avatars, application commands, interaction callbacks and follow-ups, guild/channel look-ups. Every
  request is kept in :attr:`~DiscordStub.requests`; messages the bot sent in
  :meth:`~DiscordStub.messages_in`. Discord's rules that matter to a bot are enforced with Discord's
  error codes: permissions (403 50001/50013), the 2000-character limit and empty messages (400),
  unknown channels/messages (404), replies to unknown messages, DMs to users who refuse them (50007).
  :meth:`~DiscordStub.rate_limit` answers the next requests to a route with 429 and
  :meth:`~DiscordStub.fail` with any error.
- **Gateway** at ``/`` (and ``/resume`` as ``resume_gateway_url``), JSON, plain or
  ``zlib-stream``: HELLO, heartbeats, IDENTIFY (token and privileged-intent checks: 4004, 4014),
  READY + GUILD_CREATE, sequence numbers, RESUME with replay of what the client missed,
  INVALID_SESSION, RECONNECT, dropped connections, member chunks. Dispatch helpers send guild and DM
  messages, guild joins/removals and slash-command interactions; messages honour the
  MESSAGE_CONTENT intent (content blanked like Discord does when the client did not ask for it).

Ids are real snowflakes (their timestamps are "now"), payloads carry the fields Discord sends.

Not modelled: threads, voice, reactions, presences, webhooks other than interaction follow-ups,
the gateway send-rate limit, zstd compression (asked for, it gets plain
text frames, which discord.py accepts).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import math
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum, IntFlag
from typing import Any, Final, TypeAlias

import discord
import pytest
import yarl
from aiohttp import BodyPartReader, WSMsgType, hdrs, web

JSON: TypeAlias = dict[str, Any]

HOST = "127.0.0.1"
API_VERSION = 10
API_PREFIX = f"/api/v{API_VERSION}"
DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_TOKEN = "stub-bot-token.presencebot.0123456789"
MAX_CONTENT = 2000
MAX_EMBEDS = 10
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

Handler: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Intent(IntFlag):
    """Gateway intents (the bits discord.py sends in IDENTIFY)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1  # privileged
    GUILD_MODERATION = 1 << 2
    GUILD_PRESENCES = 1 << 8  # privileged
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15  # privileged


class Permission(IntFlag):
    """The permission bits a chat bot cares about (Discord's values)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38


ALL_PERMISSIONS = (1 << 51) - 1

#: What ``@everyone`` may do in a new guild (text-relevant part of Discord's default).
DEFAULT_EVERYONE_PERMISSIONS = (
    Permission.CREATE_INSTANT_INVITE
    | Permission.ADD_REACTIONS
    | Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.CONNECT
    | Permission.SPEAK
    | Permission.CHANGE_NICKNAME
    | Permission.USE_APPLICATION_COMMANDS
    | Permission.CREATE_PUBLIC_THREADS
    | Permission.SEND_MESSAGES_IN_THREADS
)

#: The managed role a bot gets when it is invited with these permissions.
DEFAULT_BOT_PERMISSIONS = (
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ADD_REACTIONS
)


class EveryShard(Enum):
    EVERY = "every"


EVERY: Final = EveryShard.EVERY
"""``_broadcast(guild=EVERY)``: an event that is not about one guild goes to every shard."""


class Op(IntEnum):
    """Gateway opcodes."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class CloseCode(IntEnum):
    """Gateway close codes Discord uses (the ones the stand-in sends)."""

    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


class ChannelType(IntEnum):
    GUILD_TEXT = 0
    DM = 1
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5


#: Close codes after which Discord does not let the session resume.
_SESSION_ENDING_CODES = frozenset({1000, 1001, CloseCode.INVALID_SEQ, CloseCode.SESSION_TIMED_OUT})


# --------------------------------------------------------------------------------------------
# Small helpers


def now_iso() -> str:
    """The current UTC time the way Discord writes timestamps."""
    return dt.datetime.now(dt.UTC).isoformat()


def snowflake_time(snowflake: int) -> dt.datetime:
    """When a snowflake was made."""
    return dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, dt.UTC)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response with ``Content-Type: application/json`` exactly: discord.py compares the
    header with ``==`` and treats anything else (aiohttp's ``json_response`` adds ``; charset=utf-8``)
    as text. ``Via`` is there because discord.py takes a 429 without it for a Cloudflare ban."""
    all_headers = {hdrs.CONTENT_TYPE: "application/json", "Via": "1.1 google"}
    all_headers.update(headers or {})
    return web.Response(body=_dumps(data).encode(), status=status, headers=all_headers)


def no_content() -> web.Response:
    return web.Response(status=204, headers={"Via": "1.1 google"})


class ApiError(Exception):
    """Raised by a route handler: becomes Discord's JSON error body with ``status``."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status)


def _form_error(path: str, code: str, message: str) -> ApiError:
    """Discord's ``50035 Invalid Form Body`` with the offending field."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        errors = {key: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def _not_found(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


def _mentioned_ids(content: str, sigil: str) -> list[int]:
    pattern = r"<@&(\d+)>" if sigil == "&" else r"<@!?(\d+)>"
    return list(dict.fromkeys(int(found) for found in re.findall(pattern, content)))


# --------------------------------------------------------------------------------------------
# World model


@dataclass
class StubUser:
    """A Discord user (a person or a bot)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None
    #: ``False``: the user has closed DMs, sending one fails with 50007.
    accepts_dms: bool = True

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": self.avatar,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class StubRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    #: A managed role: the bot's own role has ``bot_id`` set.
    bot_id: int | None = None

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.bot_id is not None,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    """A channel permission overwrite for a role (``type`` 0) or a member (``type`` 1)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> JSON:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class StubChannel:
    """A guild channel (text, category, announcement) or a DM channel (``guild_id`` None)."""

    id: int
    name: str
    guild_id: int | None
    type: int = ChannelType.GUILD_TEXT
    position: int = 0
    topic: str | None = None
    nsfw: bool = False
    parent_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    #: For a DM channel: the other person.
    recipient_id: int | None = None
    last_message_id: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None

    def overwrite_for(self, target_id: int) -> Overwrite | None:
        return next((o for o in self.overwrites if o.id == target_id), None)

    def payload(self, users: Mapping[int, StubUser], *, with_guild_id: bool = True) -> JSON:
        last = None if self.last_message_id is None else str(self.last_message_id)
        if self.is_dm:
            recipient = users.get(self.recipient_id) if self.recipient_id is not None else None
            recipients = [] if recipient is None else [recipient.payload()]
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": last,
                "flags": 0,
                "recipients": recipients,
            }
        data: JSON = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "parent_id": None if self.parent_id is None else str(self.parent_id),
            "flags": 0,
        }
        if self.type != ChannelType.GUILD_CATEGORY:
            data.update(topic=self.topic, nsfw=self.nsfw, last_message_id=last, rate_limit_per_user=0)
        if with_guild_id:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass
class StubMember:
    user_id: int
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=now_iso)

    def payload(self, user: StubUser | None = None) -> JSON:
        """The member object; with ``user`` it is a full member, without it the partial one that
        messages and mentions carry."""
        data: JSON = {
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if user is not None:
            data["user"] = user.payload()
        return data


@dataclass
class StubGuild:
    id: int
    name: str
    owner_id: int
    system_channel_id: int | None = None
    #: Whether the bot is in the guild (only joined guilds are in READY and get GUILD_CREATE).
    joined: bool = True
    roles: dict[int, StubRole] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    members: dict[int, StubMember] = field(default_factory=dict)
    bot_role_id: int | None = None

    @property
    def everyone(self) -> StubRole:
        return self.roles[self.id]


# --------------------------------------------------------------------------------------------
# What the stand-in records


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request, as the stand-in received it (``path`` without ``/api/v10``)."""

    method: str
    path: str
    route: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    uploads: list[UploadedFile]
    status: int = 0

    @property
    def files(self) -> dict[str, bytes]:
        return {u.filename: u.data for u in self.uploads}


@dataclass
class StubAttachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None


@dataclass
class SentMessage:
    """A message the bot sent through REST (channel message, interaction reply or follow-up)."""

    id: int
    channel_id: int
    content: str
    #: The embeds in the message (``requested_embeds`` minus any dropped for lack of EMBED_LINKS).
    embeds: list[JSON]
    attachments: list[StubAttachment]
    reference: JSON | None
    allowed_mentions: JSON | None
    flags: int
    components: list[JSON]
    payload: JSON
    requested_embeds: list[JSON]
    interaction_id: int | None = None
    edits: int = 0
    deleted: bool = False

    @property
    def files(self) -> dict[str, bytes]:
        """``{filename: bytes}`` of the attached files."""
        return {a.filename: a.data for a in self.attachments}

    @property
    def reply_to(self) -> int | None:
        """The id of the message this one replies to."""
        if self.reference is None or self.reference.get("message_id") is None:
            return None
        return int(self.reference["message_id"])


@dataclass
class InteractionCallback:
    """One ``POST /interactions/{id}/{token}/callback``."""

    type: int
    data: JSON
    uploads: list[UploadedFile]
    message: SentMessage | None


@dataclass
class StubInteraction:
    """An interaction the stand-in dispatched; the bot's answers are collected here."""

    id: int
    token: str
    channel_id: int
    user_id: int
    guild_id: int | None
    name: str
    callbacks: list[InteractionCallback] = field(default_factory=list)
    followups: list[SentMessage] = field(default_factory=list)
    original: SentMessage | None = None


@dataclass
class _Fault:
    method: str
    route: str
    remaining: int
    status: int
    body: JSON
    headers: dict[str, str]


@dataclass
class GatewaySession:
    """A gateway session (made by IDENTIFY, continued by RESUME)."""

    id: str
    intents: int
    large_threshold: int
    seq: int = 0
    #: Every dispatch frame of the session, for replay on RESUME.
    log: list[JSON] = field(default_factory=list)
    connection: GatewayConnection | None = None
    valid: bool = True
    shard: tuple[int, int] = (0, 1)
    """``[shard_id, shard_count]`` from IDENTIFY: the session gets the guilds with
    ``(guild_id >> 22) % shard_count == shard_id``, and direct messages only on shard 0."""

    def owns(self, guild_id: int | None) -> bool:
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % count == shard_id


@dataclass
class GatewayConnection:
    """One WebSocket connection to the gateway."""

    number: int
    path: str
    query: dict[str, str]
    compress: str | None
    received: list[JSON] = field(default_factory=list)
    #: Every frame sent, in order (after they reached the socket).
    sent: list[JSON] = field(default_factory=list)
    identified: bool = False
    resumed: bool = False
    session: GatewaySession | None = None
    heartbeats: int = 0
    open: bool = True
    #: The close code: the client's, or the one the stand-in closed with.
    close_code: int | None = None
    _ws: web.WebSocketResponse | None = field(default=None, repr=False)
    _request: web.Request | None = field(default=None, repr=False)
    _queue: asyncio.Queue[JSON | int | None] = field(default_factory=asyncio.Queue, repr=False)
    _deflate: Any = field(default=None, repr=False)

    def enqueue(self, frame: JSON) -> None:
        if self.open:
            self._queue.put_nowait(frame)

    def events(self) -> list[str]:
        """The dispatch event names sent on this connection."""
        return [f["t"] for f in self.sent if f.get("op") == Op.DISPATCH]


_RECORD = web.RequestKey("stub_record", RecordedRequest)

# --------------------------------------------------------------------------------------------
# The stand-in


class DiscordStub:
    """Discord's REST API and gateway on 127.0.0.1, for the real discord.py client.

    Usage::

        stub = DiscordStub(heartbeat_interval=1.0)
        await stub.start()
        guild = stub.add_guild(name="Town")
        chan = stub.add_channel(guild.id, "general")
        with stub.point():  # discord.py now talks to the stub
            ...
        await stub.stop()

    ``privileged_*`` say which privileged intents the application is allowed (the switches in the
    developer portal); asking for a disallowed one closes the gateway with 4014.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "PresenceBot",
        bot_id: int | None = None,
        application_id: int | None = None,
        heartbeat_interval: float = 41.25,
        privileged_message_content: bool = True,
        privileged_members: bool = True,
        privileged_presences: bool = True,
        echo_own_messages: bool = True,
    ) -> None:
        self._counter = itertools.count()
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.privileged_message_content = privileged_message_content
        self.privileged_members = privileged_members
        self.privileged_presences = privileged_presences
        #: Dispatch MESSAGE_CREATE for the bot's own messages, as Discord does.
        self.echo_own_messages = echo_own_messages
        self.users: dict[int, StubUser] = {}
        self.guilds: dict[int, StubGuild] = {}
        self.channels: dict[int, StubChannel] = {}
        self.bot = self.add_user(bot_name, id=bot_id, bot=True)
        self.application_id = application_id if application_id is not None else self.bot.id
        self.app_owner = self.add_user("app-owner")
        #: The bot's avatar as last uploaded with ``PATCH /users/@me``.
        self.avatar: bytes | None = None
        #: Every REST request, in arrival order.
        self.requests: list[RecordedRequest] = []
        #: Every message the bot sent (all channels), in order.
        self.sent_messages: list[SentMessage] = []
        self.interactions: dict[int, StubInteraction] = {}
        #: Registered application commands by guild id (``None``: global).
        self.commands: dict[int | None, list[JSON]] = {}
        self.connections: list[GatewayConnection] = []
        self.sessions: dict[str, GatewaySession] = {}
        #: REST requests no route handled (a test can assert this stays empty).
        self.unhandled: list[RecordedRequest] = []
        self._messages: dict[int, JSON] = {}
        self._attachments: dict[int, StubAttachment] = {}
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def rest_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"{self.url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be."""
        return f"ws://{HOST}:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{HOST}:{self.port}/resume"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every gateway connection (1001, going away) and the server."""
        for conn in self.connections:
            if conn.open:
                self._close(conn, 1001)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextlib.contextmanager
    def point(self, discord_module: Any = None) -> Iterator[DiscordStub]:
        """Point discord.py at the stand-in (``Route.BASE``, ``DEFAULT_GATEWAY``); restore on exit."""
        module = discord if discord_module is None else discord_module
        route, websocket = module.http.Route, module.gateway.DiscordWebSocket
        old_base, old_gateway = route.BASE, websocket.DEFAULT_GATEWAY
        route.BASE = self.rest_base
        websocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            route.BASE = old_base
            websocket.DEFAULT_GATEWAY = old_gateway

    # ------------------------------------------------------------------ world set-up

    def new_id(self) -> int:
        """A fresh snowflake."""
        millis = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (millis << 22) | (1 << 17) | (next(self._counter) & 0xFFF)

    def add_user(
        self,
        username: str,
        *,
        id: int | None = None,
        global_name: str | None = None,
        bot: bool = False,
        accepts_dms: bool = True,
        member_of: Iterable[int] = (),
    ) -> StubUser:
        """A user; ``member_of``: guild ids to add them to as a member (no extra roles)."""
        user = StubUser(
            id=self.new_id() if id is None else id,
            username=username,
            global_name=global_name,
            bot=bot,
            accepts_dms=accepts_dms,
        )
        self.users[user.id] = user
        for guild_id in member_of:
            self.add_member(guild_id, user.id)
        return user

    def add_member(
        self, guild_id: int, user_id: int, *, roles: Iterable[int] = (), nick: str | None = None
    ) -> StubMember:
        guild = self.guilds[guild_id]
        if user_id not in self.users:
            raise KeyError(f"unknown user {user_id}: add_user() first")
        member = StubMember(user_id=user_id, guild_id=guild_id, roles=list(roles), nick=nick)
        guild.members[user_id] = member
        return member

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        id: int | None = None,
        owner_id: int | None = None,
        system_channel_id: int | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        joined: bool = True,
    ) -> StubGuild:
        """A guild with an ``@everyone`` role (id = guild id), an owner (made up unless given) and,
        if ``joined``, the bot as a member with its managed role (``bot_permissions``). With
        ``joined=False`` the bot is not in it yet: :meth:`guild_join` brings it in at run time."""
        guild_id = self.new_id() if id is None else id
        if owner_id is None:
            owner_id = self.add_user(f"owner-of-{name}".replace(" ", "-").lower()).id
        guild = StubGuild(id=guild_id, name=name, owner_id=owner_id, system_channel_id=system_channel_id)
        guild.roles[guild_id] = StubRole(id=guild_id, name="@everyone", permissions=int(everyone_permissions))
        bot_role = StubRole(
            id=self.new_id(),
            name=self.bot.username,
            permissions=int(bot_permissions),
            position=1,
            bot_id=self.bot.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.bot_role_id = bot_role.id
        self.guilds[guild_id] = guild
        self.add_member(guild_id, owner_id)
        guild.joined = joined
        if joined:
            self.add_member(guild_id, self.bot.id, roles=[bot_role.id])
        return guild

    def add_role(
        self,
        guild_id: int,
        name: str,
        permissions: int = 0,
        *,
        id: int | None = None,
        position: int | None = None,
    ) -> StubRole:
        guild = self.guilds[guild_id]
        role = StubRole(
            id=self.new_id() if id is None else id,
            name=name,
            permissions=int(permissions),
            position=len(guild.roles) if position is None else position,
        )
        guild.roles[role.id] = role
        return role

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        id: int | None = None,
        position: int | None = None,
        type: int = ChannelType.GUILD_TEXT,
        topic: str | None = None,
        parent_id: int | None = None,
        overwrites: Iterable[Overwrite] = (),
        system: bool = False,
    ) -> StubChannel:
        """A guild channel; ``system=True`` makes it the guild's system channel."""
        guild = self.guilds[guild_id]
        channel = StubChannel(
            id=self.new_id() if id is None else id,
            name=name,
            guild_id=guild_id,
            type=type,
            position=len(guild.channel_ids) if position is None else position,
            topic=topic,
            parent_id=parent_id,
            overwrites=list(overwrites),
        )
        self.channels[channel.id] = channel
        guild.channel_ids.append(channel.id)
        if system:
            guild.system_channel_id = channel.id
        return channel

    def set_overwrite(
        self, channel_id: int, target_id: int, *, type: int, allow: int = 0, deny: int = 0
    ) -> None:
        """Set (replace) the overwrite for a role (``type=0``) or member (``type=1``)."""
        channel = self.channels[channel_id]
        channel.overwrites = [o for o in channel.overwrites if o.id != target_id]
        if allow or deny:
            channel.overwrites.append(Overwrite(target_id, type, int(allow), int(deny)))

    def set_bot_permissions(
        self,
        channel_id: int,
        *,
        view: bool | None = None,
        send: bool | None = None,
        embed_links: bool | None = None,
        attach_files: bool | None = None,
        read_history: bool | None = None,
        add_reactions: bool | None = None,
    ) -> None:
        """Allow (True) or deny (False) permissions to the bot in a channel with a member overwrite,
        which wins over roles, exactly as in Discord; ``None`` leaves a permission as the roles say.
        Push the change to a connected client with :meth:`channel_update`."""
        channel = self.channels[channel_id]
        current = channel.overwrite_for(self.bot.id)
        allow, deny = (current.allow, current.deny) if current else (0, 0)
        wanted = {
            Permission.VIEW_CHANNEL: view,
            Permission.SEND_MESSAGES: send,
            Permission.EMBED_LINKS: embed_links,
            Permission.ATTACH_FILES: attach_files,
            Permission.READ_MESSAGE_HISTORY: read_history,
            Permission.ADD_REACTIONS: add_reactions,
        }
        for bit, value in wanted.items():
            if value is True:
                allow, deny = allow | bit, deny & ~bit
            elif value is False:
                allow, deny = allow & ~bit, deny | bit
        self.set_overwrite(channel_id, self.bot.id, type=1, allow=allow, deny=deny)

    def permissions(self, channel_id: int, user_id: int | None = None) -> int:
        """Discord's permission computation for ``user_id`` (default: the bot) in a guild channel."""
        user_id = self.bot.id if user_id is None else user_id
        channel = self.channels[channel_id]
        if channel.guild_id is None:
            return int(
                Permission.VIEW_CHANNEL
                | Permission.SEND_MESSAGES
                | Permission.EMBED_LINKS
                | Permission.ATTACH_FILES
                | Permission.READ_MESSAGE_HISTORY
                | Permission.ADD_REACTIONS
            )
        guild = self.guilds[channel.guild_id]
        member = guild.members.get(user_id)
        if member is None:
            return 0
        if guild.owner_id == user_id:
            return ALL_PERMISSIONS
        perms = guild.everyone.permissions
        for role_id in member.roles:
            perms |= guild.roles[role_id].permissions
        if perms & Permission.ADMINISTRATOR:
            return ALL_PERMISSIONS
        everyone = channel.overwrite_for(guild.id)
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for overwrite in channel.overwrites:
            if overwrite.type == 0 and overwrite.id in member.roles:
                allow, deny = allow | overwrite.allow, deny | overwrite.deny
        perms = (perms & ~deny) | allow
        own = next((o for o in channel.overwrites if o.type == 1 and o.id == user_id), None)
        if own is not None:
            perms = (perms & ~own.deny) | own.allow
        if not perms & Permission.VIEW_CHANNEL:
            return 0
        if channel.type != ChannelType.GUILD_CATEGORY:
            perms &= ~(Permission.CONNECT | Permission.SPEAK)  # voice-only: not part of a text channel
        if not perms & Permission.SEND_MESSAGES:
            perms &= ~(
                Permission.SEND_TTS_MESSAGES
                | Permission.MENTION_EVERYONE
                | Permission.EMBED_LINKS
                | Permission.ATTACH_FILES
            )
        return perms

    def dm_channel(self, user_id: int) -> StubChannel:
        """The DM channel between the bot and ``user_id`` (made on first use)."""
        for channel in self.channels.values():
            if channel.is_dm and channel.recipient_id == user_id:
                return channel
        if user_id not in self.users:
            raise KeyError(f"unknown user {user_id}")
        channel = StubChannel(
            id=self.new_id(), name="", guild_id=None, type=ChannelType.DM, recipient_id=user_id
        )
        self.channels[channel.id] = channel
        return channel

    # ------------------------------------------------------------------ assertions and waiting

    def messages_in(self, channel_id: int) -> list[SentMessage]:
        """The messages the bot sent to a channel and everyone can see (not deleted, not ephemeral
        interaction replies: find those in :attr:`interactions`), oldest first."""
        return [
            m for m in self.sent_messages if m.channel_id == channel_id and not m.deleted and not m.flags & 64
        ]

    def history(self, channel_id: int) -> list[JSON]:
        """Every visible message in a channel (people's and the bot's) as REST payloads, oldest first."""
        return [
            dict(m)
            for m in self._messages.values()
            if int(m["channel_id"]) == channel_id and not int(m.get("flags") or 0) & 64
        ]

    def requests_to(self, route: str, method: str | None = None) -> list[RecordedRequest]:
        """Requests whose route template (``/channels/{channel_id}/messages``) or path matches."""
        return [
            r
            for r in self.requests
            if route in (r.route, r.path) and (method is None or r.method == method.upper())
        ]

    @property
    def identify_count(self) -> int:
        return sum(1 for c in self.connections if c.identified)

    @property
    def resume_count(self) -> int:
        return sum(1 for c in self.connections if c.resumed)

    @property
    def live_connections(self) -> list[GatewayConnection]:
        return [c for c in self.connections if c.open]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` holds; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"Discord stand-in: {what} not met within {timeout} s")
            await asyncio.sleep(0.005)

    async def wait_identified(self, count: int = 1, timeout: float = 5.0) -> GatewayConnection:
        """Wait for the ``count``-th IDENTIFY to have been answered with READY; return that connection."""

        def done() -> bool:
            ready = [c for c in self.connections if c.identified and "READY" in c.events()]
            return len(ready) >= count

        await self.wait_for(done, timeout, f"{count} IDENTIFY")
        return [c for c in self.connections if c.identified][count - 1]

    async def wait_resumed(self, count: int = 1, timeout: float = 5.0) -> GatewayConnection:
        """Wait for the ``count``-th RESUME to have been answered with RESUMED."""

        def done() -> bool:
            return len([c for c in self.connections if c.resumed and "RESUMED" in c.events()]) >= count

        await self.wait_for(done, timeout, f"{count} RESUME")
        return [c for c in self.connections if c.resumed][count - 1]

    async def wait_messages(self, channel_id: int, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Wait until the bot has sent ``count`` messages to a channel; return them all."""
        await self.wait_for(
            lambda: len(self.messages_in(channel_id)) >= count, timeout, f"{count} messages in {channel_id}"
        )
        return self.messages_in(channel_id)

    async def wait_request(
        self, route: str, method: str | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        await self.wait_for(
            lambda: len(self.requests_to(route, method)) >= count, timeout, f"{count}x {route}"
        )
        return self.requests_to(route, method)

    # ------------------------------------------------------------------ fault injection

    def rate_limit(
        self,
        route: str,
        *,
        method: str = "POST",
        times: int = 1,
        retry_after: float = 0.25,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``times`` requests to ``route`` (template like
        ``/channels/{channel_id}/messages`` or a concrete path) with 429, a ``Retry-After`` header
        and Discord's body."""
        headers = {
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        self._faults.append(_Fault(method.upper(), route, times, 429, body, headers))

    def fail(
        self,
        route: str,
        *,
        method: str = "POST",
        status: int = 500,
        code: int = 0,
        message: str = "",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests to ``route`` with an error (e.g. 403, code 50013)."""
        body = {"message": message or f"{status}: stand-in failure", "code": code}
        self._faults.append(_Fault(method.upper(), route, times, status, body, {}))

    # ------------------------------------------------------------------ payload builders

    def _user(self, user_id: int) -> StubUser:
        user = self.users.get(user_id)
        if user is None:
            raise _not_found("User", 10013)
        return user

    def _channel(self, channel_id: int) -> StubChannel:
        channel = self.channels.get(channel_id)
        if channel is None or (channel.guild_id is not None and not self.guilds[channel.guild_id].joined):
            raise _not_found("Channel", 10003)
        return channel

    def _guild(self, guild_id: int) -> StubGuild:
        guild = self.guilds.get(guild_id)
        if guild is None or not guild.joined:
            raise _not_found("Guild", 10004)
        return guild

    def _guild_payload(self, guild: StubGuild) -> JSON:
        """The guild object as REST returns it."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None if guild.system_channel_id is None else str(guild.system_channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "incidents_data": None,
        }

    def _guild_create_payload(self, guild: StubGuild, session: GatewaySession, *, initial: bool) -> JSON:
        """GUILD_CREATE: the guild plus channels, members, joined_at... As on Discord, all members
        are included only with the GUILD_PRESENCES intent in a guild that is not large; otherwise
        only the bot (the client asks for the rest with REQUEST_GUILD_MEMBERS)."""
        data = self._guild_payload(guild)
        large = len(guild.members) > session.large_threshold
        everyone = session.intents & Intent.GUILD_PRESENCES and not large
        members = [
            m.payload(self.users[m.user_id])
            for m in guild.members.values()
            if everyone or m.user_id == self.bot.id
        ]
        bot_member = guild.members.get(self.bot.id)
        data.update(
            joined_at=bot_member.joined_at if bot_member else now_iso(),
            large=large,
            member_count=len(guild.members),
            members=members,
            channels=[self.channels[c].payload(self.users, with_guild_id=False) for c in guild.channel_ids],
            threads=[],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            lazy=True,
            application_command_counts={},
        )
        if initial:
            data["unavailable"] = False
        return data

    def _member_with_user(self, guild: StubGuild, user_id: int) -> JSON:
        member = guild.members.get(user_id)
        if member is None:
            raise _not_found("Member", 10007)
        return member.payload(self.users[user_id])

    def _store_message(
        self,
        channel: StubChannel,
        author: StubUser,
        *,
        content: str,
        embeds: list[JSON] | None = None,
        attachments: list[StubAttachment] | None = None,
        reference: JSON | None = None,
        mention_ids: Iterable[int] = (),
        flags: int = 0,
        components: list[JSON] | None = None,
        message_type: int | None = None,
        interaction_metadata: JSON | None = None,
        nonce: Any = None,
        message_id: int | None = None,
    ) -> JSON:
        """Make a message in a channel; return its REST payload (no guild_id/member)."""
        msg_id = self.new_id() if message_id is None else message_id
        mentions = [int(u) for u in dict.fromkeys(mention_ids) if int(u) in self.users]
        referenced: JSON | None = None
        if reference is not None and reference.get("message_id") is not None:
            found = self._messages.get(int(reference["message_id"]))
            if found is not None:
                referenced = {k: v for k, v in found.items() if k != "referenced_message"}
        if message_type is None:
            message_type = 19 if reference is not None else 0
        payload: JSON = {
            "id": str(msg_id),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": [self.users[u].payload() for u in mentions],
            "mention_roles": [str(r) for r in _mentioned_ids(content, "&")],
            "attachments": [self._attachment_payload(channel.id, a) for a in attachments or []],
            "embeds": list(embeds or []),
            "pinned": False,
            "type": message_type,
            "flags": flags,
            "components": list(components or []),
        }
        if nonce is not None:
            payload["nonce"] = nonce
        if reference is not None:
            ref: JSON = {"type": 0, "channel_id": str(channel.id), "message_id": str(reference["message_id"])}
            if channel.guild_id is not None:
                ref["guild_id"] = str(channel.guild_id)
            payload["message_reference"] = ref
            payload["referenced_message"] = referenced
        if interaction_metadata is not None:
            payload["interaction_metadata"] = interaction_metadata
        self._messages[msg_id] = payload
        channel.last_message_id = msg_id
        return payload

    def _attachment_payload(self, channel_id: int, attachment: StubAttachment) -> JSON:
        url = f"{self.url}/attachments/{channel_id}/{attachment.id}/{attachment.filename}"
        data: JSON = {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": len(attachment.data),
            "url": url,
            "proxy_url": url,
            "content_type": attachment.content_type,
        }
        if attachment.description is not None:
            data["description"] = attachment.description
        return data

    def _gateway_message(self, payload: JSON, session: GatewaySession) -> JSON | None:
        """MESSAGE_CREATE's ``d`` for a session: guild_id and members added, the intents honoured
        (GUILD_MESSAGES / DIRECT_MESSAGES to receive it, MESSAGE_CONTENT to see what it says)."""
        channel = self.channels[int(payload["channel_id"])]
        wanted = Intent.DIRECT_MESSAGES if channel.is_dm else Intent.GUILD_MESSAGES
        if not session.intents & wanted:
            return None
        author_id = int(payload["author"]["id"])
        mentions_bot = any(int(u["id"]) == self.bot.id for u in payload["mentions"])
        data: JSON = json.loads(_dumps(payload))
        see_content = (
            session.intents & Intent.MESSAGE_CONTENT
            or channel.is_dm
            or mentions_bot
            or author_id == self.bot.id
        )
        if not see_content:
            data.update(content="", embeds=[], attachments=[], components=[])
            data.pop("poll", None)
        if channel.guild_id is not None:
            guild = self.guilds[channel.guild_id]
            data["guild_id"] = str(guild.id)
            member = guild.members.get(author_id)
            if member is not None:
                data["member"] = member.payload()
            for mention in data["mentions"]:
                mentioned = guild.members.get(int(mention["id"]))
                if mentioned is not None:
                    mention["member"] = mentioned.payload()
        return data

    # ------------------------------------------------------------------ gateway dispatch

    def _dispatch_to(self, session: GatewaySession, event: str, data: Any) -> None:
        session.seq += 1
        frame: JSON = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        if session.connection is not None:
            session.connection.enqueue(frame)

    def _broadcast(
        self, event: str, make: Callable[[GatewaySession], Any], *, guild: int | EveryShard | None = EVERY
    ) -> None:
        """Dispatch to every valid session whose shard has ``guild`` (``None``: a direct message,
        shard 0; ``EVERY``: not about a guild); ``make`` builds ``d`` per session (None: not sent)."""
        for session in list(self.sessions.values()):
            if session.valid and (guild is EVERY or session.owns(guild)):
                data = make(session)
                if data is not None:
                    self._dispatch_to(session, event, data)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every open connection has written everything queued."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for conn in self.live_connections:
                    await conn._queue.join()

    async def send_message(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        reference_message_id: int | None = None,
        mentions: Iterable[int] = (),
        embeds: list[JSON] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> JSON:
        """A person (or another bot) posts in a channel: MESSAGE_CREATE. ``<@id>`` in ``content``
        counts as a mention, as do ``mentions``. Returns the message's REST payload."""
        channel = self.channels[channel_id]
        author = self.users[author_id]
        if channel.guild_id is not None and author_id not in self.guilds[channel.guild_id].members:
            raise KeyError(f"user {author_id} is not a member of guild {channel.guild_id}")
        reference = None
        if reference_message_id is not None:
            if reference_message_id not in self._messages:
                raise KeyError(f"unknown message {reference_message_id}")
            reference = {"message_id": reference_message_id}
        attachments = [
            StubAttachment(self.new_id(), name, data, "application/octet-stream")
            for name, data in (files or {}).items()
        ]
        for attachment in attachments:
            self._attachments[attachment.id] = attachment
        mention_ids = [*_mentioned_ids(content, "@"), *mentions]
        payload = self._store_message(
            channel,
            author,
            content=content,
            embeds=embeds,
            attachments=attachments,
            reference=reference,
            mention_ids=mention_ids,
        )
        self._broadcast("MESSAGE_CREATE", lambda s: self._gateway_message(payload, s), guild=channel.guild_id)
        await self.flush()
        return payload

    async def send_dm(self, author_id: int, content: str, *, reference_message_id: int | None = None) -> JSON:
        """A person writes to the bot in a DM: MESSAGE_CREATE without guild_id (bots get no
        CHANNEL_CREATE for DMs since API v8)."""
        channel = self.dm_channel(author_id)
        return await self.send_message(
            channel.id, author_id, content, reference_message_id=reference_message_id
        )

    async def channel_update(self, channel_id: int) -> None:
        """CHANNEL_UPDATE with the channel as it is now (after :meth:`set_bot_permissions`...)."""
        channel = self.channels[channel_id]
        self._broadcast("CHANNEL_UPDATE", lambda s: channel.payload(self.users), guild=channel.guild_id)
        await self.flush()

    async def channel_create(self, channel: StubChannel) -> None:
        self._broadcast("CHANNEL_CREATE", lambda s: channel.payload(self.users), guild=channel.guild_id)
        await self.flush()

    async def guild_join(self, guild: StubGuild | int) -> None:
        """The bot is added to a guild made with ``add_guild(..., joined=False)``: GUILD_CREATE."""
        guild = self.guilds[guild if isinstance(guild, int) else guild.id]
        guild_id = guild.id
        if not guild.joined:
            guild.joined = True
            roles = [guild.bot_role_id] if guild.bot_role_id is not None else []
            self.add_member(guild_id, self.bot.id, roles=roles)
        self._broadcast(
            "GUILD_CREATE", lambda s: self._guild_create_payload(guild, s, initial=False), guild=guild_id
        )
        await self.flush()

    async def guild_remove(self, guild: StubGuild | int, *, unavailable: bool = False) -> None:
        """GUILD_DELETE: the bot was removed (or, with ``unavailable``, the guild has an outage)."""
        guild = self.guilds[guild if isinstance(guild, int) else guild.id]
        guild_id = guild.id
        if not unavailable:
            guild.joined = False
            guild.members.pop(self.bot.id, None)
        data: JSON = {"id": str(guild_id)}
        if unavailable:
            data["unavailable"] = True
        self._broadcast("GUILD_DELETE", lambda s: data, guild=guild_id)
        await self.flush()

    async def member_join(self, guild_id: int, user_id: int) -> StubMember:
        """GUILD_MEMBER_ADD (sent with the GUILD_MEMBERS intent only)."""
        member = self.add_member(guild_id, user_id)
        data = {**member.payload(self.users[user_id]), "guild_id": str(guild_id)}
        self._broadcast(
            "GUILD_MEMBER_ADD", lambda s: data if s.intents & Intent.GUILD_MEMBERS else None, guild=guild_id
        )
        await self.flush()
        return member

    async def slash_command(
        self, channel_id: int, user_id: int, name: str, *, options: list[JSON] | None = None
    ) -> StubInteraction:
        """A person runs ``/name``: INTERACTION_CREATE type 2 (APPLICATION_COMMAND). The command is
        looked up among the registered ones (guild first, then global) for its id."""
        channel = self.channels[channel_id]
        user = self.users[user_id]
        guild = self.guilds[channel.guild_id] if channel.guild_id is not None else None
        registered = [*self.commands.get(channel.guild_id, []), *self.commands.get(None, [])]
        command = next((c for c in registered if c["name"] == name), None)
        interaction = StubInteraction(
            id=self.new_id(),
            token=f"aW50ZXJhY3Rpb24{secrets.token_urlsafe(48)}",
            channel_id=channel_id,
            user_id=user_id,
            guild_id=None if guild is None else guild.id,
            name=name,
        )
        self.interactions[interaction.id] = interaction
        data: JSON = {
            "id": command["id"] if command else str(self.new_id()),
            "name": name,
            "type": 1,
            "options": options or [],
        }
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        payload: JSON = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": 2,
            "data": data,
            "channel_id": str(channel_id),
            "channel": channel.payload(self.users),
            "token": interaction.token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "app_permissions": str(self.permissions(channel_id)),
        }
        if guild is not None:
            member = guild.members[user_id]
            payload.update(
                guild_id=str(guild.id),
                guild_locale="en-US",
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                member={**member.payload(user), "permissions": str(self.permissions(channel_id, user_id))},
                context=0,
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(user=user.payload(), context=1, authorizing_integration_owners={"0": "0"})
        self._broadcast("INTERACTION_CREATE", lambda s: payload, guild=None if guild is None else guild.id)
        await self.flush()
        return interaction

    async def wait_interaction_response(
        self, interaction: StubInteraction, timeout: float = 5.0
    ) -> InteractionCallback:
        await self.wait_for(
            lambda: bool(interaction.callbacks), timeout, f"a response to /{interaction.name}"
        )
        return interaction.callbacks[0]

    # ------------------------------------------------------------------ gateway control

    def _close(self, conn: GatewayConnection, code: int | None) -> None:
        """Take ``conn`` out of service now; close it with ``code`` (or abort the TCP connection)."""
        if not conn.open:
            return
        conn.open = False
        conn.close_code = code if code is not None else 1006
        session = conn.session
        if session is not None and session.connection is conn:
            session.connection = None
            if code in _SESSION_ENDING_CODES:
                session.valid = False
        if code is None:
            transport = conn._request.transport if conn._request is not None else None
            if transport is not None:
                transport.abort()
            conn._queue.put_nowait(None)
        else:
            conn._queue.put_nowait(code)

    async def drop_connection(self, code: int | None = None) -> None:
        """Drop the live gateway connection(s): no ``code`` = the TCP connection is cut (abnormal
        closure, resumable); a code = a close frame (4000 resumable; 4007/4009/1000 end the session,
        the client must IDENTIFY again; 4004/4010-4014 are fatal for discord.py). Dispatches from now
        on are kept for the RESUME."""
        for conn in self.live_connections:
            self._close(conn, code)
        await asyncio.sleep(0)

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION to the live connection(s); unless ``resumable`` the session is gone
        and the client must IDENTIFY again."""
        for conn in self.live_connections:
            if conn.session is not None and not resumable:
                conn.session.valid = False
            conn.enqueue({"op": Op.INVALID_SESSION, "d": resumable})
        await self.flush()

    async def request_reconnect(self) -> None:
        """Send RECONNECT (op 7): the client closes and resumes."""
        for conn in self.live_connections:
            conn.enqueue({"op": Op.RECONNECT, "d": None})
        await self.flush()

    async def request_heartbeat(self) -> None:
        """Send HEARTBEAT (op 1): the client must heartbeat at once."""
        for conn in self.live_connections:
            conn.enqueue({"op": Op.HEARTBEAT, "d": None})
        await self.flush()

    # ------------------------------------------------------------------ gateway server

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="expected a WebSocket upgrade")
        await ws.prepare(request)
        current = asyncio.current_task()
        if current is not None:
            self._handlers.add(current)
            current.add_done_callback(self._handlers.discard)
        query = dict(request.query)
        compress = query.get("compress")
        conn = GatewayConnection(
            number=len(self.connections) + 1,
            path=request.path,
            query=query,
            compress=compress,
            _ws=ws,
            _request=request,
        )
        if compress == "zlib-stream":
            conn._deflate = zlib.compressobj()
        self.connections.append(conn)
        writer = asyncio.ensure_future(self._writer(conn, ws))
        conn.enqueue({"op": Op.HELLO, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}})
        if query.get("v", str(API_VERSION)) != str(API_VERSION):
            self._close(conn, CloseCode.INVALID_API_VERSION)
        try:
            while conn.open:
                msg = await ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raw = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", "replace")
                    try:
                        payload = json.loads(raw)
                        if not isinstance(payload, dict):
                            raise ValueError("not an object")
                    except ValueError:
                        self._close(conn, CloseCode.DECODE_ERROR)
                        break
                    self._on_gateway_payload(conn, payload)
                elif msg.type is WSMsgType.CLOSE:
                    # The client closed: 1000/1001 end the session, anything else leaves it resumable.
                    client_code = ws.close_code
                    if conn.open:
                        conn.open = False
                        conn.close_code = client_code
                        session = conn.session
                        if session is not None and session.connection is conn:
                            session.connection = None
                            if client_code in (1000, 1001):
                                session.valid = False
                        conn._queue.put_nowait(None)
                    break
                else:  # CLOSING, CLOSED, ERROR: gone
                    if conn.open:
                        self._close(conn, None)
                    break
        finally:
            if conn.open:  # only if handling a frame raised: a bug in the stand-in
                self._close(conn, 1011)
            await asyncio.wait([writer], timeout=10)
            writer.cancel()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    async def _writer(self, conn: GatewayConnection, ws: web.WebSocketResponse) -> None:
        """Write queued frames in order: one deflate stream per connection for zlib-stream, every
        frame ending in a Z_SYNC_FLUSH marker; an int closes the socket with that code; None stops."""
        queue = conn._queue
        try:
            while True:
                item = await queue.get()
                try:
                    if item is None:
                        return
                    if isinstance(item, int):
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(ws.close(code=item), 5)
                        return
                    text = _dumps(item)
                    if conn._deflate is not None:
                        data = conn._deflate.compress(text.encode()) + conn._deflate.flush(zlib.Z_SYNC_FLUSH)
                        await ws.send_bytes(data)
                    else:
                        await ws.send_str(text)
                    conn.sent.append(item)
                finally:
                    queue.task_done()
        except (ConnectionError, RuntimeError):
            if conn.open:
                self._close(conn, None)
        finally:
            while not queue.empty():
                queue.get_nowait()
                queue.task_done()

    def _on_gateway_payload(self, conn: GatewayConnection, payload: JSON) -> None:
        conn.received.append(payload)
        op, data = payload.get("op"), payload.get("d")
        if op == Op.HEARTBEAT:
            conn.heartbeats += 1
            conn.enqueue({"op": Op.HEARTBEAT_ACK})
            return
        if op == Op.IDENTIFY:
            self._identify(conn, data if isinstance(data, dict) else {})
            return
        if op == Op.RESUME:
            self._resume(conn, data if isinstance(data, dict) else {})
            return
        if conn.session is None:
            self._close(conn, CloseCode.NOT_AUTHENTICATED)
            return
        if op == Op.REQUEST_GUILD_MEMBERS:
            self._request_members(conn.session, data if isinstance(data, dict) else {})
        elif op in (Op.PRESENCE_UPDATE, Op.VOICE_STATE_UPDATE):
            pass  # recorded in conn.received
        else:
            self._close(conn, CloseCode.UNKNOWN_OPCODE)

    def _identify(self, conn: GatewayConnection, data: JSON) -> None:
        if conn.session is not None:
            self._close(conn, CloseCode.ALREADY_AUTHENTICATED)
            return
        if data.get("token") != self.token:
            self._close(conn, CloseCode.AUTHENTICATION_FAILED)
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            self._close(conn, CloseCode.INVALID_INTENTS)
            return
        allowed = {
            Intent.MESSAGE_CONTENT: self.privileged_message_content,
            Intent.GUILD_MEMBERS: self.privileged_members,
            Intent.GUILD_PRESENCES: self.privileged_presences,
        }
        if any(intents & bit and not ok for bit, ok in allowed.items()):
            self._close(conn, CloseCode.DISALLOWED_INTENTS)
            return
        shard = data.get("shard", [0, 1])
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(isinstance(n, int) for n in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            self._close(conn, CloseCode.INVALID_SHARD)
            return
        session = GatewaySession(
            id=secrets.token_hex(16),
            intents=intents,
            large_threshold=int(data.get("large_threshold", 50)),
            shard=(shard[0], shard[1]),
        )
        self.sessions[session.id] = session
        session.connection = conn
        conn.session = session
        conn.identified = True
        joined = [g for g in self.guilds.values() if g.joined and session.owns(g.id)]
        ready = {
            "v": API_VERSION,
            "user": self._me_payload(),
            "user_settings": {},
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in joined],
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam"],
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "shard": list(session.shard),
            "_trace": ['["gateway-prd-stub",{"micros":0}]'],
        }
        self._dispatch_to(session, "READY", ready)
        for guild in joined:
            self._dispatch_to(
                session, "GUILD_CREATE", self._guild_create_payload(guild, session, initial=True)
            )

    def _resume(self, conn: GatewayConnection, data: JSON) -> None:
        if conn.session is not None:
            self._close(conn, CloseCode.ALREADY_AUTHENTICATED)
            return
        if data.get("token") != self.token:
            self._close(conn, CloseCode.AUTHENTICATION_FAILED)
            return
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if session is None or not session.valid or not isinstance(seq, int) or seq > session.seq:
            conn.enqueue({"op": Op.INVALID_SESSION, "d": False})
            return
        previous = session.connection
        if previous is not None and previous is not conn:
            self._close(previous, CloseCode.UNKNOWN_ERROR)
        for frame in session.log:
            if frame["s"] > seq:
                conn.enqueue(frame)
        session.connection = conn
        conn.session = session
        conn.resumed = True
        self._dispatch_to(session, "RESUMED", {"_trace": ['["gateway-prd-stub",{"micros":0}]']})

    def _request_members(self, session: GatewaySession, data: JSON) -> None:
        raw_ids = data.get("guild_id")
        guild_ids = raw_ids if isinstance(raw_ids, list) else [raw_ids]
        user_ids = data.get("user_ids")
        if user_ids is not None and not isinstance(user_ids, list):
            user_ids = [user_ids]
        query = data.get("query")
        limit = int(data.get("limit") or 0)
        for raw in guild_ids:
            guild = self.guilds.get(int(raw or 0))
            if guild is None or not guild.joined:
                continue
            members = list(guild.members.values())
            not_found: list[str] = []
            if user_ids is not None:
                wanted = {int(u) for u in user_ids}
                not_found = [str(u) for u in wanted if u not in guild.members]
                members = [m for m in members if m.user_id in wanted]
            elif query:
                q = str(query).lower()
                members = [
                    m
                    for m in members
                    if self.users[m.user_id].username.lower().startswith(q)
                    or (m.nick or "").lower().startswith(q)
                ]
            if limit:
                members = members[:limit]
            chunk: JSON = {
                "guild_id": str(guild.id),
                "members": [m.payload(self.users[m.user_id]) for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": not_found,
            }
            if data.get("presences"):
                chunk["presences"] = []
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        flags = 0
        if self.privileged_presences:
            flags |= 1 << 13  # GATEWAY_PRESENCE_LIMITED
        if self.privileged_members:
            flags |= 1 << 15  # GATEWAY_GUILD_MEMBERS_LIMITED
        if self.privileged_message_content:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    def _me_payload(self) -> JSON:
        return {
            **self.bot.payload(),
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
            "flags": 0,
        }

    # ------------------------------------------------------------------ REST plumbing

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._gateway)
        router.add_get("/resume", self._gateway)
        router.add_get("/resume/", self._gateway)
        router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._get_attachment)
        api: list[tuple[str, str, Handler]] = [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/users/@me", self._get_me),
            ("PATCH", "/users/@me", self._patch_me),
            ("POST", "/users/@me/channels", self._open_dm),
            ("GET", "/users/@me/guilds", self._my_guilds),
            ("DELETE", "/users/@me/guilds/{guild_id}", self._leave_guild),
            ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", "/channels/{channel_id}/messages", self._get_messages),
            ("POST", "/channels/{channel_id}/messages", self._create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/applications/{application_id}/commands", self._list_commands),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/commands", self._post_command),
            ("GET", "/applications/{application_id}/commands/{command_id}", self._get_command),
            ("PATCH", "/applications/{application_id}/commands/{command_id}", self._patch_command),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self._delete_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._list_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._get_command,
            ),
            (
                "PATCH",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._patch_command,
            ),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._delete_command,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback),
            ("POST", "/webhooks/{application_id}/{token}", self._followup),
            ("GET", "/webhooks/{application_id}/{token}/messages/@original", self._get_original),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/@original", self._edit_original),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/@original", self._delete_original),
        ]
        for method, path, handler in api:
            router.add_route(method, API_PREFIX + path, handler)
        router.add_route("*", API_PREFIX + "/{tail:.*}", self._unknown_route)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        route = template.removeprefix(API_PREFIX)
        path = request.path.removeprefix(API_PREFIX)
        try:
            body, uploads = await self._read_body(request)
        except ValueError:
            body, uploads = None, []
            bad_body: ApiError | None = ApiError(400, 50109, "The request body contains invalid JSON.")
        else:
            bad_body = None
        record = RecordedRequest(
            method=request.method,
            path=path,
            route=route,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body,
            uploads=uploads,
        )
        self.requests.append(record)
        request[_RECORD] = record
        response: web.StreamResponse
        try:
            if bad_body is not None:
                raise bad_body
            # Interaction callbacks and follow-ups are authorised by the interaction token instead.
            needs_auth = not path.startswith(("/gateway", "/interactions/", "/webhooks/"))
            fault = self._take_fault(request.method, route, path)
            if fault is not None:
                response = json_response(fault.body, fault.status, fault.headers)
            elif needs_auth and request.headers.get(hdrs.AUTHORIZATION) != f"Bot {self.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            else:
                response = await handler(request)
        except ApiError as error:
            response = error.response()
        record.status = response.status
        if response.status < 300:
            self._add_ratelimit_headers(response, route)
        return response

    def _take_fault(self, method: str, route: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (method, "*") and fault.route in (route, path):
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _add_ratelimit_headers(response: web.StreamResponse, route: str) -> None:
        bucket = hashlib.sha1(route.encode()).hexdigest()[:32]
        response.headers.update(
            {
                "X-RateLimit-Bucket": bucket,
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "4",
                "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                "X-RateLimit-Reset-After": "1.000",
            }
        )

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
        """The JSON body (for multipart: ``payload_json``) and any uploaded files."""
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            payload: Any = None
            uploads: list[UploadedFile] = []
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                if part.filename is not None:
                    content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                    uploads.append(UploadedFile(part.name or "", part.filename, content_type, data))
                elif part.name == "payload_json":
                    payload = json.loads(data)
            return payload, uploads
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    @staticmethod
    def _body(request: web.Request) -> JSON:
        record: RecordedRequest = request[_RECORD]
        return record.json if isinstance(record.json, dict) else {}

    @staticmethod
    def _uploads(request: web.Request) -> list[UploadedFile]:
        record: RecordedRequest = request[_RECORD]
        return record.uploads

    @staticmethod
    def _int(request: web.Request, key: str) -> int:
        try:
            return int(request.match_info[key])
        except ValueError:
            raise _form_error(key, "NUMBER_TYPE_COERCE", "Value is not snowflake.") from None

    async def _unknown_route(self, request: web.Request) -> web.StreamResponse:
        self.unhandled.append(request[_RECORD])
        raise ApiError(404, 0, "404: Not Found")

    async def _get_attachment(self, request: web.Request) -> web.StreamResponse:
        attachment = self._attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            return web.Response(status=404)
        return web.Response(
            body=attachment.data,
            headers={hdrs.CONTENT_TYPE: attachment.content_type or "application/octet-stream"},
        )

    # ------------------------------------------------------------------ REST: session and users

    async def _get_gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.gateway_url.rstrip("/")})

    async def _get_gateway_bot(self, request: web.Request) -> web.StreamResponse:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return json_response({"url": self.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": limit})

    async def _get_me(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._me_payload())

    async def _patch_me(self, request: web.Request) -> web.StreamResponse:
        body = self._body(request)
        if "username" in body:
            self.bot.username = str(body["username"])
        if "avatar" in body:
            avatar = body["avatar"]
            if avatar is None:
                self.avatar, self.bot.avatar = None, None
            else:
                match = re.fullmatch(r"data:(image/[a-z]+);base64,(.*)", str(avatar), re.DOTALL)
                if match is None:
                    raise _form_error("avatar", "IMAGE_INVALID", "Invalid image data")
                self.avatar = base64.b64decode(match.group(2))
                self.bot.avatar = hashlib.md5(self.avatar).hexdigest()
        me = self._me_payload()
        self._broadcast("USER_UPDATE", lambda s: me)
        return json_response(me)

    async def _get_user(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._user(self._int(request, "user_id")).payload())

    async def _get_application(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "id": str(self.application_id),
                "name": self.bot.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": hashlib.sha256(str(self.application_id).encode()).hexdigest(),
                "owner": self.app_owner.payload(),
                "team": None,
                "flags": self._application_flags(),
                "bot": self.bot.payload(),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": sum(1 for g in self.guilds.values() if g.joined),
                "tags": [],
                "hook": True,
                "is_monetized": False,
                "integration_types_config": {"0": {}},
            }
        )

    async def _open_dm(self, request: web.Request) -> web.StreamResponse:
        recipient = self._body(request).get("recipient_id")
        if recipient is None:
            raise _form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        user = self._user(int(recipient))
        return json_response(self.dm_channel(user.id).payload(self.users))

    async def _my_guilds(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            [
                {
                    "id": str(g.id),
                    "name": g.name,
                    "icon": None,
                    "banner": None,
                    "owner": False,
                    "permissions": str(ALL_PERMISSIONS if g.owner_id == self.bot.id else 0),
                    "features": [],
                }
                for g in self.guilds.values()
                if g.joined
            ]
        )

    async def _leave_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(self._int(request, "guild_id"))
        guild.joined = False
        guild.members.pop(self.bot.id, None)
        self._broadcast("GUILD_DELETE", lambda s: {"id": str(guild.id)}, guild=guild.id)
        return no_content()

    # ------------------------------------------------------------------ REST: guilds and channels

    async def _get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(self._int(request, "guild_id"))
        data = self._guild_payload(guild)
        if request.query.get("with_counts") in ("true", "1", "True"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return json_response(data)

    async def _get_guild_channels(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(self._int(request, "guild_id"))
        return json_response([self.channels[c].payload(self.users) for c in guild.channel_ids])

    async def _get_guild_roles(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(self._int(request, "guild_id"))
        return json_response([r.payload() for r in guild.roles.values()])

    async def _get_member(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(self._int(request, "guild_id"))
        return json_response(self._member_with_user(guild, self._int(request, "user_id")))

    async def _get_channel(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        self._check_access(channel, need_view=True)
        return json_response(channel.payload(self.users))

    def _check_access(self, channel: StubChannel, *, need_view: bool = True, need: int = 0) -> int:
        perms = self.permissions(channel.id)
        if need_view and not perms & Permission.VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        if need and perms & need != need:
            raise ApiError(403, 50013, "Missing Permissions")
        return perms

    async def _get_messages(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        self._check_access(channel, need=Permission.READ_MESSAGE_HISTORY)
        limit = min(int(request.query.get("limit", "50")), 100)
        messages = sorted(self.history(channel.id), key=lambda m: int(m["id"]), reverse=True)
        if "before" in request.query:
            messages = [m for m in messages if int(m["id"]) < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if int(m["id"]) > int(request.query["after"])]
            messages.sort(key=lambda m: int(m["id"]))
        return json_response(messages[:limit])

    def _message(self, channel: StubChannel, message_id: int) -> JSON:
        message = self._messages.get(message_id)
        if message is None or int(message["channel_id"]) != channel.id:
            raise _not_found("Message", 10008)
        return message

    async def _get_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        self._check_access(channel, need=Permission.READ_MESSAGE_HISTORY)
        return json_response(self._message(channel, self._int(request, "message_id")))

    async def _typing(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        self._check_access(channel, need=Permission.SEND_MESSAGES)
        return no_content()

    def _attachments_from(
        self, body: JSON, uploads: list[UploadedFile], keep: list[StubAttachment]
    ) -> list[StubAttachment]:
        """Attachments of a create/edit: ``attachments[i].id`` is the index of ``files[i]`` for a
        new file, or the id of an existing attachment to keep."""
        by_field = {u.field: u for u in uploads}
        result: list[StubAttachment] = []
        used: set[str] = set()
        kept = {a.id: a for a in keep}
        for item in body.get("attachments") or []:
            ref = int(item.get("id", -1))
            upload = by_field.get(f"files[{ref}]")
            if upload is not None:
                used.add(upload.field)
                attachment = StubAttachment(
                    id=self.new_id(),
                    filename=str(item.get("filename") or upload.filename),
                    data=upload.data,
                    content_type=upload.content_type,
                    description=item.get("description"),
                )
            elif ref in kept:
                attachment = kept[ref]
            else:
                raise _form_error("attachments", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
            result.append(attachment)
        for upload in uploads:
            if upload.field not in used:
                result.append(
                    StubAttachment(self.new_id(), upload.filename, upload.data, upload.content_type)
                )
        for attachment in result:
            self._attachments[attachment.id] = attachment
        return result

    def _validate_content(self, content: str, embeds: list[JSON], has_files: bool, body: JSON) -> None:
        if len(content) > MAX_CONTENT:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
        if len(embeds) > MAX_EMBEDS:
            raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
        if not (
            content
            or embeds
            or has_files
            or body.get("sticker_ids")
            or body.get("components")
            or body.get("poll")
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _new_bot_message(
        self,
        channel: StubChannel,
        body: JSON,
        uploads: list[UploadedFile],
        *,
        perms: int,
        interaction: StubInteraction | None = None,
        message_type: int | None = None,
        allow_empty: bool = False,
    ) -> SentMessage:
        """Validate and store a message from the bot; dispatch it (MESSAGE_CREATE) unless ephemeral."""
        content = str(body.get("content") or "")
        requested = list(body.get("embeds") or [])
        if body.get("embed"):
            requested.append(body["embed"])
        # Without EMBED_LINKS, Discord does not show a bot's rich embeds: they are dropped.
        embeds = requested if perms & Permission.EMBED_LINKS else []
        if uploads and not perms & Permission.ATTACH_FILES:
            raise ApiError(403, 50013, "Missing Permissions")
        attachments = self._attachments_from(body, uploads, [])
        if not allow_empty:
            self._validate_content(content, requested, bool(attachments), body)
        reference = body.get("message_reference")
        if reference is not None and reference.get("message_id") is not None:
            target = self._messages.get(int(reference["message_id"]))
            if target is None or int(target["channel_id"]) != channel.id:
                if reference.get("fail_if_not_exists", True):
                    raise _form_error(
                        "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                    )
                reference = None
        allowed = body.get("allowed_mentions")
        mention_ids = _mentioned_ids(content, "@")
        if isinstance(allowed, dict):
            parse = allowed.get("parse") or []
            listed = {int(u) for u in allowed.get("users") or []}
            mention_ids = [u for u in mention_ids if "users" in parse or u in listed]
        metadata = None
        if interaction is not None:
            metadata = {
                "id": str(interaction.id),
                "type": 2,
                "user": self.users[interaction.user_id].payload(),
                "authorizing_integration_owners": {},
                "name": interaction.name,
            }
        payload = self._store_message(
            channel,
            self.bot,
            content=content,
            embeds=embeds,
            attachments=attachments,
            reference=reference,
            mention_ids=mention_ids,
            flags=int(body.get("flags") or 0),
            components=body.get("components"),
            nonce=body.get("nonce"),
            message_type=message_type,
            interaction_metadata=metadata,
        )
        sent = SentMessage(
            id=int(payload["id"]),
            channel_id=channel.id,
            content=content,
            embeds=embeds,
            attachments=attachments,
            reference=reference,
            allowed_mentions=allowed,
            flags=int(body.get("flags") or 0),
            components=list(body.get("components") or []),
            payload=body,
            requested_embeds=requested,
            interaction_id=None if interaction is None else interaction.id,
        )
        self.sent_messages.append(sent)
        ephemeral = sent.flags & 64
        if self.echo_own_messages and not ephemeral:
            self._broadcast(
                "MESSAGE_CREATE", lambda s: self._gateway_message(payload, s), guild=channel.guild_id
            )
        return sent

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        if channel.is_dm:
            recipient = self.users.get(channel.recipient_id or 0)
            if recipient is None or not recipient.accepts_dms or recipient.bot:
                raise ApiError(403, 50007, "Cannot send messages to this user")
        perms = self._check_access(channel, need=Permission.SEND_MESSAGES)
        sent = self._new_bot_message(channel, self._body(request), self._uploads(request), perms=perms)
        return json_response(self._messages[sent.id])

    def _sent(self, message_id: int) -> SentMessage | None:
        return next((m for m in self.sent_messages if m.id == message_id), None)

    def _apply_edit(
        self, sent: SentMessage, channel: StubChannel, body: JSON, uploads: list[UploadedFile]
    ) -> JSON:
        payload = self._messages[sent.id]
        perms = self.permissions(channel.id)
        if "content" in body:
            sent.content = str(body["content"] or "")
            payload["content"] = sent.content
        if "embeds" in body:
            sent.requested_embeds = list(body["embeds"] or [])
            sent.embeds = sent.requested_embeds if perms & Permission.EMBED_LINKS else []
            payload["embeds"] = sent.embeds
        if "attachments" in body or uploads:
            sent.attachments = self._attachments_from(body, uploads, sent.attachments)
            payload["attachments"] = [self._attachment_payload(channel.id, a) for a in sent.attachments]
        if "flags" in body:
            sent.flags = int(body["flags"] or 0)
            payload["flags"] = sent.flags
        if "components" in body:
            sent.components = list(body["components"] or [])
            payload["components"] = sent.components
        self._validate_content(sent.content, sent.embeds, bool(sent.attachments), payload)
        payload["edited_timestamp"] = now_iso()
        sent.edits += 1
        if not sent.flags & 64:
            self._broadcast(
                "MESSAGE_UPDATE", lambda s: self._gateway_message(payload, s), guild=channel.guild_id
            )
        return payload

    def _remove(self, sent: SentMessage, channel: StubChannel) -> None:
        sent.deleted = True
        self._messages.pop(sent.id, None)
        data: JSON = {"id": str(sent.id), "channel_id": str(channel.id)}
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
        self._broadcast("MESSAGE_DELETE", lambda s: data, guild=channel.guild_id)

    async def _edit_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        self._check_access(channel)
        self._message(channel, self._int(request, "message_id"))
        sent = self._sent(self._int(request, "message_id"))
        if sent is None:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return json_response(self._apply_edit(sent, channel, self._body(request), self._uploads(request)))

    async def _delete_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(self._int(request, "channel_id"))
        perms = self._check_access(channel)
        message = self._message(channel, self._int(request, "message_id"))
        sent = self._sent(int(message["id"]))
        if sent is None:
            if not perms & Permission.MANAGE_MESSAGES:
                raise ApiError(403, 50013, "Missing Permissions")
            self._messages.pop(int(message["id"]))
            return no_content()
        self._remove(sent, channel)
        return no_content()

    # ------------------------------------------------------------------ REST: application commands

    def _scope(self, request: web.Request) -> int | None:
        if self._int(request, "application_id") != self.application_id:
            raise ApiError(403, 50001, "Missing Access")
        if "guild_id" in request.match_info:
            return self._guild(self._int(request, "guild_id")).id
        return None

    def _command_payload(self, data: JSON, guild_id: int | None, existing: JSON | None) -> JSON:
        if not data.get("name"):
            raise _form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
        command: JSON = {
            "id": existing["id"] if existing else str(self.new_id()),
            "application_id": str(self.application_id),
            "version": str(self.new_id()),
            "type": data.get("type", 1),
            "name": data["name"],
            "name_localizations": data.get("name_localizations"),
            "description": data.get("description", ""),
            "description_localizations": data.get("description_localizations"),
            "options": data.get("options", []),
            "default_member_permissions": data.get("default_member_permissions"),
            "dm_permission": data.get("dm_permission", True),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types", [0]),
            "nsfw": data.get("nsfw", False),
        }
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        return command

    async def _list_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.commands.get(self._scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.StreamResponse:
        scope = self._scope(request)
        record: RecordedRequest = request[_RECORD]
        body = record.json if isinstance(record.json, list) else []
        old = {c["name"]: c for c in self.commands.get(scope, [])}
        self.commands[scope] = [self._command_payload(d, scope, old.get(d.get("name"))) for d in body]
        return json_response(self.commands[scope])

    async def _post_command(self, request: web.Request) -> web.StreamResponse:
        scope = self._scope(request)
        body = self._body(request)
        commands = self.commands.setdefault(scope, [])
        existing = next((c for c in commands if c["name"] == body.get("name")), None)
        command = self._command_payload(body, scope, existing)
        if existing is not None:
            commands[commands.index(existing)] = command
            return json_response(command)
        commands.append(command)
        return json_response(command, 201)

    def _find_command(self, request: web.Request) -> tuple[list[JSON], JSON]:
        commands = self.commands.get(self._scope(request), [])
        wanted = request.match_info["command_id"]
        command = next((c for c in commands if c["id"] == wanted), None)
        if command is None:
            raise _not_found("application command", 10063)
        return commands, command

    async def _get_command(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._find_command(request)[1])

    async def _patch_command(self, request: web.Request) -> web.StreamResponse:
        _, command = self._find_command(request)
        command.update({k: v for k, v in self._body(request).items() if k not in ("id", "application_id")})
        command["version"] = str(self.new_id())
        return json_response(command)

    async def _delete_command(self, request: web.Request) -> web.StreamResponse:
        commands, command = self._find_command(request)
        commands.remove(command)
        return no_content()

    # ------------------------------------------------------------------ REST: interactions

    def _interaction(self, interaction_id: int, token: str) -> StubInteraction:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or not secrets.compare_digest(interaction.token, token):
            raise _not_found("interaction", 10062)
        return interaction

    def _interaction_by_token(self, request: web.Request) -> StubInteraction:
        if self._int(request, "application_id") != self.application_id:
            raise _not_found("Webhook", 10015)
        token = request.match_info["token"]
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if interaction is None:
            raise _not_found("Webhook", 10015)
        return interaction

    async def _interaction_callback(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction(self._int(request, "interaction_id"), request.match_info["token"])
        if interaction.callbacks:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = self._body(request)
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        channel = self.channels[interaction.channel_id]
        message: SentMessage | None = None
        if kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE: the bot's own channel permissions do not apply
            message = self._new_bot_message(
                channel,
                data,
                self._uploads(request),
                perms=ALL_PERMISSIONS,
                interaction=interaction,
                message_type=20,
            )
        elif kind == 5:  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: "is thinking..."
            message = self._new_bot_message(
                channel,
                {"content": "", "flags": int(data.get("flags") or 0) | 128},
                [],
                perms=ALL_PERMISSIONS,
                interaction=interaction,
                message_type=20,
                allow_empty=True,
            )
        interaction.callbacks.append(InteractionCallback(kind, body, self._uploads(request), message))
        interaction.original = message
        if request.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        result: JSON = {
            "interaction": {
                "id": str(interaction.id),
                "type": 2,
                "activity_instance_id": None,
                "response_message_id": None if message is None else str(message.id),
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message is not None and message.flags & 64),
            }
        }
        if message is not None:
            result["resource"] = {"type": kind, "message": self._messages[message.id]}
        else:
            result["resource"] = {"type": kind}
        return json_response(result)

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        interaction = self._interaction_by_token(request)
        if not interaction.callbacks:
            raise _not_found("Webhook", 10015)
        channel = self.channels[interaction.channel_id]
        original = interaction.original
        if original is not None and original.flags & 128 and not interaction.followups:
            # After a "thinking" defer, Discord turns the first follow-up into the original response.
            body = self._body(request)
            body = {**body, "flags": (original.flags & ~128) | int(body.get("flags") or 0)}
            self._apply_edit(original, channel, body, self._uploads(request))
            message = original
        else:
            message = self._new_bot_message(
                channel,
                self._body(request),
                self._uploads(request),
                perms=ALL_PERMISSIONS,
                interaction=interaction,
            )
        interaction.followups.append(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(self._messages[message.id])
        return no_content()

    def _original(self, request: web.Request) -> tuple[StubInteraction, SentMessage]:
        interaction = self._interaction_by_token(request)
        if interaction.original is None or interaction.original.deleted:
            raise _not_found("Message", 10008)
        return interaction, interaction.original

    async def _get_original(self, request: web.Request) -> web.StreamResponse:
        _, message = self._original(request)
        return json_response(self._messages[message.id])

    async def _edit_original(self, request: web.Request) -> web.StreamResponse:
        interaction, message = self._original(request)
        body = self._body(request)
        if message.flags & 128 and "flags" not in body:
            body = {**body, "flags": message.flags & ~128}
        channel = self.channels[interaction.channel_id]
        return json_response(self._apply_edit(message, channel, body, self._uploads(request)))

    async def _delete_original(self, request: web.Request) -> web.StreamResponse:
        interaction, message = self._original(request)
        self._remove(message, self.channels[interaction.channel_id])
        return no_content()


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
async def discord_stub() -> AsyncIterator[DiscordStub]:
    """A running :class:`DiscordStub` (heartbeat every 1 s) with discord.py pointed at it; stopped
    and discord.py restored afterwards. Close your clients before the test ends."""
    stub = DiscordStub(heartbeat_interval=1.0)
    await stub.start()
    try:
        with stub.point():
            yield stub
    finally:
        await stub.stop()


__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "DEFAULT_TOKEN",
    "ApiError",
    "ChannelType",
    "CloseCode",
    "DiscordStub",
    "GatewayConnection",
    "GatewaySession",
    "Intent",
    "InteractionCallback",
    "Op",
    "Overwrite",
    "Permission",
    "RecordedRequest",
    "SentMessage",
    "StubAttachment",
    "StubChannel",
    "StubGuild",
    "StubInteraction",
    "StubMember",
    "StubRole",
    "StubUser",
    "UploadedFile",
    "discord_stub",
    "json_response",
    "snowflake_time",
]
