"""The adapter interface: everything protocol-specific stays behind it.

An adapter connects, turns protocol traffic into :mod:`presencebot.events`, and carries out the
runtime's requests (join, leave, send, announce). It never decides *whether* to join a room or
what to say: that is the runtime's policy, so the overt-by-construction guarantee lives in one
place. ``run()`` returning means "finished for good" (the terminal reached end of input);
raising means "crashed", and the runtime restarts a fresh instance with backoff.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from presencebot.badge import Badge
from presencebot.events import Event, Invited, RoomRef
from presencebot.ids import RoomId

if TYPE_CHECKING:
    from presencebot.alerts import Alert


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the protocol can show; the runtime and the badge renderer adapt to it."""

    max_line_bytes: int | None = None
    """Longest text one ``send`` may carry, in UTF-8 bytes (``None``: no limit)."""
    images: bool = False
    embeds: bool = False
    replies: bool = False
    colours: bool = False
    direct_messages: bool = True


@dataclass(frozen=True, slots=True)
class Identity:
    """Who runs the bot, for the places a protocol lets a client describe itself (an IRC
    realname, CTCP VERSION, an XMPP vCard): being overt includes saying so there too."""

    agency: str
    info_url: str
    version: str

    def describe(self) -> str:
        return f"{self.agency} police presence bot (presencebot {self.version}) - {self.info_url}"


class AdapterHost(Protocol):
    """What the runtime offers an adapter: one way in, in order, and who the bot speaks for."""

    identity: Identity
    eager_ok: bool
    """Whether :meth:`emit`'s first step may run outside a task (see the IRC adapter's fast path)."""

    async def emit(self, event: Event) -> None:
        """Hand an event to the runtime; returns once it has been handled (back-pressure)."""
        ...


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Adapter(abc.ABC):
    """Subclass this for a protocol and register it in the ``presencebot.adapters`` entry points."""

    Settings: ClassVar[type[BaseModel]] = NoSettings
    """The pydantic model for ``[networks.settings]``; ``presencebot check`` validates against it."""
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, network: str, settings: BaseModel, host: AdapterHost) -> None:
        self.network = network
        self.settings = settings
        self.host = host

    def room(self, room_id: str) -> RoomRef:
        return RoomRef(self.network, RoomId(room_id))

    @abc.abstractmethod
    async def run(self) -> None:
        """Connect and pump events into ``host.emit`` until closed or finished."""

    @abc.abstractmethod
    async def join(self, room: RoomId) -> None:
        """Ask the protocol to join; report the outcome with ``Joined`` or ``JoinFailed``."""

    @abc.abstractmethod
    async def leave(self, room: RoomId, reason: str) -> None: ...

    @abc.abstractmethod
    async def send(self, room: RoomId, text: str) -> None:
        """Say ``text`` in ``room`` (or to a person, for a direct-message room)."""

    async def announce(self, room: RoomId, badge: Badge) -> None:
        """Show the badge in ``room``. The default is the plain-text rendition, line by line."""
        for line in badge.lines:
            await self.send(room, line)

    async def decline_invite(self, event: Invited, reason: str) -> None:  # noqa: B027 - optional hook
        """Tell an inviter the bot will not come, where the protocol has a way (XMPP's decline);
        by default the refusal is only logged by the runtime."""

    async def show_alert(self, room: RoomId, alert: Alert) -> None:  # noqa: B027 - optional hook
        """Local adapters (the terminal) may show an alert inline; network adapters never do."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection. Called after ``run`` ends, however it ended."""
