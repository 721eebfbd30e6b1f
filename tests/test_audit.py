"""The hash-chained audit log: intact chains verify; edits, deletions, reordering are caught."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from presencebot import audit
from presencebot.store.sqlite import SQLiteStore

T0 = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)
COLUMNS = ("at", "actor", "action", "object", "outcome", "detail", "prev_hash", "hash")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "alerts.db")
    await s.open()
    yield s
    await s.close()


async def fill(store: SQLiteStore, n: int = 5) -> list[audit.AuditEntry]:
    def write(conn: sqlite3.Connection) -> list[audit.AuditEntry]:
        return [
            audit.record(
                conn,
                actor=None if i == 0 else f"officer{i}",
                action=("login", "view_alert", "claim", "note", "export")[i % 5],
                object=None if i == 0 else "a00000000001",
                outcome="denied" if i == 3 else "ok",
                detail="" if i % 2 else f"détail {i} ✓",
                at=T0 + timedelta(seconds=i),
            )
            for i in range(n)
        ]

    return await store.transaction(write)


async def sql(store: SQLiteStore, statement: str, params: tuple[object, ...] = ()) -> None:
    """Raw tampering, as someone with write access to the file would do it."""
    await store.transaction(lambda conn: conn.execute(statement, params))


async def verify(store: SQLiteStore) -> list[str]:
    return await store.read(audit.verify)


async def test_an_untouched_chain_verifies(store: SQLiteStore) -> None:
    assert await verify(store) == []  # empty log
    written = await fill(store)
    assert await verify(store) == []
    assert [e.seq for e in written] == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(written))
    assert await store.read(audit.head) == written[-1].hash
    assert await store.read(audit.entries) == written
    assert audit.verify_entries(written) == []


async def test_hand_recomputation_matches_the_documented_encoding(store: SQLiteStore) -> None:
    await fill(store)
    row = await store.read(
        lambda conn: conn.execute(
            "SELECT seq, at, actor, action, object, outcome, detail, prev_hash, hash FROM audit_log WHERE seq = 3"
        ).fetchone()
    )
    seq, at, actor, action, obj, outcome, detail, prev_hash, stored = row
    # Written out by hand: keys sorted, no spaces, non-ASCII as itself, UTF-8.
    text = (
        f'{{"action":"{action}","actor":"{actor}","at":"{at}","detail":"{detail}","object":"{obj}",'
        f'"outcome":"{outcome}","prev_hash":"{prev_hash}","seq":{seq}}}'
    )
    assert "détail 2 ✓" in text
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == stored
    # And the first entry, with nulls and the genesis link.
    first = (await store.read(audit.entries))[0]
    fields = {k: v for k, v in first.to_json().items() if k != "hash"}
    assert fields["actor"] is None and fields["prev_hash"] == "0" * 64
    encoded = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    assert encoded.startswith(b'{"action":"login","actor":null,')
    assert hashlib.sha256(encoded).hexdigest() == first.hash


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("seq", [1, 3, 5])
async def test_editing_any_column_of_any_entry_is_detected(store: SQLiteStore, column: str, seq: int) -> None:
    await fill(store)
    value: object = {"at": (T0 + timedelta(hours=1)).isoformat(), "actor": "someone else"}.get(column, "x")
    if column in ("prev_hash", "hash"):
        value = "f" * 64
    await sql(store, f"UPDATE audit_log SET {column} = ? WHERE seq = ?", (value, seq))
    problems = await verify(store)
    assert problems
    assert any(p.startswith(f"entry {seq}:") for p in problems), problems


async def test_setting_a_nullable_column_to_null_is_detected(store: SQLiteStore) -> None:
    await fill(store)
    await sql(store, "UPDATE audit_log SET actor = NULL WHERE seq = 2")
    assert await verify(store) == ["entry 2: hash mismatch (the entry was edited)"]


@pytest.mark.parametrize("seq", [1, 3, 5])
async def test_deleting_an_entry_is_detected(store: SQLiteStore, seq: int) -> None:
    written = await fill(store)
    await sql(store, "DELETE FROM audit_log WHERE seq = ?", (seq,))
    problems = await verify(store)
    if seq == 5:
        # The tail: the chain left behind is consistent; only an anchor taken earlier shows it.
        assert problems == []
        assert await store.read(lambda c: audit.verify(c, anchors=[written[-1].hash]))
    else:
        assert any("missing" in p for p in problems), problems


async def test_swapping_two_entries_is_detected(store: SQLiteStore) -> None:
    await fill(store)

    def swap(conn: sqlite3.Connection) -> None:
        # Move entry 2's content to seq 3 and entry 3's to seq 2, hashes and all.
        conn.execute("UPDATE audit_log SET seq = -2 WHERE seq = 2")
        conn.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
        conn.execute("UPDATE audit_log SET seq = 3 WHERE seq = -2")

    await store.transaction(swap)
    problems = await verify(store)
    assert "entry 2: hash mismatch (the entry was edited)" in problems
    assert "entry 3: hash mismatch (the entry was edited)" in problems
    assert any("prev_hash does not match" in p for p in problems)


def test_reordered_entries_are_detected_in_a_list() -> None:
    first = audit.AuditEntry(1, T0, "a", "login", None, "ok", "", audit.GENESIS, "")
    first = replace(first, hash=first.computed_hash())
    second = audit.AuditEntry(2, T0, "a", "logout", None, "ok", "", first.hash, "")
    second = replace(second, hash=second.computed_hash())
    assert audit.verify_entries([first, second]) == []
    assert audit.verify_entries([second, first]) == [
        "entries before 2 are missing (the log starts at 2: deleted)",
        "entry 1 comes after entry 2: entries reordered",
    ]
    assert audit.verify_entries([second, first], complete=False) == [
        "entry 1 comes after entry 2: entries reordered"
    ]


async def test_appending_after_a_deletion_is_still_detected(store: SQLiteStore) -> None:
    await fill(store)
    await sql(store, "DELETE FROM audit_log WHERE seq = 3")
    await fill(store, 2)  # the console carries on writing
    problems = await verify(store)
    assert "entry 3 is missing (deleted)" in problems
    assert any(p.startswith("entry 4: prev_hash does not match the hash of entry 2") for p in problems)
    assert len(await store.read(lambda c: audit.entries(c, limit=None))) == 6


async def test_truncating_the_tail_and_appending_is_caught_by_an_anchor(store: SQLiteStore) -> None:
    await fill(store)
    anchor = await store.read(audit.head)  # printed somewhere the database's writers cannot reach
    await sql(store, "DELETE FROM audit_log WHERE seq >= 4")
    await fill(store, 3)
    assert await verify(store) == []  # a consistent chain on its own: the documented limitation
    problems = await store.read(lambda c: audit.verify(c, anchors=[anchor]))
    assert problems == [
        f"anchor {anchor} is not in the log: it was truncated or rewritten after the anchor was taken"
    ]


async def test_deleting_the_first_entries_is_detected(store: SQLiteStore) -> None:
    await fill(store)
    await sql(store, "DELETE FROM audit_log WHERE seq <= 2")
    assert await verify(store) == ["entries before 3 are missing (the log starts at 3: deleted)"]


async def test_entries_filters_by_object_and_limits_to_the_newest(store: SQLiteStore) -> None:
    await fill(store)
    about = await store.read(lambda c: audit.entries(c, object="a00000000001"))
    assert [e.seq for e in about] == [2, 3, 4, 5]
    assert audit.verify_entries(about, complete=False) == []
    newest = await store.read(lambda c: audit.entries(c, limit=2))
    assert [e.seq for e in newest] == [4, 5]
    assert audit.AuditEntry.from_json(newest[0].to_json()) == newest[0]


async def test_record_refuses_unknown_values_and_needs_a_transaction(store: SQLiteStore) -> None:
    def bad(**changes: object) -> None:
        args: dict[str, object] = {"actor": "x", "action": "login", "object": None, "outcome": "ok"}
        args.update(changes)
        store.conn.execute("BEGIN IMMEDIATE")
        try:
            audit.record(store.conn, **args)  # type: ignore[arg-type]
        finally:
            store.conn.execute("ROLLBACK")

    with pytest.raises(ValueError, match="action"):
        await store.read(lambda _: bad(action="delete_everything"))
    with pytest.raises(ValueError, match="outcome"):
        await store.read(lambda _: bad(outcome="meh"))
    with pytest.raises(ValueError, match="timezone"):
        await store.read(lambda _: bad(at=datetime(2024, 1, 1)))
    with pytest.raises(RuntimeError, match="transaction"):
        await store.read(lambda c: audit.record(c, actor="x", action="login", object=None, outcome="ok"))
    assert await store.read(audit.entries) == []


async def test_a_long_detail_is_cut_before_hashing(store: SQLiteStore) -> None:
    entry = await store.transaction(
        lambda c: audit.record(c, actor="x", action="search", object=None, outcome="ok", detail="q" * 5000)
    )
    assert len(entry.detail) == audit.MAX_DETAIL
    assert await verify(store) == []
