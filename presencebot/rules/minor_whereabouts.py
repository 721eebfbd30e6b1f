"""``minor_whereabouts``: someone asks a child where they live, their school, or to meet up.

A message is flagged when three things hold at once (the policy in ``docs/rules.md``):

1. it completes a **request for whereabouts** (:mod:`.requests`): address, location, school or
   meet-up — possibly split over a few consecutive short messages by the same person;
2. the person it is **aimed at** is named (``lily: …``, ``@lily``, a nick at the start or end),
   replied to, mentioned by the protocol, is the one the requester asked just before, or is the
   only other person in a two-person exchange;
3. that person is **believed to be a minor at that moment** (:mod:`.ages`): they stated an age or a
   school year, or the room is declared for minors and they stated no adult age.

What the rule remembers between messages lives in the room's bounded memory as facts: each
person's latest age statement (six hours), and each requester's last request (ten minutes), so a
follow-up such as "which town tho" is understood.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final

from presencebot.config import Audience
from presencebot.events import Author, Message
from presencebot.rule import Flag, Observe, RoomView, Severity, rule
from presencebot.rules import ages, requests
from presencebot.text import Normalised
from presencebot.text import fold as _fold
from presencebot.text import normalise as _normalise

AGE_TTL_SECONDS: Final = 6 * 3600
ASKED_TTL_SECONDS: Final = 10 * 60
FRAGMENT_MAX_CHARS: Final = 40
FRAGMENT_WINDOW: Final = timedelta(seconds=90)
FRAGMENTS: Final = 3
EXCHANGE_MESSAGES: Final = 6
EXCHANGE_WINDOW: Final = timedelta(minutes=10)
HOW_OLD_LOOKBACK: Final = 3
CONTEXT_MESSAGES: Final = 4
CONTEXT_CHARS: Final = 300

SEVERITY: Final = {
    "address": Severity.HIGH,
    "meetup": Severity.HIGH,
    "school": Severity.MEDIUM,
    "location": Severity.MEDIUM,
}
PRIORITY: Final = ("address", "meetup", "school", "location")
ASKED: Final = {
    "address": "for their home address",
    "location": "where they live",
    "school": "about their school",
    "meetup": "to meet up",
}

# Nick fragments that are ordinary words: never taken as addressing someone on their own.
_COMMON: Final = frozenset(
    {
        "the",
        "and",
        "you",
        "your",
        "kid",
        "kids",
        "boy",
        "girl",
        "man",
        "men",
        "guy",
        "cool",
        "big",
        "lil",
        "little",
        "real",
        "mr",
        "mrs",
        "miss",
        "dad",
        "mum",
        "mom",
        "fan",
        "pro",
        "king",
        "queen",
        "gamer",
        "player",
        "plays",
        "play",
        "official",
        "its",
        "not",
        "new",
        "old",
        "top",
        "best",
        "baby",
        "bro",
        "sis",
        "bestie",
        "xox",
        "just",
        "yes",
        "hey",
        "hiya",
        "hello",
        "lol",
        "omg",
        "user",
        "main",
        "alt",
    }
)


_CACHED_CHARS: Final = 512


@lru_cache(maxsize=4096)
def _normalise_short(text: str) -> Normalised:
    return _normalise(text)


@lru_cache(maxsize=4096)
def _fold_short(text: str) -> str:
    return _fold(text)


def normalise(text: str) -> Normalised:
    """:func:`presencebot.text.normalise`, remembered for short texts: the rule reads each
    message again as context for the next few, and chat repeats itself."""
    return _normalise_short(text) if len(text) <= _CACHED_CHARS else _normalise(text)


def fold(text: str) -> str:
    return _fold_short(text) if len(text) <= _CACHED_CHARS else _fold(text)


@dataclass(frozen=True, slots=True)
class Asked:
    """A requester's last whereabouts request: whom, about what."""

    target: Author | None
    category: str


def _minor_reason(room: RoomView, who: Author, at: datetime) -> str | None:
    """Why ``who`` is believed a minor at ``at`` — or None (an adult statement overrides)."""
    fact = room.fact(who, "age", at)
    if fact is not None:
        statement: ages.AgeStatement = fact.value
        return fact.source if statement.minor else None
    if room.settings.audience is Audience.MINORS:
        return f"{who.nick} is in a room declared for minors"
    return None


# Per room: who has stated a minor's age, and until when; rebuilt only when facts or people change.
_MINOR_HOLDERS: weakref.WeakKeyDictionary[RoomView, tuple[int, int, list[tuple[str, datetime | None]]]] = (
    weakref.WeakKeyDictionary()
)


def _anyone_minor(room: RoomView, message: Message) -> bool:
    """Whether anyone but the author could be a minor now (cheap: no text is read)."""
    if room.settings.audience is Audience.MINORS:
        return True
    cached = _MINOR_HOLDERS.get(room)
    if cached is None or cached[0] != room.version or cached[1] != room.fact_version("age"):
        holders = [
            (key, fact.expires)
            for key, participant in room.participants.items()
            if (fact := participant.facts.get("age")) is not None and fact.value.minor
        ]
        cached = _MINOR_HOLDERS[room] = (room.version, room.fact_version("age"), holders)
    at, me = message.at, message.author.key
    return any(key != me and (expires is None or expires >= at) for key, expires in cached[2])


def _said_adult(room: RoomView, who: Author, at: datetime) -> bool:
    fact = room.fact(who, "age", at)
    return fact is not None and not fact.value.minor


def _fragments(message: Message, room: RoomView) -> list[Message]:
    """The short messages this author sent just before this one, with nobody in between."""
    recent = room.recent
    parts: list[Message] = []
    later = message
    for index in range(len(recent) - 2, max(-1, len(recent) - 2 - FRAGMENTS), -1):
        earlier = recent[index]
        if (
            earlier.author.key != message.author.key
            or later.at - earlier.at > FRAGMENT_WINDOW
            or len(earlier.text) > FRAGMENT_MAX_CHARS
        ):
            break
        parts.append(earlier)
        later = earlier
    parts.reverse()
    return parts


def _age_statement(message: Message, text: Normalised, room: RoomView) -> ages.AgeStatement | None:
    found = ages.statement(text.plain)
    if found is not None:
        return found
    answer = ages.answer_to_how_old(text.plain)
    if answer is None:
        return None
    recent = room.recent
    for index in range(max(0, len(recent) - 1 - HOW_OLD_LOOKBACK), len(recent) - 1):
        earlier = recent[index]
        if earlier.author.key != message.author.key and ages.HOW_OLD.search(fold(earlier.text)):
            return answer
    return None


_WORDS: Final = re.compile(r"[\w.'-]+")
_AT_SOMEONE: Final = re.compile(r"(?:^|\s)@[\w.-]{2,}")
_GROUP: Final = re.compile(
    r"\b(?:anyone|anybody|any1|every(?:one|body)|who(?:'?s| is)? (?:up|wants|down)|who wants|y'?all|u guys"
    r"|you guys|guys|people|qqn|quelqu'?un|tout le monde|vous tous)\b"
)
# A message that stops mid-sentence ("what school do") is judged with the message that ends it.
_DANGLING: Final = re.compile(
    r"\b(?:do|does|did|the|a|an|ur|your|what|which|where|ton|ta|dans|quel|quelle)\s*$"
)


@lru_cache(maxsize=8192)
def _nick_parts(nick: str) -> tuple[str, tuple[str, ...]]:
    folded = fold(nick).strip(".'-@")
    parts = tuple(p for p in re.split(r"[_.\-\d]+", folded) if len(p) >= 3 and p not in _COMMON)
    return folded, parts


@dataclass(slots=True)
class _NickIndex:
    version: int
    whole: dict[str, list[Author]]
    parts: dict[str, list[Author]]


# One index per live room object (weakly held: it goes when the room goes).
_INDEXES: weakref.WeakKeyDictionary[RoomView, _NickIndex] = weakref.WeakKeyDictionary()


def _nick_index(room: RoomView) -> _NickIndex:
    """Nicks (whole, and distinctive parts) to people, rebuilt only when the room's people change."""
    index = _INDEXES.get(room)
    if index is not None and index.version == room.version:
        return index
    whole: dict[str, list[Author]] = {}
    parts: dict[str, list[Author]] = {}
    for participant in room.participants.values():
        nick, nick_parts = _nick_parts(participant.author.nick)
        whole.setdefault(nick, []).append(participant.author)
        for part in nick_parts:
            parts.setdefault(part, []).append(participant.author)
    index = _INDEXES[room] = _NickIndex(room.version, whole, parts)
    return index


def _named(message: Message, room: RoomView, text: str) -> list[tuple[Author, str]]:
    """People the text addresses by nick: anywhere for a full nick, at the edges for a part."""
    words = [w.strip(".'-") for w in _WORDS.findall(text)]
    if not words:
        return []
    index = _nick_index(room)
    me = message.author.key
    found: dict[str, tuple[Author, str]] = {}
    for word in words:
        for author in index.whole.get(word, ()):
            if author.key != me:
                found.setdefault(author.key, (author, "by mention"))
    for word in {words[0], words[-1]}:
        for author in index.parts.get(word, ()):
            if author.key != me:
                found.setdefault(author.key, (author, "by name"))
    return list(found.values())


def _exchange_partner(message: Message, room: RoomView) -> Author | None:
    """The only other person who spoke in the last few messages, if there is exactly one."""
    others: dict[str, Author] = {}
    for earlier in list(room.recent)[-1 - EXCHANGE_MESSAGES : -1]:
        if message.at - earlier.at > EXCHANGE_WINDOW:
            continue
        if earlier.author.key != message.author.key:
            others[earlier.author.key] = earlier.author
    return next(iter(others.values())) if len(others) == 1 else None


def _targets(
    message: Message, room: RoomView, named: list[tuple[Author, str]], asked: Asked | None
) -> list[tuple[Author, str]]:
    """Whom the request is aimed at, and how we know; explicit addressing wins over inference."""
    explicit: list[tuple[Author, str]] = []
    if message.reply_to is not None:
        explicit.append((message.reply_to, "by reply"))
    explicit += [(m, "by mention") for m in message.mentions]
    explicit += named
    if explicit:
        return explicit
    if asked is not None and asked.target is not None:
        return [(asked.target, "as a follow-up to their earlier question")]
    folded = fold(message.text)
    if _GROUP.search(folded) or _AT_SOMEONE.search(folded):
        # "anyone wanna meet up?" is asked of the room; "@steve where u living" of someone the
        # room has not heard from yet: neither is aimed at the other person in the exchange.
        return []
    partner = _exchange_partner(message, room)
    return [(partner, "as a follow-up in a two-person exchange")] if partner else []


def _choose(found: Sequence[requests.Request], asked: Asked | None) -> requests.Request | None:
    usable = [r for r in found if not r.follow_up or asked is not None]
    for category in PRIORITY:
        for request in usable:
            if request.category == category:
                return request
    return None


def _maybe(text: Normalised) -> bool:
    return requests.maybe(text.plain) or (text.leet is not text.plain and requests.maybe(text.leet))


def _request(text: Normalised, context: str, previous: str, asked: Asked | None) -> requests.Request | None:
    return _choose(requests.find(text, context=context, previous=previous), asked)


def _complete(request: requests.Request, text: Normalised, asked: Asked | None) -> bool:
    """A request split over fragments is complete once it is strong, addresses someone ("u",
    "tu"), or follows an earlier request."""
    return request.strong or asked is not None or bool(requests.SECOND_PERSON.search(text.plain))


def _remember_question(message: Message, text: Normalised, target: Author | None) -> Iterator[Observe]:
    if requests.QUESTION_HINT.search(text.plain):
        yield Observe(
            message.author,
            "asked",
            Asked(target, "unknown"),
            source="a possible question",
            ttl_seconds=ASKED_TTL_SECONDS,
        )


def _severity(category: str, requester_adult: bool, secret: bool) -> Severity:
    level = SEVERITY[category] + int(requester_adult) + int(secret)
    return Severity(min(level, Severity.CRITICAL))


@rule("minor_whereabouts", version="1.0")
def minor_whereabouts(message: Message, room: RoomView) -> Iterator[Flag | Observe]:
    """Flags a request for a minor's address, town, school or a meet-up, aimed at them."""
    text = normalise(message.text)
    statement = _age_statement(message, text, room)
    if statement is not None:
        what = (
            f"age {statement.age}"
            if statement.age is not None
            else "an adult role"
            if not statement.minor
            else "a school year"
        )
        yield Observe(
            message.author,
            "age",
            statement,
            source=f"{message.author.nick} stated {what} at {message.at:%H:%M} ('{statement.said}')",
            confidence=1.0 if statement.age is not None else 0.9,
            ttl_seconds=AGE_TTL_SECONDS,
        )
    fragments = _fragments(message, room)
    if not (_maybe(text) or fragments):
        return  # the usual case: ordinary chat, nothing that could be (part of) a request
    asked_fact = room.fact(message.author, "asked", message.at)
    asked: Asked | None = asked_fact.value if asked_fact is not None else None
    # Nobody here who could be a minor: nothing can be flagged, and the (costly) request patterns
    # need not run. A question is still remembered, so that a follow-up after someone states
    # their age is understood ("where do u live?" / "why? im 11" / "just curious, what town?").
    if not _anyone_minor(room, message):
        yield from _remember_question(message, text, _exchange_partner(message, room))
        return
    joined = normalise(" ".join([*(m.text for m in fragments), message.text])) if fragments else text
    # Names in this message win over names in the fragments before it.
    named = _named(message, room, text.plain)
    if not named and fragments:
        named = _named(message, room, joined.plain)
    targets = [
        (target, how)
        for target, how in _targets(message, room, named, asked)
        if target.key != message.author.key
    ]
    minors = [(t, how, why) for t, how in targets if (why := _minor_reason(room, t, message.at))]
    if not minors:
        yield from _remember_question(message, joined, targets[0][0] if targets else None)
        return
    recent = room.recent
    earlier = [recent[i] for i in range(max(0, len(recent) - 1 - CONTEXT_MESSAGES), len(recent) - 1)]
    # The last few messages, each cut short: context is read for hints, not searched in full.
    context = " ".join(fold(m.text)[:CONTEXT_CHARS] for m in earlier)
    previous = " ".join(fold(m.text)[:CONTEXT_CHARS] for m in earlier[-2:])  # warnings, games

    # The message on its own first; then joined to the short messages just before it, in case
    # the request was typed in pieces ("where" / "do u" / "live").
    whole = text
    request = None if _DANGLING.search(text.plain) else _request(text, context, previous, asked)
    if request is None:
        if not fragments:
            return
        whole = joined
        request = _request(whole, context, previous, asked)
        if request is None or not _complete(request, whole, asked):
            return  # nothing, or "what" / "school" / …: the sentence is not finished yet
        before = normalise(" ".join(m.text for m in fragments))
        if any(
            r.category == request.category and _complete(r, before, asked)
            for r in requests.find(before, context=context, previous=previous)
        ):
            return  # already complete (and judged) on an earlier fragment
    yield Observe(
        message.author,
        "asked",
        Asked(targets[0][0], request.category),
        source=request.said,
        ttl_seconds=ASKED_TTL_SECONDS,
    )
    target, how, why = minors[0]
    secret = bool(requests.SECRECY.search(whole.plain))
    fact = room.fact(target, "age", message.at)
    adult_requester = _said_adult(room, message.author, message.at)
    yield Flag(
        category=request.category,
        target=target,
        severity=_severity(request.category, adult_requester, secret),
        explanation=(
            f"{why}; {message.author.nick} asked {target.nick} {ASKED[request.category]} "
            f"at {message.at:%H:%M}, {how} ('{request.said}')"
            + ("; asked for secrecy or private messages" if secret else "")
            + ("; the requester stated an adult age" if adult_requester else "")
        ),
        evidence=tuple(m.id for m in fragments) + ((fact.message,) if fact is not None else ()),
    )


RULE = minor_whereabouts
