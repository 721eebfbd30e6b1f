"""Durable storage of alerts, their evidence and their outbox.

:class:`AlertStore` is the interface the runtime and the CLI use; SQLite (:mod:`.sqlite`) is the
embedded default, PostgreSQL (:mod:`.postgres`) the server-backed one with the same behaviour,
chosen by ``store.url``. The store is the only part of presencebot that writes chat text to disk,
and it only ever receives flagged evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from presencebot.alerts import Alert, AlertState
from presencebot.config import Config
from presencebot.ids import AlertId
from presencebot.store.delivery import NewNotice

if TYPE_CHECKING:
    from presencebot.store.sql import SQLStore


@dataclass(frozen=True, slots=True)
class Fence:
    """Fleet mode: write only while ``owner`` holds ``unit`` at ``epoch`` (a row of the lease table
    ``fleet_units`` in the store's own database), checked and locked inside the write."""

    unit: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class RoomStateRow:
    network: str
    room: str
    state: str
    reason: str
    updated_at: str


class AlertStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None:
        """Finish every write already accepted, then release the database."""
        ...

    async def add(
        self,
        alert: Alert,
        notify: Sequence[tuple[str, str] | NewNotice],
        *,
        trace: Sequence[str] = (),
        escalate_at: datetime | None = None,
        force: str | None = None,
        fence: Fence | None = None,
    ) -> Alert:
        """Store ``alert``, its evidence, one outbox row per notice (or ``(target name, sink)``),
        its first trace lines and escalation time in one transaction; return the alert as
        stored (with its notifications). With ``fence``, raise :class:`~presencebot.errors.Fenced`
        (storing nothing) unless the lease still holds."""
        ...

    async def get(self, alert_id: AlertId) -> Alert: ...

    async def list(self, *, state: AlertState | None = None, limit: int = 100) -> list[Alert]: ...

    async def acknowledge(self, alert_id: AlertId, by: str) -> Alert: ...

    async def set_room_state(self, network: str, room: str, state: str, reason: str) -> None:
        """Remember a decision about a room (``kicked``, ``banned``, ``dismissed``, ``invited``)."""
        ...

    async def clear_room_state(self, network: str, room: str) -> None: ...

    async def room_states(self) -> Sequence[RoomStateRow]: ...


def open_store(config: Config) -> SQLStore:
    """PostgreSQL when ``store.url`` is set, else the SQLite file at ``store.path``."""
    if config.store.url:
        from presencebot.store.postgres import PostgresStore

        return PostgresStore(config.store.url.get_secret_value())
    from presencebot.store.sqlite import SQLiteStore

    return SQLiteStore(config.store.path)
