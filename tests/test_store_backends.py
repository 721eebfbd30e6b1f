"""One store suite, run against both backends: SQLite (a file in tmp_path) and PostgreSQL (a fresh
schema per test on the server named by ``PRESENCEBOT_TEST_PG``, dropped after it).

Everything here goes through the store and the project's data functions, never through a
backend's own API, so a test that passes on one backend and fails on the other is a difference
in behaviour. The few deliberate differences are tested as such (``test_documented_differences``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from argon2 import PasswordHasher, Type

from presencebot import accounts, audit, evidence, retention
from presencebot.accounts import LoginFailed, Role, User, UserExists
from presencebot.alerts import Alert, AlertState, EvidenceItem
from presencebot.config import Config
from presencebot.console import queries
from presencebot.dispatch import Dispatcher
from presencebot.errors import AlertNotFound, Fenced, StoreError
from presencebot.events import Author, Message, RoomRef
from presencebot.fleet.leases import LEASES_SCHEMA
from presencebot.ids import AccountId, AlertId, EventId, RoomId
from presencebot.roster import Roster
from presencebot.rule import Flag, RoomView, Severity, rule
from presencebot.sinks.factory import build_sinks
from presencebot.store import Fence, delivery, open_store, pg_schema
from presencebot.store.delivery import NewNotice
from presencebot.store.migrations import MIGRATIONS
from presencebot.store.postgres import PgConnection, PostgresStore, translate
from presencebot.store.sql import SQLStore, has_lease_table
from presencebot.store.sqlite import SQLiteStore
from tests.pgsupport import PG_URL, connect_or_skip
from tests.support import RuntimeHarness, ScriptedAdapter, announced, make_config, stored, until
from tests.webhooks import SECRET, Receiver
from tests.webhooks import receivers as webhook_receivers

EVERY = {"rules": ["every_message"]}


@rule("every_message")
def flag_everything(message: Message, room: RoomView) -> Iterator[Flag]:
    yield Flag("test", target=message.author, explanation="flags every message")


T0 = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
MINUS5 = timezone(timedelta(hours=-5, minutes=-30))
LILY = Author("lily", AccountId("lily-acct"))
MARK = Author("mark")
PASSWORD = "correct horse battery staple"
EVIL = "x'); DROP TABLE alerts; -- \"q\" 'single' ? %s %% 100% ;\\ é ✓"


# --- backends -----------------------------------------------------------------------------------


def with_search_path(url: str, schema: str) -> str:
    """``url`` with ``search_path`` set (asyncpg passes unknown query parameters to the server)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"search_path={schema}") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A store URL whose ``search_path`` is a schema created for this test and dropped after it."""
    admin = await connect_or_skip()
    schema = f"t_{secrets.token_hex(6)}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(PG_URL, schema)
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema() as url:
        yield url


def pg_connection(url: str) -> PgConnection:
    """A store-style connection on a loop of its own: call it (and use it) off the test's loop."""
    loop = asyncio.new_event_loop()
    return PgConnection(loop.run_until_complete(asyncpg.connect(url)), loop)


@dataclass
class Backend:
    name: str
    new: Callable[[], SQLStore]
    """A new, not yet opened store on this test's database (the same one every time)."""
    made: list[SQLStore] = field(default_factory=list)

    async def open(self) -> SQLStore:
        store = self.new()
        self.made.append(store)
        await store.open()
        return store


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path / "alerts.db"
            made = Backend("sqlite", lambda: SQLiteStore(path))
        else:
            url = await stack.enter_async_context(fresh_schema())
            made = Backend("postgresql", lambda: PostgresStore(url))
        yield made
        for store in made.made:
            await store.close()


@pytest.fixture
async def store(backend: Backend) -> SQLStore:
    return await backend.open()


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
    )


async def scalar(store: SQLStore, sql: str, params: tuple[object, ...] = ()) -> Any:
    return await store.read(lambda c: c.execute(sql, params).fetchone()[0])


def make_alert(alert_id: str = "a00000000001", *, created_at: datetime = T0, **changes: Any) -> Alert:
    alert = Alert(
        id=AlertId(alert_id),
        created_at=created_at,
        room=RoomRef("libera", RoomId("#kids")),
        rule_id="minor_whereabouts",
        rule_version="2",
        category="grooming",
        severity=Severity.CRITICAL,
        target=LILY,
        requester=MARK,
        explanation="asked a child where she lives",
        evidence=(
            EvidenceItem(
                EventId(f"{alert_id}-1"), "native-1", LILY, T0 - timedelta(minutes=2), "im 12", False
            ),
            # Non-UTC offsets and microseconds must survive the round trip exactly.
            EvidenceItem(
                EventId(f"{alert_id}-2"),
                None,
                MARK,
                datetime(2024, 5, 1, 15, 59, 1, 5, tzinfo=PLUS2),
                "hi",
                False,
            ),
            EvidenceItem(
                EventId(f"{alert_id}-3"), "native-3", MARK, T0.astimezone(MINUS5), "where do u live", True
            ),
        ),
    )
    return replace(alert, **changes)


# --- alerts -------------------------------------------------------------------------------------


async def test_add_get_list_acknowledge_round_trip(store: SQLStore) -> None:
    alert = make_alert()
    stored = await store.add(alert, [("police", "email"), ("duty", "sms")])  # not alphabetical
    got = await store.get(alert.id)
    assert got == stored and got.to_json() == stored.to_json()
    assert replace(got, notifications=()) == alert
    assert [e.at for e in got.evidence] == [e.at for e in alert.evidence]
    assert [e.at.utcoffset() for e in got.evidence] == [
        timedelta(0),
        timedelta(hours=2),
        timedelta(hours=-5.5),
    ]
    assert [(n.target, n.state, n.attempts) for n in got.notifications] == [
        ("police", "pending", 0),
        ("duty", "pending", 0),
    ]

    # Same created_at: the later insert lists first; then older alerts; filter and limit.
    await store.add(make_alert("a00000000002"), [])
    await store.add(make_alert("a00000000003", created_at=T0 - timedelta(hours=1)), [])
    assert [a.id for a in await store.list()] == ["a00000000002", "a00000000001", "a00000000003"]
    assert [a.id for a in await store.list(limit=1)] == ["a00000000002"]

    acked = await store.acknowledge(AlertId("a00000000001"), "pc-smith")
    assert acked.state is AlertState.ACKNOWLEDGED and acked.acknowledged_by == "pc-smith"
    again = await store.acknowledge(AlertId("a00000000001"), "someone else")
    assert again.acknowledged_by == "pc-smith" and again.acknowledged_at == acked.acknowledged_at
    assert [a.id for a in await store.list(state=AlertState.ACKNOWLEDGED)] == ["a00000000001"]
    assert [a.id for a in await store.list(state=AlertState.OPEN)] == ["a00000000002", "a00000000003"]
    with pytest.raises(AlertNotFound):
        await store.get(AlertId("nope"))
    with pytest.raises(AlertNotFound):
        await store.acknowledge(AlertId("nope"), "pc-smith")
    trace = await store.read(lambda c: delivery.traces(c, "a00000000001"))
    assert [line for _, line in trace] == ["acknowledged by pc-smith: escalation stopped"]


async def test_hostile_strings_round_trip_exactly(store: SQLStore) -> None:
    evil = Author(f"nick{EVIL}", AccountId(f"acct{EVIL}"))
    alert = make_alert(
        f"id{EVIL}",
        room=RoomRef(f"net{EVIL}", RoomId(f"#room{EVIL}")),
        category=EVIL,
        target=evil,
        requester=evil,
        explanation=EVIL,
        evidence=(EvidenceItem(EventId(f"ev{EVIL}"), f"native{EVIL}", evil, T0, f"text{EVIL}", True),),
    )
    stored = await store.add(alert, [(f"target{EVIL}", f"sink{EVIL}")], trace=[EVIL])
    got = await store.get(alert.id)
    assert got.to_json() == stored.to_json() and got.evidence[0].text == f"text{EVIL}"
    assert (await store.acknowledge(alert.id, EVIL)).acknowledged_by == EVIL
    trace = await store.read(lambda c: delivery.traces(c, alert.id))
    assert [line for _, line in trace] == [EVIL, f"acknowledged by {EVIL}: escalation stopped"]
    assert [a.id for a in await store.list()] == [alert.id]
    # A literal % and ? in the SQL itself (not a parameter) reach the database unchanged.
    assert await store.read(lambda c: c.execute("SELECT '100%?', ?", ("x",)).fetchone()) == ("100%?", "x")


async def test_a_failed_add_stores_nothing_and_the_store_carries_on(store: SQLStore) -> None:
    alert = make_alert()
    # The same target twice violates the one-first-notice rule after alert and evidence went in.
    with pytest.raises(StoreError, match=alert.id):
        await store.add(alert, [("duty", "email"), ("duty", "sms")])
    with pytest.raises(StoreError):  # a lone surrogate cannot be encoded for either backend
        await store.add(make_alert("bad", explanation="bad \ud800 text"), [])
    for table in ("alerts", "evidence", "outbox", "alert_trace"):
        assert await scalar(store, f"SELECT count(*) FROM {table}") == 0, table
    first = await store.add(alert, [("duty", "sms")], trace=["routed"])
    with pytest.raises(StoreError):  # the same id again
        await store.add(make_alert(explanation="impostor"), [("extra", "sms")])
    assert (await store.get(alert.id)).to_json() == first.to_json()
    assert await scalar(store, "SELECT count(*) FROM outbox") == 1


async def test_room_states(backend: Backend, store: SQLStore) -> None:
    await store.set_room_state("libera", "#kids", "kicked", "by op: bye")
    await store.set_room_state("libera", "#kids", "dismissed", "!police leave")
    await store.set_room_state("libera", "#Other", "invited", "by alice")
    await store.set_room_state("libera", "#_x", "banned", "x" * 600)
    rows = await store.room_states()
    # Code point order, as SQLite's BINARY collation: '#' 'O' '_' 'k'.
    assert [r.room for r in rows] == ["#Other", "#_x", "#kids"]
    assert rows[2].state == "dismissed" and rows[2].reason == "!police leave"
    assert len(rows[1].reason) == 500
    await store.clear_room_state("libera", "#kids")
    again = await backend.open()  # another store on the same database sees it all
    assert [r.room for r in await again.room_states()] == ["#Other", "#_x"]


# --- outbox and delivery ------------------------------------------------------------------------


async def test_outbox_rows_and_the_delivery_functions(store: SQLStore) -> None:
    a1 = await store.add(
        make_alert("a1"),
        [NewNotice("officers", "webhook"), NewNotice("backup", "email")],
        trace=["routed to officers", "and backup"],
        escalate_at=T0 + timedelta(minutes=10),
        force="uk",
    )
    a2 = await store.add(make_alert("a2", created_at=T0 + timedelta(seconds=1)), [("officers", "webhook")])
    first, second = a1.notifications
    (third,) = a2.notifications

    due = await store.read(lambda c: delivery.due(c, T0 + timedelta(seconds=1), 10))
    assert [r.id for r in due] == [first.id, second.id, third.id]  # by time, then insertion
    assert [r.id for r in await store.read(lambda c: delivery.due(c, T0, 10))] == [first.id, second.id]
    assert [r.id for r in await store.read(lambda c: delivery.due(c, T0 + timedelta(hours=1), 1))] == [
        first.id
    ]
    assert await store.read(delivery.next_wakeup) == T0

    later = T0 + timedelta(seconds=30)
    await store.transaction(lambda c: delivery.mark_delivered(c, first.id, 1, later))
    await store.transaction(lambda c: delivery.mark_retry(c, second.id, 1, later, "503 " + "x" * 600))
    await store.transaction(lambda c: delivery.mark_dead(c, third.id, 8, "gone"))
    rows = {r.id: r for r in await store.read(lambda c: delivery.rows(c, alert_id="a1"))}
    assert rows[first.id].state == "delivered" and rows[first.id].delivered_at == later
    assert rows[second.id].next_attempt_at == later and len(rows[second.id].last_error or "") == 500
    assert [r.id for r in await store.read(lambda c: delivery.rows(c, state="dead"))] == [third.id]
    assert await store.read(delivery.next_wakeup) == later  # the retry, before the escalation
    assert await store.transaction(lambda c: delivery.requeue(c, third.id, later)) is True
    assert await store.transaction(lambda c: delivery.requeue(c, third.id, later)) is False

    await store.transaction(lambda c: delivery.disable_target(c, "officers", "410 gone", later))
    await store.transaction(lambda c: delivery.disable_target(c, "officers", "410 again", later))
    assert await store.read(delivery.disabled_targets) == {"officers": "410 again"}
    assert [r.id for r in await store.read(lambda c: delivery.due(c, later, 10))] == [second.id]
    assert await store.transaction(lambda c: delivery.enable_target(c, "officers")) is True
    assert await store.transaction(lambda c: delivery.enable_target(c, "officers")) is False

    # Escalation state and more notices for the same target (kind escalation may repeat).
    esc = T0 + timedelta(minutes=10)
    assert await store.read(lambda c: delivery.due_escalations(c, esc, 10)) == [("a1", 0, "uk")]
    ids = await store.transaction(
        lambda c: delivery.insert_notices(
            c, "a1", [NewNotice("officers", "webhook", "escalation", 1)] * 2, esc
        )
    )
    await store.transaction(lambda c: delivery.set_escalation(c, "a1", 1, None, "au"))
    assert await store.read(lambda c: delivery.due_escalations(c, esc, 10)) == []
    assert [r.id for r in await store.read(lambda c: delivery.rows(c, alert_id="a1"))][-2:] == ids
    await store.transaction(lambda c: delivery.add_trace(c, "a1", ["escalated"], esc))
    trace = await store.read(lambda c: delivery.traces(c, "a1"))
    assert [line for _, line in trace] == ["routed to officers", "and backup", "escalated"]
    assert trace[-1][0] == esc


async def test_grouping_finds_the_open_alert_and_extend_adds_only_new_evidence(store: SQLStore) -> None:
    alert = await store.add(make_alert("a1"), [])
    since = T0 - timedelta(minutes=30)
    assert await store.find_group(make_alert("a2"), since) == "a1"
    renamed = Author("lily_", AccountId("lily-acct"))  # the same account under a new nick
    assert await store.find_group(make_alert("a2", target=renamed), since) == "a1"
    assert await store.find_group(make_alert("a2", requester=Author("max")), since) is None
    assert await store.find_group(make_alert("a2", requester=None), since) is None
    assert await store.find_group(make_alert("a2"), T0 + timedelta(seconds=1)) is None

    fresh = EvidenceItem(
        EventId("new"), None, MARK, T0.astimezone(PLUS2) + timedelta(minutes=1), "again?", True
    )
    await store.extend(alert.id, (*alert.evidence[1:], fresh), ["the same request again"])
    got = await store.get(alert.id)
    assert got.evidence == (*alert.evidence, fresh)
    await store.acknowledge(alert.id, "pc")
    assert await store.find_group(make_alert("a2"), since) is None  # only open alerts group


# --- audit --------------------------------------------------------------------------------------


async def test_audit_record_entries_and_verify(store: SQLStore) -> None:
    def console(conn: sqlite3.Connection) -> None:
        audit.record(conn, actor="pc1", action="login", object=None, outcome="ok", at=T0)
        audit.record(conn, actor="pc1", action="view_alert", object="a1", outcome="ok", detail=EVIL)
        audit.record(conn, actor=None, action="purge", object="a1", outcome="denied", at=T0.astimezone(PLUS2))

    await store.transaction(console)
    entries = await store.read(lambda c: audit.entries(c, limit=None))
    assert [e.seq for e in entries] == [1, 2, 3] and entries[1].detail == EVIL
    assert entries[2].at.utcoffset() == timedelta(hours=2)
    assert [e.seq for e in await store.read(lambda c: audit.entries(c, object="a1"))] == [2, 3]
    assert await store.read(audit.head) == entries[-1].hash
    assert audit.verify_entries(entries) == []
    assert await store.read(lambda c: audit.verify(c, anchors=[entries[0].hash])) == []
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        await store.read(lambda c: audit.record(c, actor="x", action="login", object=None, outcome="ok"))

    await store.read(lambda c: c.execute("UPDATE audit_log SET detail = 'edited' WHERE seq = 2"))
    problems = await store.read(lambda c: audit.verify(c, anchors=["f" * 64]))
    assert problems[0] == "entry 2: hash mismatch (the entry was edited)"
    assert any("anchor" in p for p in problems)


async def test_concurrent_audit_appends_from_two_stores_keep_one_chain(backend: Backend) -> None:
    if backend.name == "postgresql":
        stores = await asyncio.gather(backend.open(), backend.open())  # two migrations at once
    else:  # SQLite's migrate() reads user_version before locking: open one after the other
        stores = [await backend.open(), await backend.open()]

    async def append(store: SQLStore, who: str, n: int) -> None:
        for i in range(n):
            await store.transaction(
                lambda c, i=i: audit.record(
                    c, actor=who, action="view_alert", object=f"{who}{i}", outcome="ok"
                )
            )

    await asyncio.gather(append(stores[0], "a", 25), append(stores[1], "b", 25))
    if backend.name == "postgresql":
        # A transaction begun without BEGIN IMMEDIATE: audit.record's own lock keeps the chain.
        def plain(conn: sqlite3.Connection, who: str) -> None:
            conn.execute("BEGIN")
            try:
                audit.record(conn, actor=who, action="search", object=None, outcome="ok")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        for _ in range(15):
            await asyncio.gather(
                *(s.read(lambda c, w=w: plain(c, w)) for s, w in zip(stores, "cd", strict=True))
            )
    entries = await stores[0].read(lambda c: audit.entries(c, limit=None))
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert len(entries) == (80 if backend.name == "postgresql" else 50)
    assert await stores[1].read(audit.verify) == []


async def test_concurrent_extends_from_two_stores_keep_the_sequences(backend: Backend) -> None:
    first = await backend.open()
    second = await backend.open()
    alert = await first.add(make_alert("a1"), [])

    async def grow(store: SQLStore, who: str) -> None:
        for i in range(15):
            item = EvidenceItem(EventId(f"{who}{i}"), None, MARK, T0, f"{who} {i}", True)
            await store.extend(alert.id, [item], [f"{who} {i}"])

    await asyncio.gather(grow(first, "x"), grow(second, "y"))
    got = await second.get(alert.id)
    assert len(got.evidence) == 3 + 30
    seqs = await first.read(lambda c: [r[0] for r in c.execute("SELECT seq FROM alert_trace ORDER BY seq")])
    assert seqs == list(range(30))


# --- accounts -----------------------------------------------------------------------------------


async def add_user(store: SQLStore, username: str, **kw: Any) -> User:
    args: dict[str, Any] = {"public_id": "PC 4521", "force": "met", "role": Role.OFFICER, "now": T0}
    args.update(kw)
    user, _ = await store.transaction(
        lambda c: accounts.add_user(c, username=username, password=PASSWORD, **args)
    )
    return user


async def test_accounts_users_logins_and_sessions(store: SQLStore, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await add_user(store, "alice")
    for name in ("b_1", "b-1", "b.1", "b01"):  # code point order: - . 0 _
        await add_user(store, name, force="kent")
    assert [u.username for u in await store.read(accounts.list_users)] == [
        "alice",
        "b-1",
        "b.1",
        "b01",
        "b_1",
    ]
    assert isinstance(alice.id, int) and alice.role is Role.OFFICER and not alice.disabled
    with pytest.raises(UserExists):
        await add_user(store, "Alice")
    # A concurrent add by another process gets past the check: the UNIQUE index answers.
    monkeypatch.setattr(accounts, "get_user", lambda conn, name: None)
    with pytest.raises(UserExists):
        await add_user(store, "alice")
    monkeypatch.undo()
    assert len(await store.read(accounts.list_users)) == 5

    def login(password: str, at: datetime = T0) -> Callable[[sqlite3.Connection], User]:
        return lambda c: accounts.authenticate(c, "alice", password, None, now=at)

    assert (await store.transaction(login(PASSWORD))).id == alice.id
    for _ in range(5):  # the failure count survives the rolled-back transaction
        with pytest.raises(LoginFailed):
            await store.transaction(login("wrong password!!"))
    with pytest.raises(LoginFailed) as info:
        await store.transaction(login(PASSWORD))
    assert info.value.why == "locked"
    assert (await store.read(login(PASSWORD, T0 + timedelta(minutes=11)))).id == alice.id

    token, csrf = await store.transaction(lambda c: accounts.create_session(c, alice, now=T0))
    seen = await store.transaction(lambda c: accounts.session_user(c, token, now=T0 + timedelta(minutes=20)))
    assert seen is not None and seen[0].id == alice.id and seen[1] == csrf
    assert await store.transaction(lambda c: accounts.session_user(c, "x" + token, now=T0)) is None
    idle = T0 + timedelta(minutes=51)  # more than 30 minutes after the last visit
    assert await store.transaction(lambda c: accounts.session_user(c, token, now=idle)) is None
    token, _ = await store.transaction(lambda c: accounts.create_session(c, alice, now=idle))
    assert await store.transaction(lambda c: accounts.revoke_session(c, token)) is True
    assert await store.transaction(lambda c: accounts.revoke_session(c, token)) is False
    disabled = await store.transaction(lambda c: accounts.disable_user(c, "alice"))
    assert disabled.disabled and not disabled.can_act


# --- console, evidence export, retention --------------------------------------------------------


async def test_console_actions_evidence_export_and_verify(store: SQLStore) -> None:
    await store.add(make_alert("a1"), [("police", "email")], trace=["routed to police"], force="met")
    user = await add_user(store, "alice")
    at = T0 + timedelta(minutes=5)
    assert await store.transaction(lambda c: queries.act(c, user, "a1", "claim", at, request_id="r1"))
    assert not await store.transaction(lambda c: queries.act(c, user, "a1", "claim", at, request_id="r1"))
    await store.transaction(lambda c: queries.act(c, user, "a1", "note", at, text=f"called {EVIL}"))
    await store.transaction(lambda c: queries.act(c, user, "a1", "acknowledge", at))
    assert [a.kind for a in await store.read(lambda c: queries.actions(c, "a1"))] == [
        "claim",
        "note",
        "acknowledge",
    ]
    row = await store.read(lambda c: queries.visible(c, user, "a1"))
    assert row is not None and row.state == "acknowledged" and row.claimed_by is not None
    assert [r.id for r in await store.read(lambda c: queries.queue(c, user, state=None))] == ["a1"]

    bundle = await store.transaction(lambda c: evidence.export(c, "a1", exporter="sgt1", at=at))
    assert evidence.verify_bundle(bundle) == []
    parsed = json.loads(bundle)
    assert [e["at"] for e in parsed["evidence"]] == [e.at.isoformat() for e in make_alert("a1").evidence]
    assert [a["kind"] for a in parsed["custody"]["actions"]] == ["claim", "note", "acknowledge"]
    assert parsed["custody"]["actions"][0]["id"] == 1
    recorded = await store.read(lambda c: evidence.recorded_export(c, "a1", parsed["bundle_sha256"]))
    assert recorded is not None and recorded.seq == parsed["manifest"]["audit_head"]["seq"] + 1

    await store.read(
        lambda c: c.execute("UPDATE evidence SET text = 'edited' WHERE alert_id = 'a1' AND seq = 2")
    )
    with pytest.raises(evidence.EvidenceTampered):
        await store.transaction(lambda c: evidence.export(c, "a1", exporter="sgt1", at=at))
    assert await store.read(audit.verify) == []  # the refused export recorded nothing


async def test_retention_purges_dismissed_alerts_by_instant(store: SQLStore) -> None:
    now = T0 + timedelta(days=100)
    period = timedelta(days=30)
    cases = {  # alert: (disposition, disposed at)
        "a1": ("false_positive", (now - timedelta(days=40)).astimezone(PLUS2)),
        "a2": ("duplicate", (now - period).astimezone(MINUS5)),  # exactly the period: due
        "a3": ("false_positive", now - timedelta(days=29)),
        "a4": ("intervened", now - timedelta(days=90)),
    }
    for aid, (disposition, at) in cases.items():
        await store.add(make_alert(aid), [])
        await store.transaction(
            lambda c, a=aid, d=disposition, t=at: c.execute(
                "UPDATE alerts SET disposition = ?, disposed_at = ? WHERE id = ?", (d, t.isoformat(), a)
            )
        )
    purge = lambda c: retention.purge(c, now, dismissed_after=period, actor="retention")  # noqa: E731
    assert await store.transaction(purge) == ["a1", "a2"]
    assert await store.transaction(purge) == []
    got = await store.get(AlertId("a1"))
    assert {e.text for e in got.evidence} == {""} and {e.author.nick for e in got.evidence} == {""}
    assert (await store.get(AlertId("a3"))).evidence == make_alert("a3").evidence
    assert await store.read(audit.verify) == []
    bundle = await store.transaction(lambda c: evidence.export(c, "a1", exporter="sgt1", at=now))
    assert evidence.verify_bundle(bundle) == [] and json.loads(bundle)["manifest"]["purged"] is True


# --- the dispatcher -----------------------------------------------------------------------------


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    async with webhook_receivers("officers", "supervisors") as made:
        yield made


def dispatch_config(receivers: dict[str, Receiver], delivery: dict[str, Any]) -> Config:
    """Officers and supervisors as signed webhooks to ``receivers``; one escalation step after
    ten minutes to the supervisors."""

    def hook(name: str, role: str) -> dict[str, Any]:
        settings = {"url": receivers[name].url, "secrets": [SECRET], "timeout_seconds": 2}
        return {"name": name, "sink": "webhook", "role": role, "settings": settings}

    return Config.model_validate(
        {
            "notify": [hook("officers", "officers"), hook("supervisors", "supervisors")],
            "delivery": delivery,
            "escalation": {"steps": [{"after_minutes": 10, "notify": "supervisors"}], "repeat": 0},
        }
    )


async def no_rooms(network: str, room: str, line: str) -> None:
    raise ConnectionError("no rooms here")


async def test_the_dispatcher_delivers_retries_and_escalates(
    store: SQLStore, receivers: dict[str, Receiver]
) -> None:
    config = dispatch_config(
        receivers, {"max_attempts": 2, "backoff_base_seconds": 1, "backoff_cap_seconds": 1}
    )

    sinks = build_sinks(config, no_rooms)
    roster = Roster(config.roster) if config.roster.forces else None
    dispatcher = Dispatcher(config, store, sinks, roster=roster, clock=lambda: T0)  # type: ignore[arg-type]
    try:
        receivers["officers"].answers = [(500, {})]  # the first attempt fails, the second succeeds
        routing = dispatcher.route(T0)
        alert = await store.add(
            make_alert("a1"), routing.notices, trace=routing.trace, escalate_at=routing.escalate_at
        )
        assert await dispatcher.tick(T0) == 1
        (row,) = await store.read(lambda c: delivery.rows(c, alert_id=alert.id))
        assert row.state == "pending" and row.attempts == 1 and row.last_error is not None
        await dispatcher.tick(T0 + timedelta(seconds=2))
        (row,) = await store.read(lambda c: delivery.rows(c, alert_id=alert.id))
        assert row.state == "delivered" and row.attempts == 2
        assert receivers["officers"].ids == [row.id]
        await dispatcher.tick(T0 + timedelta(minutes=10))  # escalation: queue the supervisors' notice
        await dispatcher.tick(T0 + timedelta(minutes=10))  # and deliver it
        kinds = [
            (r.target, r.kind, r.state)
            for r in await store.read(lambda c: delivery.rows(c, alert_id=alert.id))
        ]
        assert kinds == [("officers", "alert", "delivered"), ("supervisors", "escalation", "delivered")]
        assert len(receivers["supervisors"].ids) == 1
        trace = [line for _, line in await store.read(lambda c: delivery.traces(c, alert.id))]
        assert any("escalation 1" in line for line in trace)
    finally:
        for sink in dispatcher.sinks.values():
            await sink.close()


async def test_claimed_rows_are_due_for_nobody_else_until_released_or_expired(
    backend: Backend, store: SQLStore
) -> None:
    alert = await store.add(make_alert("a1"), [NewNotice(f"t{i}", "webhook") for i in range(5)])
    ids = [n.id for n in alert.notifications]
    hold = timedelta(minutes=2)
    other = await backend.open()  # a second dispatcher's store on the same database

    mine = await store.transaction(lambda c: delivery.claim_due(c, T0, 3, worker="w1", hold=hold))
    theirs = await other.transaction(lambda c: delivery.claim_due(c, T0, 3, worker="w2", hold=hold))
    assert [r.id for r in mine] == ids[:3] and [r.id for r in theirs] == ids[3:]
    assert await store.read(lambda c: delivery.due(c, T0, 10)) == []
    assert await store.read(delivery.next_wakeup) == T0 + hold  # nothing due before a claim expires

    # Delivered / retried rows drop their claim; a dead worker's claim expires after the hold.
    await store.transaction(lambda c: delivery.mark_delivered(c, ids[0], 1, T0))
    await store.transaction(lambda c: delivery.mark_retry(c, ids[1], 1, T0 + timedelta(seconds=5), "503"))
    assert [r.id for r in await store.read(lambda c: delivery.due(c, T0 + timedelta(seconds=5), 10))] == [
        ids[1]
    ]
    later = T0 + hold
    taken = await other.transaction(lambda c: delivery.claim_due(c, later, 10, worker="w2", hold=hold))
    # Every expired claim (w1's on ids[2], w2's own) is claimable again; the retry is due later.
    assert [r.id for r in taken] == [ids[2], ids[3], ids[4], ids[1]]

    # A worker hands back its own claims (at a clean stop, or when it starts again), nobody else's.
    assert await store.transaction(lambda c: delivery.release_claims(c, "w1")) == 0
    assert await store.transaction(lambda c: delivery.release_claims(c, "w2", [ids[3]])) == 1
    assert [r.id for r in await store.read(lambda c: delivery.due(c, later, 10))] == [ids[3]]
    assert await store.transaction(lambda c: delivery.release_claims(c, "w2")) == 3
    assert len(await store.read(lambda c: delivery.due(c, later, 10))) == 4


async def test_concurrent_claims_from_two_stores_never_share_a_row(backend: Backend) -> None:
    stores = [await backend.open(), await backend.open()]
    notices = [NewNotice(f"t{i}", "webhook") for i in range(40)]
    alert = await stores[0].add(make_alert("a1"), notices)
    hold = timedelta(minutes=2)

    async def drain(store: SQLStore, worker: str) -> list[str]:
        got: list[str] = []
        while rows := await store.transaction(
            lambda c: delivery.claim_due(c, T0, 3, worker=worker, hold=hold)
        ):
            got += [r.id for r in rows]
            await asyncio.sleep(0)
        return got

    first, second = await asyncio.gather(drain(stores[0], "w1"), drain(stores[1], "w2"))
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(n.id for n in alert.notifications)


async def test_two_dispatchers_on_one_store_deliver_each_row_once_and_escalate_once(
    backend: Backend, receivers: dict[str, Receiver]
) -> None:
    config = dispatch_config(receivers, {"concurrency": 2})

    stores = [await backend.open(), await backend.open()]
    dispatchers = [
        Dispatcher(config, s, build_sinks(config, no_rooms), clock=lambda: T0, worker=f"w{i}")
        for i, s in enumerate(stores)
    ]
    try:
        for n in range(12):
            routing = dispatchers[0].route(T0)
            await stores[0].add(
                make_alert(f"a{n:02}"), routing.notices, trace=routing.trace, escalate_at=routing.escalate_at
            )
        await asyncio.gather(*(d.tick(T0) for d in dispatchers))
        assert len(receivers["officers"].ids) == 12 == len(set(receivers["officers"].ids))
        assert all(d.delivered > 0 for d in dispatchers)  # both took part
        # Both run escalation (as two tickers would, were the lease ever doubled): each step once.
        at = T0 + timedelta(minutes=10)
        await asyncio.gather(*(d.tick(at) for d in dispatchers))
        await asyncio.gather(*(d.tick(at) for d in dispatchers))
        assert len(receivers["supervisors"].ids) == 12 == len(set(receivers["supervisors"].ids))
    finally:
        for d in dispatchers:
            for sink in d.sinks.values():
                await sink.close()


# --- migrations, opening, selection -------------------------------------------------------------


async def columns(store: SQLStore, backend: str) -> dict[str, list[str]]:
    if backend == "sqlite":
        sql = (
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p"
            " WHERE m.type = 'table' ORDER BY m.name, p.cid"
        )
    else:
        sql = (
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name != 'schema_version'"
            " AND column_name != 'rowid' ORDER BY table_name, ordinal_position"
        )
    found: dict[str, list[str]] = {}
    for table, column in await store.read(lambda c: c.execute(sql).fetchall()):
        found.setdefault(table, []).append(column)
    return {table: sorted(cols) for table, cols in found.items()}


async def test_both_schemas_have_the_same_tables_and_columns(tmp_path: Path, pg_url: str) -> None:
    assert len(pg_schema.MIGRATIONS) == len(MIGRATIONS)
    lite, pg = SQLiteStore(tmp_path / "a.db"), PostgresStore(pg_url)
    await lite.open()
    await pg.open()
    try:
        assert await columns(lite, "sqlite") == await columns(pg, "postgresql")
        assert await scalar(pg, "SELECT version FROM schema_version") == len(MIGRATIONS)
        # Code point order whatever the database's locale (this test server's may already be C).
        not_c = (
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND data_type = 'text' AND collation_name IS DISTINCT FROM 'C'"
        )
        assert await scalar(pg, not_c) == 0
    finally:
        await lite.close()
        await pg.close()


async def test_reopening_keeps_data_and_a_newer_schema_is_refused(backend: Backend) -> None:
    store = await backend.open()
    stored = await store.add(make_alert(), [("police", "email")])
    await store.close()
    store = await backend.open()
    assert (await store.get(stored.id)).to_json() == stored.to_json()
    newer = (
        "PRAGMA user_version = 99" if backend.name == "sqlite" else "UPDATE schema_version SET version = 99"
    )
    await store.read(lambda c: c.execute(newer))
    await store.close()
    refused = backend.new()
    with pytest.raises(StoreError, match="newer than this presencebot understands"):
        await refused.open()
    with pytest.raises(StoreError, match="not open"):
        await refused.get(stored.id)


async def test_a_failing_postgresql_migration_step_leaves_the_previous_version(pg_url: str) -> None:
    broken = (*pg_schema.MIGRATIONS, "CREATE TABLE extra (x INTEGER); SELECT no_such_function();")

    def check() -> None:
        conn = pg_connection(pg_url)
        try:
            assert pg_schema.migrate(conn) == len(MIGRATIONS)
            with pytest.raises(asyncpg.UndefinedFunctionError):
                pg_schema.migrate(conn, broken)
            assert pg_schema.schema_version(conn) == len(MIGRATIONS)
            assert conn.execute("SELECT to_regclass('extra')").fetchone() == (None,)
        finally:
            conn.close()

    await asyncio.to_thread(check)


async def test_unreachable_postgresql_is_a_store_error_without_the_password() -> None:
    store = PostgresStore("postgresql://someone:hunter2secret@127.0.0.1:1/db", connect_timeout=2)
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "hunter2secret" not in str(info.value) and "someone@127.0.0.1:1/db" in str(info.value)
    with pytest.raises(StoreError, match="not open"):
        await store.list()


async def test_postgresql_store_reconnects_after_losing_its_connection(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.add(make_alert(), [])
        pid = await store.read(lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
        admin = await connect_or_skip()
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(StoreError):  # the call that finds the connection gone fails ...
            await store.list()
        assert [a.id for a in await store.list()] == ["a00000000001"]  # ... the next reconnects
    finally:
        await store.close()


def test_open_store_picks_the_backend_from_the_config(tmp_path: Path) -> None:
    lite = open_store(Config.model_validate({"store": {"path": str(tmp_path / "x.db")}}))
    assert isinstance(lite, SQLiteStore) and lite.describe() == str(tmp_path / "x.db")
    url = "postgresql://bot:s3cret@db.example:5433/presencebot?sslmode=require&password=s3cret"
    pg = open_store(Config.model_validate({"store": {"url": url}}))
    assert isinstance(pg, PostgresStore) and pg.describe() == "postgresql://bot@db.example:5433/presencebot"
    with pytest.raises(ValueError, match="postgresql://"):
        Config.model_validate({"store": {"url": "mysql://bot:s3cret@db/x"}})


def test_translate_numbers_placeholders_outside_quotes_and_comments() -> None:
    sql = "SELECT '?%', \"a?\" FROM t WHERE x = ? AND y LIKE 'a''?%' -- why?\n AND z = ? /* ? */"
    assert translate(sql) == (
        "SELECT '?%', \"a?\" FROM t WHERE x = $1 AND y LIKE 'a''?%' -- why?\n AND z = $2 /* ? */"
    )


# --- known differences ---------------------------------------------------------------------------


async def test_documented_differences(backend: Backend, store: SQLStore) -> None:
    # PostgreSQL text cannot hold NUL: such an alert is refused (a StoreError, nothing stored).
    nul = make_alert("nul", explanation="a\x00b")
    if backend.name == "sqlite":
        assert (await store.get((await store.add(nul, [])).id)).explanation == "a\x00b"
    else:
        with pytest.raises(StoreError):
            await store.add(nul, [])
        assert await scalar(store, "SELECT count(*) FROM alerts") == 0


async def test_the_console_queue_puts_snoozed_alerts_last(store: SQLStore) -> None:
    # A snooze moves an alert down the queue until it expires; it never hides it.
    await store.add(make_alert("a00000000001", created_at=T0), [])
    await store.add(make_alert("a00000000002", created_at=T0 + timedelta(seconds=1)), [])
    await store.transaction(
        lambda c: c.execute(
            "UPDATE alerts SET snoozed_until = ? WHERE id = ?",
            ((T0 + timedelta(minutes=30)).isoformat(), "a00000000001"),
        )
    )
    user = await add_user(store, "alice", role=Role.SUPERVISOR)

    def order(now: datetime) -> Callable[[sqlite3.Connection], list[str]]:
        return lambda c: [str(row.id) for row in queries.queue(c, user, now=now)]

    assert await store.read(order(T0 + timedelta(minutes=5))) == ["a00000000002", "a00000000001"]
    assert await store.read(order(T0 + timedelta(hours=1))) == ["a00000000001", "a00000000002"]


async def test_a_message_carrying_nul_still_raises_a_stored_alert(
    backend: Backend, start_runtime: Callable[..., RuntimeHarness], scripted: type[ScriptedAdapter]
) -> None:
    # PostgreSQL refuses NUL in text (above); the runtime shows it as U+FFFD before any rule or
    # store sees the message, so such an alert is stored, identically, on both backends.
    h = start_runtime(make_config(room_defaults=EVERY), {"net": scripted}, [flag_everything], backend.new())
    adapter = await announced(scripted)
    author = Author("ma\x00rk")
    await adapter.inbox.put(Message(RoomRef("net", RoomId("#kids")), author, "where\x00 do u live"))
    await until(lambda: h.runtime.pipeline.stats["every_message"].calls == 1)
    (alert,) = await stored(h.store)
    assert alert.evidence[-1].text == "where\ufffd do u live"
    assert alert.evidence[-1].author.nick == "ma\ufffdrk"
    await h.stop()


async def test_a_fenced_write_stores_nothing_once_the_lease_moved(backend: Backend, store: SQLStore) -> None:
    # Fleet mode with the leases in the store's database: the lease row is checked and locked
    # inside the alert's own transaction. (SQLite has no lease table: the runtime checks first.)
    if backend.name == "sqlite":
        assert await store.read(has_lease_table) is False
        return
    assert await store.read(has_lease_table) is False
    await store.read(lambda c: c.execute(LEASES_SCHEMA))
    assert await store.read(has_lease_table) is True
    await store.transaction(
        lambda c: c.execute(
            "INSERT INTO fleet_units (unit, kind, owner, epoch, expires_at)"
            " VALUES ('net:libera', 'network', 'w1', 2, clock_timestamp() + interval '30 seconds')"
        )
    )
    held = Fence("net:libera", "w1", 2)
    first = await store.add(make_alert("a1"), [], fence=held)
    for stale in (Fence("net:libera", "w1", 1), Fence("net:libera", "w2", 2), Fence("net:other", "w1", 2)):
        with pytest.raises(Fenced):
            await store.add(make_alert("a2"), [], fence=stale)
        with pytest.raises(Fenced):
            await store.extend(
                first.id, [replace(first.evidence[0], event_id=EventId("new"))], [], fence=stale
            )
    assert [a.id for a in await store.list()] == [first.id]
    assert len((await store.get(first.id)).evidence) == len(first.evidence)
    # An expired lease fences too, even before anyone took the unit over.
    await store.transaction(
        lambda c: c.execute("UPDATE fleet_units SET expires_at = clock_timestamp() - interval '1 second'")
    )
    with pytest.raises(Fenced):
        await store.add(make_alert("a3"), [], fence=held)
    assert await scalar(store, "SELECT count(*) FROM alerts") == 1
