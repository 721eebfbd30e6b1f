"""Evidence export: a bundle round-trips, every change that matters is reported, a tampered
store refuses to export, and the export itself is in the audit log."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from presencebot import audit, evidence
from presencebot.alerts import Alert, EvidenceItem
from presencebot.errors import AlertNotFound
from presencebot.events import Author, RoomRef
from presencebot.ids import AccountId, AlertId, EventId, RoomId
from presencebot.rule import Severity
from presencebot.store.sqlite import SQLiteStore

T0 = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)
LILY = Author("lily", AccountId("lily-acct"))
MARK = Author("mark")
AID = "a00000000001"


def make_alert(alert_id: str = AID) -> Alert:
    return Alert(
        id=AlertId(alert_id),
        created_at=T0,
        room=RoomRef("libera", RoomId("#kids")),
        rule_id="minor_whereabouts",
        rule_version="2",
        category="grooming",
        severity=Severity.CRITICAL,
        target=LILY,
        requester=MARK,
        explanation="asked a child where she lives",
        evidence=(
            EvidenceItem(EventId("e1"), "native-1", LILY, T0 - timedelta(minutes=2), "im 12 ✓", False),
            EvidenceItem(EventId("e2"), None, MARK, T0 - timedelta(minutes=1), "cool", False),
            EvidenceItem(EventId("e3"), "native-3", MARK, T0, "where do u live", True),
        ),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "alerts.db")
    await s.open()
    await s.add(make_alert(), [("police", "email")], trace=["routed to police"])
    await s.add(make_alert("a00000000002"), [])

    def console(conn: sqlite3.Connection) -> None:
        audit.record(conn, actor="pc1", action="login", object=None, outcome="ok", at=T0)
        audit.record(conn, actor="pc1", action="view_alert", object=AID, outcome="ok", at=T0)
        audit.record(conn, actor="pc1", action="claim", object=AID, outcome="ok", at=T0)
        audit.record(conn, actor="pc1", action="view_alert", object="a00000000002", outcome="ok", at=T0)
        conn.execute(
            "INSERT INTO alert_actions (alert_id, at, actor, kind, text) VALUES (?,?,?,?,?)",
            (AID, T0.isoformat(), "pc1", "note", "called the school"),
        )
        audit.record(conn, actor="pc1", action="note", object=AID, outcome="ok", detail="called", at=T0)

    await s.transaction(console)
    yield s
    await s.close()


async def export(store: SQLiteStore, alert_id: str = AID, **kwargs: Any) -> bytes:
    at = T0 + timedelta(hours=1)
    return await store.transaction(lambda c: evidence.export(c, alert_id, exporter="sgt1", at=at, **kwargs))


def edited(data: bytes, change: Callable[[dict[str, Any]], object]) -> bytes:
    """The file after a hand edit that does not recompute any hash."""
    bundle = json.loads(data)
    change(bundle)
    return (json.dumps(bundle, ensure_ascii=False, indent=2) + "\n").encode()


async def test_round_trip(store: SQLiteStore) -> None:
    data = await export(store)
    assert evidence.verify_bundle(data) == []
    bundle = json.loads(data)
    assert list(bundle) == ["manifest", "alert", "evidence", "custody", "bundle_sha256"]
    manifest = bundle["manifest"]
    assert manifest["format"] == "presencebot-evidence" and manifest["version"] == 1
    assert manifest["alert_id"] == AID and manifest["exporter"] == "sgt1"
    assert manifest["counts"] == {"evidence": 3, "audit": 3, "trace": 1, "actions": 1}
    assert manifest["audit_head"]["seq"] == 5  # the log as it stood before the export entry
    alert = bundle["alert"]
    assert alert["severity"] == "critical" and alert["target"] == {"nick": "lily", "account": "lily-acct"}
    assert alert["requester"] == {"nick": "mark", "account": None}
    originals = make_alert().evidence
    assert [e["sha256"] for e in bundle["evidence"]] == [e.sha256 for e in originals]
    assert bundle["evidence"][0]["text"] == "im 12 ✓"
    assert "im 12 ✓".encode() in data  # human-readable: UTF-8, not \u escapes
    assert [e["action"] for e in bundle["custody"]["audit"]] == ["view_alert", "claim", "note"]
    assert bundle["custody"]["trace"][0]["line"] == "routed to police"
    assert bundle["custody"]["actions"][0]["text"] == "called the school"
    # The bundle hash, recomputed by hand from the documented encoding.
    body = {k: v for k, v in bundle.items() if k != "bundle_sha256"}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == bundle["bundle_sha256"]


async def test_the_export_is_audited_with_the_bundle_hash(store: SQLiteStore) -> None:
    data = await export(store)
    digest = json.loads(data)["bundle_sha256"]
    last = (await store.read(audit.entries))[-1]
    assert (last.actor, last.action, last.object, last.outcome) == ("sgt1", "export", AID, "ok")
    assert last.detail == f"bundle_sha256={digest}"
    assert last.at == T0 + timedelta(hours=1)
    assert await store.read(lambda c: evidence.recorded_export(c, AID, digest)) == last
    assert await store.read(audit.verify) == []
    # A second export carries the first one in its custody section.
    again = json.loads(await export(store))
    assert again["custody"]["audit"][-1]["detail"] == f"bundle_sha256={digest}"


def _flip_text(b: dict[str, Any]) -> None:
    b["evidence"][2]["text"] = "where do u livE"


def _flip_nick(b: dict[str, Any]) -> None:
    b["evidence"][1]["author_nick"] = "marc"


def _flip_manifest(b: dict[str, Any]) -> None:
    b["manifest"]["exporter"] = "sgt2"


def _remove_item(b: dict[str, Any]) -> None:
    del b["evidence"][1]


def _reorder_custody(b: dict[str, Any]) -> None:
    audit_entries = b["custody"]["audit"]
    audit_entries[0], audit_entries[1] = audit_entries[1], audit_entries[0]


def _change_hash(b: dict[str, Any]) -> None:
    b["bundle_sha256"] = (
        "0" + b["bundle_sha256"][1:] if b["bundle_sha256"][0] != "0" else "1" + b["bundle_sha256"][1:]
    )


def _edit_custody_entry(b: dict[str, Any]) -> None:
    b["custody"]["audit"][1]["actor"] = "nobody"


TAMPERINGS: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    "text": (_flip_text, ["evidence 2 (e3): content changed"]),
    "nick": (_flip_nick, ["evidence 1 (e2): content changed"]),
    "manifest": (_flip_manifest, []),
    "removed item": (_remove_item, ["manifest: counts.evidence is 3 but the bundle holds 2"]),
    "reordered custody": (_reorder_custody, ["custody: entry 2 comes after entry 3: entries reordered"]),
    "bundle hash": (_change_hash, []),
    "custody entry": (_edit_custody_entry, ["custody: entry 3: hash mismatch"]),
}


@pytest.mark.parametrize("name", TAMPERINGS)
async def test_each_tampering_is_reported(store: SQLiteStore, name: str) -> None:
    change, expected = TAMPERINGS[name]
    problems = evidence.verify_bundle(edited(await export(store), change))
    assert "bundle hash mismatch (the file was changed after export)" in problems
    for prefix in expected:
        assert any(p.startswith(prefix) for p in problems), problems


async def test_one_flipped_byte_in_the_file_is_reported(store: SQLiteStore) -> None:
    data = await export(store)
    flipped = data.replace(b"where do u live", b"where do u lave")
    assert flipped != data
    problems = evidence.verify_bundle(flipped)
    assert problems[0] == "bundle hash mismatch (the file was changed after export)"
    assert any(p.startswith("evidence 2 (e3): content changed") for p in problems)


async def test_layout_changes_do_not_matter(store: SQLiteStore) -> None:
    bundle = json.loads(await export(store))
    assert evidence.verify_bundle(json.dumps(bundle, sort_keys=True).encode()) == []


async def test_a_forger_who_recomputes_every_hash_is_caught_by_the_audit_log(store: SQLiteStore) -> None:
    bundle = json.loads(await export(store))
    bundle["evidence"][2]["text"] = "hello"
    fake = EvidenceItem(EventId("e3"), "native-3", MARK, T0, "hello", True)
    bundle["evidence"][2]["sha256"] = fake.sha256
    body = {k: v for k, v in bundle.items() if k != "bundle_sha256"}
    bundle["bundle_sha256"] = hashlib.sha256(evidence.canonical(body)).hexdigest()
    assert evidence.verify_bundle(json.dumps(bundle).encode()) == []  # the documented limit
    assert await store.read(lambda c: evidence.recorded_export(c, AID, bundle["bundle_sha256"])) is None


async def test_malformed_input_is_reported_not_raised(store: SQLiteStore) -> None:
    assert evidence.verify_bundle(b"\xff\xfe")[0].startswith("not a readable bundle")
    assert evidence.verify_bundle(b"[]") == ["not a readable bundle: the top level is not an object"]
    assert evidence.verify_bundle(b"{}")[0] == "missing section 'manifest'"
    dup = b'{"manifest": {}, "manifest": {}}'
    assert "duplicate keys" in evidence.verify_bundle(dup)[0]
    data = edited(await export(store), lambda b: b["evidence"][0].update(flagged="yes"))
    assert any("evidence 0 (e1): malformed" in p for p in evidence.verify_bundle(data))
    data = edited(await export(store), lambda b: b["custody"]["audit"][0].pop("hash"))
    assert any("custody: audit entry 0 is malformed" in p for p in evidence.verify_bundle(data))


async def audit_count(store: SQLiteStore) -> int:
    return len(await store.read(lambda c: audit.entries(c, limit=None)))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE evidence SET text = 'hello' WHERE alert_id = ? AND seq = 2",
        "UPDATE evidence SET author_nick = 'marc' WHERE alert_id = ? AND seq = 1",
        "UPDATE evidence SET at = '2024-05-01T13:00:00+00:00' WHERE alert_id = ? AND seq = 0",
        "UPDATE evidence SET flagged = 0 WHERE alert_id = ? AND seq = 2",
        "UPDATE evidence SET sha256 = NULL WHERE alert_id = ? AND seq = 0",
        "UPDATE audit_log SET detail = 'nothing' WHERE object = ? AND action = 'claim'",
        "UPDATE alerts SET purged_at = '2024-06-01T00:00:00+00:00' WHERE id = ?",
    ],
)
async def test_a_tampered_store_refuses_to_export(store: SQLiteStore, statement: str) -> None:
    await store.transaction(lambda c: c.execute(statement, (AID,)))
    before = await audit_count(store)
    with pytest.raises(evidence.EvidenceTampered) as caught:
        await export(store)
    assert caught.value.problems
    assert await audit_count(store) == before  # rolled back with the refused export


async def test_messages_stored_before_hashes_exist_need_consent(store: SQLiteStore) -> None:
    await store.transaction(
        lambda c: c.execute("UPDATE evidence SET sha256 = NULL WHERE alert_id = ?", (AID,))
    )
    with pytest.raises(evidence.EvidenceTampered, match="no hash was stored at capture"):
        await export(store)
    data = await export(store, allow_unhashed=True)
    assert evidence.verify_bundle(data) == []
    assert {e["sha256_from"] for e in json.loads(data)["evidence"]} == {"export"}


async def test_an_unknown_alert_is_not_found(store: SQLiteStore) -> None:
    with pytest.raises(AlertNotFound):
        await export(store, "nope")
