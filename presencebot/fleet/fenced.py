"""An adapter wrapper that asks the fleet before speaking: the fencing of posts into rooms.

A worker that was paused (or cut off) past its lease may wake up still connected, with lines
queued from before. Every join, post and badge goes through :class:`FencedAdapter`, which checks
in the database that this worker still holds the network's unit at the epoch it acquired; if
not, nothing is said — the worker that holds the unit now has joined and announced already.
Leaving and closing are always allowed: they can only reduce what a stale worker does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from presencebot.adapter import Adapter
from presencebot.badge import Badge
from presencebot.events import Invited
from presencebot.ids import RoomId

if TYPE_CHECKING:
    from presencebot.alerts import Alert

log = structlog.get_logger("presencebot.fleet")


class LeaseLostError(PermissionError):
    """This worker no longer holds the unit: it must not speak for it."""


class FencedAdapter(Adapter):
    def __init__(self, inner: Adapter, allowed: Callable[[], Awaitable[bool]]) -> None:
        super().__init__(inner.network, inner.settings, inner.host)
        self.inner = inner
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self._allowed = allowed

    async def _ok(self, what: str, room: RoomId) -> bool:
        if await self._allowed():
            return True
        log.warning("fleet.fenced", what=what, room=str(room), network=self.network)
        return False

    async def run(self) -> None:
        await self.inner.run()

    async def join(self, room: RoomId) -> None:
        if await self._ok("join", room):
            await self.inner.join(room)

    async def leave(self, room: RoomId, reason: str) -> None:
        await self.inner.leave(room, reason)

    async def send(self, room: RoomId, text: str) -> None:
        if await self._ok("send", room):
            await self.inner.send(room, text)

    async def announce(self, room: RoomId, badge: Badge) -> None:
        if not await self._ok("announce", room):
            raise LeaseLostError(f"the lease for {self.network} is no longer ours")
        await self.inner.announce(room, badge)

    async def decline_invite(self, event: Invited, reason: str) -> None:
        await self.inner.decline_invite(event, reason)

    async def show_alert(self, room: RoomId, alert: Alert) -> None:
        await self.inner.show_alert(room, alert)

    async def close(self) -> None:
        await self.inner.close()
