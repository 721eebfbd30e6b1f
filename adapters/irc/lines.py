"""Making outgoing text safe for one IRC line, and short enough for it.

IRC is line-based: a CR, LF or NUL inside a message would end the line early and let the rest be
read as a command (``"hello\\rPART #kids"`` parts the channel on ngircd). Every text the bot sends
goes through :func:`clean` first. A line is at most 512 bytes *as the server relays it*, which
includes the ``:nick!user@host`` prefix the server adds; :func:`split` cuts longer text on word
boundaries (and never inside a UTF-8 character) so that no relayed line is truncated.
"""

from __future__ import annotations

import re
from typing import Final

LINE_BYTES: Final = 512
"""RFC 1459/2812 line limit, CR LF included (tags are budgeted separately by IRCv3)."""
HOST_BYTES: Final = 63
"""The longest hostname a server shows; assumed when the bot's own host is not known yet."""
USER_BYTES: Final = 11
"""A username (ident) of up to 10 characters, plus the ``~`` servers add without identd."""

_UNSAFE: Final = re.compile(r"[\r\n\x00]+")


def clean(text: str) -> str:
    """``text`` with every run of CR, LF and NUL replaced by one space."""
    return _UNSAFE.sub(" ", text)


def budget(command: str, target: str, mask: str | None, nick: str) -> int:
    """How many bytes of text fit in ``COMMAND target :text`` once the server adds our prefix.

    ``mask`` is our own ``nick!user@host`` as the server shows it (from our JOIN echo); without
    it the longest plausible user and host are assumed, so text is never cut by the server.
    """
    if mask is None:
        mask = f"{nick}!{'u' * USER_BYTES}@{'h' * HOST_BYTES}"
    overhead = len(f":{mask} {command} {target} :".encode()) + 2  # + CR LF
    return max(LINE_BYTES - overhead, 32)


def split(text: str, limit: int) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-8 bytes, on spaces where possible."""
    text = clean(text)
    if len(text.encode()) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate.encode()) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        # A word longer than a whole line is cut at character boundaries.
        while len(word.encode()) > limit:
            head = _prefix_within(word, limit)
            pieces.append(head)
            word = word[len(head) :]
        current = word
    if current:
        pieces.append(current)
    return pieces


def _prefix_within(word: str, limit: int) -> str:
    """The longest prefix of ``word`` that is at most ``limit`` bytes (at least one character)."""
    size = 0
    for index, char in enumerate(word):
        size += len(char.encode())
        if size > limit:
            return word[: max(index, 1)]
    return word
