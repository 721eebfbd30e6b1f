"""The IRC adapter: one connection to one IRC network, kept alive, polite and overt.

Follow one line from the socket: the ``irc`` library's asyncio connection parses it into an
``irc.client.Event`` and calls :meth:`IrcAdapter._on_irc_event`, which updates the
:class:`~.state.ServerState` (who is in which channel, with which status and account) and, for
what the core cares about, puts a presencebot event on a queue. One task (:meth:`_pump`) hands
those events to the runtime in order. Everything the bot says goes through an
:class:`~presencebot.throttle.Outbox` (flood control), after :func:`~.lines.clean` and
:func:`~.lines.split` made it one safe IRC line.

What the library does not do is done here: CAP/SASL negotiation (:mod:`.caps`), keepalive and
dead-connection detection, reconnecting with backoff, and never letting a bad line from the
server crash or disconnect the adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import ssl
from collections.abc import Callable, Coroutine, Generator
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from irc.client import Event as IrcEvent
from irc.client import InvalidCharacters, MessageTooLong, NickMask
from irc.client_aio import AioConnection, AioReactor
from irc.connection import AioFactory
from jaraco.stream.buffer import LenientDecodingLineBuffer
from pydantic import BaseModel

from presencebot.adapter import Adapter, AdapterHost, Capabilities
from presencebot.backoff import ExponentialBackoff
from presencebot.badge import Badge
from presencebot.errors import FatalAdapterError
from presencebot.events import (
    Author,
    Banned,
    Connected,
    Disconnected,
    Event,
    Invited,
    Joined,
    JoinFailed,
    Kicked,
    Left,
    Message,
    utcnow,
)
from presencebot.ids import AccountId, RoomId
from presencebot.throttle import Outbox, OutboxFull, Pending, Undeliverable

from . import lines
from .caps import CapNegotiation
from .settings import IrcSettings
from .state import ServerState

log = structlog.get_logger("presencebot.irc")
# The library logs every raw line (chat text, passwords) at DEBUG: never let that through.
logging.getLogger("irc").setLevel(logging.WARNING)

MAX_UNTERMINATED: Final = 64 * 1024
"""A server that sends this much without a line end is broken or hostile: the bytes are dropped."""
WHOIS_TIMEOUT: Final = 10.0
CTCP_COOLDOWN: Final = 5.0
JOIN_ERRORS: Final = {
    "403": "no such channel",
    "405": "joined too many channels",
    "471": "the channel is full (+l)",
    "473": "the channel is invite-only (+i)",
    "475": "the channel needs a key (+k)",
    "477": "the channel needs a registered account",
    "489": "the channel needs a secure connection",
    "520": "the channel is for operators only",
}
_FORMATTING: Final = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)


def strip_formatting(text: str) -> str:
    """Text without mIRC bold/colour/italic codes: rules read words, not formatting."""
    return _FORMATTING.sub("", text)


class _LineBuffer(LenientDecodingLineBuffer):  # type: ignore[misc]
    """UTF-8, else Latin-1 (never an exception), and a cap on a line that never ends."""

    buffer: bytes

    def feed(self, data: bytes) -> None:
        super().feed(data)
        if len(self.buffer) > MAX_UNTERMINATED and b"\n" not in self.buffer:
            log.warning("irc.oversized_line_dropped", size=len(self.buffer))
            self.buffer = b""


class _Connection(AioConnection):  # type: ignore[misc]
    buffer_class = _LineBuffer
    on_event: Callable[[IrcEvent], None] | None = None

    def _handle_event(self, event: IrcEvent) -> None:
        """Straight to the adapter. The library's reactor takes a lock and sorts its handler
        lists for every event, twice per line (the raw line and the parsed one); the only
        reactor handler we need is its PONG, done here."""
        if event.type == "ping":
            self.pong(event.target)
        if self.on_event is not None:
            self.on_event(event)

    def process_data(self, new_data: bytes) -> None:
        """As the library's, but one unparseable line (or a bug in a handler) costs that line
        only: an exception here would otherwise reach asyncio and close the connection."""
        self.buffer.feed(new_data)
        for line in self.buffer:
            if not line:
                continue
            try:
                self._process_line(line)
            except Exception as exc:
                log.warning("irc.line_not_handled", error=type(exc).__name__, size=len(line))


class _Reactor(AioReactor):  # type: ignore[misc]
    connection_class = _Connection


def _tags(event: IrcEvent) -> dict[str, str | None]:
    return {tag["key"]: tag.get("value") for tag in (event.tags or ()) if isinstance(tag, dict)}


def _server_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


class IrcAdapter(Adapter):
    Settings = IrcSettings
    capabilities = Capabilities(max_line_bytes=400, colours=True, direct_messages=True)

    def __init__(self, network: str, settings: BaseModel, host: AdapterHost) -> None:
        super().__init__(network, settings, host)
        assert isinstance(settings, IrcSettings)
        self.opts = settings
        self.state = ServerState()
        self.outbox = Outbox(
            burst=settings.flood_burst,
            rate=settings.flood_rate,
            max_queue=settings.max_queue,
            max_wait=settings.max_queue_seconds,
            on_undelivered=self._undelivered,
        )
        self.undelivered = 0
        self.connects = 0
        self._priority = {t.casefold() for t in settings.priority_targets}
        self._rooms: dict[str, RoomId] = {}
        self._events: asyncio.Queue[Event | _Resume] = asyncio.Queue()
        self._conn: _Connection | None = None
        self._neg = CapNegotiation()
        self._registered = asyncio.Event()
        self._ready = False
        self._closed: asyncio.Future[str] | None = None
        self._fatal: str | None = None
        self._last_rx = 0.0
        self._ping_sent: float | None = None
        self._nick_attempts = 0
        self._nick_candidates = [settings.nick, *settings.alt_nicks]
        self._whois: dict[str, _Whois] = {}
        self._ctcp_last: dict[str, float] = {}
        self._closing = False
        self._pump_busy = False

    # --- the connection loop ---------------------------------------------------------------
    async def run(self) -> None:
        pump = asyncio.create_task(self._pump(), name=f"irc-events:{self.network}")
        backoff = ExponentialBackoff(self.opts.reconnect_base_seconds, self.opts.reconnect_cap_seconds)
        try:
            while True:
                started = asyncio.get_running_loop().time()
                try:
                    reason = await self._session()
                except FatalAdapterError:
                    raise
                except ssl.SSLCertVerificationError as exc:
                    raise FatalAdapterError(
                        f"the TLS certificate of {self.opts.host} is not trusted ({exc.verify_message}); "
                        "set ca_file to the CA that signed it, or fix the server's certificate"
                    ) from exc
                except (OSError, TimeoutError, EOFError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                finally:
                    await self._teardown()
                if self._fatal is not None:
                    raise FatalAdapterError(self._fatal)
                if self._ready:
                    self._ready = False
                    await self._events.put(Disconnected(self.network, reason))
                    if asyncio.get_running_loop().time() - started > self.opts.ping_timeout:
                        backoff.reset()  # it was healthy for a while: start again from the base
                if self._closing:
                    break
                delay = backoff.delay()
                log.warning("irc.reconnecting", reason=reason, delay=round(delay, 2))
                await asyncio.sleep(delay)
        finally:
            await self._drain_events(pump)

    async def _drain_events(self, pump: asyncio.Task[None]) -> None:
        """Let the runtime see the last events (Disconnected) before the pump stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events.join(), 2.0)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)

    async def _session(self) -> str:
        """Connect, register and serve one connection; returns why it ended."""
        loop = asyncio.get_running_loop()
        opts = self.opts
        self._neg = self._negotiation()
        self._registered = asyncio.Event()
        self._closed = loop.create_future()
        self._nick_attempts = 0
        self.state = ServerState()
        self.state.my_nick = opts.nick
        reactor = _Reactor(loop=loop, on_connect=self._on_socket)
        conn = self._conn = reactor.server()
        conn.on_event = self._on_irc_event
        self._last_rx = loop.time()
        log.info("irc.connecting", host=opts.host, port=opts.effective_port, tls=opts.tls)
        await asyncio.wait_for(
            conn.connect(
                opts.host,
                opts.effective_port,
                opts.nick,
                password=opts.server_password.get_secret_value() if opts.server_password else None,
                username=opts.username,
                ircname=lines.clean(opts.realname or self.host.identity.describe())[:200],
                connect_factory=self._factory(),
            ),
            opts.connect_timeout,
        )
        # Registration ends with the end of the MOTD, or the connection closing (wrong password,
        # banned, SASL failure); both set the event.
        self._closed.add_done_callback(lambda _: self._registered.set())
        try:
            await asyncio.wait_for(self._registered.wait(), opts.connect_timeout)
        except TimeoutError:
            raise TimeoutError(f"not registered within {opts.connect_timeout:g} s") from None
        if self._fatal is not None:
            raise FatalAdapterError(self._fatal)
        if self._closed.done():
            return self._closed.result()
        return await self._keepalive()

    def _negotiation(self) -> CapNegotiation:
        opts = self.opts
        if opts.sasl == "plain":
            password = opts.sasl_password.get_secret_value() if opts.sasl_password else ""
            return CapNegotiation("PLAIN", opts.account, password)
        if opts.sasl == "external":
            return CapNegotiation("EXTERNAL", opts.account)
        return CapNegotiation()

    def _factory(self) -> AioFactory:
        opts = self.opts
        if not opts.tls:
            return AioFactory()
        context = ssl.create_default_context(cafile=str(opts.ca_file) if opts.ca_file else None)
        if not opts.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if opts.client_cert is not None:
            context.load_cert_chain(str(opts.client_cert), str(opts.client_key) if opts.client_key else None)
        return AioFactory(ssl=context, server_hostname=opts.host)

    async def _keepalive(self) -> str:
        """Wait for the connection to end, sending PING after silence and giving up after more."""
        loop = asyncio.get_running_loop()
        assert self._closed is not None
        tick = max(0.05, min(self.opts.ping_interval, self.opts.ping_timeout - self.opts.ping_interval) / 2)
        while True:
            done, _ = await asyncio.wait({self._closed}, timeout=tick)
            if done:
                return self._closed.result()
            silent = loop.time() - self._last_rx
            if silent >= self.opts.ping_timeout:
                log.warning("irc.ping_timeout", silent_seconds=round(silent, 1))
                if self._conn is not None:
                    self._conn.disconnect("ping timeout")
                return f"no reply from the server for {silent:.0f} s"
            if silent >= self.opts.ping_interval and self._ping_sent is None:
                self._ping_sent = loop.time()
                self._raw(f"PING :presencebot-{int(self._ping_sent)}")

    async def _teardown(self) -> None:
        await self.outbox.pause()
        conn, self._conn = self._conn, None
        if conn is not None and getattr(conn, "connected", False):
            try:
                conn.disconnect("reconnecting" if not self._closing else "presencebot stopping")
            except Exception as exc:  # a transport already gone
                log.debug("irc.disconnect_failed", error=repr(exc))
        for pending in self._whois.values():
            pending.cancel()
        self._whois.clear()
        self._ping_sent = None

    async def close(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None and getattr(conn, "connected", False):
            try:
                conn.quit("presencebot stopping")
                conn.disconnect("presencebot stopping")
            except Exception as exc:
                log.debug("irc.quit_failed", error=repr(exc))
        await self.outbox.pause()
        self.outbox.close("the adapter stopped")

    # --- to the runtime ----------------------------------------------------------------------
    async def _pump(self) -> None:
        """Hands queued events to the runtime, one at a time, in order."""
        while True:
            item = await self._events.get()
            self._pump_busy = True
            try:
                if isinstance(item, _Resume):
                    await asyncio.create_task(item.finish(), context=item.context)
                else:
                    await self.host.emit(item)
            except Exception as exc:
                log.error("irc.emit_failed", kind=type(item).__name__, error=repr(exc))
            finally:
                self._pump_busy = False
                self._events.task_done()

    def _emit(self, event: Event) -> None:
        """Hand ``event`` to the runtime now if nothing is queued before it, else queue it.

        Most events (ordinary chat) are handled by the runtime without waiting for anything, so
        they are run to completion right here, in the socket's callback: a trip through a
        queue would cost a whole event-loop iteration per line. An event whose handling has to
        wait (an alert being stored, the badge being sent) is finished on the pump, and every
        later event queues behind it, so the order is always the order of the lines.
        """
        if not self._events.empty() or self._pump_busy or not getattr(self.host, "eager_ok", False):
            self._events.put_nowait(event)
            return
        context = contextvars.copy_context()
        coro = self.host.emit(event)
        try:
            blocked = context.run(coro.send, None)
        except StopIteration:
            return
        except Exception as exc:
            log.error("irc.emit_failed", kind=type(event).__name__, error=repr(exc))
            return
        self._events.put_nowait(_Resume(coro, blocked, context))

    def _room(self, channel: str) -> RoomId:
        """The room id as configured (``#Kids`` and ``#kids`` are one channel on IRC)."""
        return self._rooms.get(self.state.info.fold(channel), RoomId(channel))

    def _author(self, nick: str, tags: dict[str, str | None] | None = None) -> Author:
        account = (tags or {}).get("account") or self.state.account(nick)
        return Author(nick, AccountId(account) if account else None)

    # --- from the runtime --------------------------------------------------------------------
    async def join(self, room: RoomId) -> None:
        self._rooms[self.state.info.fold(room)] = room
        channel = lines.clean(room).split(" ")[0]
        key = self.opts.room_keys.get(room)
        self._queue_command(
            f"JOIN {channel} {lines.clean(key.get_secret_value())}" if key else f"JOIN {channel}"
        )

    async def leave(self, room: RoomId, reason: str) -> None:
        self._queue_command(f"PART {room} :{lines.clean(reason)[:300]}")

    async def send(self, room: RoomId, text: str) -> None:
        for line in self._privmsgs(room, text):
            try:
                self._put(line)
            except OutboxFull:
                return  # already reported as undelivered; the rest of this text would be too

    async def announce(self, room: RoomId, badge: Badge) -> None:
        """Post the coloured badge and wait until it is written: the room is watched only after."""
        sent = [self._put(line) for text in badge.irc_lines() for line in self._privmsgs(room, text)]
        await asyncio.wait_for(asyncio.gather(*sent), self.opts.announce_timeout)

    def _privmsgs(self, room: RoomId, text: str, command: str = "PRIVMSG") -> list[tuple[str, str]]:
        target = room[1:] if room.startswith("@") else room
        limit = lines.budget(command, target, self.state.my_mask, self.state.my_nick or self.opts.nick)
        return [(target, f"{command} {target} :{piece}") for piece in lines.split(text, limit) if piece]

    def _put(self, item: tuple[str, str]) -> asyncio.Future[None]:
        target, line = item
        return self.outbox.put(target, line, priority=target.casefold() in self._priority)

    def _queue_command(self, line: str) -> None:
        self.outbox.put("", lines.clean(line))

    def _undelivered(self, pending: Pending, reason: str) -> None:
        self.undelivered += 1
        log.error("irc.undelivered", target=pending.target, reason=reason, undelivered=self.undelivered)

    async def _write(self, pending: Pending) -> None:
        conn = self._conn
        if conn is None or not getattr(conn, "connected", False):
            raise ConnectionError("not connected")
        try:
            conn.send_raw(pending.line)
        except (InvalidCharacters, MessageTooLong) as exc:
            raise Undeliverable(pending.target, str(exc)) from exc

    def _raw(self, line: str) -> None:
        """Write a protocol line now, outside flood control (registration, PING, PONG, QUIT)."""
        conn = self._conn
        if conn is not None and getattr(conn, "connected", False):
            try:
                conn.send_raw(lines.clean(line))
            except Exception as exc:
                log.debug("irc.raw_failed", error=repr(exc))

    # --- from the server ---------------------------------------------------------------------
    def _on_socket(self, protocol: Any, transport: asyncio.Transport) -> None:
        """Before NICK/USER: ask for capabilities, so the server holds registration for them."""
        for line in self._neg.start():
            transport.write(f"{line}\r\n".encode())

    def _on_irc_event(self, event: IrcEvent) -> None:
        kind = str(getattr(event.type, "code", event.type))
        if kind == "all_raw_messages":
            self._last_rx = asyncio.get_running_loop().time()
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)
        elif kind in JOIN_ERRORS:
            self._join_error(event, JOIN_ERRORS[kind])

    def _send_lines(self, out: list[str]) -> None:
        for line in out:
            self._raw(line)

    def _on_cap(self, event: IrcEvent) -> None:
        self._send_lines(self._neg.on_cap(list(event.arguments)))

    def _on_authenticate(self, event: IrcEvent) -> None:
        self._send_lines(self._neg.on_authenticate(str(event.target or "")))

    def _on_sasl(self, event: IrcEvent) -> None:
        code = str(event.type.code)
        text = event.arguments[-1] if event.arguments else ""
        if code == "900" and len(event.arguments) >= 2:
            log.info("irc.logged_in", account=event.arguments[1])
        self._send_lines(self._neg.on_numeric(code, text))
        if self._neg.error is not None:
            self._fail(self._neg.error)

    def _fail(self, why: str) -> None:
        """A configuration problem the server told us about: stop, once, with the reason."""
        self._fatal = why
        log.error("irc.fatal", reason=why)
        self._raw("QUIT :configuration error")
        if self._conn is not None:
            self._conn.disconnect("configuration error")

    def _on_welcome(self, event: IrcEvent) -> None:
        if event.target:
            self.state.my_nick = str(event.target)

    def _on_isupport(self, event: IrcEvent) -> None:
        self.state.info.load([str(a) for a in event.arguments[:-1]])

    def _on_motd_end(self, event: IrcEvent) -> None:
        if self._ready:
            return
        self._registered.set()
        self._ready = True
        self.connects += 1
        opts = self.opts
        if opts.bot_mode != "off":
            letter = opts.bot_mode if opts.bot_mode != "auto" else (self.state.info.bot_mode or "B")
            self._raw(f"MODE {self.state.my_nick} +{letter}")
        password = opts.identify_password
        if password is not None and (opts.sasl == "none" or not self._neg.sasl_done):
            self._raw(f"PRIVMSG NickServ :IDENTIFY {opts.account} {password.get_secret_value()}")
        log.info(
            "irc.registered",
            nick=self.state.my_nick,
            caps=sorted(self._neg.enabled),
            sasl=self._neg.sasl_done,
            network=self.state.info.network,
        )
        self.outbox.resume(self._write)
        self._emit(Connected(self.network))

    def _on_nick_refused(self, event: IrcEvent) -> None:
        if self._ready:
            return  # a later NICK change was refused: keep the nick we have
        code = str(event.type.code)
        self._nick_attempts += 1
        limit = self.state.info.nicklen
        current = self.state.my_nick
        # Before 005 the real NICKLEN is unknown, so a nick is cut only when the server says it
        # is erroneous (432), to the NICKLEN it announced or RFC 1459's 9.
        if code == "432" and len(current) > limit:
            candidate = current[:limit]
        elif self._nick_attempts < len(self._nick_candidates):
            candidate = self._nick_candidates[self._nick_attempts]
        else:
            candidate = f"{self.opts.nick[: max(1, limit - 3)]}_{self._nick_attempts}"
        if self._nick_attempts > 12:
            self._fail(f"the server refused every nick tried (last: {current!r}, {code})")
            return
        log.warning("irc.nick_refused", nick=current, code=code, next=candidate)
        self.state.my_nick = candidate
        self._raw(f"NICK {candidate}")

    def _on_bad_password(self, event: IrcEvent) -> None:
        if self._fatal is None:
            self._fail("the server refused the server password; check server_password")

    def _on_join(self, event: IrcEvent) -> None:
        source = NickMask(event.source)
        channel = str(event.target)
        if self.state.is_me(source.nick):
            self.state.joined(channel)
            self.state.my_mask = str(source)
            if self.state.info.whox:
                self._raw(f"WHO {channel} %tna,152")
            self._emit(Joined(self.room(self._room(channel))))
            return
        self.state.add_member(channel, source.nick)
        if "extended-join" in self._neg.enabled and event.arguments:
            self.state.set_account(source.nick, str(event.arguments[0]))

    def _on_names(self, event: IrcEvent) -> None:
        if len(event.arguments) < 3:
            return
        channel = str(event.arguments[1])
        for item in str(event.arguments[2]).split():
            modes, nick = self.state.info.split_prefixes(item)
            self.state.add_member(channel, nick.split("!", 1)[0], modes)

    def _on_whox(self, event: IrcEvent) -> None:
        if len(event.arguments) >= 3 and event.arguments[0] == "152":
            self.state.set_account(str(event.arguments[1]), str(event.arguments[2]))

    def _on_mode(self, event: IrcEvent) -> None:
        self.state.apply_channel_modes(str(event.target), [str(a) for a in event.arguments])

    def _on_part(self, event: IrcEvent) -> None:
        source = NickMask(event.source)
        channel = str(event.target)
        if self.state.is_me(source.nick):
            self.state.left(channel)
            reason = str(event.arguments[0]) if event.arguments else ""
            self._emit(Left(self.room(self._room(channel)), lines.clean(reason)[:200]))
        else:
            self.state.remove_member(channel, source.nick)

    def _on_kick(self, event: IrcEvent) -> None:
        channel = str(event.target)
        kicked = str(event.arguments[0]) if event.arguments else ""
        if not self.state.is_me(kicked):
            self.state.remove_member(channel, kicked)
            return
        self.state.left(channel)
        source = NickMask(event.source)
        reason = str(event.arguments[1]) if len(event.arguments) > 1 else ""
        self._emit(
            Kicked(self.room(self._room(channel)), self._author(source.nick), lines.clean(reason)[:200])
        )

    def _on_quit(self, event: IrcEvent) -> None:
        self.state.quit(NickMask(event.source).nick)

    def _on_nick(self, event: IrcEvent) -> None:
        self.state.renamed(NickMask(event.source).nick, str(event.target))

    def _on_account(self, event: IrcEvent) -> None:
        self.state.set_account(NickMask(event.source).nick, str(event.target))

    def _on_pong(self, event: IrcEvent) -> None:
        if self._ping_sent is not None:
            lag = asyncio.get_running_loop().time() - self._ping_sent
            log.debug("irc.lag", seconds=round(lag, 3))
        self._ping_sent = None

    def _on_error(self, event: IrcEvent) -> None:
        text = str(event.target or (event.arguments[0] if event.arguments else ""))
        log.warning("irc.server_error", text=lines.clean(text)[:200])
        if not self._ready and "password" in text.casefold():
            # Some servers (ngircd) answer a bad PASS with ERROR and no 464.
            self._on_bad_password(event)

    def _on_disconnect(self, event: IrcEvent) -> None:
        reason = str(event.arguments[0]) if event.arguments else ""
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason or "disconnected")

    def _on_banned(self, event: IrcEvent) -> None:
        channel = str(event.arguments[0]) if event.arguments else ""
        text = str(event.arguments[-1]) if len(event.arguments) > 1 else "banned"
        self._emit(Banned(self.room(self._room(channel)), lines.clean(text)[:200]))

    def _join_error(self, event: IrcEvent, why: str) -> None:
        channel = str(event.arguments[0]) if event.arguments else ""
        if channel and self.state.info.fold(channel) in self._rooms:
            self._emit(JoinFailed(self.room(self._room(channel)), why))

    def _on_message(self, event: IrcEvent) -> None:
        source = NickMask(event.source)
        if not source or self.state.is_me(source.nick):
            return  # our own line, echoed back (echo-message)
        kind = str(event.type)
        tags = _tags(event)
        target = str(event.target)
        text = str(event.arguments[0]) if event.arguments else ""
        if kind == "action":
            text = f"* {source.nick} {text}"
        direct = not self.state.info.is_channel(target)
        if not direct and self.state.info.fold(target) not in self.state.channels:
            return
        room = RoomId(f"@{source.nick}") if direct else self._room(target)
        message = Message(
            room=self.room(room),
            author=self._author(source.nick, tags),
            text=strip_formatting(text),
            native_id=tags.get("msgid"),
            reply_to_id=tags.get("+draft/reply") or tags.get("+reply"),
            is_direct=direct,
            by_operator=not direct and self.state.is_operator(target, source.nick),
            at=_server_time(tags.get("time")) or utcnow(),
        )
        self._emit(message)

    def _on_ctcp(self, event: IrcEvent) -> None:
        source = NickMask(event.source)
        if not event.arguments or not source or self.state.is_me(source.nick):
            return
        query = str(event.arguments[0]).upper()
        if query == "ACTION":
            return  # the library also reports it as an "action" event
        now = asyncio.get_running_loop().time()
        key = self.state.info.fold(source.nick)
        if now - self._ctcp_last.get(key, -CTCP_COOLDOWN) < CTCP_COOLDOWN:
            return  # no CTCP flood amplification
        if len(self._ctcp_last) > 1000:  # forget old requesters: memory stays bounded
            self._ctcp_last = {k: t for k, t in self._ctcp_last.items() if now - t < CTCP_COOLDOWN}
        self._ctcp_last[key] = now
        identity = self.host.identity
        replies = {
            "VERSION": identity.describe(),
            "CLIENTINFO": "ACTION CLIENTINFO PING SOURCE TIME VERSION",
            "SOURCE": identity.info_url,
            "TIME": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
            "PING": str(event.arguments[1]) if len(event.arguments) > 1 else "",
        }
        if query in replies:
            reply = lines.clean(f"{query} {replies[query]}".strip())[:300]
            with contextlib.suppress(OutboxFull):
                self.outbox.put(source.nick, f"NOTICE {source.nick} :\x01{reply}\x01")

    def _on_invite(self, event: IrcEvent) -> None:
        source = NickMask(event.source)
        channel = str(event.arguments[0]) if event.arguments else ""
        if not source or not channel or not self.state.info.is_channel(channel):
            return
        asyncio.get_running_loop().create_task(self._invited(source, channel))

    async def _invited(self, source: NickMask, channel: str) -> None:
        """WHOIS the inviter (account, and whether they op the channel), then tell the runtime."""
        key = self.state.info.fold(source.nick)
        pending = self._whois.get(key)
        if pending is None:
            pending = self._whois[key] = _Whois(asyncio.get_running_loop().create_future())
            self._queue_command(f"WHOIS {source.nick}")
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), WHOIS_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("irc.whois_timeout", nick=source.nick)
        finally:
            self._whois.pop(key, None)
        account = pending.account or self.state.account(source.nick)
        operator = pending.operator_in(channel, self.state) if pending.done.done() else None
        self._rooms.setdefault(self.state.info.fold(channel), RoomId(channel))
        self._emit(
            Invited(
                self.room(self._room(channel)),
                Author(source.nick, AccountId(account) if account else None),
                by_mask=str(source),
                by_operator=operator,
            )
        )

    def _on_whois_account(self, event: IrcEvent) -> None:
        if len(event.arguments) >= 2:
            pending = self._whois.get(self.state.info.fold(str(event.arguments[0])))
            if pending is not None:
                pending.account = str(event.arguments[1])

    def _on_whois_channels(self, event: IrcEvent) -> None:
        if len(event.arguments) >= 2:
            pending = self._whois.get(self.state.info.fold(str(event.arguments[0])))
            if pending is not None:
                pending.channels.extend(str(event.arguments[1]).split())

    def _on_whois_end(self, event: IrcEvent) -> None:
        if event.arguments:
            pending = self._whois.get(self.state.info.fold(str(event.arguments[0])))
            if pending is not None and not pending.done.done():
                pending.done.set_result(None)


class _Resume:
    """A runtime coroutine that ran its first step eagerly and now waits for ``blocked``."""

    def __init__(self, coro: Coroutine[Any, Any, None], blocked: Any, context: contextvars.Context) -> None:
        self.coro = coro
        self.blocked = blocked
        self.context = context

    async def finish(self) -> None:
        await _Continue(self.coro, self.blocked)


class _Continue:
    """Awaitable that lets the current task drive a coroutine already started elsewhere: first
    it waits for what the coroutine is blocked on, then delegates, as ``await`` would have."""

    def __init__(self, coro: Coroutine[Any, Any, None], blocked: Any) -> None:
        self.coro = coro
        self.blocked = blocked

    def __await__(self) -> Generator[Any, None, None]:
        blocked = self.blocked
        while True:
            try:
                yield blocked
            except BaseException as exc:  # cancellation thrown in by the task: pass it on
                try:
                    blocked = self.coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                blocked = self.coro.send(None)
            except StopIteration:
                return


class _Whois:
    """What one WHOIS told us about an inviter."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.account: str | None = None
        self.channels: list[str] = []

    def cancel(self) -> None:
        if not self.done.done():
            self.done.cancel()

    def operator_in(self, channel: str, state: ServerState) -> bool:
        wanted = state.info.fold(channel)
        for item in self.channels:
            modes, name = state.info.split_prefixes(item)
            if state.info.fold(name) == wanted:
                return bool(modes & {"q", "a", "o", "y"})
        return False


_HANDLERS: Final = {
    "cap": IrcAdapter._on_cap,
    "authenticate": IrcAdapter._on_authenticate,
    **{code: IrcAdapter._on_sasl for code in ("900", "902", "903", "904", "905", "906", "907", "908")},
    "001": IrcAdapter._on_welcome,
    "005": IrcAdapter._on_isupport,
    "376": IrcAdapter._on_motd_end,
    "422": IrcAdapter._on_motd_end,
    "432": IrcAdapter._on_nick_refused,
    "433": IrcAdapter._on_nick_refused,
    "437": IrcAdapter._on_nick_refused,
    "464": IrcAdapter._on_bad_password,
    "join": IrcAdapter._on_join,
    "353": IrcAdapter._on_names,
    "354": IrcAdapter._on_whox,
    "mode": IrcAdapter._on_mode,
    "part": IrcAdapter._on_part,
    "kick": IrcAdapter._on_kick,
    "quit": IrcAdapter._on_quit,
    "nick": IrcAdapter._on_nick,
    "account": IrcAdapter._on_account,
    "pong": IrcAdapter._on_pong,
    "error": IrcAdapter._on_error,
    "disconnect": IrcAdapter._on_disconnect,
    "474": IrcAdapter._on_banned,
    "pubmsg": IrcAdapter._on_message,
    "privmsg": IrcAdapter._on_message,
    "action": IrcAdapter._on_message,
    "ctcp": IrcAdapter._on_ctcp,
    "invite": IrcAdapter._on_invite,
    "330": IrcAdapter._on_whois_account,
    "319": IrcAdapter._on_whois_channels,
    "318": IrcAdapter._on_whois_end,
}
