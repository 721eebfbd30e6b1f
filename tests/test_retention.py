"""Retention: only dismissed alerts past the period are purged; stubs keep their hashes; each
purge is audited; a purged alert still exports, as stubs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from presencebot import audit, evidence, retention
from presencebot.alerts import Alert
from presencebot.events import Author
from presencebot.ids import AccountId
from presencebot.store.sqlite import SQLiteStore
from tests.support import sample_alert

T0 = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)
NOW = T0 + timedelta(days=100)
PERIOD = timedelta(days=30)
LILY = Author("lily", AccountId("lily-acct"))
MARK = Author("mark")


def make_alert(n: int) -> Alert:
    return sample_alert(f"a{n:011d}", at=T0, target=LILY, requester=MARK)


# (disposition, disposed this long before NOW, should be purged)
CASES = {
    1: ("false_positive", timedelta(days=40), True),
    2: ("duplicate", timedelta(days=31), True),
    3: ("false_positive", PERIOD, True),  # exactly the period: due
    4: ("false_positive", timedelta(days=29), False),  # too recent
    5: ("duplicate", timedelta(days=10), False),
    6: ("intervened", timedelta(days=90), False),  # kept: not dismissed
    7: ("referred", timedelta(days=90), False),
    8: (None, None, False),  # never disposed of
}


def aid(n: int) -> str:
    return f"a{n:011d}"


def dispose(conn: sqlite3.Connection, alert_id: str, disposition: str, at: datetime) -> None:
    conn.execute(
        "UPDATE alerts SET disposition = ?, disposed_at = ? WHERE id = ?",
        (disposition, at.isoformat(), alert_id),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "alerts.db")
    await s.open()
    for n, (disposition, ago, _) in CASES.items():
        await s.add(make_alert(n), [])
        if disposition is not None and ago is not None:
            # Stored with a non-UTC offset for one of them: the comparison must be by instant.
            at = (NOW - ago).astimezone(timezone(timedelta(hours=2)) if n == 2 else UTC)
            await s.transaction(lambda c, n=n, d=disposition, t=at: dispose(c, aid(n), d, t))
    yield s
    await s.close()


async def purge(store: SQLiteStore) -> list[str]:
    return await store.transaction(
        lambda c: retention.purge(c, NOW, dismissed_after=PERIOD, actor="retention")
    )


def evidence_rows(conn: sqlite3.Connection, alert_id: str) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT event_id, native_id, author_nick, author_account, at, text, flagged, sha256"
        " FROM evidence WHERE alert_id = ? ORDER BY seq",
        (alert_id,),
    ).fetchall()


async def test_only_dismissed_alerts_older_than_the_period_are_due(store: SQLiteStore) -> None:
    expected = [aid(n) for n, (_, _, purge_it) in CASES.items() if purge_it]
    due = await store.read(lambda c: retention.due(c, NOW, dismissed_after=PERIOD))
    assert due == [aid(1), aid(2), aid(3)]  # oldest disposal first
    assert sorted(await purge(store)) == sorted(expected)
    purged = await store.read(
        lambda c: [r[0] for r in c.execute("SELECT id FROM alerts WHERE purged_at IS NOT NULL ORDER BY id")]
    )
    assert purged == sorted(expected)


async def test_stubs_keep_ids_times_and_hashes_and_lose_the_personal_content(store: SQLiteStore) -> None:
    before = await store.read(lambda c: evidence_rows(c, aid(1)))
    await purge(store)
    after = await store.read(lambda c: evidence_rows(c, aid(1)))
    originals = make_alert(1).evidence
    for old, new, item in zip(before, after, originals, strict=True):
        event_id, native_id, nick, account, at, text, flagged, sha = new
        assert (event_id, native_id, at, flagged, sha) == (old[0], old[1], old[4], old[6], old[7])
        assert (nick, account, text) == ("", None, "")
        assert sha == item.sha256  # a copy of the original from elsewhere still matches
    # Alerts that are kept are untouched.
    assert (await store.read(lambda c: evidence_rows(c, aid(4))))[0][5] == "im 12"
    assert (await store.read(lambda c: evidence_rows(c, aid(6))))[1][5] == "where do u live"


async def test_each_purge_is_audited_and_the_chain_stays_intact(store: SQLiteStore) -> None:
    await purge(store)
    entries = await store.read(audit.entries)
    assert [(e.actor, e.action, e.object, e.outcome) for e in entries] == [
        ("retention", "purge", aid(n), "ok") for n in (1, 2, 3)
    ]
    assert entries[0].at == NOW
    assert entries[0].detail.startswith(
        "2 evidence messages blanked (hashes kept); dismissed as false_positive"
    )
    assert await store.read(audit.verify) == []


async def test_purge_is_idempotent(store: SQLiteStore) -> None:
    first = await purge(store)
    assert len(first) == 3
    assert await purge(store) == []
    assert len(await store.read(audit.entries)) == 3  # no second round of audit entries


async def test_a_purged_alert_exports_as_verifiable_stubs(store: SQLiteStore) -> None:
    await purge(store)
    data = await store.transaction(lambda c: evidence.export(c, aid(1), exporter="sgt1", at=NOW))
    assert evidence.verify_bundle(data) == []
    bundle = json.loads(data)
    assert bundle["manifest"]["purged"] is True
    assert bundle["alert"]["purged_at"] == NOW.isoformat()
    assert [e["purged"] for e in bundle["evidence"]] == [True, True]
    assert all(e["text"] == "" and e["author_nick"] == "" for e in bundle["evidence"])
    assert [e["sha256"] for e in bundle["evidence"]] == [e.sha256 for e in make_alert(1).evidence]
    assert b"where do u live" not in data and b"mark" not in json.dumps(bundle["evidence"]).encode()
    assert [e["action"] for e in bundle["custody"]["audit"]] == ["purge"]
    # A stub's hash is still covered: changing it, or passing a stub off as unpurged, is reported.
    bundle["evidence"][0]["sha256"] = "0" * 64
    assert "bundle hash mismatch (the file was changed after export)" in evidence.verify_bundle(
        json.dumps(bundle).encode()
    )
    bundle["evidence"][0]["purged"] = False
    problems = evidence.verify_bundle(json.dumps(bundle).encode())
    assert any("the alert was purged but this message was not" in p for p in problems)


async def test_blanked_evidence_without_an_audited_purge_refuses_to_export(store: SQLiteStore) -> None:
    await store.transaction(
        lambda c: c.execute("UPDATE evidence SET text = '', author_nick = '' WHERE alert_id = ?", (aid(1),))
    )
    with pytest.raises(evidence.EvidenceTampered, match="does not match the hash stored at capture"):
        await store.transaction(lambda c: evidence.export(c, aid(1), exporter="sgt1"))


async def test_messages_captured_before_hashes_are_hashed_before_blanking(store: SQLiteStore) -> None:
    await store.transaction(
        lambda c: c.execute("UPDATE evidence SET sha256 = NULL WHERE alert_id = ?", (aid(1),))
    )
    await purge(store)
    rows = await store.read(lambda c: evidence_rows(c, aid(1)))
    assert [r[7] for r in rows] == [e.sha256 for e in make_alert(1).evidence]
    (entry,) = await store.read(lambda c: audit.entries(c, object=aid(1)))
    assert "2 hashes first computed now" in entry.detail


async def test_a_negative_period_is_refused(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="negative"):
        await store.read(lambda c: retention.due(c, NOW, dismissed_after=timedelta(days=-1)))
