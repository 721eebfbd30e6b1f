"""The XMPP adapter: one account, its group chats (XEP-0045), kept joined and announced.

Follow one stanza: slixmpp parses it and calls one of the ``_on_*`` handlers registered in
:meth:`XmppAdapter._client`; the handler reads what the core needs (room, occupant, real JID,
role, delay, reply) into a presencebot event and queues it; :meth:`_pump` hands events to the
runtime in order. What the bot says goes out as groupchat (or chat) messages; the badge is also
the account's avatar (XEP-0084 and the vCard photo of XEP-0153) and its presence status.

Each connection is a fresh slixmpp client: reconnecting (with backoff, like the IRC adapter) is
done here, not by slixmpp, so every new session rejoins every room and announces again through
the runtime's one join path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
from datetime import datetime
from typing import Any, Final

import slixmpp
import structlog
from pydantic import BaseModel
from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from slixmpp.jid import JID, InvalidJID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from presencebot import badge as badge_assets
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

from .settings import XmppSettings

log = structlog.get_logger("presencebot.xmpp")
# slixmpp logs stanzas (chat text, SASL exchanges) at DEBUG: never let that through.
logging.getLogger("slixmpp").setLevel(logging.WARNING)

PLUGINS: Final = (
    "xep_0030",  # service discovery
    "xep_0045",  # group chats
    "xep_0054",  # vCard (for the XEP-0153 photo)
    "xep_0060",  # publish-subscribe (for the XEP-0084 avatar)
    "xep_0066",  # out-of-band link to the badge image
    "xep_0084",  # user avatar
    "xep_0153",  # vCard-based avatar
    "xep_0198",  # stream management
    "xep_0199",  # ping
    "xep_0203",  # delayed delivery: history
    "xep_0249",  # direct invitations
    "xep_0410",  # MUC self-ping
    "xep_0461",  # replies
)
# Characters XML 1.0 cannot carry: one of them in a stanza would end the stream.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
MAX_NICK_ATTEMPTS: Final = 5
_JOIN_ERRORS: Final = {
    "not-authorized": "the room needs a password (or it is wrong)",
    "registration-required": "the room is members-only",
    "item-not-found": "no such room",
    "service-unavailable": "the room is full or unavailable",
    "not-allowed": "the room may not be created",
}
AVATAR_SIZE: Final = 96


def _destroyed(presence: Any) -> bool:
    return presence["muc"].xml.find("{http://jabber.org/protocol/muc#user}destroy") is not None


def xml_safe(text: str) -> str:
    """``text`` without the characters an XML stream cannot carry."""
    return _NOT_XML.sub("", text)


class XmppAdapter(Adapter):
    Settings = XmppSettings
    capabilities = Capabilities(images=True, replies=True, direct_messages=True)

    def __init__(self, network: str, settings: BaseModel, host: AdapterHost) -> None:
        super().__init__(network, settings, host)
        assert isinstance(settings, XmppSettings)
        self.opts = settings
        self.client: slixmpp.ClientXMPP | None = None
        self.connects = 0
        self._rooms: dict[str, RoomId] = {}
        """Bare room JID -> the room id as the runtime knows it."""
        self._nicks: dict[str, str] = {}
        """Bare room JID -> our nick there (after any conflict suffix)."""
        self._joined: set[str] = set()
        self._leaving: set[str] = set()
        self._invites: dict[str, tuple[JID, bool]] = {}
        """Bare room JID -> (inviter, mediated?) for the invitation being decided."""
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._ready = False
        self._closing = False
        self._fatal: str | None = None
        self._ended: asyncio.Future[str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- the connection loop ---------------------------------------------------------------
    async def run(self) -> None:
        if self.opts.password is None:
            variable = f"PRESENCEBOT_NETWORKS__{self.network.upper().replace('-', '_')}__SETTINGS__PASSWORD"
            raise FatalAdapterError(f"no password for {self.opts.jid}: set {variable}")
        pump = asyncio.create_task(self._pump(), name=f"xmpp-events:{self.network}")
        backoff = ExponentialBackoff(self.opts.reconnect_base_seconds, self.opts.reconnect_cap_seconds)
        try:
            while True:
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    reason = await self._session()
                except FatalAdapterError:
                    raise
                except (OSError, TimeoutError, ConnectionError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                finally:
                    await self._teardown()
                if self._fatal is not None:
                    raise FatalAdapterError(self._fatal)
                if self._ready:
                    self._ready = False
                    await self._events.put(Disconnected(self.network, reason))
                    if loop.time() - started > 60:
                        backoff.reset()
                if self._closing:
                    break
                delay = backoff.delay()
                log.warning("xmpp.reconnecting", reason=reason, delay=round(delay, 2))
                await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), 2.0)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def _session(self) -> str:
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self._joined.clear()
        client = self.client = self._client()
        opts = self.opts
        log.info("xmpp.connecting", jid=opts.jid, host=opts.host or opts.domain, tls=opts.tls)
        if opts.host is not None:
            client.connect(opts.host, opts.port or (5223 if opts.tls == "direct" else 5222))
        else:
            client.connect()
        try:
            reason = await asyncio.wait_for(asyncio.shield(self._ended), opts.connect_timeout)
        except TimeoutError:
            if not self._ready:
                raise TimeoutError(f"no session within {opts.connect_timeout:g} s") from None
            reason = await self._ended
        return reason

    def _client(self) -> slixmpp.ClientXMPP:
        opts = self.opts
        plugin_config: dict[str, Any] = {}
        if opts.tls == "optional":
            # Only for a local server without TLS: the password may then cross in the clear.
            plugin_config["feature_mechanisms"] = {"unencrypted_scram": True, "unencrypted_plain": True}
        assert opts.password is not None  # checked in run()
        client = slixmpp.ClientXMPP(
            f"{opts.jid}/{opts.resource}",
            opts.password.get_secret_value(),
            plugin_config=plugin_config,
            ssl_context=self._ssl_context(),
        )
        client.enable_direct_tls = opts.tls == "direct"
        client.enable_starttls = opts.tls != "direct"
        client.enable_plaintext = False
        for plugin in PLUGINS:
            client.register_plugin(plugin)
        client.plugin["xep_0410"].ping_interval = opts.self_ping_interval
        handlers = {
            "session_start": self._on_session_start,
            "disconnected": self._on_disconnected,
            "connection_failed": self._on_connection_failed,
            "failed_all_auth": self._on_failed_auth,
            "no_auth": self._on_no_auth,
            "ssl_invalid_chain": self._on_bad_certificate,
            "stream_error": self._on_stream_error,
            "groupchat_message": self._on_groupchat,
            "message": self._on_message,
            "groupchat_presence": self._on_presence,
            "groupchat_invite": self._on_mediated_invite,
            "groupchat_direct_invite": self._on_direct_invite,
            "muc_ping_changed": self._on_self_ping,
        }
        for name, handler in handlers.items():
            client.add_event_handler(name, handler)
        return client

    def _ssl_context(self) -> ssl.SSLContext:
        opts = self.opts
        context = ssl.create_default_context(cafile=str(opts.ca_file) if opts.ca_file else None)
        if not opts.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _teardown(self) -> None:
        client, self.client = self.client, None
        for task in list(self._tasks):
            task.cancel()
        if client is None:
            return
        client.cancel_connection_attempt()
        if client.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(wait=1.0), 3.0)
        with contextlib.suppress(Exception):
            client.abort()

    async def close(self) -> None:
        self._closing = True
        await self._teardown()

    def _end(self, reason: str) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    def _fail(self, why: str) -> None:
        """A configuration problem (credentials, certificate): stop once, clearly."""
        if self._fatal is None:
            self._fatal = why
            log.error("xmpp.fatal", reason=why)
        self._end(why)

    # --- to the runtime ----------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self.host.emit(event)
            except Exception as exc:
                log.error("xmpp.emit_failed", kind=type(event).__name__, error=repr(exc))
            finally:
                self._events.task_done()

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _room(self, room: str) -> RoomId:
        return self._rooms.get(room, RoomId(room))

    # --- session -----------------------------------------------------------------------------
    def _on_session_start(self, _event: Any) -> None:
        client = self.client
        if client is None:
            return
        client.send_presence(pstatus=xml_safe(self.host.identity.describe()))
        self._ready = True
        self.connects += 1
        log.info("xmpp.session_started", jid=str(client.boundjid))
        if self.opts.publish_avatar:
            self._spawn(self._publish_avatar(client))
        self._emit(Connected(self.network))

    def _on_disconnected(self, reason: Any) -> None:
        self._end(str(reason or "disconnected"))

    def _on_connection_failed(self, error: Any) -> None:
        # slixmpp would retry on its own schedule; the adapter's backoff decides instead.
        if self.client is not None:
            self.client.cancel_connection_attempt()
        self._end(f"connection failed: {error}")

    def _on_failed_auth(self, _event: Any) -> None:
        self._fail(f"the server refused the credentials of {self.opts.jid} (wrong password?)")

    def _on_no_auth(self, _event: Any) -> None:
        self._fail(
            f"no way to log in as {self.opts.jid}: the server offered no TLS, and tls = "
            f"'{self.opts.tls}' forbids sending the password in the clear"
        )

    def _on_bad_certificate(self, error: Any) -> None:
        self._fail(
            f"the TLS certificate of {self.opts.host or self.opts.domain} is not trusted ({error}); "
            "set ca_file to the CA that signed it, or fix the server's certificate"
        )
        if self.client is not None:
            self.client.abort()

    def _on_stream_error(self, error: Any) -> None:
        log.warning("xmpp.stream_error", condition=str(error["condition"]) if error else "")

    async def _publish_avatar(self, client: slixmpp.ClientXMPP) -> None:
        """The badge as the account's avatar, readable by anyone (not only contacts)."""
        png = badge_assets.png(AVATAR_SIZE)
        avatar_id = hashlib.sha1(png).hexdigest()  # noqa: S324 - XEP-0084 names SHA-1
        form = client.plugin["xep_0004"].make_form(ftype="submit")  # type: ignore[no-untyped-call]
        form.add_field(
            var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options"
        )
        form.add_field(var="pubsub#access_model", value="open")
        avatar = client.plugin["xep_0084"]
        try:
            await avatar.publish_avatar(png, options=form)
            # slixmpp types these as ints but writes them as XML attributes: they must be strings.
            metadata: Any = [
                {
                    "id": avatar_id,
                    "type": "image/png",
                    "bytes": str(len(png)),
                    "width": str(AVATAR_SIZE),
                    "height": str(AVATAR_SIZE),
                }
            ]
            await avatar.publish_avatar_metadata(metadata, options=form)
            await client.plugin["xep_0153"].set_avatar(avatar=png, mtype="image/png")
            log.info("xmpp.avatar_published", id=avatar_id)
        except (IqError, IqTimeout) as exc:
            log.warning("xmpp.avatar_failed", error=type(exc).__name__)

    # --- rooms -------------------------------------------------------------------------------
    async def join(self, room: RoomId) -> None:
        try:
            bare = str(JID(room).bare)
        except InvalidJID:
            self._emit(JoinFailed(self.room(room), "not a valid room JID"))
            return
        self._rooms[bare] = room
        self._spawn(self._join(bare))

    async def _join(self, bare: str) -> None:
        client = self.client
        if client is None:
            return
        ref = self.room(self._room(bare))
        for attempt in range(MAX_NICK_ATTEMPTS):
            nick = self.opts.nick if attempt == 0 else f"{self.opts.nick}_{attempt + 1}"
            refused = await self._try_join(client, bare, nick)
            if refused is None:
                self._nicks[bare] = nick
                self._joined.add(bare)
                own = JID(f"{bare}/{nick}")
                client.plugin["xep_0410"].enable_self_ping(
                    own, interval=self.opts.self_ping_interval, timeout=self.opts.self_ping_timeout
                )
                self._emit(Joined(ref))
                return
            if refused == "conflict":
                log.info("xmpp.nick_taken", room=bare, nick=nick)
                continue
            if refused == "forbidden":
                self._emit(Banned(ref, "banned from the room (forbidden)"))
            else:
                self._emit(JoinFailed(ref, _JOIN_ERRORS.get(refused, refused)))
            return
        self._emit(JoinFailed(ref, f"every nick tried is taken ({MAX_NICK_ATTEMPTS})"))

    async def _try_join(self, client: slixmpp.ClientXMPP, bare: str, nick: str) -> str | None:
        """Join ``bare`` as ``nick``; ``None`` when in, else the error condition.

        Some servers (Prosody) send a join error without the MUC payload, which slixmpp's
        ``join_muc_wait`` does not recognise, so the error presence is watched for directly.
        """
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[str] = loop.create_future()

        def on_error(presence: Any) -> None:
            if str(presence["from"].bare) == bare and not refused.done():
                refused.set_result(str(presence["error"]["condition"]) or "refused")

        name = f"presencebot-join-{bare}-{nick}"
        client.register_handler(Callback(name, StanzaPath("presence@type=error"), on_error))
        password = self.opts.room_passwords.get(bare)
        joining = asyncio.ensure_future(
            client.plugin["xep_0045"].join_muc_wait(
                JID(bare),
                nick,
                password=password.get_secret_value() if password else None,
                maxstanzas=0,
                presence_options={"pstatus": xml_safe(self.host.identity.describe())},
                timeout=self.opts.join_timeout,
            )
        )
        try:
            waiting: set[asyncio.Future[Any]] = {joining, refused}
            await asyncio.wait(waiting, timeout=self.opts.join_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client.remove_handler(name)
            if not joining.done():
                joining.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await joining
        if refused.done():
            return refused.result()
        if joining.done() and joining.exception() is None:
            return None
        error = joining.exception() if joining.done() and not joining.cancelled() else None
        if isinstance(error, PresenceError):
            return str(error.condition)
        return f"no answer from the room within {self.opts.join_timeout:g} s"

    async def leave(self, room: RoomId, reason: str) -> None:
        client = self.client
        bare = str(JID(room).bare)
        nick = self._nicks.get(bare)
        if client is None or nick is None:
            return
        self._leaving.add(bare)
        self._joined.discard(bare)
        with contextlib.suppress(Exception):
            client.plugin["xep_0410"].disable_self_ping(JID(f"{bare}/{nick}"))
        client.plugin["xep_0045"].leave_muc(JID(bare), nick, msg=xml_safe(reason)[:500])

    def _on_presence(self, presence: Any) -> None:
        """Our own presence in a room: kicked (307), banned (301), or removed for a technical
        reason (333) or a shutdown (332), after which the bot rejoins and announces again."""
        room = str(presence["from"].bare)
        nick = presence["from"].resource
        if room not in self._nicks or nick != self._nicks.get(room):
            return
        if presence["type"] != "unavailable":
            return
        codes = set(presence["muc"]["status_codes"])
        was_joined = room in self._joined
        self._joined.discard(room)
        ref = self.room(self._room(room))
        reason = xml_safe(str(presence["muc"]["item"]["reason"] or presence["status"] or ""))[:200]
        if 307 in codes:
            actor = presence["muc"]["item"]["actor"]["nick"] or None
            self._emit(Kicked(ref, Author(actor) if actor else None, reason))
        elif 301 in codes:
            self._emit(Banned(ref, reason or "banned from the room"))
        elif room in self._leaving:
            self._leaving.discard(room)
            self._emit(Left(ref, reason))
        elif was_joined and codes & {332, 333} and not _destroyed(presence):
            # Removed for a technical reason or a service shutdown: not the room's decision.
            log.warning("xmpp.removed_from_room", room=room, codes=sorted(codes))
            self._spawn(self._join(room))  # rejoin: the runtime announces again on Joined
        else:
            self._emit(Left(ref, reason or ("the room was destroyed" if _destroyed(presence) else "")))

    def _on_self_ping(self, change: dict[str, Any]) -> None:
        """XEP-0410 says we silently dropped out of a room: rejoin (and so announce again)."""
        result = change.get("result")
        if result is None or getattr(result, "name", "") != "DISCONNECTED":
            return
        occupant = change["key"][0]
        room = str(occupant.bare)
        if room in self._rooms and room not in self._leaving:
            log.warning("xmpp.self_ping_lost", room=room)
            self._joined.discard(room)
            with contextlib.suppress(Exception):
                if self.client is not None:
                    self.client.plugin["xep_0410"].disable_self_ping(occupant)
            self._spawn(self._join(room))

    # --- messages ----------------------------------------------------------------------------
    async def send(self, room: RoomId, text: str) -> None:
        client = self.client
        if client is None:
            log.error("xmpp.undelivered", room=str(room), reason="not connected")
            return
        if room.startswith("@"):
            client.send_message(mto=JID(room[1:]), mbody=xml_safe(text), mtype="chat")
        else:
            client.send_message(mto=JID(room), mbody=xml_safe(text), mtype="groupchat")

    async def announce(self, room: RoomId, badge: Badge) -> None:
        client = self.client
        if client is None:
            raise ConnectionError("not connected")
        message = client.make_message(mto=JID(room), mbody=xml_safe(badge.plain()), mtype="groupchat")
        if self.opts.badge_image_url:
            message["oob"]["url"] = self.opts.badge_image_url
            message["oob"]["desc"] = badge.title
        message.send()

    def _on_groupchat(self, stanza: Any) -> None:
        room = str(stanza["from"].bare)
        nick = stanza["from"].resource
        body = stanza["body"]
        if not nick or not body or nick == self._nicks.get(room):
            return  # the room itself (subject), an empty message, or our own echo
        if room not in self._joined:
            return
        client = self.client
        if client is None:
            return
        muc = client.plugin["xep_0045"]
        real = muc.get_jid_property(JID(room), nick, "jid")
        account = str(JID(real).bare) if real else f"{room}/{nick}"
        role = muc.get_jid_property(JID(room), nick, "role")
        affiliation = muc.get_jid_property(JID(room), nick, "affiliation")
        delay = stanza.get_plugin("delay", check=True)
        stamp = delay["stamp"] if delay is not None else None
        reply = stanza.get_plugin("reply", check=True)
        reply_to: Author | None = None
        reply_id: str | None = None
        if reply is not None and reply["to"]:
            target = JID(reply["to"])
            reply_to = Author(target.resource or str(target.bare), self._account_of(room, target))
            reply_id = reply["id"] or None
        self._emit(
            Message(
                room=self.room(self._room(room)),
                author=Author(nick, AccountId(account)),
                text=body,
                at=stamp if isinstance(stamp, datetime) else utcnow(),
                native_id=stanza["id"] or None,
                reply_to=reply_to,
                reply_to_id=reply_id,
                is_history=delay is not None,
                by_operator=role == "moderator" or affiliation in ("owner", "admin"),
            )
        )

    def _account_of(self, room: str, occupant: JID) -> AccountId | None:
        client = self.client
        if client is None or not occupant.resource:
            return None
        real = client.plugin["xep_0045"].get_jid_property(JID(room), occupant.resource, "jid")
        return AccountId(str(JID(real).bare)) if real else AccountId(str(occupant))

    def _on_message(self, stanza: Any) -> None:
        """Private messages to the bot (``!report``): from an account, or from a room occupant."""
        if stanza["type"] != "chat" or not stanza["body"]:
            return
        sender: JID = stanza["from"]
        bare = str(sender.bare)
        if self.client is not None and bare == str(self.client.boundjid.bare):
            return
        if bare in self._nicks:  # a private message from a room occupant: room/nick
            author = Author(sender.resource, self._account_of(bare, sender))
            room = RoomId(f"@{sender}")
        else:
            author = Author(sender.user or bare, AccountId(bare))
            room = RoomId(f"@{bare}")
        self._emit(
            Message(self.room(room), author, stanza["body"], is_direct=True, native_id=stanza["id"] or None)
        )

    # --- invitations -------------------------------------------------------------------------
    def _on_direct_invite(self, stanza: Any) -> None:
        room = str(JID(stanza["groupchat_invite"]["jid"]).bare)
        if str(stanza["from"].bare) == room:
            return  # a mediated invitation's XEP-0249 copy: handled as mediated
        self._invited(room, stanza["from"], mediated=False)

    def _on_mediated_invite(self, stanza: Any) -> None:
        inviter = stanza["muc"]["invite"]["from"]
        if not inviter:
            return
        self._invited(str(stanza["from"].bare), JID(inviter), mediated=True)

    def _invited(self, room: str, inviter: JID, *, mediated: bool) -> None:
        if not room or "@" not in room:
            return
        self._rooms.setdefault(room, RoomId(room))
        self._invites[room] = (inviter, mediated)
        if str(inviter.bare) == room:
            # A semi-anonymous room names the inviter only by nick: who it really is cannot be
            # checked, so the invitation carries no identity and the policy declines it.
            by = Author(inviter.resource or "someone")
            mask: str | None = None
        else:
            bare = str(inviter.bare)
            by = Author(inviter.user or bare, AccountId(bare))
            mask = bare
        # XMPP does not show a room's owners to someone outside it, so whether the inviter
        # runs the room is unknown here (None): the policy's JIDs and domains decide.
        self._emit(Invited(self.room(self._room(room)), by, by_mask=mask, by_operator=None))

    async def decline_invite(self, event: Invited, reason: str) -> None:
        client = self.client
        room = str(event.room.id)
        invite = self._invites.pop(room, None)
        if client is None or invite is None:
            return
        inviter, mediated = invite
        if mediated:
            client.plugin["xep_0045"].decline(JID(room), inviter, reason=xml_safe(reason))
        else:
            client.send_message(mto=inviter, mbody=xml_safe(reason), mtype="chat")
