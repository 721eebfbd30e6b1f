"""Smoke tests of the real XMPP server and the scripted XMPP person in tests/xmppservers.py."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from typing import TYPE_CHECKING

import pytest

from tests.support import require

if TYPE_CHECKING:  # imported at run time by pytest_plugins, which must come first (assertion rewriting)
    from tests.xmppservers import ProsodyFactory, ProsodyServer, XmppUserFactory

pytest_plugins = ["tests.xmppservers"]
pytestmark = pytest.mark.slow

# A tiny but valid PNG (1x1, transparent).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


def need_prosody() -> None:
    require(shutil.which("prosody") is not None, "prosody not installed (Debian package prosody)")
    require(shutil.which("certtool") is not None, "certtool not installed (Debian package gnutls-bin)")


@pytest.fixture
def server(request: pytest.FixtureRequest) -> ProsodyServer:
    need_prosody()
    prosody: ProsodyServer = request.getfixturevalue("prosody")
    return prosody


async def test_two_users_see_each_others_groupchat_message(
    server: ProsodyServer, xmpp_user_factory: XmppUserFactory
) -> None:
    alice, bob = await asyncio.gather(xmpp_user_factory(server, "alice"), xmpp_user_factory(server, "bob"))
    assert not alice.encrypted  # no CA given: plaintext login on a server that offers STARTTLS
    await alice.join("kids", "Alice")
    await bob.join("kids", "Bob")
    await alice.expect_presence("kids", nick="Bob", unavailable=False)
    alice.say("kids", "hello bob")
    msg = await bob.expect_groupchat("kids", r"^hello bob$")
    assert str(msg["from"]) == f"kids@{server.muc}/Alice"
    bob.say("kids", "hi alice")
    assert (await alice.expect_groupchat("kids", "hi", nick="Bob"))["body"] == "hi alice"
    bob.private("alice", "psst")
    assert (await alice.expect_chat("psst", sender="bob"))["from"].bare == "bob@localhost"


async def test_room_creator_can_kick_and_ban(
    server: ProsodyServer, xmpp_user_factory: XmppUserFactory
) -> None:
    owner, guest, third = await asyncio.gather(
        xmpp_user_factory(server, "owner"),
        xmpp_user_factory(server, "guest"),
        xmpp_user_factory(server, "third"),
    )
    created = await owner.join("modroom", "Owner")
    assert 201 in created["muc"]["status_codes"]  # a new room, unlocked at once
    assert created["muc"]["affiliation"] == "owner" and created["muc"]["role"] == "moderator"
    await guest.join("modroom", "Guest")
    await owner.kick("modroom", "Guest", "out you go")
    kicked = await guest.expect_presence("modroom", nick="Guest", codes=[307, 110], unavailable=True)
    assert kicked["muc"]["item"]["reason"] == "out you go"
    await third.join("modroom", "Third")
    await owner.ban("modroom", "third")
    await third.expect_presence("modroom", nick="Third", codes=[301], unavailable=True)
    with pytest.raises(Exception, match="forbidden"):
        await third.join("modroom", "Third")


async def test_direct_and_mediated_invitations_arrive(
    server: ProsodyServer, xmpp_user_factory: XmppUserFactory
) -> None:
    host, guest = await asyncio.gather(xmpp_user_factory(server, "host"), xmpp_user_factory(server, "guest"))
    await host.join("party", "Host")
    host.invite_direct("party", "guest", "come along")
    direct = await guest.expect_direct_invite("party")
    assert direct["from"].bare == "host@localhost"
    assert direct["groupchat_invite"]["reason"] == "come along"
    host.invite_mediated("party", "guest", "please join")
    mediated = await guest.expect_mediated_invite("party")
    # A semi-anonymous room names the inviter by occupant JID, and adds a body and a XEP-0249 <x/>.
    assert str(mediated["muc"]["invite"]["from"]) == f"party@{server.muc}/Host"
    assert mediated["muc"]["invite"]["reason"] == "please join"


async def test_a_non_contact_fetches_an_avatar_byte_identical(
    server: ProsodyServer, xmpp_user_factory: XmppUserFactory
) -> None:
    owner, stranger = await asyncio.gather(
        xmpp_user_factory(server, "pictured"), xmpp_user_factory(server, "stranger")
    )
    avatar_id = await owner.publish_avatar(PNG)
    assert avatar_id == hashlib.sha1(PNG).hexdigest()
    assert await stranger.fetch_avatar("pictured") == PNG
    # Prosody's vcard_legacy serves the same picture as a vcard-temp PHOTO.
    assert await stranger.fetch_vcard_photo("pictured") == PNG


async def test_restart_on_the_same_port_keeps_accounts(
    server: ProsodyServer, xmpp_user_factory: XmppUserFactory
) -> None:
    port = server.port
    user = await xmpp_user_factory(server, "survivor")
    server.stop()
    await user.wait_disconnected(5)
    server.start()
    assert server.port == port
    again = await xmpp_user_factory(server, "survivor", "pw-survivor", resource="again")
    server.kill()  # a crash: the stream just ends
    await again.wait_disconnected(5)
    server.start()
    third = await xmpp_user_factory(server, "survivor", "pw-survivor", resource="third")
    await third.join("back", "Survivor")
    assert server.log_text().count("Hello and welcome to Prosody") == 3


async def test_starttls_verified_with_the_test_ca(
    prosody_factory: ProsodyFactory, xmpp_user_factory: XmppUserFactory
) -> None:
    need_prosody()
    server = prosody_factory(tls=True)
    assert server.ca_file is not None
    user = await xmpp_user_factory(server, "secure", ca_file=server.ca_file)
    assert user.encrypted
    await user.join("tlsroom", "Secure")
    # Without tls the server offers no STARTTLS: a client that insists fails, a plaintext one logs in.
    plain = prosody_factory(tls=False)
    assert plain.ca_file is None
    with pytest.raises(AssertionError, match="STARTTLS"):
        await xmpp_user_factory(plain, "nosecure", ca_file=server.ca_file)
    assert not (await xmpp_user_factory(plain, "plainuser")).encrypted
