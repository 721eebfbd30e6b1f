"""Work leasing: which worker runs which connection unit, and proof that it still may.

A *unit* is what one worker runs as a whole: an IRC network connection with its channels, an XMPP
account with its rooms, a Discord shard, or a singleton job (``singleton:ticker``). Every unit is a
row of ``fleet_units``; a worker holds a unit while the row names it as ``owner`` and ``expires_at``
lies in the future. Follow one unit:

* :meth:`LeaseManager.claim` takes free or expired rows (``FOR UPDATE SKIP LOCKED``, so concurrent
  claimers never wait for, nor take, each other's rows), names itself owner and bumps ``epoch``;
* :meth:`LeaseManager.renew` pushes ``expires_at`` forward while owner and epoch still match, well
  inside the TTL; a unit whose row changed, or whose lease ran out first, is reported lost;
* :meth:`LeaseManager.release` hands units back at a clean shutdown (epoch kept, so the next owner's
  claim still bumps it);
* when a worker dies or pauses, its rows expire and the others claim them, with a higher epoch.

The epoch is a *fencing token*. A paused worker may wake up still believing it holds a unit, so
every write of an alert and every post into a room first runs :meth:`LeaseManager.fence` inside
the caller's transaction: it locks the row and raises :class:`LeaseLost` unless this worker is the
owner at that epoch and the lease has not expired. The row lock (``FOR KEY SHARE``) makes claimers
skip the row until that transaction ends, so a takeover cannot slip in between check and write.

Every expiry decision uses the database server's clock (``clock_timestamp()``), never the
workers', so clock skew between machines does not matter. The local ``clock`` only paces the loop
and bounds how long a worker trusts a lease it could not renew (see :meth:`LeaseManager.expire_local`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from presencebot.backoff import ExponentialBackoff
from presencebot.errors import PresencebotError

log = structlog.get_logger("presencebot.fleet.leases")

SINGLETON = "singleton"
"""The ``kind`` of a unit that is a job rather than a connection (the escalation ticker)."""

LEASES_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_units (
    unit        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    spec        JSONB NOT NULL DEFAULT '{}',
    owner       TEXT,
    epoch       BIGINT NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ,
    renewed_at  TIMESTAMPTZ,
    acquired_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS fleet_units_owner ON fleet_units (owner);
CREATE TABLE IF NOT EXISTS fleet_workers (
    worker     TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    host       TEXT NOT NULL DEFAULT '',
    pid        INTEGER NOT NULL DEFAULT 0
);
"""

TAKEOVER_SLACK = 0.02
"""Seconds after a dead worker's lease expires before trying to claim it (the expiry is exact)."""

_SCHEMA_LOCK = 0x70B_F1EE7
"""Advisory lock key: concurrent ``CREATE TABLE IF NOT EXISTS`` can still collide in the catalog."""

_DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
"""A hiccup: the database or the network to it failed; the loop logs it and tries again."""

_HEARTBEAT = """
INSERT INTO fleet_workers (worker, host, pid) VALUES ($1, $2, $3)
ON CONFLICT (worker) DO UPDATE SET seen_at = clock_timestamp()
"""

_SHARE_COUNTS = """
SELECT
    (SELECT count(*) FROM fleet_units) AS total,
    (SELECT count(*) FROM fleet_workers
        WHERE seen_at > clock_timestamp() - make_interval(secs => $2)) AS live,
    (SELECT count(*) FROM fleet_units WHERE owner = $1 AND expires_at > clock_timestamp()) AS held
"""

_CLAIM = """
WITH free AS (
    SELECT unit FROM fleet_units
    WHERE (owner IS NULL OR expires_at IS NULL OR expires_at < clock_timestamp())
      AND ($4::text[] IS NULL OR unit = ANY($4::text[]))
    ORDER BY unit
    FOR UPDATE SKIP LOCKED
    LIMIT $3
)
UPDATE fleet_units AS u
SET owner = $1, epoch = u.epoch + 1,
    expires_at = clock_timestamp() + make_interval(secs => $2),
    renewed_at = clock_timestamp(), acquired_at = clock_timestamp()
FROM free WHERE u.unit = free.unit
RETURNING u.unit, u.kind, u.spec::text AS spec, u.epoch, u.expires_at
"""

_RENEW = """
UPDATE fleet_units AS u
SET expires_at = clock_timestamp() + make_interval(secs => $2), renewed_at = clock_timestamp()
FROM unnest($3::text[], $4::bigint[]) AS held(unit, epoch)
WHERE u.unit = held.unit AND u.epoch = held.epoch AND u.owner = $1 AND u.expires_at > clock_timestamp()
RETURNING u.unit, u.expires_at
"""

_RELEASE = """
UPDATE fleet_units SET owner = NULL, expires_at = NULL
WHERE owner = $1 AND ($2::text[] IS NULL OR unit = ANY($2::text[]))
"""

_NEXT_TAKEOVER = """
SELECT EXTRACT(EPOCH FROM
    min(GREATEST(u.expires_at, w.seen_at + make_interval(secs => $2))) - clock_timestamp())::float8
FROM fleet_units u JOIN fleet_workers w ON w.worker = u.owner
WHERE u.owner <> $1 AND u.expires_at IS NOT NULL
"""

_FENCE = """
SELECT owner, epoch, expires_at > clock_timestamp() AS valid
FROM fleet_units WHERE unit = $1
"""


class LeaseLost(PresencebotError):
    """This worker no longer holds ``unit`` at ``epoch``: it must not post or alert for it."""

    def __init__(self, unit: str, epoch: int, reason: str) -> None:
        self.unit = unit
        self.epoch = epoch
        self.reason = reason
        super().__init__(f"lease on {unit} at epoch {epoch} lost: {reason}")


@dataclass(frozen=True, slots=True)
class Lease:
    """A unit this worker holds; ``epoch`` is the fencing token to pass to :meth:`LeaseManager.fence`."""

    unit: str
    epoch: int
    expires_at: datetime
    kind: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False)


OnAcquired = Callable[[Lease], Awaitable[None]]
OnLost = Callable[[str], Awaitable[None]]


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Create the lease tables if missing; safe when every worker calls it at the same moment."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(LEASES_SCHEMA)


def default_worker_id() -> str:
    """A worker id unique per process *incarnation*: a restarted worker must not inherit the rows
    its previous life held (they expire and are claimed afresh, with a new epoch)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def fair_share(total: int, live: int, max_units: int | None = None) -> int:
    """How many units one worker may hold: ``ceil(total / live workers)``, capped by ``max_units``.

    Rounding up means the shares always add up to at least ``total``, so every unit finds a
    worker; a worker alone (the others absent) may take everything.
    """
    share = math.ceil(total / max(live, 1))
    return share if max_units is None else min(share, max_units)


class LeaseManager:
    """One worker's view of the lease table: claims its fair share, renews it, fences its writes.

    ``on_acquired(lease)`` and ``on_lost(unit)`` let the runtime start and stop the adapter of a
    unit; :meth:`run` calls them. ``on_lost`` is called for every reason a unit stops being ours
    (taken over, expired, shed to rebalance, released at shutdown), always *before* a voluntary
    release, so the adapter is stopped before another worker can start it.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        worker_id: str,
        *,
        ttl: float = 30.0,
        renew_every: float | None = None,
        max_units: int | None = None,
        on_acquired: OnAcquired | None = None,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lease TTL must be positive")
        self.pool = pool
        self.worker_id = worker_id
        self.ttl = ttl
        self.renew_every = ttl / 3 if renew_every is None else renew_every
        if not 0 < self.renew_every < ttl:
            raise ValueError("leases must be renewed well inside their TTL")
        self.max_units = max_units
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self._clock = clock
        self._held: dict[str, Lease] = {}
        self._deadline: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._host = socket.gethostname()
        self._pid = os.getpid()

    @property
    def leases(self) -> dict[str, Lease]:
        """The units this worker believes it holds (a copy)."""
        return dict(self._held)

    # --- the table -----------------------------------------------------------------------------
    async def register_units(self, units: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Upsert the known units ``(unit, kind, spec)``; every worker may call it with its config.

        Rows are written in unit order, so two workers registering at once cannot deadlock, and a
        row whose kind and spec are unchanged is not rewritten (that would wait for fence locks).
        """
        rows = sorted((unit, kind, json.dumps(dict(spec), sort_keys=True)) for unit, kind, spec in units)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """
                INSERT INTO fleet_units (unit, kind, spec) VALUES ($1, $2, $3::text::jsonb)
                ON CONFLICT (unit) DO UPDATE SET kind = EXCLUDED.kind, spec = EXCLUDED.spec
                WHERE (fleet_units.kind, fleet_units.spec) IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.spec)
                """,
                rows,
            )

    async def heartbeat(self, conn: asyncpg.Connection | None = None) -> None:
        """Mark this worker alive: live workers are the ones seen within the last TTL."""
        if conn is None:
            await self.pool.execute(_HEARTBEAT, self.worker_id, self._host, self._pid)
        else:
            await conn.execute(_HEARTBEAT, self.worker_id, self._host, self._pid)

    # --- claiming ------------------------------------------------------------------------------
    async def claim(self, limit: int | None = None) -> list[Lease]:
        """Claim free or expired units, up to this worker's fair share (and ``limit``).

        The fair share is ``ceil(units / live workers)`` (see :func:`fair_share`), counted in the
        same transaction, minus what this worker already holds. Units go in unit-name order.
        """
        started = self._clock()
        async with self.pool.acquire() as conn, conn.transaction():
            await self.heartbeat(conn)
            counts = await conn.fetchrow(_SHARE_COUNTS, self.worker_id, self.ttl)
            room = fair_share(counts["total"], counts["live"], self.max_units) - counts["held"]
            if limit is not None:
                room = min(room, limit)
            if room <= 0:
                return []
            rows = await conn.fetch(_CLAIM, self.worker_id, self.ttl, room, None)
        return self._took(rows, started)

    async def acquire(self, unit: str) -> Lease | None:
        """Claim one named unit if it is free or expired, whatever the fair share: how a worker
        takes a singleton job it is configured to run. ``None`` if another worker holds it."""
        started = self._clock()
        async with self.pool.acquire() as conn, conn.transaction():
            await self.heartbeat(conn)
            rows = await conn.fetch(_CLAIM, self.worker_id, self.ttl, 1, [unit])
        taken = self._took(rows, started)
        return taken[0] if taken else None

    def _took(self, rows: Iterable[Mapping[str, Any]], started: float) -> list[Lease]:
        """Record claimed rows; the local deadline counts from *before* the request was sent."""
        leases = [
            Lease(row["unit"], row["epoch"], row["expires_at"], row["kind"], json.loads(row["spec"]))
            for row in rows
        ]
        for lease in leases:
            self._held[lease.unit] = lease
            self._deadline[lease.unit] = started + self.ttl
        return leases

    # --- keeping -------------------------------------------------------------------------------
    async def renew(self) -> list[str]:
        """Extend every held lease whose owner and epoch still match; return the units lost.

        A lease that already expired is lost even if nobody took it yet: another worker may be
        about to, and the adapter may have posted nothing fenced in the meantime. A later claim
        may take it back, with a new epoch.
        """
        started = self._clock()
        units = sorted(self._held)
        async with self.pool.acquire() as conn:
            await self.heartbeat(conn)
            if not units:
                return []
            epochs = [self._held[unit].epoch for unit in units]
            rows = await conn.fetch(_RENEW, self.worker_id, self.ttl, units, epochs)
        kept = {row["unit"]: row["expires_at"] for row in rows}
        for unit, expires_at in kept.items():
            lease = self._held[unit]
            self._held[unit] = Lease(unit, lease.epoch, expires_at, lease.kind, lease.spec)
            self._deadline[unit] = started + self.ttl
        lost = [unit for unit in units if unit not in kept]
        self._forget(lost)
        return lost

    def expire_local(self) -> list[str]:
        """Forget the leases whose TTL ran out on the local clock since the last successful claim or
        renewal. When the database is unreachable nothing can be renewed, the others will take the
        units over, and this worker must stop its adapters without being told."""
        now = self._clock()
        expired = sorted(unit for unit, deadline in self._deadline.items() if deadline <= now)
        self._forget(expired)
        return expired

    async def surplus(self) -> list[str]:
        """The held units above the fair share (the last in unit order), to hand to workers that
        joined later. A worker that started alone took everything; this is how it gives back."""
        if not self._held:
            return []
        async with self.pool.acquire() as conn:
            counts = await conn.fetchrow(_SHARE_COUNTS, self.worker_id, self.ttl)
        share = fair_share(counts["total"], counts["live"], self.max_units)
        held = sorted(self._held)
        return held[share:] if len(held) > share else []

    async def next_takeover(self) -> float | None:
        """Seconds until another worker's unit may next be claimed — its lease expired *and* its
        owner no longer counted live — or ``None`` when others hold nothing.

        :meth:`run` wakes then if that is before its next renewal, so a dead worker's rooms move
        as soon as its leases allow, not up to a renewal interval later. Live workers renew well
        inside the TTL, so their units are always further away than that and cost no extra wake.
        """
        seconds = await self.pool.fetchval(_NEXT_TAKEOVER, self.worker_id, self.ttl)
        return None if seconds is None else float(seconds)

    async def release(self, units: Iterable[str] | None = None) -> None:
        """Hand units back at once (owner and expiry cleared, epoch kept). With no ``units``: a
        clean shutdown, releasing everything and leaving the fleet, so the live count drops now
        rather than a TTL later."""
        names = None if units is None else sorted(set(units))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_RELEASE, self.worker_id, names)
            if names is None:
                await conn.execute("DELETE FROM fleet_workers WHERE worker = $1", self.worker_id)
        self._forget(list(self._held) if names is None else names)

    def _forget(self, units: Iterable[str]) -> None:
        for unit in units:
            self._held.pop(unit, None)
            self._deadline.pop(unit, None)

    # --- fencing -------------------------------------------------------------------------------
    async def fence(self, conn: asyncpg.Connection, unit: str, epoch: int) -> None:
        """Raise :class:`LeaseLost` unless this worker holds ``unit`` at ``epoch``, unexpired.

        Run it inside the caller's transaction, right before writing an alert or posting into a
        room, and keep the transaction open until that is done: the row stays locked
        (``FOR KEY SHARE``), so no claimer can take the unit over in between. The lock mode does
        not conflict with :meth:`renew`'s update, so a slow post never holds up renewals.
        """
        if not conn.is_in_transaction():
            raise RuntimeError("fence() must run inside the transaction that does the fenced write")
        row = await conn.fetchrow(_FENCE + " FOR KEY SHARE", unit)
        reason = _fence_failure(row, self.worker_id, epoch)
        if reason is not None:
            raise LeaseLost(unit, epoch, reason)

    @contextlib.asynccontextmanager
    async def fenced(self, conn: asyncpg.Connection, unit: str, epoch: int) -> AsyncIterator[None]:
        """``async with manager.fenced(conn, unit, epoch):`` around a fenced write (see :meth:`fence`).

        The lock is the transaction's, so it lasts until the caller's transaction ends, not until
        this block does.
        """
        await self.fence(conn, unit, epoch)
        yield

    async def check(self, unit: str, epoch: int, *, conn: asyncpg.Connection | None = None) -> bool:
        """Whether this worker holds ``unit`` at ``epoch`` right now. Without ``conn`` it is only a
        snapshot (nothing is locked); use :meth:`fence` to guard a write."""
        if conn is not None and conn.is_in_transaction():
            row = await conn.fetchrow(_FENCE + " FOR KEY SHARE", unit)
        else:
            row = await (conn or self.pool).fetchrow(_FENCE, unit)
        return _fence_failure(row, self.worker_id, epoch) is None

    # --- the loop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to stop its adapters, release every lease and return."""
        self._stop.set()

    async def run(self) -> None:
        """Keep this worker's share of the units: heartbeat and renew every ``renew_every`` seconds,
        shed any surplus, claim free or expired units, and call ``on_lost`` / ``on_acquired``.

        A database failure is logged and retried with exponential backoff, never raised; if it
        lasts past the TTL the leases are dropped locally (:meth:`expire_local`).
        """
        backoff = ExponentialBackoff(base=min(0.5, self.renew_every), cap=self.renew_every, clock=self._clock)
        self._stop.clear()
        try:
            # Say we are here, then give workers started at the same moment one renewal interval
            # to say so too: claiming before they are counted would take too much and shed it a
            # moment later — moving rooms (and announcing again) for nothing.
            with contextlib.suppress(*_DB_ERRORS):
                await self.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.renew_every)
            while not self._stop.is_set():
                try:
                    await self.tick()
                    backoff.reset()
                    delay = self.renew_every
                    soon = await self.next_takeover()
                    if soon is not None:  # a dead worker's units: be there when they free up
                        delay = min(delay, max(soon, 0.0) + TAKEOVER_SLACK)
                except _DB_ERRORS as exc:
                    log.warning("fleet.lease_db_failed", worker=self.worker_id, error=repr(exc))
                    await self._lost(self.expire_local())
                    delay = backoff.delay()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            await self._shutdown()

    async def tick(self) -> None:
        """One pass of :meth:`run`: renew, shed surplus, claim, telling the callbacks each change."""
        await self._lost(self.expire_local())
        await self._lost(await self.renew())
        surplus = await self.surplus()
        if surplus:
            await self._lost(surplus)
            await self.release(surplus)
            log.info("fleet.units_shed", worker=self.worker_id, units=surplus)
        for lease in await self.claim():
            await self._acquired(lease)

    async def _acquired(self, lease: Lease) -> None:
        """Start the unit; if starting fails, hand it back so that another worker can try."""
        log.info("fleet.unit_acquired", worker=self.worker_id, unit=lease.unit, epoch=lease.epoch)
        if self.on_acquired is None:
            return
        try:
            await self.on_acquired(lease)
        except Exception:
            log.exception("fleet.on_acquired_failed", worker=self.worker_id, unit=lease.unit)
            await self.release([lease.unit])

    async def _lost(self, units: Iterable[str]) -> None:
        """Stop each unit; a failing callback is logged and never stops the loop."""
        for unit in units:
            log.info("fleet.unit_lost", worker=self.worker_id, unit=unit)
            if self.on_lost is None:
                continue
            try:
                await self.on_lost(unit)
            except Exception:
                log.exception("fleet.on_lost_failed", worker=self.worker_id, unit=unit)

    async def _shutdown(self) -> None:
        """Stop every adapter first, then release: no unit ever runs on two workers at once."""
        await self._lost(sorted(self._held))
        try:
            await self.release()
        except Exception as exc:  # the leases then simply expire after the TTL
            log.warning("fleet.release_failed", worker=self.worker_id, error=repr(exc))
            self._forget(list(self._held))


def _fence_failure(row: Mapping[str, Any] | None, worker_id: str, epoch: int) -> str | None:
    """Why a lease row does not prove ``worker_id`` holds it at ``epoch``, or ``None`` if it does."""
    if row is None:
        return "no such unit"
    if row["owner"] is None:
        return "released"
    if row["owner"] != worker_id or row["epoch"] != epoch:
        return f"now held by {row['owner']} at epoch {row['epoch']}"
    if not row["valid"]:
        return "expired"
    return None


async def status(pool: asyncpg.Pool, *, ttl: float = 30.0) -> list[dict[str, Any]]:
    """The fleet at a glance, for ``presencebot fleet status``: one entry per worker (``alive`` if
    seen within ``ttl``) with its units and their lease ages, then one with ``worker`` ``None``
    for the units nobody validly holds. Ages are seconds, measured on the database's clock."""
    async with pool.acquire() as conn:
        workers = await conn.fetch(
            """
            SELECT worker, host, pid, started_at, seen_at,
                   extract(epoch FROM clock_timestamp() - seen_at)::float8 AS seen_ago
            FROM fleet_workers ORDER BY worker
            """
        )
        units = await conn.fetch(
            """
            SELECT unit, kind, owner, epoch, expires_at > clock_timestamp() AS valid,
                   extract(epoch FROM expires_at - clock_timestamp())::float8 AS expires_in,
                   extract(epoch FROM clock_timestamp() - acquired_at)::float8 AS held_for,
                   extract(epoch FROM clock_timestamp() - renewed_at)::float8 AS renewed_ago
            FROM fleet_units ORDER BY unit
            """
        )
    return _status_report(workers, units, ttl)


def _status_report(
    workers: Sequence[Mapping[str, Any]], units: Sequence[Mapping[str, Any]], ttl: float
) -> list[dict[str, Any]]:
    report: dict[str | None, dict[str, Any]] = {
        w["worker"]: {
            "worker": w["worker"],
            "host": w["host"],
            "pid": w["pid"],
            "started_at": w["started_at"],
            "seen_ago": w["seen_ago"],
            "alive": w["seen_ago"] < ttl,
            "units": [],
        }
        for w in workers
    }
    unheld: dict[str, Any] = {"worker": None, "units": []}
    for row in units:
        entry = {key: row[key] for key in ("unit", "kind", "epoch", "expires_in", "held_for", "renewed_ago")}
        owner = row["owner"] if row["valid"] else None
        if owner is None:
            unheld["units"].append({**entry, "last_owner": row["owner"]})
            continue
        holder = report.setdefault(
            owner, {"worker": owner, "host": None, "pid": None, "alive": False, "units": []}
        )
        holder["units"].append(entry)
    return [*report.values(), unheld]
