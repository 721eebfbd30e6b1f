"""A real XMPP server (Prosody) and a scriptable XMPP person (slixmpp) for the XMPP adapter's tests.

Load the fixtures with ``pytest_plugins = ["tests.xmppservers"]`` in a test module (importing them
by name makes ruff report the test arguments as redefinitions) and import the types only under
``TYPE_CHECKING``.

- :class:`ProsodyServer` (fixtures ``prosody`` and ``prosody_factory``): Prosody 0.12 on 127.0.0.1
  on a free port, everything (config, data, log, pidfile, certificates) in a fresh temporary
  directory, so PEP nodes never keep an access model from an earlier run. One VirtualHost
  ``localhost`` and a MUC component ``conference.localhost`` where anyone may create rooms (the
  creator becomes owner; rooms are unlocked at once, public, not persistent). STARTTLS is offered
  with a certificate for ``localhost`` signed by a generated test CA (``ca_file``), but not required:
  plaintext clients log in too. Starts in about 0.1 s; ``stop()`` + ``start()`` restarts on the same
  port with the same accounts, ``kill()`` is a crash.
- :class:`XmppUser` (fixture ``xmpp_user_factory``): an asyncio slixmpp client that acts as a person
  in tests: joins rooms, talks, invites, kicks and bans, fetches avatars; it keeps every message it
  receives and ``expect_*()`` waits for one after a cursor, like ``RawIrcClient.expect``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeAlias, TypeVar

import pytest
import slixmpp
from slixmpp import JID
from slixmpp.plugins.xep_0084.avatar import AvatarMetadataItem
from slixmpp.stanza import Message, Presence
from slixmpp.types import MucAffiliation, MucRole
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from tests.support import free_port

HOST = "127.0.0.1"
DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"

_STARTUP_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0

LuaValue: TypeAlias = "str | int | float | bool | Sequence[LuaValue] | Mapping[str, LuaValue]"

#: Modules loaded on every server (mod_smacks and mod_vcard_legacy ship with Prosody 0.12).
PROSODY_MODULES = (
    "roster",
    "saslauth",
    "disco",
    "ping",
    "pep",
    "vcard_legacy",
    "vcard4",
    "carbons",
    "smacks",
    "posix",
)

#: The plugins every :class:`XmppUser` registers.
SLIXMPP_PLUGINS = (
    "xep_0030",  # service discovery
    "xep_0045",  # MUC
    "xep_0249",  # direct MUC invitations
    "xep_0084",  # user avatar (PEP)
    "xep_0153",  # vCard-based avatars
    "xep_0054",  # vcard-temp
    "xep_0060",  # pubsub
    "xep_0199",  # ping
    "xep_0203",  # delayed delivery
    "xep_0461",  # message replies
    "xep_0066",  # out-of-band data
)


class ServerStartError(RuntimeError):
    """Prosody did not come up; the message carries the tail of its log."""


class XmppError(AssertionError):
    """An XMPP user did not get what it waited for; the message lists what it did receive."""


# --------------------------------------------------------------------------------------------
# Small helpers


def tail(path: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a log file (decoded leniently), or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def _run(args: Sequence[str], cwd: Path) -> str:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise ServerStartError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def lua(value: LuaValue) -> str:
    """``value`` as a Lua literal for Prosody's config (strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, Mapping):
        return "{ " + " ".join(f"[{lua(key)}] = {lua(item)};" for key, item in value.items()) + " }"
    return "{ " + " ".join(f"{lua(item)};" for item in value) + " }"


@dataclass(frozen=True)
class TestCertificates:
    """A test CA and a server certificate it signed for ``localhost`` (and ``conference.localhost``)."""

    __test__ = False  # not a test class, whatever its name

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> TestCertificates:
    """Generate a CA and a server certificate (ECDSA P-256, valid 2 days) with ``certtool``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.tmpl").write_text(
        'cn = "presencebot XMPP test CA"\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 2\n'
    )
    (directory / "server.tmpl").write_text(
        f'cn = "{DOMAIN}"\ndns_name = "{DOMAIN}"\ndns_name = "{MUC_DOMAIN}"\nip_address = "{HOST}"\n'
        "tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n"
    )
    gen_key = ["certtool", "--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1", "--outfile"]
    _run([*gen_key, "ca.key"], directory)
    self_signed = ["--generate-self-signed", "--load-privkey", "ca.key", "--template", "ca.tmpl"]
    _run(["certtool", *self_signed, "--outfile", "ca.pem"], directory)
    _run([*gen_key, "server.key"], directory)
    signed = ["--generate-certificate", "--load-privkey", "server.key", "--load-ca-certificate", "ca.pem"]
    _run(
        [
            "certtool",
            *signed,
            "--load-ca-privkey",
            "ca.key",
            "--template",
            "server.tmpl",
            "--outfile",
            "server.pem",
        ],
        directory,
    )
    return TestCertificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")


# --------------------------------------------------------------------------------------------
# Prosody


class ProsodyServer:
    """Prosody 0.12 on 127.0.0.1 (``prosody -F --config CONF``), configured for tests.

    ``tls=True`` offers STARTTLS (certificate for ``localhost`` signed by ``ca_file``); encryption
    is never required and PLAIN works unencrypted. ``settings`` adds or overrides global options
    (e.g. ``{"smacks_hibernation_time": 60}``), ``muc_settings`` options of the MUC component
    (e.g. ``{"muc_room_default_persistent": True}``); ``modules`` adds modules. Stream-management
    sessions of clients that vanish hibernate for 10 s (Prosody's default is 600 s).
    """

    host = HOST
    domain = DOMAIN
    muc = MUC_DOMAIN

    def __init__(
        self,
        directory: Path,
        *,
        tls: bool = True,
        modules: Sequence[str] = (),
        settings: Mapping[str, LuaValue] | None = None,
        muc_settings: Mapping[str, LuaValue] | None = None,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.conf_path = directory / "prosody.cfg.lua"
        self.log_path = directory / "prosody.log"  # Prosody's own log (debug level)
        self.stdout_path = directory / "prosody.out"  # its stdout/stderr (dependency warnings)
        self.data_path = directory / "data"
        self.data_path.mkdir(exist_ok=True)
        self.certificates = make_certificates(directory / "tls") if tls else None
        (directory / "certs").mkdir(exist_ok=True)  # else certmanager logs an error at each start
        self.conf_path.write_text(self._config(list(modules), dict(settings or {}), dict(muc_settings or {})))
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def ca_file(self) -> Path | None:
        """The test CA that signed the server certificate (``None`` without ``tls``)."""
        return None if self.certificates is None else self.certificates.ca_file

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _config(
        self, modules: list[str], settings: dict[str, LuaValue], muc_settings: dict[str, LuaValue]
    ) -> str:
        d = self.directory
        options: dict[str, LuaValue] = {
            "run_as_root": True,
            "daemonize": False,  # -F wins anyway; the option alone is deprecated in 0.12
            "pidfile": str(d / "prosody.pid"),
            "data_path": str(self.data_path),
            "plugin_paths": [],
            "admins": [],
            "interfaces": [HOST],
            "c2s_interfaces": [HOST],
            "c2s_ports": [self.port],
            "c2s_direct_tls_ports": [],
            "legacy_ssl_ports": [],
            "s2s_ports": [],
            "modules_enabled": list(
                dict.fromkeys([*PROSODY_MODULES, *(["tls"] if self.tls else []), *modules])
            ),
            "modules_disabled": ["s2s"],  # no port 5269, no federation
            "authentication": "internal_hashed",
            "storage": "internal",
            "c2s_require_encryption": False,
            "allow_unencrypted_plain_auth": True,
            "certificates": str(d / "certs"),
            "smacks_hibernation_time": 10,
            # On SIGTERM, Prosody's epoll loop closes every connection, then sleeps until a 1 s timer
            # before it sees that none is left; an earlier deadline wakes it: stop() takes 0.06 s.
            "network_settings": {"shutdown_deadline": 0.05},
            "log": [{"levels": {"min": "debug"}, "to": "file", "filename": str(self.log_path)}],
        }
        if self.certificates is not None:
            options["ssl"] = {
                "certificate": str(self.certificates.cert_file),
                "key": str(self.certificates.key_file),
            }
        options.update(settings)
        muc: dict[str, LuaValue] = {
            "muc_room_locking": False,
            "muc_room_default_public": True,
            "muc_tombstones": False,
            "restrict_room_creation": False,
        }
        muc.update(muc_settings)
        lines = ["-- generated by tests/xmppservers.py"]
        lines += [f"{key} = {lua(value)}" for key, value in options.items()]
        lines += ["", f'VirtualHost "{DOMAIN}"', "", f'Component "{MUC_DOMAIN}" "muc"']
        lines += [f"\t{key} = {lua(value)}" for key, value in muc.items()]
        return "\n".join(lines) + "\n"

    def _log_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _fail(self, why: str) -> ServerStartError:
        return ServerStartError(
            f"prosody on {self.host}:{self.port} {why}\n"
            f"--- last lines of {self.log_path}:\n{tail(self.log_path)}\n"
            f"--- last lines of {self.stdout_path}:\n{tail(self.stdout_path, 15)}"
        )

    def start(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        """Start (or start again, on the same port with the same data) and wait until it serves.

        Ready means: the log says the c2s port and the MUC component are active, and the port accepts.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._out = self.stdout_path.open("ab")
        self._out.write(f"=== {time.strftime('%H:%M:%S')} starting prosody\n".encode())
        self._out.flush()
        self.proc = subprocess.Popen(
            ["prosody", "-F", "--config", str(self.conf_path)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        listening = f"Activated service 'c2s' on [{self.host}]:{self.port}"
        deadline = time.monotonic() + timeout
        while True:
            log = self._log_since_start()
            if "Failed to open server port" in log or "\terror\tError binding" in log:
                self.stop()
                raise self._fail("could not listen (is the port taken?)")
            if (
                listening in log
                and f"Activated host: {MUC_DOMAIN}" in log
                and _can_connect(self.host, self.port)
            ):
                return
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise self._fail(f"exited (code {code}) while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise self._fail(f"not up after {timeout:.0f} s")
            time.sleep(0.01)

    def stop(self, timeout: float = _STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int | None:
        """SIGTERM (Prosody closes every stream and exits), wait; returns the exit code."""
        proc, self.proc = self.proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            code = proc.returncode
        if self._out is not None:
            self._out.close()
            self._out = None
        return code

    def kill(self) -> int | None:
        """SIGKILL: the server vanishes without closing any stream (a crash)."""
        return self.stop(sig=signal.SIGKILL)

    def register(self, user: str, password: str) -> str:
        """Create (or re-create, with the new password) account ``user@localhost`` with
        ``prosodyctl register``; returns the bare JID. It writes the data directory, so it works
        whether or not the server runs."""
        localpart = user.split("@", 1)[0].lower()  # what nodeprep makes of ASCII names
        _run(
            ["prosodyctl", "--config", str(self.conf_path), "register", localpart, DOMAIN, password],
            self.directory,
        )
        return f"{localpart}@{DOMAIN}"

    def log_text(self) -> str:
        """Prosody's log so far (all starts; at most its last 4 MB)."""
        return tail(self.log_path, lines=10**9, max_bytes=4_000_000)

    def room_jid(self, room: str) -> str:
        """``room`` on the MUC component (a name without ``@`` gets ``@conference.localhost``)."""
        return room if "@" in room else f"{room}@{MUC_DOMAIN}"

    def __repr__(self) -> str:
        return f"<ProsodyServer {self.host}:{self.port} tls={self.tls}>"


class ProsodyFactory(Protocol):
    def __call__(
        self,
        *,
        tls: bool = ...,
        modules: Sequence[str] = ...,
        settings: Mapping[str, LuaValue] | None = ...,
        muc_settings: Mapping[str, LuaValue] | None = ...,
    ) -> ProsodyServer: ...


# --------------------------------------------------------------------------------------------
# A person on XMPP

T = TypeVar("T", Message, Presence)
_handler_ids = itertools.count(1)


class _Inbox(Generic[T]):
    """Stanzas of one kind in arrival order, with a cursor past the last one ``expect`` returned."""

    def __init__(self, user: XmppUser, kind: str) -> None:
        self.user = user
        self.kind = kind
        self.items: list[T] = []
        self.cursor = 0
        self._changed = asyncio.Event()

    def add(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()

    def wake(self) -> None:
        self._changed.set()

    async def expect(self, matches: Callable[[T], bool], what: str, timeout: float) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        scanned = self.cursor
        while True:
            for i in range(scanned, len(self.items)):
                if matches(self.items[i]):
                    self.cursor = i + 1
                    return self.items[i]
            scanned = len(self.items)
            remaining = deadline - loop.time()
            if self.user.closed or remaining <= 0:
                state = "disconnected" if self.user.closed else f"nothing in {timeout} s"
                raise XmppError(f"{self.user.jid}: no {self.kind} {what} ({state}){self.recent()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def expect_none(self, matches: Callable[[T], bool], what: str, within: float) -> None:
        try:
            item = await self.expect(matches, what, within)
        except XmppError:
            return
        raise XmppError(f"{self.user.jid}: unexpected {self.kind}: {item}")

    def recent(self, count: int = 15) -> str:
        shown = [_summary(item) for item in self.items[-count:]]
        if not shown:
            return f"\n  (no {self.kind} received)"
        return f"\n  last {self.kind}s received:\n    " + "\n    ".join(shown)


def _summary(stanza: Message | Presence) -> str:
    if isinstance(stanza, Presence):
        codes = sorted(stanza["muc"]["status_codes"])
        return f"presence {stanza['type']} from {stanza['from']} codes={codes}"
    return f"{stanza['type']} from {stanza['from']}: {stanza['body']!r}"


def _is_invitation(msg: Message) -> bool:
    # Prosody's mediated invitations carry a body and a XEP-0249 <x/> next to the muc#user <invite/>.
    return (
        msg.xml.find("{jabber:x:conference}x") is not None
        or msg.xml.find("{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}invite")
        is not None
    )


def _compile(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(pattern) if isinstance(pattern, str) else pattern


def _same_jid(want: str, got: JID) -> bool:
    return want in (str(got), got.bare)


class XmppUser:
    """A slixmpp ``ClientXMPP`` that a test drives as a person (use :meth:`connect`).

    Every groupchat message with a body goes to ``groupchat``, every chat/normal message with a
    body (private messages, including MUC private messages) to ``chats``, MUC presences to
    ``muc_presences``, invitations to ``direct_invites`` (XEP-0249) and ``mediated_invites``
    (XEP-0045), error messages to ``errors``. Each ``expect_*`` looks after that list's cursor.
    Rooms and JIDs may be given without a domain: ``"kids"`` is ``kids@conference.localhost``,
    ``"bob"`` is ``bob@localhost``.
    """

    def __init__(
        self,
        server: ProsodyServer,
        jid: str,
        password: str,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        resource: str = "test",
    ) -> None:
        self.server = server
        full = JID(self.user_jid(jid))
        if not full.resource:
            full.resource = resource
        self.jid = full
        self.client = slixmpp.ClientXMPP(
            str(full),
            password,
            # Over plaintext slixmpp refuses SCRAM and PLAIN unless told so.
            plugin_config={}
            if ca_file
            else {"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}},
        )
        for plugin in SLIXMPP_PLUGINS:
            self.client.register_plugin(plugin)
        self.client.enable_direct_tls = False  # the c2s port speaks plain XMPP (+ STARTTLS)
        if ca_file is not None:
            self.client.ssl_context = ssl.create_default_context(cafile=os.fspath(ca_file))
            self.client.enable_starttls, self.client.enable_plaintext = True, False
        else:
            self.client.enable_starttls, self.client.enable_plaintext = False, True
        self.require_tls = ca_file is not None
        self.groupchat: _Inbox[Message] = _Inbox(self, "groupchat message")
        self.chats: _Inbox[Message] = _Inbox(self, "chat message")
        self.errors: _Inbox[Message] = _Inbox(self, "error message")
        self.direct_invites: _Inbox[Message] = _Inbox(self, "direct invitation")
        self.mediated_invites: _Inbox[Message] = _Inbox(self, "mediated invitation")
        self.muc_presences: _Inbox[Presence] = _Inbox(self, "MUC presence")
        self.nicks: dict[str, str] = {}
        self.closed = False
        self._session_started = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._failure: str | None = None
        c = self.client
        c.add_event_handler("session_start", lambda _: self._session_started.set())
        c.add_event_handler("failed_all_auth", lambda _: self._fail("authentication failed"))
        c.add_event_handler("connection_failed", lambda exc: self._fail(f"connection failed: {exc}"))
        c.add_event_handler("stream_error", lambda err: self._fail(f"stream error: {err}"))
        c.add_event_handler("disconnected", self._on_disconnected)
        c.add_event_handler("groupchat_message", self.groupchat.add)
        c.add_event_handler("message", self._on_message)
        c.add_event_handler("groupchat_presence", self.muc_presences.add)
        c.add_event_handler("groupchat_direct_invite", self.direct_invites.add)
        c.add_event_handler("groupchat_invite", self.mediated_invites.add)

    def user_jid(self, jid: str | JID) -> str:
        """``jid`` with ``@localhost`` added when it has no domain."""
        text = str(jid)
        return text if "@" in text else f"{text}@{self.server.domain}"

    def room_jid(self, room: str | JID) -> str:
        return self.server.room_jid(str(room))

    # connection ------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        server: ProsodyServer,
        jid: str,
        password: str,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        resource: str = "test",
        timeout: float = 15.0,
    ) -> XmppUser:
        """Log in and send initial presence. With ``ca_file`` STARTTLS is required and verified
        against it; without, the stream stays plaintext (PLAIN/SCRAM allowed unencrypted)."""
        user = cls(server, jid, password, ca_file=ca_file, resource=resource)
        try:
            await user._connect(timeout)
        except BaseException:
            await user.disconnect()
            raise
        return user

    async def _connect(self, timeout: float) -> None:
        self.client.connect(self.server.host, self.server.port)
        waits = [
            asyncio.ensure_future(self._session_started.wait()),
            asyncio.ensure_future(self._disconnected.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if not self._session_started.is_set():
            why = self._failure or f"no session after {timeout} s"
            if self.require_tls and not self.encrypted:
                why += " before STARTTLS (a CA was given, so slixmpp refuses to log in unencrypted)"
            raise XmppError(
                f"{self.jid} could not log in to {self.server!r}: {why}\n{tail(self.server.log_path, 15)}"
            )
        if self.require_tls and "starttls" not in self.client.features:
            raise XmppError(f"{self.jid}: the server did not offer STARTTLS")
        self.client.send_presence()
        # Two round trips, so that what slixmpp queued at session start (its vCard fetch for
        # XEP-0153), the initial presence and slixmpp's answer to the disco#info query Prosody sends
        # on that presence (caps) are through: without them, stopping the server right after
        # connect() makes slixmpp log NotConnectedError tracebacks from its send queue.
        for _ in range(2):
            await self.client.plugin["xep_0199"].send_ping(JID(self.server.domain), timeout=timeout)
        await asyncio.wait_for(self.client.waiting_queue.join(), timeout)

    def _fail(self, why: str) -> None:
        self._failure = self._failure or why
        if not self._session_started.is_set():
            # Stop slixmpp from retrying (with back-off) and let connect() report the failure.
            self.client.cancel_connection_attempt()
            self.client.abort()
            self._mark_closed()

    def _on_disconnected(self, _reason: object) -> None:
        self._mark_closed()

    def _mark_closed(self) -> None:
        self.closed = True
        self._disconnected.set()
        for inbox in self._inboxes():
            inbox.wake()

    def _inboxes(self) -> list[_Inbox[Any]]:
        return [
            self.groupchat,
            self.chats,
            self.errors,
            self.direct_invites,
            self.mediated_invites,
            self.muc_presences,
        ]

    @property
    def encrypted(self) -> bool:
        """The stream runs over TLS (STARTTLS done)."""
        return "starttls" in self.client.features

    async def wait_disconnected(self, timeout: float = 10.0) -> None:
        """Wait until the server closes the stream (e.g. it was stopped or killed)."""
        try:
            await asyncio.wait_for(self._disconnected.wait(), timeout)
        except TimeoutError:
            raise XmppError(f"{self.jid}: still connected after {timeout} s") from None

    async def disconnect(self, timeout: float = 5.0) -> None:
        """Close the stream, wait for ``disconnected``, and stop slixmpp's background tasks."""
        c = self.client
        c.cancel_connection_attempt()
        if c.transport is not None and not self._disconnected.is_set():
            c.disconnect(wait=timeout / 2, reason="test done")
            try:
                await asyncio.wait_for(self._disconnected.wait(), timeout)
            except TimeoutError:
                c.abort()
        self._mark_closed()
        for handle in c.scheduled_events.values():
            handle.cancel()
        c.scheduled_events.clear()
        task = c._run_out_filters
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        c._run_out_filters = None

    # talking ---------------------------------------------------------------------------------

    async def join(self, room: str, nick: str, *, timeout: float = 10.0) -> Presence:
        """Join ``room`` as ``nick`` without history; returns our own presence in the room."""
        room_jid = JID(self.room_jid(room))
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_error(pres: StanzaBase) -> None:
            if pres["from"].bare == room_jid.bare and not refused.done():
                refused.set_result(pres)

        # Prosody's error presence (banned, nick taken, ...) does not echo <x xmlns='...muc'/>, so
        # join_muc_wait never sees it, and slixmpp fires no presence_error event for a room it is
        # joining (the MUC plugin sets roster ignore_updates): catch the stanza itself.
        handler = f"join-error-{room_jid.bare}-{next(_handler_ids)}"
        self.client.register_handler(Callback(handler, StanzaPath("presence@type=error"), on_error))
        joining: asyncio.Future[Any] = asyncio.ensure_future(
            self.client.plugin["xep_0045"].join_muc_wait(room_jid, nick, maxstanzas=0, timeout=timeout)
        )
        dropped = asyncio.ensure_future(self._disconnected.wait())
        try:
            await asyncio.wait(
                [joining, refused, dropped], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self.client.remove_handler(handler)
            dropped.cancel()
            if not joining.done():
                joining.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await joining
        if refused.done():
            error = refused.result()["error"]
            raise XmppError(
                f"{self.jid} may not join {room_jid} as {nick}: {error['condition']} {error['text']}"
            )
        if joining.cancelled() or joining.exception() is not None:
            state = "disconnected" if self.closed else f"nothing in {timeout} s"
            raise XmppError(f"{self.jid}: no join confirmation from {room_jid} ({state})")
        presence: Presence = joining.result()[0]
        self.nicks[room_jid.bare] = nick
        return presence

    def leave(self, room: str, status: str = "") -> None:
        room_jid = self.room_jid(room)
        nick = self.nicks.pop(room_jid, None)
        if nick is not None:
            self.client.plugin["xep_0045"].leave_muc(JID(room_jid), nick, status)

    def say(self, room: str, text: str, *, reply_to: Message | None = None) -> Message:
        """Send ``text`` to the room (as an XEP-0461 reply to ``reply_to`` if given)."""
        msg = self.client.make_message(mto=self.room_jid(room), mbody=text, mtype="groupchat")
        if reply_to is not None:
            msg["reply"]["to"] = reply_to["from"]
            msg["reply"]["id"] = reply_to["id"]
        msg.send()
        return msg

    def private(self, jid: str, text: str) -> Message:
        """A chat message to ``jid`` (a bare/full user JID, or ``room@conference.localhost/nick``)."""
        msg = self.client.make_message(mto=self.user_jid(jid), mbody=text, mtype="chat")
        msg.send()
        return msg

    def invite_direct(self, room: str, jid: str, reason: str = "") -> None:
        """XEP-0249: invite ``jid`` with a message sent straight to it."""
        self.client.plugin["xep_0249"].send_invitation(
            JID(self.user_jid(jid)), JID(self.room_jid(room)), reason=reason or None
        )

    def invite_mediated(self, room: str, jid: str, reason: str = "") -> None:
        """XEP-0045 §7.8.2: ask the room to invite ``jid``."""
        self.client.plugin["xep_0045"].invite(self.room_jid(room), self.user_jid(jid), reason)

    async def kick(self, room: str, nick: str, reason: str = "") -> None:
        """Set ``nick``'s role to none (needs moderator; the kicked one sees status 307)."""
        await self.set_role(room, nick, "none", reason)

    async def ban(self, room: str, jid: str, reason: str = "") -> None:
        """Make ``jid`` an outcast (needs admin or owner; the banned one sees status 301)."""
        await self.set_affiliation(room, "outcast", jid=jid, reason=reason)

    async def set_role(self, room: str, nick: str, role: MucRole, reason: str = "") -> None:
        await self.client.plugin["xep_0045"].set_role(self.room_jid(room), nick, role, reason=reason)

    async def set_affiliation(
        self,
        room: str,
        affiliation: MucAffiliation,
        *,
        jid: str | None = None,
        nick: str | None = None,
        reason: str = "",
    ) -> None:
        await self.client.plugin["xep_0045"].set_affiliation(
            self.room_jid(room),
            affiliation,
            jid=None if jid is None else self.user_jid(jid),
            nick=nick,
            reason=reason,
        )

    # avatars ---------------------------------------------------------------------------------

    async def publish_avatar(
        self, data: bytes, mime_type: str = "image/png", *, access_model: str = "open"
    ) -> str:
        """Publish a XEP-0084 avatar (data, then metadata) with ``pubsub#access_model``; returns its id.

        The default ``open`` lets non-contacts fetch it (Prosody's PEP default is ``presence``).
        """
        forms: Any = self.client.plugin["xep_0004"]  # make_form is untyped
        form = forms.make_form(ftype="submit")
        form.add_field(
            var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options"
        )
        form.add_field(var="pubsub#access_model", value=access_model)
        avatar = self.client.plugin["xep_0084"]
        avatar_id: str = avatar.generate_id(data)
        await avatar.publish_avatar(data, options=form)
        # Metadata values must be strings (slixmpp puts them in XML attributes as they are).
        info: AvatarMetadataItem = {"id": avatar_id, "type": mime_type, "bytes": str(len(data))}  # type: ignore[typeddict-item]
        await avatar.publish_avatar_metadata([info], options=form)
        return avatar_id

    async def fetch_avatar(self, jid: str, *, timeout: float = 10.0) -> bytes:
        """Fetch ``jid``'s XEP-0084 avatar (metadata, then the data item) as a non-contact."""
        pubsub: Any = self.client.plugin["xep_0060"]  # get_items/get_item are untyped
        owner = JID(self.user_jid(jid))
        meta = await pubsub.get_items(owner, "urn:xmpp:avatar:metadata", max_items=1, timeout=timeout)
        info = meta.xml.find(".//{urn:xmpp:avatar:metadata}info")
        if info is None or not info.get("id"):
            raise XmppError(f"{self.jid}: no avatar metadata for {owner}: {meta}")
        item = await pubsub.get_item(owner, "urn:xmpp:avatar:data", info.get("id"), timeout=timeout)
        data = item.xml.find(".//{urn:xmpp:avatar:data}data")
        # Not Data['value']: slixmpp 1.17 calls bytes(str) there and raises TypeError.
        if data is None or not data.text:
            raise XmppError(f"{self.jid}: no avatar data for {owner}: {item}")
        return base64.b64decode("".join(data.text.split()))

    async def publish_vcard_photo(self, data: bytes, mime_type: str = "image/png") -> None:
        """Set a vcard-temp PHOTO (XEP-0054/0153); Prosody's vcard_legacy mirrors it to PEP."""
        vcard = self.client.plugin["xep_0054"].make_vcard()
        vcard["PHOTO"]["TYPE"] = mime_type
        vcard["PHOTO"]["BINVAL"] = data
        await self.client.plugin["xep_0054"].publish_vcard(vcard)

    async def fetch_vcard_photo(self, jid: str, *, timeout: float = 10.0) -> bytes:
        """``jid``'s vcard-temp PHOTO BINVAL (b"" if it has none)."""
        iq = await self.client.plugin["xep_0054"].get_vcard(JID(self.user_jid(jid)), timeout=timeout)
        photo: bytes = iq["vcard_temp"]["PHOTO"]["BINVAL"] or b""
        return photo

    # receiving -------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        kind = msg["type"]
        if kind == "error":
            self.errors.add(msg)
        elif kind in ("chat", "normal") and msg["body"] and not _is_invitation(msg):
            self.chats.add(msg)

    async def expect_groupchat(
        self,
        room: str,
        pattern: str | re.Pattern[str] = "",
        *,
        nick: str | None = None,
        timeout: float = 10.0,
    ) -> Message:
        """The next groupchat message in ``room`` (from ``nick`` if given) whose body ``re.search``es
        ``pattern``; moves the ``groupchat`` cursor past it."""
        regex = _compile(pattern)
        room_jid = self.room_jid(room)

        def matches(msg: Message) -> bool:
            return (
                msg["from"].bare == room_jid
                and (nick is None or msg["from"].resource == nick)
                and regex.search(msg["body"]) is not None
            )

        return await self.groupchat.expect(matches, f"in {room_jid} matching {regex.pattern!r}", timeout)

    async def expect_no_groupchat(
        self, room: str, pattern: str | re.Pattern[str] = "", *, nick: str | None = None, within: float = 1.0
    ) -> None:
        """Fail if a matching groupchat message arrives within ``within`` seconds."""
        regex = _compile(pattern)
        room_jid = self.room_jid(room)
        await self.groupchat.expect_none(
            lambda m: (
                m["from"].bare == room_jid
                and (nick is None or m["from"].resource == nick)
                and regex.search(m["body"]) is not None
            ),
            f"in {room_jid} matching {regex.pattern!r}",
            within,
        )

    async def expect_chat(
        self, pattern: str | re.Pattern[str] = "", *, sender: str | None = None, timeout: float = 10.0
    ) -> Message:
        """The next private message (from ``sender``, bare or full JID, if given) whose body
        ``re.search``es ``pattern``."""
        regex = _compile(pattern)
        want = None if sender is None else self.user_jid(sender)
        return await self.chats.expect(
            lambda m: (want is None or _same_jid(want, m["from"])) and regex.search(m["body"]) is not None,
            f"{'from ' + want + ' ' if want else ''}matching {regex.pattern!r}",
            timeout,
        )

    async def expect_presence(
        self,
        room: str,
        *,
        nick: str | None = None,
        codes: Sequence[int] = (),
        unavailable: bool | None = None,
        timeout: float = 10.0,
    ) -> Presence:
        """The next MUC presence from ``room`` (``nick``) carrying every status code in ``codes``
        (e.g. 307 kicked, 301 banned, 110 self)."""
        room_jid = self.room_jid(room)

        def matches(pres: Presence) -> bool:
            return (
                pres["from"].bare == room_jid
                and (nick is None or pres["from"].resource == nick)
                and set(codes) <= set(pres["muc"]["status_codes"])
                and (unavailable is None or (pres["type"] == "unavailable") == unavailable)
            )

        return await self.muc_presences.expect(
            matches, f"from {room_jid}/{nick or '*'} with {list(codes)}", timeout
        )

    async def expect_direct_invite(self, room: str | None = None, *, timeout: float = 10.0) -> Message:
        """The next XEP-0249 invitation (to ``room`` if given); the room is ``msg['groupchat_invite']['jid']``."""
        want = None if room is None else self.room_jid(room)
        return await self.direct_invites.expect(
            lambda m: want is None or JID(m["groupchat_invite"]["jid"]).bare == want, f"to {want}", timeout
        )

    async def expect_mediated_invite(self, room: str | None = None, *, timeout: float = 10.0) -> Message:
        """The next XEP-0045 mediated invitation (from ``room`` if given); the inviter is
        ``msg['muc']['invite']['from']``."""
        want = None if room is None else self.room_jid(room)
        return await self.mediated_invites.expect(
            lambda m: want is None or m["from"].bare == want, f"from {want}", timeout
        )

    def __repr__(self) -> str:
        return f"<XmppUser {self.jid} on {self.server.host}:{self.server.port}>"


class XmppUserFactory(Protocol):
    async def __call__(
        self,
        server: ProsodyServer,
        jid: str,
        password: str | None = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        resource: str = ...,
        timeout: float = ...,
    ) -> XmppUser: ...


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def prosody_factory(tmp_path: Path) -> Iterator[ProsodyFactory]:
    """``prosody_factory(tls=..., modules=..., settings=..., muc_settings=...)`` starts a Prosody;
    all stop at teardown."""
    servers: list[ProsodyServer] = []
    counter = itertools.count(1)

    def make(**options: Any) -> ProsodyServer:
        server = ProsodyServer(tmp_path / f"prosody-{next(counter)}", **options)
        servers.append(server)
        server.start()
        return server

    yield make
    with contextlib.ExitStack() as stack:  # stop every one even if one stop raises
        for server in servers:
            stack.callback(server.stop)


@pytest.fixture
def prosody(prosody_factory: ProsodyFactory) -> ProsodyServer:
    """A running Prosody with the test defaults (STARTTLS offered, not required)."""
    return prosody_factory()


@pytest.fixture
async def xmpp_user_factory() -> AsyncIterator[XmppUserFactory]:
    """``await xmpp_user_factory(server, "alice", password=None, ca_file=None)``: a logged-in
    :class:`XmppUser`, disconnected at teardown. Without ``password`` the account is registered
    first (password ``"pw-" + localpart``)."""
    users: list[XmppUser] = []

    async def make(
        server: ProsodyServer,
        jid: str,
        password: str | None = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        resource: str = "test",
        timeout: float = 15.0,
    ) -> XmppUser:
        if password is None:
            password = "pw-" + jid.split("@", 1)[0]
            server.register(jid, password)
        user = await XmppUser.connect(
            server, jid, password, ca_file=ca_file, resource=resource, timeout=timeout
        )
        users.append(user)
        return user

    yield make
    await asyncio.gather(*(user.disconnect() for user in users), return_exceptions=True)
