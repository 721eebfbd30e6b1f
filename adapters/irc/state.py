"""What the adapter knows about the server and the channels it is in.

IRC tells a client about people incrementally (NAMES, JOIN, MODE, NICK, PART, QUIT, account
tags), so this module keeps the running picture: who is in each channel with which status, and
which account each nick is logged in to. It is what lets the bot know that the person saying
``!police leave`` really is a channel operator, and identify people by account rather than nick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# Status modes that make someone a channel operator (founder, admin, op); halfops and voice do not.
OPERATOR_MODES: Final = frozenset("qaoy")
_RFC1459: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")
_STRICT: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\", "abcdefghijklmnopqrstuvwxyz{}|")


@dataclass(slots=True)
class ServerInfo:
    """The parts of RPL_ISUPPORT (005) the adapter uses, with RFC 1459 defaults."""

    prefix: dict[str, str] = field(default_factory=lambda: {"@": "o", "+": "v"})
    """Status prefix character -> mode letter, highest first."""
    nicklen: int = 9
    casemapping: str = "rfc1459"
    bot_mode: str | None = None
    whox: bool = False
    chantypes: str = "#&"
    network: str | None = None
    modes_with_parameter: str = "beIk"
    """CHANMODES groups A and B: a parameter both ways."""
    modes_with_parameter_when_set: str = "l"
    """CHANMODES group C: a parameter only when set."""

    def load(self, tokens: list[str]) -> None:
        """Apply the tokens of one 005 line (``NICKLEN=30``, ``WHOX``, ``-FOO``...)."""
        for token in tokens:
            name, _, value = token.partition("=")
            name = name.upper()
            if name == "PREFIX" and value.startswith("(") and ")" in value:
                modes, chars = value[1:].split(")", 1)
                if len(modes) == len(chars):
                    self.prefix = dict(zip(chars, modes, strict=True))
            elif name == "NICKLEN" and value.isdigit():
                self.nicklen = int(value)
            elif name == "CASEMAPPING" and value:
                self.casemapping = value.lower()
            elif name == "BOT" and value:
                self.bot_mode = value[0]
            elif name == "WHOX":
                self.whox = True
            elif name == "CHANTYPES" and value:
                self.chantypes = value
            elif name == "NETWORK" and value:
                self.network = value
            elif name == "CHANMODES" and value.count(",") >= 3:
                groups = value.split(",")
                self.modes_with_parameter = groups[0] + groups[1]
                self.modes_with_parameter_when_set = groups[2]

    def fold(self, name: str) -> str:
        """The server's idea of 'the same nick or channel' (RFC 1459 maps [] to {} and so on)."""
        if self.casemapping == "ascii":
            return name.lower()
        return name.translate(_STRICT if self.casemapping == "strict-rfc1459" else _RFC1459)

    def is_channel(self, target: str) -> bool:
        return bool(target) and target[0] in self.chantypes

    def split_prefixes(self, item: str) -> tuple[set[str], str]:
        """``"@+lily"`` -> ``({"o", "v"}, "lily")`` (several prefixes with multi-prefix)."""
        modes: set[str] = set()
        index = 0
        while index < len(item) and item[index] in self.prefix:
            modes.add(self.prefix[item[index]])
            index += 1
        return modes, item[index:]


@dataclass(slots=True)
class Channel:
    name: str
    members: dict[str, set[str]] = field(default_factory=dict)
    """Folded nick -> status mode letters."""


class ServerState:
    """Channels the bot is in, their members' status, and the accounts of nicks it has seen."""

    def __init__(self) -> None:
        self.info = ServerInfo()
        self.channels: dict[str, Channel] = {}
        self.accounts: dict[str, str | None] = {}
        """Folded nick -> account (``None``: known to be logged out)."""
        self.my_nick = ""
        self.my_mask: str | None = None

    def is_me(self, nick: str) -> bool:
        return self.info.fold(nick) == self.info.fold(self.my_nick)

    # --- channels --------------------------------------------------------------------------
    def joined(self, channel: str) -> Channel:
        entry = self.channels[self.info.fold(channel)] = Channel(channel)
        return entry

    def channel(self, channel: str) -> Channel | None:
        return self.channels.get(self.info.fold(channel))

    def left(self, channel: str) -> None:
        self.channels.pop(self.info.fold(channel), None)

    def add_member(self, channel: str, nick: str, modes: set[str] | None = None) -> None:
        entry = self.channel(channel)
        if entry is not None:
            entry.members.setdefault(self.info.fold(nick), set()).update(modes or ())

    def remove_member(self, channel: str, nick: str) -> None:
        entry = self.channel(channel)
        if entry is not None:
            entry.members.pop(self.info.fold(nick), None)

    def quit(self, nick: str) -> None:
        folded = self.info.fold(nick)
        for entry in self.channels.values():
            entry.members.pop(folded, None)
        self.accounts.pop(folded, None)

    def renamed(self, old: str, new: str) -> None:
        before, after = self.info.fold(old), self.info.fold(new)
        for entry in self.channels.values():
            if before in entry.members:
                entry.members[after] = entry.members.pop(before)
        if before in self.accounts:
            self.accounts[after] = self.accounts.pop(before)
        if self.is_me(old):
            self.my_nick = new

    def set_mode(self, channel: str, nick: str, mode: str, on: bool) -> None:
        entry = self.channel(channel)
        if entry is None:
            return
        modes = entry.members.setdefault(self.info.fold(nick), set())
        if on:
            modes.add(mode)
        else:
            modes.discard(mode)

    def apply_channel_modes(self, channel: str, arguments: list[str]) -> None:
        """A channel MODE change (``+o-v lily max``): track status modes, skip the others' params."""
        if not arguments:
            return
        status_modes = set(self.info.prefix.values())
        params = iter(arguments[1:])
        on = True
        for char in arguments[0]:
            if char in "+-":
                on = char == "+"
            elif char in status_modes:
                nick = next(params, None)
                if nick is not None:
                    self.set_mode(channel, nick, char, on)
            elif char in self.info.modes_with_parameter or (
                on and char in self.info.modes_with_parameter_when_set
            ):
                next(params, None)

    def is_operator(self, channel: str, nick: str) -> bool:
        entry = self.channel(channel)
        if entry is None:
            return False
        return bool(entry.members.get(self.info.fold(nick), set()) & OPERATOR_MODES)

    # --- accounts --------------------------------------------------------------------------
    def set_account(self, nick: str, account: str | None) -> None:
        self.accounts[self.info.fold(nick)] = None if account in (None, "", "*", "0") else account

    def account(self, nick: str) -> str | None:
        return self.accounts.get(self.info.fold(nick))
