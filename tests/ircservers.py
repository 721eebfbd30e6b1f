"""Real IRC servers and clients for the IRC adapter's tests.

Load the fixtures with ``pytest_plugins = ["tests.ircservers"]`` in a test module (importing them
by name makes ruff report the test arguments as redefinitions).

Everything listens on 127.0.0.1 on free ports, lives in pytest's temporary directories, runs as a
plain subprocess and is stopped and waited for at teardown. When a server does not come up, the
error carries the tail of its log.

- :class:`NgircdServer` (fixtures ``ngircd`` and ``ngircd_factory``): plain and TLS ports, no
  flood penalty, no SASL. Running as root it drops to ``nobody``, so its files are made readable.
- :class:`InspircdServer` (fixture ``inspircd_atheme``, module scope): InspIRCd 3 linked to Atheme,
  for SASL PLAIN, IRCv3 capabilities and ``BOT=B``. Every client registration takes 1 s (InspIRCd
  completes registrations on its once-a-second timer): connect clients concurrently.
- :class:`RawIrcClient` (fixture ``raw_client_factory``): an asyncio client that sends and keeps
  exact bytes.
- :class:`IiClient` (fixture ``ii_factory``): the real ``ii`` client, for what a person sees.
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
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from tests.support import free_ports

HOST = "127.0.0.1"
SERVER_NAME = "irc.test"
SERVICES_NAME = "services.test"
NETWORK = "TestNet"

_STARTUP_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


class IrcError(AssertionError):
    """An IRC client did not get what it waited for; the message carries the last lines received."""


# --------------------------------------------------------------------------------------------
# Small helpers


def tail(path: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a log file (decoded leniently), or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return f"({path} does not exist)"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def make_world_readable(directory: Path) -> None:
    """Let an unprivileged user (ngircd's ``nobody``) reach and read ``directory``.

    The directory and its files get 0o755/0o644, and every parent directory that we own gains the
    search bit (pytest makes ``/tmp/pytest-of-root`` and its ``pytest-N`` 0o700; it tightens the
    former again at its next start).
    """
    directory.chmod(0o755)
    for entry in directory.rglob("*"):
        entry.chmod(0o755 if entry.is_dir() else 0o644)
    uid = os.geteuid()
    for parent in directory.resolve().parents:
        st = parent.stat()
        if st.st_mode & stat.S_IXOTH:
            continue
        if st.st_uid != uid:
            raise PermissionError(f"{parent} is not searchable by other users and not ours to change")
        parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _run(args: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise ServerStartError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@dataclass(frozen=True)
class TestCertificates:
    """A test CA and a server certificate it signed, for ``localhost`` and ``127.0.0.1``."""

    __test__ = False  # not a test class, whatever its name

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> TestCertificates:
    """Generate a CA and a server certificate (ECDSA P-256, valid 2 days) with ``certtool``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.tmpl").write_text(
        'cn = "presencebot test CA"\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 2\n'
    )
    (directory / "server.tmpl").write_text(
        'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\n'
        "tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n"
    )
    gen_key = ["certtool", "--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1", "--outfile"]
    _run([*gen_key, "ca.key"], directory)
    _run(
        [
            "certtool",
            "--generate-self-signed",
            "--load-privkey",
            "ca.key",
            "--template",
            "ca.tmpl",
            "--outfile",
            "ca.pem",
        ],
        directory,
    )
    _run([*gen_key, "server.key"], directory)
    _run(
        [
            "certtool",
            "--generate-certificate",
            "--load-privkey",
            "server.key",
            "--load-ca-certificate",
            "ca.pem",
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


def make_dh_params(path: Path) -> Path:
    """Write the RFC 7919 2048-bit DH group (instant, unlike generating fresh parameters)."""
    result = subprocess.run(
        ["certtool", "--get-dh-params", "--bits", "2048"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise ServerStartError(f"certtool --get-dh-params failed: {result.stderr!r}")
    path.write_bytes(result.stdout)
    return path


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Process:
    """A server subprocess whose stdout and stderr go to a log file (appended across restarts)."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._start_offset = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, args: Sequence[str], cwd: Path) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._log = self.log_path.open("ab")
        self._log.write(f"=== {time.strftime('%H:%M:%S')} starting: {' '.join(args)}\n".encode())
        self._log.flush()
        self._start_offset = self._log.tell()
        self.proc = subprocess.Popen(
            list(args), cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output_since_start(self) -> str:
        """What the process wrote since the last ``spawn()``."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._start_offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def fail(self, why: str, *logs: Path) -> ServerStartError:
        parts = [f"{self.name} {why}"]
        for log in (self.log_path, *logs):
            parts.append(f"--- last lines of {log}:\n{tail(log)}")
        return ServerStartError("\n".join(parts))

    def wait_until(
        self,
        ready: Callable[[], bool],
        what: str,
        timeout: float,
        *logs: Path,
        broken: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Poll ``ready`` until it holds; stop the process and raise if it exits, if ``broken``
        returns a reason, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            reason = broken()
            if reason is not None:
                self.stop()
                raise self.fail(f"failed to start ({reason})", *logs)
            if ready():
                return
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                self.stop()
                raise self.fail(f"exited (code {code}) before {what}", *logs)
            if time.monotonic() > deadline:
                self.stop()
                raise self.fail(f"not up after {timeout:.0f} s (waiting for {what})", *logs)
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Send ``sig`` and wait; SIGKILL only if the process is still there after ``timeout``."""
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
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


# --------------------------------------------------------------------------------------------
# ngircd


class NgircdServer:
    """ngircd on 127.0.0.1 (``ngircd -n -f CONF``), configured for tests.

    Limits that bite tests are lifted: ``MaxConnectionsIP = 0``, ``MaxJoins = 0``, no flood
    penalty (``MaxPenaltyTime = 0``; ``penalty=True`` keeps ngircd's ~2.8 lines/s penalty),
    ``MaxNickLength = 30`` (``nicklen=None`` keeps ngircd's 9). ``tls=True`` adds a TLS port
    (``tls_port``) whose certificate a generated test CA (``ca_file``) signed for 127.0.0.1 and
    localhost. ``extra`` is appended to the config (e.g. an ``[Operator]`` or ``[Channel]`` section).
    ``stop()`` then ``start()`` restarts on the same ports with the same config.
    """

    host = HOST

    def __init__(
        self,
        directory: Path,
        *,
        penalty: bool = False,
        tls: bool = False,
        nicklen: int | None = 30,
        ping_timeout: int = 600,
        pong_timeout: int = 600,
        name: str = SERVER_NAME,
        extra: str = "",
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        ports = free_ports(2)
        self.port = ports[0]
        self.tls_port: int | None = ports[1] if tls else None
        self.conf_path = directory / "ngircd.conf"
        self.log_path = directory / "ngircd.log"
        self.certificates = make_certificates(directory / "tls") if tls else None
        self.dh_file = make_dh_params(directory / "dhparams.pem")
        (directory / "conf.d").mkdir(exist_ok=True)
        self.conf_path.write_text(
            self._config(
                penalty=penalty, nicklen=nicklen, ping_timeout=ping_timeout, pong_timeout=pong_timeout
            )
            + extra
        )
        make_world_readable(directory)
        self._process = _Process(f"ngircd {name}:{self.port}", self.log_path)

    @property
    def ca_file(self) -> Path | None:
        """The test CA that signed the TLS certificate (``None`` without ``tls``)."""
        return None if self.certificates is None else self.certificates.ca_file

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def pid(self) -> int | None:
        proc = self._process.proc
        return None if proc is None else proc.pid

    def _config(self, *, penalty: bool, nicklen: int | None, ping_timeout: int, pong_timeout: int) -> str:
        limits = [
            "MaxConnectionsIP = 0",
            "MaxJoins = 0",
            f"PingTimeout = {ping_timeout}",
            f"PongTimeout = {pong_timeout}",
        ]
        if not penalty:
            limits.append("MaxPenaltyTime = 0")
        if nicklen is not None:
            limits.append(f"MaxNickLength = {nicklen}")
        ssl_section = [f"DHFile = {self.dh_file}"]
        if self.certificates is not None:
            ssl_section += [
                f"CertFile = {self.certificates.cert_file}",
                f"KeyFile = {self.certificates.key_file}",
                f"Ports = {self.tls_port}",
            ]
        sections = {
            "Global": [
                f"Name = {self.name}",
                "Info = presencebot test server",
                f"Network = {NETWORK}",
                "AdminInfo1 = presencebot tests",
                "AdminInfo2 = 127.0.0.1",
                "AdminEMail = root@localhost",
                f"Listen = {HOST}",
                f"Ports = {self.port}",
                'MotdPhrase = "presencebot test server"',
            ],
            "Limits": limits,
            "Options": [
                "DNS = no",
                "Ident = no",
                "PAM = no",
                f"IncludeDir = {self.directory / 'conf.d'}",
            ],
            "SSL": ssl_section,
        }
        return "".join(
            f"[{section}]\n" + "".join(f"\t{line}\n" for line in lines) + "\n"
            for section, lines in sections.items()
        )

    def start(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        """Start (or start again, on the same ports) and wait until every port accepts."""
        self._process.spawn(["ngircd", "-n", "-f", str(self.conf_path)], self.directory)
        ports = [self.port] + ([self.tls_port] if self.tls_port is not None else [])

        def ready() -> bool:
            # The log line, not only a connect: another process may hold the port.
            out = self._process.output_since_start()
            return all(f"Now listening on [{self.host}]:{port} " in out for port in ports) and all(
                _can_connect(self.host, port) for port in ports
            )

        def broken() -> str | None:
            return "a port is taken" if "Can't bind socket" in self._process.output_since_start() else None

        self._process.wait_until(ready, f"ports {ports}", timeout, broken=broken)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """SIGTERM (ngircd closes every connection and exits), then wait; returns the exit code."""
        return self._process.stop(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: the server vanishes without a word to its clients (a crash)."""
        return self._process.stop(signal.SIGKILL)

    def log_text(self) -> str:
        """The server's log so far (at most its last 4 MB: a penalty storm can write gigabytes)."""
        return tail(self.log_path, lines=10**9, max_bytes=4_000_000)

    def __repr__(self) -> str:
        return f"<NgircdServer {self.host}:{self.port} tls_port={self.tls_port}>"


class NgircdFactory(Protocol):
    def __call__(
        self,
        *,
        penalty: bool = ...,
        tls: bool = ...,
        nicklen: int | None = ...,
        ping_timeout: int = ...,
        pong_timeout: int = ...,
        name: str = ...,
        extra: str = ...,
    ) -> NgircdServer: ...


# --------------------------------------------------------------------------------------------
# InspIRCd 3 + Atheme

INSPIRCD_MODULES = (
    "cap",
    "ircv3",  # account-notify, away-notify, extended-join
    "ircv3_servertime",
    "ircv3_echomessage",
    "ircv3_msgid",
    "ircv3_ctctags",  # message-tags
    "ircv3_accounttag",
    "botmode",  # user mode +B, BOT=B in 005
    "sasl",
    "spanningtree",
    "services_account",
)


class InspircdServer:
    """InspIRCd 3 on 127.0.0.1 linked to Atheme services (NickServ, SaslServ with PLAIN).

    ``CAP LS 302`` offers account-notify, account-tag, away-notify, echo-message, extended-join,
    message-tags, sasl=PLAIN and server-time; 005 has ``BOT=B``. Connection limits and fakelag are
    off. Atheme runs attached to a console (``-n``), so it NOTICEs every new client once.
    """

    host = HOST

    def __init__(self, directory: Path, *, name: str = SERVER_NAME, services: str = SERVICES_NAME) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.services_name = services
        self.port, self.link_port = free_ports(2)
        self.link_password = "link-" + os.urandom(6).hex()
        self.conf_path = directory / "inspircd.conf"
        self.log_path = directory / "inspircd.log"
        self.stdout_path = directory / "inspircd.out"
        self.atheme_dir = directory / "atheme"
        self.atheme_dir.mkdir(exist_ok=True)
        self.atheme_conf_path = self.atheme_dir / "atheme.conf"
        self.atheme_log_path = self.atheme_dir / "atheme.log"
        self.atheme_stdout_path = self.atheme_dir / "atheme.out"
        (directory / "motd.txt").write_text("presencebot test server\n")
        self.conf_path.write_text(self._inspircd_config())
        self.atheme_conf_path.write_text(self._atheme_config())
        self._inspircd = _Process(f"inspircd {name}:{self.port}", self.stdout_path)
        self._atheme = _Process(f"atheme {services}", self.atheme_stdout_path)

    def _inspircd_config(self) -> str:
        d = self.directory
        modules = "".join(f'<module name="{module}">\n' for module in INSPIRCD_MODULES)
        return f"""\
<server name="{self.name}" description="presencebot test server" network="{NETWORK}" id="0AB">
<admin name="presencebot tests" nick="admin" email="root@localhost">
<bind address="{HOST}" port="{self.port}" type="clients">
<bind address="{HOST}" port="{self.link_port}" type="servers">
<path configdir="{d}" datadir="{d}" logdir="{d}" runtimedir="{d}">
<pid file="{d / "inspircd.pid"}">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" flush="1" target="{self.log_path}">
<files motd="{d / "motd.txt"}">
<dns server="127.0.0.1" timeout="1">
<connect name="main" allow="*" timeout="60" pingfreq="10m" hardsendq="4M" softsendq="1M" recvq="1M"
         threshold="1000000" commandrate="1000000" fakelag="no" localmax="10000" globalmax="10000"
         maxconnwarn="no" limit="100000" maxchans="1000" resolvehostnames="no" useident="no">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes" pingwarning="15">
<security hideserver="" userstats="Pu" flatlinks="no" hidesplits="no" hideulines="no" maxtargets="20">
<performance quietbursts="yes" softlimit="1024" somaxconn="128" netbuffersize="10240">
{modules}<sasl target="{self.services_name}" requiressl="no">
<link name="{self.services_name}" ipaddr="{HOST}" port="{self.link_port}" allowmask="127.0.0.0/8"
      sendpass="{self.link_password}" recvpass="{self.link_password}" timeout="300">
<uline server="{self.services_name}" silent="yes">
"""

    def _atheme_config(self) -> str:
        modules = [
            "protocol/inspircd",
            "backend/opensex",
            "crypto/pbkdf2v2",
            "nickserv/main",
            "nickserv/register",
            "nickserv/identify",
            "saslserv/main",
            "saslserv/plain",
        ]
        loads = "".join(f'loadmodule "modules/{module}";\n' for module in modules)

        def service(block: str, nick: str, real: str) -> str:
            return (
                f'{block} {{\n\tnick = "{nick}";\n\tuser = "{nick}";\n'
                f'\thost = "{self.services_name}";\n\treal = "{real}";\n}};\n'
            )

        return f"""\
{loads}
serverinfo {{
	name = "{self.services_name}";
	desc = "presencebot test services";
	numeric = "00A";
	recontime = 1;
	netname = "{NETWORK}";
	hidehostsuffix = "users.test";
	adminname = "presencebot tests";
	adminemail = "root@localhost";
	registeremail = "noreply@localhost";
	mta = "/bin/true";
	loglevel = {{ all; }};
	maxlogins = 100;
	maxusers = 100;
	mdlimit = 30;
	emaillimit = 100000;
	emailtime = 300;
	auth = none;
	casemapping = rfc1459;
}};

uplink "{self.name}" {{
	host = "{HOST}";
	send_password = "{self.link_password}";
	receive_password = "{self.link_password}";
	port = {self.link_port};
}};

{service("nickserv", "NickServ", "Nickname Services")}
{service("saslserv", "SaslServ", "SASL Authentication Agent")}
general {{
	flood_msgs = 1000;
	flood_time = 10;
	ratelimit_uses = 100000;
	ratelimit_period = 1;
	kline_time = 7;
	clone_time = 0;
	commit_interval = 1;
	default_clone_allowed = 10000;
	default_clone_warn = 10000;
	uplink_sendq_limit = 1048576;
	language = "en";
	immune_level = immune;
}};
"""

    @property
    def running(self) -> bool:
        return self._inspircd.running and self._atheme.running

    def _listening(self) -> bool:
        return "is now running as" in self._inspircd.output_since_start() and _can_connect(
            self.host, self.port
        )

    def _bind_failed(self) -> str | None:
        return "a port is taken" if "failed to bind" in self._inspircd.output_since_start() else None

    def _linked(self) -> bool:
        # Atheme's output, not InspIRCd's log: InspIRCd buffers its log file whatever <log flush>
        # says. Atheme writes this once InspIRCd has answered the PING after Atheme's burst.
        return "finished synching with uplink" in self._atheme.output_since_start()

    def start(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        """Start InspIRCd, then Atheme, and wait until Atheme has linked and finished its burst."""
        self._inspircd.spawn(
            ["inspircd", "--config", str(self.conf_path), "--nofork", "--runasroot"], self.directory
        )
        self._inspircd.wait_until(
            self._listening, f"port {self.port}", timeout, self.log_path, broken=self._bind_failed
        )
        self._atheme.spawn(
            [
                "atheme-services",
                "-n",
                "-c",
                str(self.atheme_conf_path),
                "-D",
                str(self.atheme_dir),
                "-p",
                str(self.atheme_dir / "atheme.pid"),
                "-l",
                str(self.atheme_log_path),
            ],
            self.atheme_dir,
        )
        try:
            self._atheme.wait_until(
                self._linked, "the services link", timeout, self.stdout_path, self.log_path
            )
        except ServerStartError:
            self._inspircd.stop()
            raise
        if not self._inspircd.running:
            self._atheme.stop()
            raise self._inspircd.fail("exited while Atheme linked", self.log_path)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop Atheme, then InspIRCd (SIGTERM each, then wait)."""
        self._atheme.stop(signal.SIGTERM, timeout)
        self._inspircd.stop(signal.SIGTERM, timeout)

    def log_text(self) -> str:
        """InspIRCd's log (links, modules, connections; not client traffic). InspIRCd buffers it."""
        return _read_text(self.log_path)

    def atheme_log_text(self) -> str:
        """Atheme's log, including the raw server-protocol lines (so SASL exchanges too)."""
        return _read_text(self.atheme_log_path)

    async def register_account(self, name: str, password: str, *, timeout: float = 15.0) -> None:
        """Register the NickServ account ``name`` (connects a client with that nick, ~1 s)."""
        client = await RawIrcClient.connect(self.host, self.port, name, timeout=timeout)
        try:
            client.privmsg("NickServ", f"REGISTER {password} {name}@example.org")
            line = await client.expect(
                r"^:NickServ!\S+ NOTICE \S+ :.*(is now registered|already registered|cannot|not |invalid)",
                timeout=timeout,
            )
            if "is now registered" not in line:
                raise IrcError(f"NickServ refused to register {name}: {line}")
        finally:
            await client.quit()

    def __repr__(self) -> str:
        return f"<InspircdServer {self.host}:{self.port} services={self.services_name}>"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------------------------
# Raw asyncio client


_NUMERIC_OR_COMMAND = re.compile(
    r"^(?:@(?P<tags>\S+) +)?(?::(?P<source>\S+) +)?(?P<command>\S+)(?P<rest>.*)$"
)


@dataclass(frozen=True)
class IrcLine:
    """One parsed IRC line: ``tags`` (unescaped values), ``source``, ``command``, ``params``."""

    raw: str
    command: str
    params: list[str] = field(default_factory=list)
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def nick(self) -> str | None:
        """The nick part of ``source`` (``None`` for a line without one)."""
        return None if self.source is None else self.source.split("!", 1)[0]


_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


def _unescape_tag(value: str) -> str:
    return re.sub(r"\\(.)?", lambda m: _TAG_ESCAPES.get(m.group(1) or "", m.group(1) or ""), value)


def parse_line(line: str) -> IrcLine:
    """Parse one IRC line (without its CR LF)."""
    match = _NUMERIC_OR_COMMAND.match(line.lstrip(" "))
    if match is None:
        return IrcLine(line, "")
    tags: dict[str, str] = {}
    for item in (match["tags"] or "").split(";"):
        if item:
            key, _, value = item.partition("=")
            tags[key] = _unescape_tag(value)
    rest = match["rest"].lstrip(" ")
    params: list[str] = []
    while rest:
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
        rest = rest.lstrip(" ")
    return IrcLine(line, match["command"].upper(), params, match["source"], tags)


_REGISTRATION_ERRORS = {"431", "432", "433", "436", "437", "464", "465"}
_SASL_DONE = {"902", "903", "904", "905", "906", "907", "908"}


class RawIrcClient:
    """A tiny IRC client on ``asyncio.open_connection`` that keeps every line it receives.

    ``lines`` holds each received line decoded as UTF-8 with ``surrogateescape`` (without CR LF),
    ``raw_lines`` the same lines as bytes. ``expect()`` searches from a cursor: the lines after the
    last line that an ``expect()`` matched (after ``connect()``, the lines after the end of the
    MOTD). PINGs are answered by the background reader.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, nick: str) -> None:
        self.reader = reader
        self.writer = writer
        self.nick = nick
        self.lines: list[str] = []
        self.raw_lines: list[bytes] = []
        self.sent: list[bytes] = []
        self.cursor = 0
        self.isupport: dict[str, str] = {}
        self.caps_available: dict[str, str] = {}
        self.caps_enabled: set[str] = set()
        self.sasl_reply: str | None = None
        self._changed = asyncio.Event()
        self._eof = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"RawIrcClient({nick}) reader")

    # connection ------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        nick: str,
        *,
        caps: Sequence[str] = (),
        sasl: tuple[str, str] | None = None,
        require_sasl: bool = True,
        tls_ca: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        password: str | None = None,
        user: str | None = None,
        realname: str = "presencebot test client",
        timeout: float = 15.0,
    ) -> RawIrcClient:
        """Connect and register; returns once the MOTD (or 422) has arrived.

        With ``caps`` or ``sasl`` it negotiates (``CAP LS 302``, ``CAP REQ``; a NAK raises), then
        authenticates with SASL PLAIN as ``sasl=(account, password)``: a failure raises unless
        ``require_sasl=False`` (then ``sasl_reply`` holds the 90x line). TLS verifies the server
        against ``tls_ca`` (or uses ``ssl_context``).
        """
        context = ssl_context
        if context is None and tls_ca is not None:
            context = ssl.create_default_context(cafile=os.fspath(tls_ca))
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host if context else None),
            timeout,
        )
        client = cls(reader, writer, nick)
        try:
            await asyncio.wait_for(
                client._register(list(caps), sasl, require_sasl, password, user or nick, realname), timeout
            )
        except TimeoutError:
            await client.close()
            raise IrcError(f"{nick} not registered after {timeout} s{client._recent()}") from None
        except BaseException:
            await client.close()
            raise
        return client

    async def _register(
        self,
        caps: list[str],
        sasl: tuple[str, str] | None,
        require_sasl: bool,
        password: str | None,
        user: str,
        realname: str,
    ) -> None:
        negotiate = bool(caps) or sasl is not None
        if negotiate:
            self.send("CAP LS 302")
        if password is not None:
            self.send(f"PASS {password}")
        self.send(f"NICK {self.nick}")
        self.send(f"USER {user} 0 * :{realname}")
        if negotiate:
            await self._negotiate(caps, sasl, require_sasl)
        while True:
            line = await self._next_line()
            msg = parse_line(line)
            if msg.command == "ERROR" or msg.command in _REGISTRATION_ERRORS:
                raise IrcError(f"{self.nick} could not register: {line}{self._recent()}")
            if msg.command == "001" and msg.params:
                self.nick = msg.params[0]
            elif msg.command == "005":
                for token in msg.params[1:-1]:
                    key, _, value = token.partition("=")
                    if key.startswith("-"):
                        self.isupport.pop(key[1:], None)
                    else:
                        self.isupport[key] = value
            elif msg.command in {"376", "422"}:
                return

    async def _next_line(self) -> str:
        """The line at the cursor (waiting for it), advancing the cursor."""
        while self.cursor >= len(self.lines):
            if self._eof.is_set():
                raise IrcError(f"{self.nick}: connection closed{self._recent()}")
            self._changed.clear()
            await self._changed.wait()
        line = self.lines[self.cursor]
        self.cursor += 1
        return line

    async def _negotiate(self, caps: list[str], sasl: tuple[str, str] | None, require_sasl: bool) -> None:
        while True:  # CAP * LS [*] :caps (a "*" before the list means more lines follow)
            msg = parse_line(await self._next_line())
            if msg.command == "CAP" and len(msg.params) >= 3 and msg.params[1] == "LS":
                for cap in msg.params[-1].split():
                    key, _, value = cap.partition("=")
                    self.caps_available[key] = value
                if msg.params[2] != "*":
                    break
            elif msg.command == "ERROR" or msg.command in _REGISTRATION_ERRORS:
                raise IrcError(f"{self.nick} could not register: {msg.raw}{self._recent()}")
        wanted = list(dict.fromkeys([*caps, *(["sasl"] if sasl else [])]))
        if wanted:
            self.send(f"CAP REQ :{' '.join(wanted)}")
            while True:
                msg = parse_line(await self._next_line())
                if msg.command == "CAP" and len(msg.params) >= 3 and msg.params[1] in {"ACK", "NAK"}:
                    if msg.params[1] == "NAK":
                        raise IrcError(f"{self.nick}: server refused caps {msg.params[-1]!r}{self._recent()}")
                    self.caps_enabled.update(c.lstrip("-") for c in msg.params[-1].split())
                    break
        if sasl is not None:
            await self._sasl_plain(*sasl, require_sasl=require_sasl)
        self.send("CAP END")

    async def _sasl_plain(self, account: str, password: str, *, require_sasl: bool) -> None:
        self.send("AUTHENTICATE PLAIN")
        while True:
            msg = parse_line(await self._next_line())
            if msg.command == "AUTHENTICATE" and msg.params == ["+"]:
                break
            if msg.command in _SASL_DONE:
                self.sasl_reply = msg.raw
                break
        if self.sasl_reply is None:
            payload = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
            chunks = [payload[i : i + 400] for i in range(0, len(payload), 400)]
            for chunk in chunks:
                self.send(f"AUTHENTICATE {chunk}")
            if not chunks or len(chunks[-1]) == 400:
                self.send("AUTHENTICATE +")
            while self.sasl_reply is None:
                msg = parse_line(await self._next_line())
                if msg.command in _SASL_DONE:
                    self.sasl_reply = msg.raw
        if require_sasl and parse_line(self.sasl_reply).command != "903":
            raise IrcError(f"{self.nick}: SASL failed: {self.sasl_reply}{self._recent()}")

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self.reader.readline()
                if not raw:
                    break
                raw = raw.rstrip(b"\r\n")
                line = raw.decode("utf-8", errors="surrogateescape")
                self.raw_lines.append(raw)
                self.lines.append(line)
                msg = parse_line(line)
                if msg.command == "PING":
                    self.send(f"PONG :{msg.params[-1] if msg.params else ''}")
                elif msg.command == "NICK" and msg.nick == self.nick and msg.params:
                    self.nick = msg.params[0]
                self._changed.set()
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._eof.set()
            self._changed.set()

    @property
    def closed(self) -> bool:
        """The server closed the connection (or ``close()`` was called)."""
        return self._eof.is_set()

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the server closes the connection."""
        try:
            await asyncio.wait_for(self._eof.wait(), timeout)
        except TimeoutError:
            raise IrcError(f"{self.nick}: connection still open after {timeout} s{self._recent()}") from None

    async def close(self) -> None:
        """Drop the connection without a QUIT and stop the reader."""
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self._eof.set()
        self._changed.set()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)

    async def quit(self, message: str = "bye", timeout: float = 5.0) -> None:
        """QUIT, wait (briefly) for the server to close the connection, then close."""
        if not self.closed and not self.writer.is_closing():
            self.send(f"QUIT :{message}")
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(self._eof.wait(), timeout)
        await self.close()

    async def __aenter__(self) -> RawIrcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.quit()

    # sending ---------------------------------------------------------------------------------

    def send(self, line: str) -> None:
        """Send ``line`` encoded as UTF-8 plus CR LF (``line`` is not checked for CR or LF)."""
        self.send_bytes(line.encode("utf-8", errors="surrogateescape") + b"\r\n")

    def send_bytes(self, data: bytes) -> None:
        """Send exactly ``data`` (no CR LF added)."""
        if self.writer.is_closing():
            raise ConnectionError(f"{self.nick}: connection closed")
        self.sent.append(data)
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def privmsg(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def notice(self, target: str, text: str) -> None:
        self.send(f"NOTICE {target} :{text}")

    async def join(self, channel: str, timeout: float = 10.0) -> str:
        """JOIN and wait for the end of NAMES (366); a join error (403, 405, 471–477) raises."""
        self.send(f"JOIN {channel}")
        chan = re.escape(channel)
        line = await self.expect(
            rf"^(?:@\S+ )?:\S+ (?:366 \S+ {chan} |(?:403|405|471|473|474|475|476|477) \S+ {chan}\b)",
            timeout,
            flags=re.IGNORECASE,
        )
        if parse_line(line).command != "366":
            raise IrcError(f"{self.nick} could not join {channel}: {line}")
        return line

    async def part(self, channel: str, reason: str = "", timeout: float = 10.0) -> str:
        self.send(f"PART {channel} :{reason}" if reason else f"PART {channel}")
        return await self.expect(
            rf"^(?:@\S+ )?:{re.escape(self.nick)}!\S+ PART :?{re.escape(channel)}\b",
            timeout,
            flags=re.IGNORECASE,
        )

    # receiving -------------------------------------------------------------------------------

    async def expect(self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, flags: int = 0) -> str:
        """The first line after the cursor that ``re.search``-matches ``pattern``; moves the cursor past it."""
        regex = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        index = await self._wait_for(
            lambda i: regex.search(self.lines[i]) is not None, regex.pattern, timeout
        )
        return self.lines[index]

    async def expect_bytes(self, pattern: bytes | re.Pattern[bytes], timeout: float = 10.0) -> bytes:
        """Like ``expect()`` on the raw bytes of each line."""
        regex = re.compile(pattern) if isinstance(pattern, bytes) else pattern
        index = await self._wait_for(
            lambda i: regex.search(self.raw_lines[i]) is not None, repr(regex.pattern), timeout
        )
        return self.raw_lines[index]

    async def expect_msg(self, command: str, *params: str | None, timeout: float = 10.0) -> IrcLine:
        """The first parsed line after the cursor with ``command`` whose leading params equal
        ``params`` (``None`` matches anything)."""
        command = command.upper()

        def matches(i: int) -> bool:
            msg = parse_line(self.lines[i])
            return (
                msg.command == command
                and len(msg.params) >= len(params)
                and all(want is None or want == got for want, got in zip(params, msg.params, strict=False))
            )

        index = await self._wait_for(matches, f"{command} {params}", timeout)
        return parse_line(self.lines[index])

    async def expect_none(
        self, pattern: str | re.Pattern[str], within: float = 1.0, *, flags: int = 0
    ) -> None:
        """Fail if a line after the cursor matches ``pattern`` within ``within`` seconds."""
        regex = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        try:
            index = await self._wait_for(lambda i: regex.search(self.lines[i]) is not None, "", within)
        except IrcError:
            return
        raise IrcError(f"{self.nick}: unexpected line {self.lines[index]!r}")

    async def _wait_for(self, matches: Callable[[int], bool], what: str, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        scanned = self.cursor
        while True:
            for i in range(scanned, len(self.lines)):
                if matches(i):
                    self.cursor = i + 1
                    return i
            scanned = len(self.lines)
            remaining = deadline - loop.time()
            if self._eof.is_set() or remaining <= 0:
                state = "connection closed" if self._eof.is_set() else f"nothing in {timeout} s"
                raise IrcError(f"{self.nick}: no line matching {what!r} ({state}){self._recent()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _recent(self, count: int = 25) -> str:
        lines = self.lines[-count:]
        return "\n  last lines received:\n    " + "\n    ".join(lines) if lines else "\n  (nothing received)"

    def __repr__(self) -> str:
        return f"<RawIrcClient {self.nick} lines={len(self.lines)} cursor={self.cursor}>"


class RawClientFactory(Protocol):
    def __call__(self, host: str, port: int, nick: str, **kwargs: Any) -> Awaitable[RawIrcClient]: ...


# --------------------------------------------------------------------------------------------
# ii


class IiClient:
    """The ``ii`` client: a directory tree of FIFOs (``in``) and logs (``out``) per channel.

    ``out`` lines look like ``1796133468 <nick> text`` with IRC formatting bytes kept as sent.
    ii names channel directories in lower case.
    """

    def __init__(self, directory: Path, host: str, port: int, nick: str) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.nick = nick
        self.server_dir = directory / host
        self.log_path = directory / "ii.log"
        self._process = _Process(f"ii {nick}", self.log_path)

    def start(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        """Start ii and wait until the server welcomed it (001 in the server ``out``)."""
        self._process.spawn(
            ["ii", "-s", self.host, "-p", str(self.port), "-n", self.nick, "-i", str(self.directory)],
            self.directory,
        )
        self._process.wait_until(self._welcomed, "the server's welcome", timeout)

    def _welcomed(self) -> bool:
        return (self.server_dir / "in").exists() and b" 001 " in _read_bytes(self.log_path)

    def stop(self) -> None:
        self._process.stop(signal.SIGTERM)

    @property
    def running(self) -> bool:
        return self._process.running

    def channel_dir(self, channel: str) -> Path:
        return self.server_dir / channel.lower().replace("/", "_")

    def write_in(self, fifo: Path, text: str | bytes, timeout: float = 5.0) -> None:
        """Write one line to an ``in`` FIFO (waiting until ii has it open for reading)."""
        data = text if isinstance(text, bytes) else text.encode()
        if not data.endswith(b"\n"):
            data += b"\n"
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except (FileNotFoundError, OSError) as exc:  # ENXIO: no reader yet
                if time.monotonic() > deadline:
                    raise IrcError(f"cannot write to {fifo}: {exc}\n{tail(self.log_path)}") from exc
                time.sleep(0.02)
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)

    def send_raw(self, line: str) -> None:
        """Send a command as typed in ii (e.g. ``/j #chan``, ``/n newnick``)."""
        self.write_in(self.server_dir / "in", line)

    async def join(self, channel: str, timeout: float = 10.0) -> None:
        """``/j #chan`` and wait until ii logged its own join."""
        self.send_raw(f"/j {channel}")
        await self.wait_out(channel, f"-!- {self.nick}(".encode(), timeout)

    def say(self, channel: str, text: str | bytes) -> None:
        """Type ``text`` into the channel (ii sends it as a PRIVMSG)."""
        self.write_in(self.channel_dir(channel) / "in", text)

    def read_out(self, channel: str | None = None) -> bytes:
        """The raw bytes of the channel's ``out`` (the server's ``out`` for ``None``)."""
        base = self.server_dir if channel is None else self.channel_dir(channel)
        return _read_bytes(base / "out")

    async def wait_out(self, channel: str | None, needle: bytes, timeout: float = 10.0) -> bytes:
        """Wait until ``needle`` appears in the channel's ``out``; returns the first line holding it."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.read_out(channel)
            at = out.find(needle)
            if at >= 0:
                start = out.rfind(b"\n", 0, at) + 1
                end = out.find(b"\n", at)
                return out[start : end if end >= 0 else len(out)]
            if time.monotonic() > deadline:
                raise IrcError(
                    f"ii {self.nick}: {needle!r} not in {channel} out after {timeout} s; out:\n"
                    f"{out[-3000:].decode(errors='replace')}\n--- ii log:\n{tail(self.log_path)}"
                )
            await asyncio.sleep(0.02)

    def __repr__(self) -> str:
        return f"<IiClient {self.nick} at {self.host}:{self.port}>"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class IiFactory(Protocol):
    def __call__(self, host: str, port: int, nick: str) -> IiClient: ...


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def ngircd_factory(tmp_path: Path) -> Iterator[NgircdFactory]:
    """``ngircd_factory(penalty=..., tls=..., nicklen=...)`` starts an ngircd; all stop at teardown."""
    servers: list[NgircdServer] = []
    counter = itertools.count(1)

    def make(**options: Any) -> NgircdServer:
        server = NgircdServer(tmp_path / f"ngircd-{next(counter)}", **options)
        servers.append(server)
        server.start()
        return server

    yield make
    with contextlib.ExitStack() as stack:  # stop every one even if one stop raises
        for server in servers:
            stack.callback(server.stop)


@pytest.fixture
def ngircd(ngircd_factory: NgircdFactory) -> NgircdServer:
    """A running ngircd with the test defaults (no penalty, no TLS, nick length 30)."""
    return ngircd_factory()


@pytest.fixture(scope="module")
def inspircd_atheme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspircdServer]:
    """InspIRCd 3 + Atheme, shared by a test module (use distinct nicks and account names)."""
    server = InspircdServer(tmp_path_factory.mktemp("inspircd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def raw_client_factory() -> AsyncIterator[RawClientFactory]:
    """``await raw_client_factory(host, port, nick, **kwargs)``: a connected RawIrcClient, closed at teardown."""
    clients: list[RawIrcClient] = []

    async def make(host: str, port: int, nick: str, **kwargs: Any) -> RawIrcClient:
        client = await RawIrcClient.connect(host, port, nick, **kwargs)
        clients.append(client)
        return client

    yield make
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


@pytest.fixture
def ii_factory(tmp_path: Path) -> Iterator[IiFactory]:
    """``ii_factory(host, port, nick)``: a running ii client, stopped at teardown."""
    clients: list[IiClient] = []

    def make(host: str, port: int, nick: str) -> IiClient:
        client = IiClient(tmp_path / f"ii-{nick}", host, port, nick)
        clients.append(client)
        client.start()
        return client

    yield make
    with contextlib.ExitStack() as stack:
        for client in clients:
            stack.callback(client.stop)
