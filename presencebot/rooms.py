"""Per-room memory: the short window of ordinary chat the bot may keep, and only in memory.

This is where "no Big Brother" is enforced. Messages leave the window after ``max_messages`` or
``max_age_seconds`` (whichever comes first), participants after ``max_participants`` newer ones;
nothing here is ever written to disk. Only the alert store persists, and only flagged evidence.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from presencebot.config import Config, RoomSettings
from presencebot.events import Author, Message, RoomRef
from presencebot.rule import Fact, Observe, RoomSettingsView


@dataclass(slots=True)
class Participant:
    author: Author
    first_seen: datetime
    last_seen: datetime
    facts: dict[str, Fact] = field(default_factory=dict)


class RoomContext:
    """The runtime's mutable record of one room; rules see it through the read-only RoomView."""

    def __init__(
        self,
        ref: RoomRef,
        settings: RoomSettingsView,
        *,
        max_messages: int = 100,
        max_age_seconds: float = 900.0,
        max_participants: int = 1000,
    ) -> None:
        self.ref = ref
        self.settings = settings
        self.max_age = timedelta(seconds=max_age_seconds)
        self.max_participants = max_participants
        self._recent: deque[Message] = deque(maxlen=max_messages)
        self._participants: OrderedDict[str, Participant] = OrderedDict()
        self._version = 0
        self._fact_versions: dict[str, int] = {}

    # --- what rules read -------------------------------------------------------------------
    @property
    def recent(self) -> Sequence[Message]:
        return self._recent

    @property
    def participants(self) -> Mapping[str, Participant]:
        return self._participants

    @property
    def version(self) -> int:
        """Changes whenever someone joins the participants, leaves them, or changes nick: lets a
        rule cache an index of nicks until it is stale."""
        return self._version

    def fact_version(self, key: str) -> int:
        """Changes whenever a fact named ``key`` is recorded: lets a rule cache what it derives
        from, say, everyone's stated age without re-reading every participant per message."""
        return self._fact_versions.get(key, 0)

    def participant(self, author: Author) -> Participant | None:
        return self._participants.get(author.key)

    def find_nick(self, nick: str) -> Participant | None:
        folded = nick.casefold()
        for participant in reversed(self._participants.values()):
            if participant.author.nick.casefold() == folded:
                return participant
        return None

    def fact(self, author: Author, key: str, at: datetime) -> Fact | None:
        participant = self._participants.get(author.key)
        if participant is None:
            return None
        found = participant.facts.get(key)
        if found is None or (found.expires is not None and found.expires < at):
            return None
        return found

    def message(self, event_id: str) -> Message | None:
        for message in self._recent:
            if message.id == event_id:
                return message
        return None

    # --- what the runtime does -------------------------------------------------------------
    def add(self, message: Message) -> None:
        """Remember ``message`` and forget what has fallen out of the window."""
        self._recent.append(message)
        horizon = message.at - self.max_age
        while self._recent and self._recent[0].at < horizon:
            self._recent.popleft()
        key = message.author.key
        participant = self._participants.get(key)
        if participant is None:
            self._participants[key] = Participant(message.author, message.at, message.at)
            while len(self._participants) > self.max_participants:
                self._participants.popitem(last=False)
            self._version += 1
        else:
            if participant.author.nick != message.author.nick:
                self._version += 1
            participant.author = message.author  # the nick may have changed
            participant.last_seen = message.at
            self._participants.move_to_end(key)

    def observe(self, observation: Observe, message: Message) -> None:
        participant = self._participants.get(observation.subject.key)
        if participant is None:
            participant = Participant(observation.subject, message.at, message.at)
            self._participants[observation.subject.key] = participant
            self._version += 1
        expires = (
            message.at + timedelta(seconds=observation.ttl_seconds)
            if observation.ttl_seconds is not None
            else None
        )
        self._fact_versions[observation.key] = self._fact_versions.get(observation.key, 0) + 1
        participant.facts[observation.key] = Fact(
            value=observation.value,
            source=observation.source,
            at=message.at,
            message=message.id,
            confidence=observation.confidence,
            expires=expires,
        )


def effective_settings(config: Config, network: str, room_id: str) -> RoomSettingsView:
    """Room config, then the network's room defaults, then the global room defaults."""
    layers: list[RoomSettings] = []
    if any(n.name == network for n in config.networks):
        net = config.network(network)
        layers = [r for r in net.rooms if r.id == room_id]
        layers.append(net.room_defaults)
    defaults = config.room_defaults
    audience = next((x.audience for x in layers if x.audience is not None), defaults.audience)
    language = next((x.language for x in layers if x.language is not None), defaults.language)
    rules = next((x.rules for x in layers if x.rules is not None), defaults.rules)
    region = next((x.region for x in layers if x.region is not None), defaults.region)
    return RoomSettingsView(
        audience=audience,
        language=language,
        rules=tuple(rules),
        region=region or config.agency.region,
    )


def new_context(config: Config, ref: RoomRef) -> RoomContext:
    return RoomContext(
        ref,
        effective_settings(config, ref.network, ref.id),
        max_messages=config.memory.max_messages,
        max_age_seconds=config.memory.max_age_seconds,
    )
