"""One worker's part in a fleet: which networks (connection units) this process runs.

The runtime asks :class:`FleetMember` three things: start (register every configured network as
a unit, plus the escalation ticker as a singleton, and begin leasing), ``allowed(network)`` — the fencing
check made before every post into a room and every alert write — and stop (release everything so
the others take over at once). Leases arrive and go through callbacks that start and stop the
runtime's adapter for that network; a unit lost to another worker stops here before the other
worker's badge can be doubled by ours.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import asyncpg
import structlog

from presencebot import metrics
from presencebot.config import FleetConfig
from presencebot.fleet.leases import SINGLETON, Lease, LeaseManager, ensure_schema
from presencebot.store import Fence

log = structlog.get_logger("presencebot.fleet")
NETWORK_KIND = "network"
ESCALATION = "singleton:escalation"
HELD, NOT_HELD = "held", "not_held"
"""``presencebot_lease_state`` of each unit, as this worker sees it."""


class FleetRuntime(Protocol):
    """What the fleet needs from the runtime (kept small so the two stay independent)."""

    networks: dict[str, Any]

    async def start_network(self, name: str) -> None: ...

    async def stop_network(self, name: str) -> None: ...

    def set_escalating(self, on: bool) -> None: ...


def unit_of(network: str) -> str:
    return f"net:{network}"


class FleetMember:
    def __init__(self, config: FleetConfig, worker_id: str) -> None:
        self.config = config
        self.worker_id = worker_id
        self.pool: asyncpg.Pool | None = None
        self.manager: LeaseManager | None = None
        self.epochs: dict[str, int] = {}
        self._runtime: FleetRuntime | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, runtime: FleetRuntime) -> None:
        self._runtime = runtime
        self.pool = await asyncpg.create_pool(
            self.config.database_url.get_secret_value(), min_size=1, max_size=4
        )
        await ensure_schema(self.pool)
        self.manager = LeaseManager(
            self.pool,
            self.worker_id,
            ttl=self.config.lease_ttl_seconds,
            on_acquired=self._acquired,
            on_lost=self._lost,
        )
        units: list[tuple[str, str, dict[str, Any]]] = [
            (unit_of(name), NETWORK_KIND, {}) for name in sorted(runtime.networks)
        ]
        await self.manager.register_units([*units, (ESCALATION, SINGLETON, {})])
        for unit, _, _ in [*units, (ESCALATION, SINGLETON, {})]:
            metrics.set_lease_state(unit, NOT_HELD)
        self._task = asyncio.create_task(self.manager.run(), name="fleet-leases")
        log.info("fleet.joined", worker=self.worker_id, units=len(units) + 1)

    async def _acquired(self, lease: Lease) -> None:
        runtime = self._runtime
        assert runtime is not None
        metrics.set_lease_state(lease.unit, HELD)
        if lease.unit == ESCALATION:
            log.info("fleet.escalation_acquired", epoch=lease.epoch)
            runtime.set_escalating(True)
            return
        name = lease.unit.removeprefix("net:")
        if name not in runtime.networks:
            return
        self.epochs[name] = lease.epoch
        log.info("fleet.unit_acquired", unit=lease.unit, epoch=lease.epoch)
        await runtime.start_network(name)

    async def _lost(self, unit: str) -> None:
        runtime = self._runtime
        assert runtime is not None
        metrics.set_lease_state(unit, NOT_HELD)
        if unit == ESCALATION:
            log.warning("fleet.escalation_lost")
            runtime.set_escalating(False)
            return
        name = unit.removeprefix("net:")
        self.epochs.pop(name, None)
        log.warning("fleet.unit_lost", unit=unit)
        await runtime.stop_network(name)

    def fence(self, network: str) -> Fence | None:
        """The lease this worker believes it holds on ``network``, for the store to check inside
        an alert's write transaction; ``None`` when it holds none."""
        epoch = self.epochs.get(network)
        return None if epoch is None else Fence(unit_of(network), self.worker_id, epoch)

    async def allowed(self, network: str) -> bool:
        """Whether this worker still holds ``network``'s unit at the epoch it acquired (checked
        in the database, so a paused worker that lost it finds out before it speaks)."""
        epoch = self.epochs.get(network)
        if epoch is None or self.manager is None:
            return False
        try:
            return await self.manager.check(unit_of(network), epoch)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("fleet.check_failed", network=network, error=repr(exc))
            return False

    async def stop(self) -> None:
        """Release every lease (the run loop does it as it ends) so others take over at once."""
        if self.manager is not None and self._task is not None:
            self.manager.stop()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
