"""The IRC adapter's protocol logic that needs no server: lines, CAP/SASL, channel state, settings."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from presencebot.adapters.irc import IrcAdapter, IrcSettings
from presencebot.adapters.irc.adapter import strip_formatting
from presencebot.adapters.irc.caps import CapNegotiation
from presencebot.adapters.irc.lines import LINE_BYTES, budget, clean, split
from presencebot.adapters.irc.state import ServerState


def test_clean_strips_every_line_break_and_nul() -> None:
    assert clean("hello\rPART #kids") == "hello PART #kids"
    assert clean("a\r\n\r\nb\x00c\nd") == "a b c d"


@pytest.mark.parametrize("size", [10, 400, 2000])
def test_split_fits_the_relayed_line_and_keeps_every_word(size: int) -> None:
    text = " ".join(f"wörd{i}" for i in range(size))
    limit = budget("PRIVMSG", "#kids", None, "PolicePresence")
    pieces = split(text, limit)
    prefix = f":PolicePresence!{'u' * 11}@{'h' * 63} PRIVMSG #kids :"
    for piece in pieces:
        assert len((prefix + piece).encode()) + 2 <= LINE_BYTES
        assert not piece.startswith(" ") and not piece.endswith(" ")
    assert " ".join(pieces) == text


def test_split_cuts_a_giant_word_between_characters_never_inside_one() -> None:
    word = "é" * 500  # 1000 bytes, no space
    pieces = split(word, 101)
    assert "".join(pieces) == word
    assert all(len(p.encode()) <= 101 for p in pieces)


def test_budget_uses_our_real_mask_when_known() -> None:
    short = budget("PRIVMSG", "#k", "bot!~b@127.0.0.1", "bot")
    assert short == LINE_BYTES - len(b":bot!~b@127.0.0.1 PRIVMSG #k :") - 2
    assert budget("PRIVMSG", "#k", None, "bot") < short


def test_formatting_codes_are_removed_for_rules() -> None:
    assert strip_formatting("\x0304,01where\x03 do \x02u\x02 \x1dlive\x1d\x0f") == "where do u live"


def test_cap_negotiation_requests_what_is_offered_and_always_ends() -> None:
    neg = CapNegotiation()
    assert neg.start() == ["CAP LS 302"]
    assert neg.on_cap(["LS", "*", "multi-prefix server-time"]) == []  # more to come
    assert neg.on_cap(["LS", "account-tag unknown-cap sasl=PLAIN"]) == [
        "CAP REQ :account-tag multi-prefix server-time"
    ]
    assert neg.on_cap(["ACK", "account-tag multi-prefix server-time"]) == ["CAP END"]
    assert neg.enabled == {"account-tag", "multi-prefix", "server-time"}
    assert neg.on_cap(["NAK", "x"]) == []  # already ended: nothing twice


def test_cap_negotiation_with_nothing_in_common_ends_at_once() -> None:
    neg = CapNegotiation()
    assert neg.on_cap(["LS", "away-notify"]) == ["CAP END"]


def test_sasl_plain_success() -> None:
    neg = CapNegotiation("PLAIN", "police", "s3cret")
    assert "sasl" in neg.on_cap(["LS", "sasl=PLAIN,EXTERNAL server-time"])[0]
    assert neg.on_cap(["ACK", "sasl server-time"]) == ["AUTHENTICATE PLAIN"]
    (line,) = neg.on_authenticate("+")
    assert base64.b64decode(line.split()[1]) == b"police\0police\0s3cret"
    assert neg.on_numeric("903", "SASL authentication successful") == ["CAP END"]
    assert neg.sasl_done and neg.error is None


def test_sasl_failure_ends_negotiation_once_with_a_clear_error() -> None:
    neg = CapNegotiation("PLAIN", "police", "wrong")
    neg.on_cap(["LS", "sasl"])
    neg.on_cap(["ACK", "sasl"])
    assert neg.on_numeric("904", "SASL authentication failed") == ["CAP END"]
    assert neg.error is not None and "police" in neg.error and "wrong account or password" in neg.error
    assert "wrong" not in neg.error.replace("wrong account", "")  # the password is never echoed
    assert neg.on_numeric("904", "again") == []


def test_long_sasl_payloads_are_chunked_with_a_final_plus() -> None:
    neg = CapNegotiation("PLAIN", "a", "p" * 296)  # 1+1+1+1+296 = 300 bytes -> exactly 400 base64
    neg.on_cap(["LS", "sasl"])
    neg.on_cap(["ACK", "sasl"])
    out = neg.on_authenticate("+")
    assert len(out) == 2 and out[1] == "AUTHENTICATE +" and len(out[0].split()[1]) == 400


def test_sasl_not_offered_means_fallback() -> None:
    neg = CapNegotiation("PLAIN", "police", "pw")
    assert neg.on_cap(["LS", "multi-prefix"]) == ["CAP REQ :multi-prefix"]
    assert neg.on_cap(["ACK", "multi-prefix"]) == ["CAP END"]
    assert neg.sasl_unavailable


def test_state_tracks_operators_through_names_modes_nicks_and_parts() -> None:
    st = ServerState()
    st.info.load(["PREFIX=(qaohv)~&@%+", "CASEMAPPING=rfc1459", "CHANMODES=beI,k,l,imnst", "NICKLEN=30"])
    st.my_nick = "PolicePresence"
    st.joined("#Kids")
    for item in ["~founder", "@op", "%half", "+voice", "kid"]:
        modes, nick = st.info.split_prefixes(item)
        st.add_member("#kids", nick, modes)
    assert [st.is_operator("#KIDS", n) for n in ("founder", "op", "half", "voice", "kid")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    st.apply_channel_modes("#kids", ["+bo-o", "*!*@spam", "kid", "op"])
    assert st.is_operator("#kids", "kid") and not st.is_operator("#kids", "op")
    st.renamed("kid", "Kid[away]")
    assert st.is_operator("#kids", "kid{AWAY}")  # RFC 1459: [] and {} are the same letters
    st.remove_member("#kids", "kid[away]")
    assert not st.is_operator("#kids", "kid[away]")
    assert st.info.nicklen == 30


def test_state_accounts() -> None:
    st = ServerState()
    st.set_account("lily", "lily_acct")
    st.set_account("max", "*")
    assert st.account("LILY") == "lily_acct" and st.account("max") is None
    st.renamed("lily", "lily2")
    assert st.account("lily2") == "lily_acct"
    st.quit("lily2")
    assert st.account("lily2") is None


def test_settings_defaults_are_safe_and_mistakes_are_named() -> None:
    s = IrcSettings(host="irc.example.org")
    assert s.tls and s.tls_verify and s.effective_port == 6697 and s.bot_mode == "auto"
    assert IrcSettings(host="h", tls=False).effective_port == 6667
    with pytest.raises(ValidationError, match="sasl_password"):
        IrcSettings(host="h", sasl="plain")
    with pytest.raises(ValidationError, match="client_cert"):
        IrcSettings(host="h", sasl="external")
    with pytest.raises(ValidationError, match="nick"):
        IrcSettings(host="h", nick="9lives")


class _Host:
    def __init__(self) -> None:
        from presencebot.adapter import Identity

        self.identity = Identity("Demo Police Service", "https://example.org/presencebot", "0")
        self.events: list[object] = []

    async def emit(self, event: object) -> None:
        self.events.append(event)


_COMMANDS = [
    "PRIVMSG #kids",
    "PRIVMSG PolicePresence",
    "NOTICE #kids",
    "JOIN",
    "PART #kids",
    "KICK #kids",
    "MODE #kids",
    "NICK",
    "QUIT",
    "INVITE PolicePresence",
    "CAP * LS",
    "CAP * ACK",
    "AUTHENTICATE",
    "001 PolicePresence",
    "005 PolicePresence",
    "353 PolicePresence =",
    "354 PolicePresence",
    "319 PolicePresence",
    "330 PolicePresence",
    "433 *",
    "474 PolicePresence",
    "904 PolicePresence",
    "ACCOUNT",
    "ERROR",
    "PING",
]
_line = st.builds(
    lambda tags, prefix, command, args: (tags + prefix + command + " " + args).encode(
        "utf-8", "surrogatepass"
    ),
    st.sampled_from(["", "@time=nonsense;account=x ", "@=;;= ", "@msgid ", "@+draft/reply=\\s "]),
    st.sampled_from(["", ":", ":lily!l@h ", ":irc.test ", ": ", ":!@ "]),
    st.sampled_from(_COMMANDS),
    st.text(max_size=80),
)


@given(st.lists(st.one_of(_line, st.binary(max_size=300)), max_size=25))
@settings(max_examples=300, deadline=None)
def test_no_server_input_can_crash_the_adapter(chunks: list[bytes]) -> None:
    """Arbitrary bytes and malformed lines from the server: each costs at most itself."""

    async def feed() -> None:
        from presencebot.adapters.irc.adapter import _Reactor

        host = _Host()
        adapter = IrcAdapter("irc", IrcSettings(host="h", tls=False), host)
        reactor = _Reactor(loop=asyncio.get_running_loop())
        conn = reactor.server()
        conn.on_event = adapter._on_irc_event
        conn.buffer = conn.buffer_class()
        conn.real_nickname = conn.nickname = "PolicePresence"
        conn.real_server_name = ""
        adapter._conn = conn
        adapter.state.my_nick = "PolicePresence"
        for chunk in chunks:
            conn.process_data(chunk + b"\r\n")
        conn.process_data(b"\n".join(chunks))
        await asyncio.sleep(0)
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    asyncio.run(feed())


def test_sasl_external_sends_an_empty_response() -> None:
    neg = CapNegotiation("EXTERNAL", "police")
    assert neg.on_cap(["LS", "sasl=PLAIN,EXTERNAL"]) == ["CAP REQ :sasl"]
    assert neg.on_cap(["ACK", "sasl"]) == ["AUTHENTICATE EXTERNAL"]
    assert neg.on_authenticate("+") == ["AUTHENTICATE +"]
    assert neg.on_numeric("903", "ok") == ["CAP END"]


def test_sasl_mechanism_the_server_lacks_is_not_requested() -> None:
    neg = CapNegotiation("EXTERNAL", "police")
    assert neg.on_cap(["LS", "sasl=PLAIN server-time"]) == ["CAP REQ :server-time"]
