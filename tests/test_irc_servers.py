"""Smoke tests of the real IRC servers and clients in tests/ircservers.py."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from typing import TYPE_CHECKING

import pytest

from tests.support import require

if TYPE_CHECKING:  # imported at run time by pytest_plugins, which must come first (assertion rewriting)
    from tests.ircservers import IiFactory, InspircdServer, NgircdFactory, NgircdServer, RawClientFactory

pytest_plugins = ["tests.ircservers"]
pytestmark = pytest.mark.slow


def need(*programs: str) -> None:
    for program in programs:
        package = {
            "ngircd": "ngircd",
            "inspircd": "inspircd",
            "atheme-services": "atheme-services",
            "ii": "ii",
            "certtool": "gnutls-bin",
        }[program]
        require(shutil.which(program) is not None, f"{program} not installed (Debian package {package})")


@pytest.fixture
def ngircd_server(request: pytest.FixtureRequest) -> NgircdServer:
    need("ngircd", "certtool")
    server: NgircdServer = request.getfixturevalue("ngircd")
    return server


@pytest.fixture
def inspircd(request: pytest.FixtureRequest) -> InspircdServer:
    need("inspircd", "atheme-services")
    server: InspircdServer = request.getfixturevalue("inspircd_atheme")
    return server


async def test_ngircd_two_clients_see_each_others_privmsg(
    ngircd_server: NgircdServer, raw_client_factory: RawClientFactory
) -> None:
    alice, bob = await asyncio.gather(
        raw_client_factory(ngircd_server.host, ngircd_server.port, "PolicePresence"),
        raw_client_factory(ngircd_server.host, ngircd_server.port, "bob"),
    )
    assert alice.isupport["NICKLEN"] == "30"
    await alice.join("#kids")
    await bob.join("#kids")
    await alice.expect(r"^:bob!\S+ JOIN :?#kids")
    alice.privmsg("#kids", "hello bob")
    assert (
        await bob.expect(r"PRIVMSG #kids :")
        == ":PolicePresence!~PolicePresence@127.0.0.1 PRIVMSG #kids :hello bob"
    )
    bob.send_bytes(b"PRIVMSG #kids :caf\xe9 latin-1\r\n")
    assert await alice.expect_bytes(rb"PRIVMSG #kids :caf\xe9 latin-1$")


async def test_ngircd_restarts_on_the_same_port(
    ngircd_server: NgircdServer, raw_client_factory: RawClientFactory
) -> None:
    port = ngircd_server.port
    client = await raw_client_factory(ngircd_server.host, port, "before")
    ngircd_server.stop()
    await client.wait_closed(5)
    assert not ngircd_server.running
    ngircd_server.start()
    assert ngircd_server.port == port
    again = await raw_client_factory(ngircd_server.host, port, "after")
    await again.join("#back")
    ngircd_server.kill()  # a crash: no ERROR line, the socket just closes
    await again.wait_closed(5)
    assert not any(line.startswith("ERROR") for line in again.lines)
    ngircd_server.start()
    await raw_client_factory(ngircd_server.host, port, "third")
    assert ngircd_server.log_text().count("starting: ngircd") == 3


async def test_ngircd_default_nick_length_can_be_kept(
    ngircd_factory: NgircdFactory, raw_client_factory: RawClientFactory
) -> None:
    need("ngircd", "certtool")
    server = ngircd_factory(nicklen=None)
    with pytest.raises(AssertionError, match=" 432 "):
        await raw_client_factory(server.host, server.port, "PolicePresence", timeout=5)


async def test_ngircd_tls_port_verifies_with_the_test_ca_only(
    ngircd_factory: NgircdFactory, raw_client_factory: RawClientFactory
) -> None:
    need("ngircd", "certtool")
    server = ngircd_factory(tls=True)
    assert server.tls_port is not None and server.ca_file is not None
    client = await raw_client_factory(server.host, server.tls_port, "secure", tls_ca=str(server.ca_file))
    assert isinstance(client.writer.get_extra_info("ssl_object"), ssl.SSLObject)
    with pytest.raises(ssl.SSLCertVerificationError):
        await raw_client_factory(
            server.host, server.tls_port, "insecure", ssl_context=ssl.create_default_context()
        )
    # The plain port still answers next to the TLS one.
    await raw_client_factory(server.host, server.port, "plain")


async def test_inspircd_sasl_plain_and_capabilities(
    inspircd: InspircdServer, raw_client_factory: RawClientFactory
) -> None:
    await inspircd.register_account("officer", "correct-horse")
    good, bad = await asyncio.gather(
        raw_client_factory(
            inspircd.host,
            inspircd.port,
            "officer",
            caps=[
                "message-tags",
                "server-time",
                "account-tag",
                "extended-join",
                "account-notify",
                "echo-message",
            ],
            sasl=("officer", "correct-horse"),
        ),
        raw_client_factory(
            inspircd.host, inspircd.port, "intruder", sasl=("officer", "wrong-password"), require_sasl=False
        ),
    )
    assert good.sasl_reply is not None and " 903 " in good.sasl_reply
    assert any(" 900 officer " in line for line in good.lines)
    assert bad.sasl_reply is not None and " 904 " in bad.sasl_reply
    for cap in (
        "account-tag",
        "extended-join",
        "account-notify",
        "message-tags",
        "server-time",
        "echo-message",
        "sasl",
    ):
        assert cap in good.caps_available, cap
    assert good.caps_available["sasl"] == "PLAIN"
    assert good.isupport["BOT"] == "B"
    assert any(" 005 officer " in line and " BOT=B " in line for line in good.lines)

    await good.join("#ircv3")
    await bad.join("#ircv3")
    bad.privmsg("#ircv3", "tagged?")
    line = await good.expect(r" PRIVMSG #ircv3 :tagged\?$")
    assert line.startswith("@") and "time=" in line and "msgid=" in line
    good.privmsg("#ircv3", "echo")
    echoed = await good.expect_msg("PRIVMSG", "#ircv3")
    assert echoed.params[-1] == "echo" and echoed.tags.get("account") == "officer"


async def test_ii_sees_a_raw_clients_message(
    ngircd_server: NgircdServer, ii_factory: IiFactory, raw_client_factory: RawClientFactory
) -> None:
    need("ii")
    ii = ii_factory(ngircd_server.host, ngircd_server.port, "person")
    await ii.join("#Room")
    other = await raw_client_factory(ngircd_server.host, ngircd_server.port, "other")
    await other.join("#room")
    other.privmsg("#room", "\x0304red\x03 text")
    line = await ii.wait_out("#room", b"<other>")
    assert line.endswith(b"<other> \x0304red\x03 text")
    ii.say("#room", "hi from ii")
    # ii sends to the channel as it was typed in /j.
    assert await other.expect(r"^:person!\S+ PRIVMSG #Room :hi from ii$")
