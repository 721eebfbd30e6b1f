"""The officer-facing text of an alert: what is read in the officer room, a mail or a webhook.

A notice carries facts only (severity, category, where, who, the rule's explanation, how to
acknowledge) and never the evidence: chat messages stay in the store, reachable with
``presencebot alerts show <id>``, so that they are not copied into mail archives and third-party
systems. Nicks, accounts and room names are chosen by people in chat, so every field is cleaned of
control characters before it can reach an IRC line or a mail header (a CR LF in a nick would
otherwise start a new IRC command or header), and of the invisible bidirectional controls that
could make one nick read as another.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Final

from presencebot.alerts import Alert, AlertState
from presencebot.events import Author

__all__ = ["FIRST_LINE_BYTES", "clean", "clip", "clip_bytes", "headline", "notice_lines", "notice_text"]

FIRST_LINE_BYTES: Final = 350
"""The first line fits one IRC message whatever the bot's prefix and the target's name."""
LINE_BYTES: Final = 1000
"""Other lines are longer (an IRC adapter splits them) but still bounded."""

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each run becomes one
# space, so that "a\r\nb" cannot end a line early yet still reads as two words.
_BREAKING: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Bidirectional embeddings, overrides, isolates and marks: removed, as they only reorder text.
_BIDI: Final = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES: Final = re.compile(r" {2,}")

# Field lengths, in characters, before a line is assembled.
_NICK: Final = 64
_ACCOUNT: Final = 100
_ROOM: Final = 100
_SHORT: Final = 40
_EXPLANATION: Final = 400


def clean(text: str) -> str:
    """``text`` on one line with no control characters: safe for IRC lines and mail headers."""
    if text.isprintable():  # the usual case; every character matched below is non-printable
        return text
    text = _BIDI.sub("", _BREAKING.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    if len(text.encode()) <= limit:
        return text
    ellipsis = "…"
    budget = limit - len(ellipsis.encode())
    cut = text.encode()[: max(budget, 0)].decode(errors="ignore")
    return cut + ellipsis


def _field(text: str, limit: int) -> str:
    return clip(clean(text), limit) or "?"


def _person(author: Author) -> str:
    nick = _field(author.nick, _NICK)
    if author.account is None:
        return f"{nick} (no account)"
    return f"{nick} (account {_field(author.account, _ACCOUNT)})"


def headline(alert: Alert) -> str:
    """``HIGH minor_whereabouts alert 3e27b90e911e in libera/#kids``: the first line of a notice."""
    text = (
        f"{str(alert.severity).upper()} {_field(alert.category, _SHORT)} alert {_field(alert.id, _SHORT)} "
        f"in {_field(alert.room.network, _SHORT)}/{_field(alert.room.id, _ROOM)}"
    )
    return clip_bytes(text, FIRST_LINE_BYTES)


def _when(alert: Alert) -> str:
    at = alert.created_at
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _acknowledge(alert: Alert, ack_hint: str) -> str:
    if alert.state is AlertState.ACKNOWLEDGED:
        by = _field(alert.acknowledged_by or "someone", _NICK)
        return f"already acknowledged by {by}"
    alert_id = _field(alert.id, _SHORT)
    cli = f"presencebot alerts ack {alert_id}"
    hint = clean(ack_hint.replace("{id}", alert_id))  # not str.format: braces elsewhere are literal
    if not hint:
        return f"acknowledge: {cli}"
    return f"acknowledge: {hint} in the officer room, or {cli}"


def notice_lines(alert: Alert, *, ack_hint: str = "!ack {id}") -> list[str]:
    """The notice, one fact per line; the first line alone says what and where.

    ``ack_hint`` is how an officer acknowledges in chat, ``{id}`` standing for the alert id; an
    empty hint leaves only the CLI command (for readers who are not in an officer room).
    """
    requester = "-" if alert.requester is None else _person(alert.requester)
    lines = [
        headline(alert),
        f"when: {_when(alert)}; rule: {_field(alert.rule_id, _SHORT)} {_field(alert.rule_version, _SHORT)}",
        f"target: {_person(alert.target)}",
        f"requester: {requester}",
        f"why: {_field(alert.explanation, _EXPLANATION)}",
        _acknowledge(alert, ack_hint),
    ]
    return [lines[0], *(clip_bytes(line, LINE_BYTES) for line in lines[1:])]


def notice_text(alert: Alert, *, ack_hint: str = "!ack {id}") -> str:
    """:func:`notice_lines` joined with newlines (mail bodies, a webhook's ``notice`` field)."""
    return "\n".join(notice_lines(alert, ack_hint=ack_hint))
