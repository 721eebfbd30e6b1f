"""``minor_whereabouts``: someone asks a child where they live, their school, or to meet up.

A flag needs three things at once: a request for whereabouts, a target believed to be a minor,
and the request aimed at that target. This first version understands the plain forms (stated
ages such as "im 12", "12yo", "j'ai 12 ans"; requests such as "where do u live", "what school",
"come over"); the detection issue extends the same structure with normalisation against evasion,
more languages and forms, and measured figures.

Every regex here is linear (no nested quantifiers) and runs on at most ``MAX_SCAN`` characters,
so the work per message is bounded whatever a person types.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import datetime

from presencebot.config import Audience
from presencebot.events import Author, Message
from presencebot.rule import Flag, Observe, RoomView, Severity, rule

MAX_SCAN = 2_000
ADULT_AGE = 18
AGE_TTL_SECONDS = 6 * 3600
FOLLOW_UP_WINDOW = 6  # messages: a two-person exchange counts as "aimed at" the other person

_INVISIBLE = dict.fromkeys(c for c in range(0x2000, 0x2070) if unicodedata.category(chr(c)) == "Cf") | {
    0xFEFF: None,
    0x00AD: None,
}

_NOT_AGE_AFTER = r"(?!\s*(?:min|mins|minutes|hours|hrs|km|miles|mi\b|%|/|\.\d|lvl|level|th\b))"
AGE_PATTERNS = (
    re.compile(r"\b(?:i'?m|i am|im)\s+(?:only\s+|just\s+)?(\d{1,2})\b" + _NOT_AGE_AFTER),
    re.compile(r"\b(\d{1,2})\s*(?:yo|y/o|yrs? old|years? old|ans)\b"),
    re.compile(r"\bj'?\s?ai\s+(\d{1,2})\s*ans\b"),
)

REQUESTS: tuple[tuple[str, Severity, re.Pattern[str]], ...] = (
    (
        "address",
        Severity.CRITICAL,
        re.compile(
            r"\b(?:what'?s|whats|wats|what is|give me|send me|tell me)\s+(?:ur|your|you're|yr)\s+"
            r"(?:home\s+)?(?:address|addy|adress|postcode|post code|zip code|zip|street)\b"
            r"|\b(?:c'?est\s+)?(?:quoi|quelle est)\s+ton\s+adresse\b(?!\s+(?:mail|e-?mail|ip))"
        ),
    ),
    (
        "location",
        Severity.HIGH,
        re.compile(
            r"\bwh?ere\s+(?:do|d)\s+(?:u|you|ya)\s+(?:live|liv|stay)\b"
            r"|\bwhere\s+(?:u|you)\s+(?:live|from)\b"
            r"|\bwhat\s+(?:town|city|suburb|area)\s+(?:do\s+)?(?:u|you|are\s+(?:u|you))\b"
            r"|\bt'?\s?habites?\s+o[uù]\b|\btu\s+habites?\s+o[uù]\b"
            r"|\bo[uù]\s+(?:est-ce que\s+)?tu\s+habites?\b"
        ),
    ),
    (
        "school",
        Severity.HIGH,
        re.compile(
            r"\b(?:what|which|wat|wot)\s+(?:school|skool|skul)\b"
            r"|\bwhere\s+(?:do\s+)?(?:u|you)\s+go\s+to\s+(?:school|skool)\b"
            r"|\b(?:quel|quelle)\s+(?:[ée]cole|coll[èe]ge|lyc[ée]e)\b|\bdans quel (?:coll[èe]ge|lyc[ée]e)\b"
        ),
    ),
    (
        "meetup",
        Severity.CRITICAL,
        re.compile(
            r"\b(?:come|cum)\s+over\b|\bmeet\s+(?:up|me)\b|\bwanna\s+meet\b|\bpick\s+(?:u|you)\s+up\b"
            r"|\bon\s+se\s+(?:voit|retrouve|capte)\b"
        ),
    ),
)


def normalise(text: str) -> str:
    """Case-folded NFKC text without format characters, cut to ``MAX_SCAN`` characters."""
    return unicodedata.normalize("NFKC", text[:MAX_SCAN]).translate(_INVISIBLE).casefold()


def stated_age(text: str) -> tuple[int, str] | None:
    for pattern in AGE_PATTERNS:
        match = pattern.search(text)
        if match:
            return int(match.group(1)), match.group(0)
    return None


def _minor(room: RoomView, who: Author, at: datetime) -> str | None:
    """Why ``who`` is believed a minor at ``at``, or None."""
    fact = room.fact(who, "age", at)
    if fact is not None:
        return fact.source if fact.value < ADULT_AGE else None
    if room.settings.audience is Audience.MINORS:
        return f"{who.nick} is in a room declared for minors"
    return None


def _targets(message: Message, room: RoomView, text: str) -> Iterator[tuple[Author, str]]:
    """Who the message is aimed at, and how we know."""
    if message.reply_to is not None:
        yield message.reply_to, "by reply"
    for mentioned in message.mentions:
        yield mentioned, "by mention"
    for key, participant in room.participants.items():
        if key == message.author.key:
            continue
        nick = participant.author.nick.casefold()
        if re.search(r"(?:^|[^\w])@?" + re.escape(nick) + r"(?:$|[^\w])", text):
            yield participant.author, "by mention"
    others: list[Author] = []
    for earlier in list(room.recent)[-FOLLOW_UP_WINDOW:]:
        if earlier.author.key != message.author.key and earlier.author.key not in {o.key for o in others}:
            others.append(earlier.author)
    if len(others) == 1:
        yield others[0], "as a follow-up in a two-person exchange"


@rule("minor_whereabouts", version="0.1")
def minor_whereabouts(message: Message, room: RoomView) -> Iterator[Flag | Observe]:
    """Flags a request for a minor's address, town, school or a meet-up, aimed at them."""
    text = normalise(message.text)
    age = stated_age(text)
    if age is not None:
        years, said = age
        yield Observe(
            message.author,
            "age",
            years,
            source=f"{message.author.nick} stated age {years} at {message.at:%H:%M} ('{said}')",
            ttl_seconds=AGE_TTL_SECONDS,
        )
    for category, severity, pattern in REQUESTS:
        if not pattern.search(text):
            continue
        for target, how in _targets(message, room, text):
            why_minor = _minor(room, target, message.at)
            if why_minor is None or target.key == message.author.key:
                continue
            fact = room.fact(target, "age", message.at)
            yield Flag(
                category=category,
                target=target,
                severity=severity,
                explanation=(
                    f"{why_minor}; {message.author.nick} asked about their {category} at "
                    f"{message.at:%H:%M}, {how}"
                ),
                evidence=(fact.message,) if fact is not None else (),
            )
            return


RULE = minor_whereabouts
