"""The normalized events adapters hand to the runtime.

Every protocol's traffic is turned into these small immutable objects at the adapter boundary;
nothing past that boundary knows what IRC, XMPP or Discord look like. Events are frozen so that a
rule holding one cannot change what another rule or the evidence store will see.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from presencebot.ids import AccountId, EventId, RoomId

_counter = itertools.count(1)
_prefix = f"{os.getpid():x}"


def new_event_id() -> EventId:
    """A process-unique, cheap id (pid + counter): events are created at chat speed."""
    return EventId(f"e{_prefix}-{next(_counter)}")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RoomRef:
    """A room on one configured network (adapter instance), e.g. ``libera`` / ``#kids``."""

    network: str
    id: RoomId

    def __str__(self) -> str:
        return f"{self.network}/{self.id}"


@dataclass(frozen=True, slots=True)
class Author:
    """A person in a room: a stable account id where the protocol has one, and the display nick.

    Two messages come from the same person when their :attr:`key` is equal; a nick alone is only
    used as the key on protocols (or servers) that have no accounts.
    """

    nick: str
    account: AccountId | None = None
    key: str = field(init=False, repr=False, compare=False)
    """The identity rooms and rules key people by (computed once: it is read on every message)."""

    def __post_init__(self) -> None:
        key = f"acct:{self.account}" if self.account is not None else f"nick:{self.nick.casefold()}"
        object.__setattr__(self, "key", key)

    def __str__(self) -> str:
        if self.account is None or self.account == self.nick:
            return self.nick
        return f"{self.nick} ({self.account})"


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message, as every rule sees it."""

    room: RoomRef
    author: Author
    text: str
    at: datetime = field(default_factory=utcnow)
    native_id: str | None = None
    reply_to: Author | None = None
    """The author of the message this one explicitly replies to (Discord/XMPP replies)."""
    reply_to_id: str | None = None
    mentions: tuple[Author, ...] = ()
    """People the protocol itself marks as mentioned (Discord mentions); text addressing such as
    ``lily: hi`` is left to rules, which know the participants."""
    is_direct: bool = False
    """Sent privately to the bot rather than to the room."""
    is_history: bool = False
    """Replayed history (XMPP MUC history, a backlog): kept for context, never flagged as live."""
    by_operator: bool = False
    """The protocol says the author moderates this room (IRC channel operator, XMPP moderator,
    Discord member with Manage Channels): only they may ask the bot to leave."""
    id: EventId = field(default_factory=new_event_id)


@dataclass(frozen=True, slots=True)
class Connected:
    network: str
    at: datetime = field(default_factory=utcnow)
    resumed: bool = False
    """The protocol resumed the previous session (Discord RESUME): the bot never left its rooms,
    so nothing is rejoined or announced again."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    network: str
    reason: str = ""
    at: datetime = field(default_factory=utcnow)
    resumable: bool = False
    """The protocol will try to resume the session: the rooms stay as they are meanwhile."""


@dataclass(frozen=True, slots=True)
class Joined:
    """The protocol confirmed the bot is in the room. The runtime announces the badge on each one."""

    room: RoomRef
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class JoinFailed:
    room: RoomRef
    reason: str
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Invited:
    """Someone asked the bot into a room; the runtime decides (consent policy) whether to go."""

    room: RoomRef
    by: Author
    at: datetime = field(default_factory=utcnow)
    by_mask: str | None = None
    """The inviter's protocol address where accounts are not enough (IRC ``nick!user@host``)."""
    by_operator: bool | None = None
    """Whether the inviter moderates the target room (``None``: the protocol could not tell)."""


@dataclass(frozen=True, slots=True)
class Kicked:
    room: RoomRef
    by: Author | None = None
    reason: str = ""
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Banned:
    room: RoomRef
    reason: str = ""
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Left:
    """The bot is no longer in the room (it parted, or the room went away)."""

    room: RoomRef
    reason: str = ""
    at: datetime = field(default_factory=utcnow)


RoomEvent = Joined | JoinFailed | Invited | Kicked | Banned | Left
Lifecycle = Connected | Disconnected | RoomEvent
Event = Message | Lifecycle


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def _clean_author(author: Author) -> Author:
    return author if "\x00" not in author.nick else Author(_clean(author.nick), author.account)


def storable(message: Message) -> Message:
    """``message`` with every NUL character shown as U+FFFD (``�``).

    NUL can arrive (a terminal, a JSON string) but PostgreSQL text cannot hold it: an alert whose
    evidence carried one could never be stored there, only retried. Replacing it where messages
    enter the runtime keeps the evidence identical on both stores, and visibly marked.
    """
    suspect = (message.text, message.author.nick, *(m.nick for m in message.mentions))
    if message.reply_to is not None:
        suspect = (*suspect, message.reply_to.nick)
    if not any("\x00" in part for part in suspect):
        return message
    return replace(
        message,
        text=_clean(message.text),
        author=_clean_author(message.author),
        reply_to=None if message.reply_to is None else _clean_author(message.reply_to),
        mentions=tuple(_clean_author(m) for m in message.mentions),
    )
