"""The officers' room sink: the notice, said by the bot in a private room on a configured network
(an IRC channel with a key, an XMPP members-only room, a Discord channel).

The notice carries the facts an officer needs to decide (severity, category, where, who, why,
the id, how to acknowledge) and no evidence text: chat lines stay in the store, where access is
controlled. Officers acknowledge in the room with ``!ack <id>``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from presencebot.notice import notice_lines
from presencebot.sinks import Delivery, DeliveryFailed

Say = Callable[[str, str, str], Awaitable[None]]
"""``say(network, room, line)``: the runtime's way of speaking in a room; raises
``ConnectionError`` when the network or the room is not available."""

PREFIX = {
    "alert": "ALERT",
    "escalation": "ESCALATION (unacknowledged)",
    "dead_letter": "UNDELIVERED elsewhere",
    "disabled": "A NOTIFICATION TARGET IS GONE",
}


class RoomSinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str = Field(min_length=1, description="A configured network's name.")
    room: str = Field(min_length=1, description="The officers' room on it (also listed in its rooms).")


class RoomSink:
    def __init__(self, settings: RoomSinkSettings, say: Say) -> None:
        self.settings = settings
        self._say = say

    async def deliver(self, delivery: Delivery) -> None:
        lines = notice_lines(delivery.alert)
        lines[0] = f"[{PREFIX.get(delivery.kind, delivery.kind.upper())}] {lines[0]}"
        try:
            for line in lines:
                await self._say(self.settings.network, self.settings.room, line)
        except ConnectionError as exc:
            raise DeliveryFailed(f"{self.settings.network}/{self.settings.room}: {exc}") from exc

    async def close(self) -> None:
        return None
