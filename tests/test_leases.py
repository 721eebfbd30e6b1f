"""Work leasing against a real PostgreSQL: fair split, renewal, takeover with fencing, release,
singletons, concurrent claims and the background loop. TTLs are about a second, so a "paused"
worker is simply one the test does not renew."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import asyncpg
import pytest

from presencebot.adapter import Identity, NoSettings
from presencebot.badge import Badge
from presencebot.events import Event
from presencebot.fleet.fenced import FencedAdapter, LeaseLostError
from presencebot.fleet.leases import SINGLETON, Lease, LeaseLost, LeaseManager, ensure_schema, status
from presencebot.ids import RoomId
from tests.pgsupport import pg_pool
from tests.support import ScriptedAdapter, until

__all__ = ["pg_pool"]  # the fixture is used by name

UNITS = [(f"irc:net{i:02d}", "irc", {"server": f"irc{i}.example", "channels": [f"#c{i}"]}) for i in range(30)]
TTL = 1.0

MakeManager = Callable[..., LeaseManager]


@pytest.fixture
async def db(pg_pool: asyncpg.Pool) -> asyncpg.Pool:
    await ensure_schema(pg_pool)
    return pg_pool


@pytest.fixture
async def make(db: asyncpg.Pool) -> AsyncIterator[MakeManager]:
    """``make("a", ttl=..., ...)``: a worker on the test database; running loops are stopped after."""
    made: list[LeaseManager] = []

    def factory(name: str, **kwargs: Any) -> LeaseManager:
        kwargs.setdefault("ttl", TTL)
        manager = LeaseManager(db, name, **kwargs)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        manager.stop()


async def owners(pool: asyncpg.Pool) -> dict[str, tuple[str | None, int]]:
    rows = await pool.fetch("SELECT unit, owner, epoch FROM fleet_units ORDER BY unit")
    return {row["unit"]: (row["owner"], row["epoch"]) for row in rows}


async def held_by(pool: asyncpg.Pool, worker: str) -> set[str]:
    """Units ``worker`` validly holds, by the table (not by its own belief)."""
    rows = await pool.fetch(
        "SELECT unit FROM fleet_units WHERE owner = $1 AND expires_at > clock_timestamp()", worker
    )
    return {row["unit"] for row in rows}


async def three_workers(make: MakeManager, **kwargs: Any) -> list[LeaseManager]:
    """Three workers that all heartbeat before any claims, then claim in turn."""
    workers = [make(name, **kwargs) for name in ("a", "b", "c")]
    await workers[0].register_units(UNITS)
    for worker in workers:
        await worker.heartbeat()
    for worker in workers:
        await worker.claim()
    return workers


# --- the table --------------------------------------------------------------------------------
async def test_schema_and_registration_are_idempotent(db: asyncpg.Pool, make: MakeManager) -> None:
    await asyncio.gather(*(ensure_schema(db) for _ in range(3)))
    a, b = make("a"), make("b")
    await asyncio.gather(a.register_units(UNITS), b.register_units(list(reversed(UNITS))))
    await a.register_units([("irc:net00", "irc", {"server": "moved.example"})])
    assert len(await owners(db)) == 30
    spec = await db.fetchval("SELECT spec->>'server' FROM fleet_units WHERE unit = 'irc:net00'")
    assert spec == "moved.example"
    (lease,) = await a.claim(limit=1)
    assert lease == Lease("irc:net00", 1, lease.expires_at, "irc")
    assert lease.spec == {"server": "moved.example"}


# --- fair share ---------------------------------------------------------------------------------
async def test_three_workers_split_thirty_units_fairly(db: asyncpg.Pool, make: MakeManager) -> None:
    workers = await three_workers(make)
    table = await owners(db)
    assert [len(w.leases) for w in workers] == [10, 10, 10]
    for worker in workers:
        assert set(worker.leases) == await held_by(db, worker.worker_id)
    assert all(owner in ("a", "b", "c") and epoch == 1 for owner, epoch in table.values())
    assert sum(len(w.leases) for w in workers) == len(table) == 30  # each unit exactly once
    assert [await w.claim() for w in workers] == [[], [], []]  # everyone is at its share


async def test_a_worker_alone_takes_everything_and_sheds_the_surplus_when_others_join(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    a, b, c = make("a"), make("b"), make("c")
    await a.register_units(UNITS)
    assert len(await a.claim()) == 30
    await b.heartbeat()
    await c.heartbeat()
    surplus = await a.surplus()
    assert surplus == [unit for unit, _, _ in UNITS[10:]]  # the last in unit order
    await a.release(surplus)
    assert (len(await b.claim()), len(await c.claim())) == (10, 10)
    assert await a.surplus() == []


async def test_max_units_caps_the_share(db: asyncpg.Pool, make: MakeManager) -> None:
    a = make("a", max_units=4)
    await a.register_units(UNITS)
    assert [lease.unit for lease in await a.claim()] == ["irc:net00", "irc:net01", "irc:net02", "irc:net03"]
    assert await a.claim() == []


async def test_concurrent_claims_never_double_assign(db: asyncpg.Pool, make: MakeManager) -> None:
    workers = [make(f"w{i}") for i in range(5)]
    await workers[0].register_units(UNITS)
    await asyncio.gather(*(w.heartbeat() for w in workers))
    for round_ in (1, 2, 3):
        claimed = await asyncio.gather(*(w.claim() for w in workers))
        units = [lease.unit for leases in claimed for lease in leases]
        assert len(units) == len(set(units)) == 30
        assert [len(leases) for leases in claimed] == [6] * 5
        table = await owners(db)
        for worker, leases in zip(workers, claimed, strict=True):
            assert all(table[lease.unit] == (worker.worker_id, round_) for lease in leases)
        await asyncio.gather(*(w.release(list(w.leases)) for w in workers))


async def test_concurrent_claims_without_a_fair_share_still_assign_each_unit_once(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    """Nobody has heartbeated yet: each claimer counts a different number of live workers."""
    workers = [make(f"w{i}") for i in range(6)]
    await workers[0].register_units(UNITS)
    claimed = await asyncio.gather(*(w.claim() for w in workers))
    units = [lease.unit for leases in claimed for lease in leases]
    assert len(units) == len(set(units))
    table = await owners(db)
    assert {u: o for u, (o, _) in table.items() if o is not None} == {
        lease.unit: w.worker_id for w, leases in zip(workers, claimed, strict=True) for lease in leases
    }


# --- keeping and losing ---------------------------------------------------------------------------
async def test_renewal_keeps_the_leases_past_their_ttl(db: asyncpg.Pool, make: MakeManager) -> None:
    workers = await three_workers(make)
    before = await owners(db)
    started = time.monotonic()
    while time.monotonic() - started < 1.5 * TTL:
        await asyncio.sleep(0.3)
        assert [await w.renew() for w in workers] == [[], [], []]
    assert [await w.claim() for w in workers] == [[], [], []]
    assert await owners(db) == before
    assert [len(w.leases) for w in workers] == [10, 10, 10]


async def test_a_paused_worker_loses_its_units_within_the_ttl_and_is_fenced_off(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    a, b, c = await three_workers(make)
    paused = dict(a.leases)  # a stops renewing from here on
    paused_at = time.monotonic()
    while time.monotonic() - paused_at < TTL + 0.1:
        await asyncio.sleep(0.25)
        assert (await b.renew(), await c.renew()) == ([], [])

    unit = min(paused)
    async with db.acquire() as conn, conn.transaction():
        with pytest.raises(LeaseLost, match="expired"):
            await a.fence(conn, unit, paused[unit].epoch)  # nobody took it yet: expiry alone fences

    taken = [*(await b.claim()), *(await c.claim())]
    assert time.monotonic() - paused_at < 2 * TTL  # as soon as the leases ran out, not later
    assert {lease.unit for lease in taken} == set(paused)
    assert all(lease.epoch == paused[lease.unit].epoch + 1 == 2 for lease in taken)
    assert (len(b.leases), len(c.leases)) == (15, 15)  # a no longer counts as live

    new = next(lease for lease in taken if lease.unit == unit)
    new_owner = b if unit in b.leases else c
    async with db.acquire() as conn, conn.transaction():
        with pytest.raises(LeaseLost, match=f"now held by {new_owner.worker_id} at epoch 2"):
            async with a.fenced(conn, unit, 1):
                pytest.fail("the stale worker got past the fence")
    async with db.acquire() as conn, conn.transaction(), new_owner.fenced(conn, unit, new.epoch):
        await conn.execute("SELECT 1")  # the alert write / room post would go here
    assert not await a.check(unit, 1)
    assert await new_owner.check(unit, 2)

    assert sorted(await a.renew()) == sorted(paused)  # a learns it lost everything
    assert a.leases == {}


async def test_fence_holds_off_a_takeover_until_the_fenced_transaction_ends(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    a, b = make("a", ttl=0.5, renew_every=0.2), make("b", ttl=0.5, renew_every=0.2)
    await a.register_units([("xmpp:acct", "xmpp", {})])
    (lease,) = await a.claim()
    await b.heartbeat()
    async with db.acquire() as conn, conn.transaction():
        await a.fence(conn, lease.unit, lease.epoch)
        assert await asyncio.wait_for(a.renew(), 2) == []  # renewing never waits for a fence lock
        await asyncio.sleep(0.7)  # a slow post; meanwhile the lease runs out
        assert await b.claim() == []  # the row is locked: the claimer skips it
    (taken,) = await b.claim()
    assert (taken.unit, taken.epoch) == ("xmpp:acct", 2)


async def test_fence_needs_a_transaction(db: asyncpg.Pool, make: MakeManager) -> None:
    a = make("a")
    await a.register_units(UNITS[:1])
    (lease,) = await a.claim()
    async with db.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await a.fence(conn, lease.unit, lease.epoch)
        async with conn.transaction():
            with pytest.raises(LeaseLost, match="no such unit"):
                await a.fence(conn, "irc:nowhere", 1)
    assert await a.check(lease.unit, lease.epoch)
    assert not await a.check(lease.unit, lease.epoch + 1)


async def test_clean_release_hands_the_units_over_at_once(db: asyncpg.Pool, make: MakeManager) -> None:
    a, b, c = await three_workers(make)
    mine = set(a.leases)
    await a.release()
    table = await owners(db)
    assert all(table[unit] == (None, 1) for unit in mine)  # owner cleared, epoch kept
    assert await db.fetchval("SELECT count(*) FROM fleet_workers WHERE worker = 'a'") == 0
    taken = [*(await b.claim()), *(await c.claim())]
    assert {lease.unit for lease in taken} == mine
    assert {lease.epoch for lease in taken} == {2}
    assert (len(b.leases), len(c.leases)) == (15, 15)


async def test_a_singleton_is_held_by_exactly_one_worker(db: asyncpg.Pool, make: MakeManager) -> None:
    workers = [make(name) for name in ("a", "b", "c")]
    await workers[0].register_units(
        [("singleton:ticker", SINGLETON, {}), ("singleton:dispatcher", SINGLETON, {})]
    )
    got = await asyncio.gather(*(w.acquire("singleton:ticker") for w in workers))
    holders = [w for w, lease in zip(workers, got, strict=True) if lease is not None]
    assert len(holders) == 1
    assert (await owners(db))["singleton:ticker"] == (holders[0].worker_id, 1)

    claimed = await asyncio.gather(*(w.claim() for w in workers))
    dispatcher = [w for w, leases in zip(workers, claimed, strict=True) if leases]
    assert len(dispatcher) == 1
    assert [lease.unit for lease in claimed[workers.index(dispatcher[0])]] == ["singleton:dispatcher"]

    await holders[0].release(["singleton:ticker"])
    other = next(w for w in workers if w is not holders[0])
    lease = await other.acquire("singleton:ticker")
    assert lease is not None and lease.epoch == 2


async def test_status_reports_workers_their_units_and_lease_ages(db: asyncpg.Pool, make: MakeManager) -> None:
    a, b = make("a"), make("b")
    await a.register_units(UNITS[:3])
    await a.heartbeat()
    await b.heartbeat()
    await a.claim(limit=2)
    report = await status(db, ttl=TTL)
    by_worker = {entry["worker"]: entry for entry in report}
    assert [u["unit"] for u in by_worker["a"]["units"]] == ["irc:net00", "irc:net01"]
    assert by_worker["a"]["alive"] and by_worker["b"]["units"] == []
    assert [u["unit"] for u in by_worker[None]["units"]] == ["irc:net02"]
    unit = by_worker["a"]["units"][0]
    assert 0 < unit["expires_in"] <= TTL and 0 <= unit["held_for"] < TTL and unit["epoch"] == 1


# --- the loop ---------------------------------------------------------------------------------------
class Recorder:
    """The runtime's side: which units it was told to start and stop."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.acquired: list[tuple[str, int]] = []
        self.lost: list[str] = []

    async def on_acquired(self, lease: Lease) -> None:
        assert lease.unit not in self.running
        self.running[lease.unit] = lease.epoch
        self.acquired.append((lease.unit, lease.epoch))

    async def on_lost(self, unit: str) -> None:
        assert unit in self.running
        del self.running[unit]
        self.lost.append(unit)


async def test_run_starts_and_stops_units_through_the_callbacks(db: asyncpg.Pool, make: MakeManager) -> None:
    units = UNITS[:4]
    ra, rb = Recorder(), Recorder()
    a = make("a", renew_every=0.2, on_acquired=ra.on_acquired, on_lost=ra.on_lost)
    b = make("b", renew_every=0.2, on_acquired=rb.on_acquired, on_lost=rb.on_lost)
    await a.register_units(units)
    task_a = asyncio.create_task(a.run())
    await until(lambda: len(ra.running) == 4)

    stolen = "irc:net00"  # another worker took it over (as after a partition)
    await db.execute("UPDATE fleet_units SET owner = 'x', epoch = epoch + 1 WHERE unit = $1", stolen)
    await until(lambda: stolen in ra.lost)

    task_b = asyncio.create_task(b.run())  # a sheds down to its share of ceil(4 / 2) = 2
    await until(lambda: len(ra.running) == 2 and len(rb.running) >= 1)
    assert not set(ra.running) & set(rb.running)

    a.stop()
    await asyncio.wait_for(task_a, 5)
    assert ra.running == {} and a.leases == {}
    await until(lambda: len(rb.running) == 4, timeout=TTL + 3)  # x's lease expired too
    assert rb.running["irc:net00"] >= 3
    b.stop()
    await asyncio.wait_for(task_b, 5)
    assert rb.running == {}
    assert all(owner is None for owner, _ in (await owners(db)).values())


async def test_run_survives_a_database_outage_and_drops_leases_it_cannot_renew(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    rec = Recorder()
    a = make("a", renew_every=0.2, on_acquired=rec.on_acquired, on_lost=rec.on_lost)
    await a.register_units(UNITS[:2])
    task = asyncio.create_task(a.run())
    await until(lambda: len(rec.running) == 2)
    await db.execute("ALTER TABLE fleet_units RENAME TO fleet_units_away")  # every query now fails
    try:
        await until(lambda: rec.running == {}, timeout=TTL + 1)  # dropped locally within the TTL
        assert not task.done()
    finally:
        await db.execute("ALTER TABLE fleet_units_away RENAME TO fleet_units")
    await until(lambda: len(rec.running) == 2, timeout=3)
    assert set(rec.running.values()) == {2}
    a.stop()
    await asyncio.wait_for(task, 5)


async def test_a_fenced_adapter_says_nothing_once_its_unit_was_taken(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    """The post side of fencing, deterministically: an adapter of a worker whose lease was taken
    over (it stopped renewing, as a paused process does) may leave but not join, post or badge."""

    class Recorder(ScriptedAdapter):
        instances: ClassVar[list[ScriptedAdapter]] = []

    class Host:
        identity = Identity("Demo Police", "https://example.org", "test")
        eager_ok = False

        async def emit(self, event: Event) -> None:
            pass

    unit = "net:libera"
    a, b = make("a"), make("b")
    await a.register_units([(unit, "network", {})])
    await a.heartbeat()
    (lease,) = await a.claim()
    inner = Recorder("libera", NoSettings(), Host())
    fenced = FencedAdapter(inner, functools.partial(a.check, unit, lease.epoch))
    badge = Badge.build(agency="Demo Police", info_url="https://example.org", language="en")
    room = RoomId("#kids")

    await fenced.join(room)
    await fenced.send(room, "hello")
    await fenced.announce(room, badge)
    assert (inner.joins, inner.sent, len(inner.announced)) == ([room], [(room, "hello")], 1)

    await asyncio.sleep(TTL + 0.1)  # a is "paused": no renewal
    await b.heartbeat()
    assert [taken.epoch for taken in await b.claim()] == [lease.epoch + 1]
    await fenced.join(room)
    await fenced.send(room, "stale hello")
    with pytest.raises(LeaseLostError):
        await fenced.announce(room, badge)
    await fenced.leave(room, "lost the lease")
    assert (inner.joins, inner.sent, len(inner.announced)) == ([room], [(room, "hello")], 1)
    assert inner.leaves == [(room, "lost the lease")]


async def test_run_claims_a_dead_workers_units_as_soon_as_they_expire(
    db: asyncpg.Pool, make: MakeManager
) -> None:
    # Renewing only every 1.5 s of a 2 s TTL: waiting for the next renewal would take a dead
    # worker's units up to 1.5 s after they expire; run() wakes at the expiry instead.
    ttl = 2.0
    dead = make("dead", ttl=ttl)
    await dead.register_units(UNITS[:4])
    await dead.heartbeat()
    assert len(await dead.claim()) == 4  # then it never renews: it died
    claimed_at = time.monotonic()
    taken: list[float] = []

    async def acquired(lease: Lease) -> None:
        taken.append(time.monotonic() - claimed_at)

    survivor = make("survivor", ttl=ttl, renew_every=1.5, on_acquired=acquired)
    task = asyncio.create_task(survivor.run())
    try:
        await until(lambda: len(taken) == 4, timeout=ttl + 3)
    finally:
        survivor.stop()
        await task
    assert ttl <= min(taken) and max(taken) < ttl + 0.5, taken


def test_fleet_status_names_an_unreachable_database_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from presencebot import cli

    monkeypatch.setenv("PRESENCEBOT_FLEET__DATABASE_URL", "postgresql://ops:hunter2@127.0.0.1:1/fleet")
    assert cli.main(["fleet", "status"]) == 1
    err = capsys.readouterr().err
    assert "postgresql://ops@127.0.0.1:1/fleet" in err and "hunter2" not in err
    assert "pass --config" in err  # the built-in defaults have no fleet enabled
