"""The rule interface: what a rule sees, and what it may say back.

A rule is any object with ``id``, ``version`` and ``check(message, room)``; the :func:`rule`
decorator makes one from a plain function. ``check`` returns (or yields) findings:

* :class:`Flag` — "this message completes something officers must see";
* :class:`Observe` — "here is a fact about a participant" (an age they stated, say), which the
  runtime records in the room's memory so later messages, and other rules, can use it.

Rules never write to the room themselves: the view they get is read-only and the runtime applies
observations after every rule has seen the message, so rule order never changes the outcome.
A rule that needs I/O may be ``async``; it then runs under the configured time budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

from presencebot.config import Audience
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import EventId


class Severity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Flag:
    """A rule's finding that officers must see. ``rule_id``/``rule_version``/``message`` and a
    missing ``requester`` are filled in by the pipeline, so a rule cannot misattribute them."""

    category: str
    target: Author
    explanation: str
    severity: Severity = Severity.MEDIUM
    evidence: tuple[EventId, ...] = ()
    """Earlier messages the flag rests on (e.g. the age disclosure); the flagged message is
    always evidence and need not be listed."""
    requester: Author | None = None
    rule_id: str = ""
    rule_version: str = ""
    message: EventId | None = None


@dataclass(frozen=True, slots=True)
class Observe:
    """A fact about a participant, kept in the room's bounded memory (never on disk)."""

    subject: Author
    key: str
    value: Any
    source: str
    """A short human-readable reason, e.g. ``"said 'im 12' at 14:02"``."""
    confidence: float = 1.0
    ttl_seconds: float | None = None


Finding = Flag | Observe
RuleResult = Iterable[Finding] | None


@dataclass(frozen=True, slots=True)
class Fact:
    value: Any
    source: str
    at: datetime
    message: EventId
    confidence: float = 1.0
    expires: datetime | None = None


class ParticipantView(Protocol):
    @property
    def author(self) -> Author: ...
    @property
    def first_seen(self) -> datetime: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def facts(self) -> Mapping[str, Fact]: ...


@dataclass(frozen=True, slots=True)
class RoomSettingsView:
    """A room's effective settings (room config, then network defaults, then global defaults)."""

    audience: Audience = Audience.GENERAL
    language: str = "en"
    rules: tuple[str, ...] = ()
    region: str = "uk"


class RoomView(Protocol):
    """What a rule may read about a room. Everything here lives in memory and is bounded."""

    @property
    def ref(self) -> RoomRef: ...
    @property
    def settings(self) -> RoomSettingsView: ...
    @property
    def recent(self) -> Sequence[Message]:
        """Recent messages, oldest first; the message being checked is the last one."""
        ...

    @property
    def participants(self) -> Mapping[str, ParticipantView]:
        """Participants by :attr:`Author.key`."""
        ...

    @property
    def version(self) -> int:
        """Changes whenever the participants or their nicks change (for caching nick indexes)."""
        ...

    def fact_version(self, key: str) -> int:
        """Changes whenever a fact named ``key`` is recorded (for caching what rules derive)."""
        ...

    def participant(self, author: Author) -> ParticipantView | None: ...
    def find_nick(self, nick: str) -> ParticipantView | None:
        """The most recently active participant using ``nick`` (case-insensitive)."""
        ...

    def fact(self, author: Author, key: str, at: datetime) -> Fact | None:
        """A fact about ``author`` still valid at ``at``."""
        ...


CheckResult = RuleResult | Awaitable[RuleResult]


@runtime_checkable
class Rule(Protocol):
    """Anything with these three read-only attributes and ``check`` is a rule."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def description(self) -> str: ...

    def check(self, message: Message, room: RoomView) -> CheckResult: ...


@dataclass(frozen=True, slots=True)
class FunctionRule:
    """A rule made from a function by :func:`rule`."""

    id: str
    version: str
    description: str
    func: Callable[[Message, RoomView], CheckResult]

    def check(self, message: Message, room: RoomView) -> CheckResult:
        return self.func(message, room)


def rule(
    id: str, *, version: str = "1", description: str = ""
) -> Callable[[Callable[[Message, RoomView], CheckResult]], FunctionRule]:
    """Make a rule from a function (sync or async, returning or yielding findings)::

    @rule("shouting", version="1")
    def shouting(message, room):
        if message.text.isupper():
            yield Flag("shouting", target=message.author, explanation="all caps")
    """

    def wrap(func: Callable[[Message, RoomView], CheckResult]) -> FunctionRule:
        return FunctionRule(
            id=id,
            version=version,
            description=description or (func.__doc__ or "").strip(),
            func=func,
        )

    return wrap
