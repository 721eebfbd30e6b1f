"""The SQLite alert store: what it stores, atomicity, acknowledgement, migrations, durability."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from presencebot.alerts import Alert, AlertState, EvidenceItem, from_flag
from presencebot.config import EvidenceConfig
from presencebot.errors import AlertNotFound, StoreError
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, AlertId, EventId, RoomId
from presencebot.rule import Flag, Severity
from presencebot.store.migrations import MIGRATIONS
from presencebot.store.sqlite import SQLiteStore, migrate

T0 = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
LILY = Author("lily", AccountId("lily-acct"))
MARK = Author("mark")  # no account
NOTIFY = [("police", "email"), ("duty", "sms")]  # deliberately not in alphabetical order
TABLES_V1 = {"alerts", "evidence", "outbox"}
TABLES = {
    *TABLES_V1,
    "room_states",
    "alert_trace",
    "disabled_targets",
    "users",
    "sessions",
    "audit_log",
    "alert_actions",
}


def make_alert(
    alert_id: str = "a00000000001",
    *,
    created_at: datetime = T0,
    text: str = "where do u live",
    **changes: object,
) -> Alert:
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
            EvidenceItem(EventId("e1"), "native-1", LILY, T0 - timedelta(minutes=2), "im 12", False),
            # A non-UTC offset and microseconds must survive the round trip.
            EvidenceItem(
                EventId("e2"), None, MARK, datetime(2024, 5, 1, 15, 59, 1, 5, tzinfo=PLUS2), "hi", False
            ),
            EvidenceItem(EventId("e3"), "native-3", MARK, T0, text, True),
        ),
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, independent of the store."""
    with closing(sqlite3.connect(path, timeout=0)) as conn:
        yield conn


def count(path: Path, table: str) -> int:
    with raw(path) as conn:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


def user_version(path: Path) -> int:
    with raw(path) as conn:
        (v,) = conn.execute("PRAGMA user_version").fetchone()
    return int(v)


def tables(path: Path) -> set[str]:
    with raw(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "alerts.db"  # the store creates missing parent directories


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db)
    await s.open()
    yield s
    await s.close()


# --- add / get / list --------------------------------------------------------------------------


async def test_add_then_get_round_trips_everything(store: SQLiteStore) -> None:
    alert = make_alert()
    stored = await store.add(alert, NOTIFY)
    assert [(n.target, n.sink, n.state, n.attempts) for n in stored.notifications] == [
        ("police", "email", "pending", 0),
        ("duty", "sms", "pending", 0),
    ]
    assert len({n.id for n in stored.notifications}) == 2
    assert replace(stored, notifications=()) == alert

    got = await store.get(alert.id)
    assert got.to_json() == stored.to_json()
    assert got == stored
    # Evidence: order, flagged marker, authors with and without an account, aware datetimes.
    assert [e.event_id for e in got.evidence] == ["e1", "e2", "e3"]
    assert [e.flagged for e in got.evidence] == [False, False, True]
    assert [e.native_id for e in got.evidence] == ["native-1", None, "native-3"]
    assert got.evidence[0].author == Author("lily", AccountId("lily-acct"))
    assert got.evidence[1].author == Author("mark", None)
    assert got.evidence[1].at.utcoffset() == timedelta(hours=2)
    assert got.evidence[1].at.microsecond == 5
    assert got.created_at == T0
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.requester == MARK
    assert got.severity is Severity.CRITICAL
    assert got.state is AlertState.OPEN


async def test_add_writes_one_outbox_row_per_notification(store: SQLiteStore, db: Path) -> None:
    stored = await store.add(make_alert(), NOTIFY)
    with raw(db) as conn:
        rows = conn.execute(
            "SELECT id, alert_id, target, sink, state, attempts, next_attempt_at FROM outbox ORDER BY rowid"
        ).fetchall()
        evidence = conn.execute("SELECT seq, event_id, flagged FROM evidence ORDER BY seq").fetchall()
    assert [r[1:6] for r in rows] == [
        ("a00000000001", "police", "email", "pending", 0),
        ("a00000000001", "duty", "sms", "pending", 0),
    ]
    assert [r[0] for r in rows] == [n.id for n in stored.notifications]
    assert all(datetime.fromisoformat(r[6]).tzinfo is not None for r in rows)
    assert evidence == [(0, "e1", 0), (1, "e2", 0), (2, "e3", 1)]


async def test_add_with_no_notifications_and_no_requester(store: SQLiteStore, db: Path) -> None:
    alert = make_alert(requester=None)
    stored = await store.add(alert, [])
    assert stored.notifications == ()
    got = await store.get(alert.id)
    assert got.requester is None
    assert got.to_json() == alert.to_json()
    assert count(db, "outbox") == 0


async def test_get_keeps_the_configured_notification_order(store: SQLiteStore) -> None:
    stored = await store.add(make_alert(), NOTIFY)
    assert [n.target for n in (await store.get(stored.id)).notifications] == ["police", "duty"]
    assert [n.target for n in (await store.list())[0].notifications] == ["police", "duty"]


async def test_list_newest_first_filter_and_limit(store: SQLiteStore) -> None:
    # Inserted out of time order: the order must come from created_at, not insertion.
    for alert_id, minutes in [("b", 1), ("c", 2), ("a", 0), ("d", 3)]:
        await store.add(make_alert(alert_id, created_at=T0 + timedelta(minutes=minutes)), NOTIFY)
    assert [a.id for a in await store.list()] == ["d", "c", "b", "a"]
    assert [a.id for a in await store.list(limit=2)] == ["d", "c"]
    assert await store.list(limit=0) == []

    await store.acknowledge(AlertId("c"), "pc-smith")
    await store.acknowledge(AlertId("a"), "pc-smith")
    assert [a.id for a in await store.list(state=AlertState.OPEN)] == ["d", "b"]
    acked = await store.list(state=AlertState.ACKNOWLEDGED)
    assert [a.id for a in acked] == ["c", "a"]
    assert all(a.state is AlertState.ACKNOWLEDGED for a in acked)
    assert [a.id for a in await store.list(state=AlertState.ACKNOWLEDGED, limit=1)] == ["c"]
    # list hydrates fully, like get.
    assert [a.to_json() for a in await store.list()] == [
        (await store.get(AlertId(i))).to_json() for i in ["d", "c", "b", "a"]
    ]


async def test_list_same_time_newest_insert_first(store: SQLiteStore) -> None:
    for alert_id in ["x1", "x2", "x3"]:
        await store.add(make_alert(alert_id), [])
    assert [a.id for a in await store.list()] == ["x3", "x2", "x1"]


async def test_list_empty_store(store: SQLiteStore) -> None:
    assert await store.list() == []
    assert await store.list(state=AlertState.OPEN) == []


# --- atomicity ---------------------------------------------------------------------------------


async def test_failed_outbox_insert_rolls_back_everything(store: SQLiteStore, db: Path) -> None:
    alert = make_alert()
    # The same target twice violates UNIQUE(alert_id, target) after alert and evidence went in.
    with pytest.raises(StoreError, match=alert.id):
        await store.add(alert, [("duty", "email"), ("duty", "sms")])
    with pytest.raises(AlertNotFound):
        await store.get(alert.id)
    assert await store.list() == []
    for table in TABLES:
        assert count(db, table) == 0, table
    # No transaction was left open: the store and other writers carry on.
    with raw(db) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    stored = await store.add(alert, NOTIFY)
    assert (await store.get(alert.id)).to_json() == stored.to_json()
    assert count(db, "evidence") == 3


async def test_duplicate_alert_id_is_refused_and_first_kept(store: SQLiteStore, db: Path) -> None:
    first = await store.add(make_alert(), NOTIFY)
    with pytest.raises(StoreError):
        await store.add(make_alert(explanation="impostor", text="other text"), [("extra", "sms")])
    got = await store.get(first.id)
    assert got.to_json() == first.to_json()
    assert count(db, "alerts") == 1
    assert count(db, "evidence") == 3
    assert count(db, "outbox") == 2


async def test_unencodable_text_is_a_store_error_and_store_stays_usable(store: SQLiteStore, db: Path) -> None:
    # A lone surrogate (a lenient decoder's output) cannot be encoded for SQLite.
    with pytest.raises(StoreError):
        await store.add(make_alert("bad", text="bad \ud800 text"), NOTIFY)
    assert count(db, "alerts") == 0
    assert count(db, "evidence") == 0
    stored = await store.add(make_alert("good"), NOTIFY)
    assert (await store.get(stored.id)).to_json() == stored.to_json()


# --- acknowledge -------------------------------------------------------------------------------


async def test_acknowledge_sets_state_by_and_at(store: SQLiteStore) -> None:
    await store.add(make_alert(), NOTIFY)
    before = datetime.now(UTC)
    acked = await store.acknowledge(AlertId("a00000000001"), "pc-smith")
    after = datetime.now(UTC)
    assert acked.state is AlertState.ACKNOWLEDGED
    assert acked.acknowledged_by == "pc-smith"
    assert acked.acknowledged_at is not None
    assert before <= acked.acknowledged_at <= after
    assert (await store.get(acked.id)).to_json() == acked.to_json()
    # Nothing else changed.
    assert len(acked.evidence) == 3
    assert [n.target for n in acked.notifications] == ["police", "duty"]


async def test_acknowledge_twice_keeps_the_first(store: SQLiteStore) -> None:
    await store.add(make_alert(), NOTIFY)
    first = await store.acknowledge(AlertId("a00000000001"), "pc-smith")
    await asyncio.sleep(0.01)
    second = await store.acknowledge(AlertId("a00000000001"), "pc-jones")
    assert second.acknowledged_by == "pc-smith"
    assert second.acknowledged_at == first.acknowledged_at
    assert second.to_json() == first.to_json()
    assert (await store.get(first.id)).acknowledged_by == "pc-smith"


async def test_acknowledge_only_touches_that_alert(store: SQLiteStore) -> None:
    await store.add(make_alert("one"), [])
    await store.add(make_alert("two"), [])
    await store.acknowledge(AlertId("one"), "pc-smith")
    other = await store.get(AlertId("two"))
    assert other.state is AlertState.OPEN
    assert other.acknowledged_by is None
    assert other.acknowledged_at is None


async def test_unknown_id_is_alert_not_found(store: SQLiteStore) -> None:
    await store.add(make_alert(), [])
    with pytest.raises(AlertNotFound, match="nope"):
        await store.get(AlertId("nope"))
    with pytest.raises(AlertNotFound, match="nope"):
        await store.acknowledge(AlertId("nope"), "pc-smith")
    assert issubclass(AlertNotFound, StoreError)
    # The failed acknowledge left no transaction open.
    await store.acknowledge(AlertId("a00000000001"), "pc-smith")


# --- migrations --------------------------------------------------------------------------------


async def test_new_file_is_fully_migrated(store: SQLiteStore, db: Path) -> None:
    assert db.exists()
    assert user_version(db) == len(MIGRATIONS)
    assert tables(db) >= TABLES
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


async def test_reopening_is_idempotent_and_keeps_data(db: Path) -> None:
    s = SQLiteStore(db)
    await s.open()
    stored = await s.add(make_alert(), NOTIFY)
    await s.close()
    for _ in range(2):
        s = SQLiteStore(db)
        await s.open()
        await s.open()  # a second open() on an open store is a no-op
        assert (await s.get(stored.id)).to_json() == stored.to_json()
        await s.close()
        assert user_version(db) == len(MIGRATIONS)
    assert count(db, "alerts") == 1


async def test_newer_schema_is_refused_and_file_untouched(db: Path) -> None:
    db.parent.mkdir()
    with raw(db) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        conn.commit()
    before = db.read_bytes()
    s = SQLiteStore(db)
    with pytest.raises(StoreError, match="upgrade presencebot"):
        await s.open()
    assert db.read_bytes() == before
    assert not Path(f"{db}-wal").exists()
    assert user_version(db) == len(MIGRATIONS) + 1
    assert tables(db) == {"future"}
    # The failed open left the store closed, not half-open.
    with pytest.raises(StoreError, match="not open"):
        await s.list()
    await s.close()


def test_migrate_raw_connection_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "raw.db"
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert migrate(conn) == len(MIGRATIONS)
        assert migrate(conn) == len(MIGRATIONS)  # already current: nothing to do
        assert not conn.in_transaction
    assert user_version(path) == len(MIGRATIONS)
    assert tables(path) >= TABLES


def test_migrate_refuses_newer_schema(tmp_path: Path) -> None:
    with raw(tmp_path / "raw.db") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
        with pytest.raises(StoreError, match="upgrade"):
            migrate(conn)


async def test_failing_migration_step_leaves_previous_version(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SQLiteStore(db)
    await s.open()
    stored = await s.add(make_alert(), NOTIFY)
    await s.close()
    current = len(MIGRATIONS)
    assert user_version(db) == current

    bad = (
        "CREATE TABLE half_done (x);\nALTER TABLE alerts ADD COLUMN extra TEXT;\nSELECT * FROM no_such_table;"
    )
    monkeypatch.setattr("presencebot.store.sqlite.MIGRATIONS", (*MIGRATIONS, bad))
    s = SQLiteStore(db)
    with pytest.raises(StoreError, match="no_such_table"):
        await s.open()
    assert user_version(db) == current
    assert tables(db) == TABLES  # the earlier steps' tables remain, the bad step's table is gone
    with raw(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(alerts)")]
        assert "extra" not in columns
        # The half-applied step was rolled back and the file released at once (timeout=0).
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    # Once the bad step is gone, the same store object can be opened and nothing was lost.
    monkeypatch.undo()
    await s.open()
    try:
        assert (await s.get(stored.id)).to_json() == stored.to_json()
    finally:
        await s.close()


async def test_unreadable_file_is_a_store_error(db: Path) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not a database, just some bytes" * 100)
    s = SQLiteStore(db)
    with pytest.raises(StoreError, match="cannot open"):
        await s.open()
    await s.close()


# --- durability and closing --------------------------------------------------------------------


async def test_added_alert_is_visible_to_other_connections_before_close(store: SQLiteStore, db: Path) -> None:
    await store.add(make_alert(), NOTIFY)
    assert count(db, "alerts") == 1
    assert count(db, "evidence") == 3
    assert count(db, "outbox") == 2


async def test_close_flushes_everything_into_the_database_file(db: Path, tmp_path: Path) -> None:
    s = SQLiteStore(db)
    await s.open()
    for i in range(5):
        await s.add(make_alert(f"id{i}", created_at=T0 + timedelta(seconds=i)), NOTIFY)
    await s.acknowledge(AlertId("id3"), "pc-smith")
    await s.close()
    # Only the main file, without any -wal/-shm beside it: close() checkpointed.
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    assert count(copy, "alerts") == 5
    assert count(copy, "evidence") == 15
    assert count(copy, "outbox") == 10
    with raw(copy) as conn:
        assert conn.execute("SELECT acknowledged_by FROM alerts WHERE id = 'id3'").fetchone() == ("pc-smith",)
    assert count(db, "alerts") == 5


async def test_close_finishes_writes_already_accepted(db: Path) -> None:
    s = SQLiteStore(db)
    await s.open()
    tasks = [asyncio.create_task(s.add(make_alert(f"id{i}"), NOTIFY)) for i in range(20)]
    await asyncio.sleep(0)  # every add has handed its write to the store's thread
    await s.close()
    stored = await asyncio.gather(*tasks)
    assert len(stored) == 20
    assert count(db, "alerts") == 20
    assert count(db, "outbox") == 40


async def test_close_twice_and_closed_store_refuses_calls(db: Path) -> None:
    s = SQLiteStore(db)
    await s.close()  # never opened: harmless
    await s.open()
    await s.add(make_alert(), [])
    await s.close()
    await s.close()
    with pytest.raises(StoreError):
        await s.add(make_alert("other"), [])
    with pytest.raises(StoreError):
        await s.get(AlertId("a00000000001"))
    with pytest.raises(StoreError):
        await s.list()
    with pytest.raises(StoreError):
        await s.acknowledge(AlertId("a00000000001"), "pc-smith")
    with pytest.raises(StoreError):
        _ = s.conn
    assert count(db, "alerts") == 1


async def test_never_opened_store_refuses_calls(db: Path) -> None:
    s = SQLiteStore(db)
    with pytest.raises(StoreError, match="not open"):
        await s.get(AlertId("x"))
    assert not db.exists()


# --- concurrency -------------------------------------------------------------------------------


async def test_concurrent_adds_all_land(store: SQLiteStore, db: Path) -> None:
    alerts = [make_alert(f"c{i:03}", created_at=T0 + timedelta(seconds=i)) for i in range(50)]
    stored = await asyncio.gather(*(store.add(a, NOTIFY) for a in alerts))
    assert [s.id for s in stored] == [a.id for a in alerts]
    assert count(db, "alerts") == 50
    assert count(db, "evidence") == 150
    assert count(db, "outbox") == 100
    listed = await store.list(limit=1000)
    assert [a.id for a in listed] == [a.id for a in reversed(alerts)]
    got = await asyncio.gather(*(store.get(a.id) for a in alerts))
    assert [g.to_json() for g in got] == [s.to_json() for s in stored]


# --- only what is given is stored --------------------------------------------------------------


def _on_disk(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


async def test_only_the_alerts_evidence_reaches_disk(db: Path) -> None:
    room = RoomRef("libera", RoomId("#kids"))
    ordinary = Message(room, MARK, "ORDINARY-CHAT-91bc nice weather", at=T0, id=EventId("o1"))
    disclosure = Message(room, LILY, "AGE-DISCLOSURE-2d4e im 12", at=T0, id=EventId("d1"))
    between = Message(room, MARK, "ORDINARY-CHAT-55aa lol", at=T0 + timedelta(seconds=5), id=EventId("o2"))
    flagged = Message(room, MARK, "FLAGGED-TEXT-7f3a where do u live", at=T0 + timedelta(seconds=9))
    after = Message(room, LILY, "ORDINARY-CHAT-0c0c later", at=T0 + timedelta(seconds=9))
    recent = [ordinary, disclosure, between, flagged, after]
    flag = Flag(
        category="grooming",
        target=LILY,
        explanation="asked",
        evidence=(disclosure.id,),
        requester=MARK,
        rule_id="minor_whereabouts",
        rule_version="1",
    )
    alert = from_flag(flag, flagged, recent, EvidenceConfig(context_messages=0, context_seconds=600))

    s = SQLiteStore(db)
    await s.open()
    await s.add(alert, NOTIFY)
    data = _on_disk(db)
    assert b"FLAGGED-TEXT-7f3a" in data
    assert b"AGE-DISCLOSURE-2d4e" in data
    assert b"ORDINARY-CHAT" not in data
    await s.close()
    data = _on_disk(db)
    assert b"FLAGGED-TEXT-7f3a" in data
    assert b"AGE-DISCLOSURE-2d4e" in data
    assert b"ORDINARY-CHAT" not in data


async def test_rolled_back_alert_text_is_not_readable(store: SQLiteStore, db: Path) -> None:
    with pytest.raises(StoreError):
        await store.add(make_alert(text="ROLLED-BACK-TEXT-1b2c"), [("duty", "a"), ("duty", "b")])
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM evidence WHERE text LIKE '%ROLLED-BACK%'").fetchone() == (
            0,
        )


# --- SQL injection -----------------------------------------------------------------------------

EVIL = "x'); DROP TABLE alerts; -- \"quoted\" 'single' ;"


async def test_hostile_strings_round_trip_exactly(store: SQLiteStore, db: Path) -> None:
    evil_author = Author(f"nick{EVIL}", AccountId(f"acct{EVIL}"))
    alert = make_alert(
        f"id{EVIL}",
        room=RoomRef(f"net{EVIL}", RoomId(f"#room{EVIL}")),
        rule_id=f"rule{EVIL}",
        rule_version=EVIL,
        category=EVIL,
        target=evil_author,
        requester=evil_author,
        explanation=EVIL,
        evidence=(EvidenceItem(EventId(f"ev{EVIL}"), f"native{EVIL}", evil_author, T0, f"text{EVIL}", True),),
    )
    stored = await store.add(alert, [(f"target{EVIL}", f"sink{EVIL}")])
    assert tables(db) >= TABLES
    got = await store.get(alert.id)
    assert got.to_json() == stored.to_json()
    assert got.evidence[0].text == f"text{EVIL}"
    assert got.target.nick == f"nick{EVIL}"
    assert got.room.id == f"#room{EVIL}"
    assert got.notifications[0].target == f"target{EVIL}"

    acked = await store.acknowledge(alert.id, f"officer{EVIL}")
    assert acked.acknowledged_by == f"officer{EVIL}"
    with pytest.raises(AlertNotFound):
        await store.get(AlertId(EVIL))
    with pytest.raises(AlertNotFound):
        await store.acknowledge(AlertId(EVIL), EVIL)
    assert tables(db) >= TABLES
    assert [a.id for a in await store.list()] == [alert.id]


async def test_room_states_are_kept_updated_and_cleared(db: Path) -> None:
    s = SQLiteStore(db)
    await s.open()
    try:
        await s.set_room_state("libera", "#kids", "kicked", "by op: bye")
        await s.set_room_state("libera", "#kids", "dismissed", "!police leave")
        await s.set_room_state("libera", "#other", "invited", "by alice")
        rows = {(r.network, r.room): r for r in await s.room_states()}
        assert rows[("libera", "#kids")].state == "dismissed"
        assert rows[("libera", "#kids")].reason == "!police leave"
        assert rows[("libera", "#other")].state == "invited"
        await s.clear_room_state("libera", "#kids")
        assert [(r.network, r.room) for r in await s.room_states()] == [("libera", "#other")]
    finally:
        await s.close()
    # A fresh open of the same file still knows.
    s = SQLiteStore(db)
    await s.open()
    try:
        assert [r.state for r in await s.room_states()] == ["invited"]
    finally:
        await s.close()
