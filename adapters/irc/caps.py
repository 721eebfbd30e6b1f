"""IRCv3 capability negotiation and SASL, as a small state machine with no I/O.

The asyncio client of the ``irc`` library registers with NICK/USER straight away and knows
nothing of CAP or SASL, so the adapter sends ``CAP LS 302`` before them and feeds the server's
answers here; each method returns the lines to send back. Registration is held by the server
until ``CAP END``, which every path ends with — including failures, so a wrong password fails
once, clearly, instead of hanging or looping.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Final

WANTED: Final = frozenset(
    {
        "server-time",  # message times from the server, not from our receive time
        "account-tag",  # the sender's account on every message: identity by account, not nick
        "message-tags",  # msgid and replies
        "echo-message",  # our own lines come back: proof they were relayed
        "multi-prefix",  # every status prefix in NAMES, so operators are recognised
        "extended-join",  # account on JOIN
        "account-notify",  # account changes of people we share a channel with
        "cap-notify",
    }
)
SASL_CHUNK: Final = 400
SASL_FAILURES: Final = {
    "902": "the account is unavailable (nick locked)",
    "904": "authentication failed (wrong account or password?)",
    "905": "the SASL message was too long",
    "906": "authentication was aborted",
    "908": "the mechanism is not supported by the server",
}


@dataclass(slots=True)
class CapNegotiation:
    """One connection's negotiation. ``mechanism`` is ``None``, ``"PLAIN"`` or ``"EXTERNAL"``."""

    mechanism: str | None = None
    account: str = ""
    password: str = ""
    offered: dict[str, str] = field(default_factory=dict)
    enabled: set[str] = field(default_factory=set)
    finished: bool = False
    sasl_done: bool = False
    error: str | None = None
    _requested: set[str] = field(default_factory=set)

    def start(self) -> list[str]:
        return ["CAP LS 302"]

    def on_cap(self, arguments: list[str]) -> list[str]:
        """``arguments`` after the target: e.g. ``["LS", "*", "a b"]`` or ``["ACK", "a b"]``."""
        if not arguments:
            return []
        sub = arguments[0].upper()
        more = len(arguments) > 2 and arguments[1] == "*"
        payload = arguments[-1] if len(arguments) > 1 else ""
        if sub == "LS":
            for token in payload.split():
                name, _, value = token.partition("=")
                self.offered[name] = value
            if more or self.finished:
                return []
            return self._request()
        if sub == "ACK":
            names = {t.lstrip("-~=") for t in payload.split() if not t.startswith("-")}
            self.enabled |= names
            if self.finished:
                return []
            if "sasl" in names and self.mechanism is not None:
                return [f"AUTHENTICATE {self.mechanism}"]
            return self._end()
        if sub == "NAK":
            return [] if self.finished else self._end()
        if sub == "NEW":
            self.on_cap(["LS", payload])
            return []
        if sub == "DEL":
            for token in payload.split():
                self.enabled.discard(token)
                self.offered.pop(token, None)
        return []

    def _request(self) -> list[str]:
        wanted = set(WANTED)
        if self.mechanism is not None and self._sasl_offered():
            wanted.add("sasl")
        request = sorted(name for name in wanted if name in self.offered)
        if not request:
            return self._end()
        self._requested = set(request)
        return [f"CAP REQ :{' '.join(request)}"]

    def _sasl_offered(self) -> bool:
        if "sasl" not in self.offered:
            return False
        mechanisms = self.offered["sasl"]
        return not mechanisms or (self.mechanism or "") in mechanisms.upper().split(",")

    def on_authenticate(self, argument: str) -> list[str]:
        """The server's ``AUTHENTICATE +``: send the credentials, in 400-byte chunks."""
        if argument != "+" or self.mechanism is None:
            return []
        if self.mechanism == "EXTERNAL":
            return ["AUTHENTICATE +"]
        raw = f"{self.account}\0{self.account}\0{self.password}".encode()
        encoded = base64.b64encode(raw).decode()
        chunks = [encoded[i : i + SASL_CHUNK] for i in range(0, len(encoded), SASL_CHUNK)]
        if len(chunks[-1]) == SASL_CHUNK:
            chunks.append("+")  # a full last chunk is followed by an empty one
        return [f"AUTHENTICATE {chunk}" for chunk in chunks]

    def on_numeric(self, code: str, text: str) -> list[str]:
        """900-908. On a failure, :attr:`error` says why; the caller sends the lines and gives up."""
        if code in ("903", "907"):
            self.sasl_done = True
            return self._end()
        if code in SASL_FAILURES and self.error is None:
            self.error = f"SASL {self.mechanism} for account {self.account!r}: {SASL_FAILURES[code]} ({text})"
            return self._end()
        return []

    def _end(self) -> list[str]:
        if self.finished:
            return []
        self.finished = True
        return ["CAP END"]

    @property
    def sasl_unavailable(self) -> bool:
        """SASL was wanted but the server does not offer it (the NickServ fallback applies)."""
        return self.mechanism is not None and self.finished and not self.sasl_done
