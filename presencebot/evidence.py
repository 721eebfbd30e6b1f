"""Evidence export: one self-checking file per alert, for an investigation or a court.

The file is UTF-8 JSON (indented, for reading) with, in this order:

``manifest``
    format name and version, alert id, export time, exporter, counts, the audit log's head at
    export time (``audit_head``: seq and hash), the algorithm, and how to verify by hand.
``alert``
    the alert as stored (who, where, which rule, state, acknowledgement, disposition).
``evidence``
    each message with its fields and ``sha256`` = SHA-256 of
    :meth:`~presencebot.alerts.EvidenceItem.canonical` — the hash stored when the message was
    captured. Export refuses (:class:`EvidenceTampered`) when a message no longer matches it.
``custody``
    the audit entries about this alert (with their chain hashes), its delivery trace and the
    officers' actions on it.
``bundle_sha256``
    SHA-256 over ``canonical({"manifest", "alert", "evidence", "custody"})``, where ``canonical``
    is JSON with sorted keys, no whitespace (separators ``,`` and ``:``), non-ASCII characters
    written as themselves, encoded as UTF-8 — the encoding used for every hash here. It is computed
    over the parsed values, so re-indenting the file changes nothing that matters.

What the hashes prove, honestly: nothing here is secret, so someone who edits the file *and*
recomputes every hash produces a file that :func:`verify_bundle` accepts on its own. That is why
the export is also written to the hash-chained audit log (``action="export"``, detail
``bundle_sha256=<hex>``) in the same transaction: :func:`recorded_export` finds that entry, and a
file whose hash the log does not hold was not exported by presencebot. The per-message hashes
outlive retention purges (see :mod:`presencebot.retention`): a purged message stays in the bundle
as a stub whose hash can still be matched against a copy of the original from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from presencebot import audit
from presencebot.alerts import EvidenceItem, person_from
from presencebot.errors import AlertNotFound, StoreError
from presencebot.events import utcnow
from presencebot.ids import EventId
from presencebot.rule import Severity
from presencebot.store import delivery

FORMAT: Final = "presencebot-evidence"
VERSION: Final = 1
ALGORITHM: Final = "sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP = ("manifest", "alert", "evidence", "custody", "bundle_sha256")
_VERIFICATION = (
    "canonical(x) = UTF-8 of JSON with sorted keys, separators ',' and ':', non-ASCII unescaped."
    " bundle_sha256 = sha256(canonical(the whole object without bundle_sha256))."
    " evidence[i].sha256 = sha256(canonical({event_id, native_id, author_nick, author_account, at,"
    " text, flagged})) unless purged (then only the hash remains)."
    " custody.audit[i].hash = sha256(canonical({seq, at, actor, action, object, outcome, detail,"
    " prev_hash})); prev_hash = the previous entry's hash where seqs are consecutive."
)


class EvidenceTampered(StoreError):
    """The store no longer matches the hashes it recorded: refusing to export it as evidence.

    The caller's transaction rolls back (nothing is recorded); a console should record the
    refusal (``outcome="failed"``) in a transaction of its own.
    """

    def __init__(self, alert_id: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"alert {alert_id}: the stored evidence was altered: " + "; ".join(problems))


def canonical(value: object) -> bytes:
    """The one encoding every hash in a bundle is computed over (see the module docstring)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _sha256(value: object) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


# --- export ------------------------------------------------------------------------------------


def export(
    conn: sqlite3.Connection,
    alert_id: str,
    *,
    exporter: str,
    at: datetime | None = None,
    allow_unhashed: bool = False,
) -> bytes:
    """The bundle for one alert, audited as ``export`` in the caller's transaction.

    Raises :class:`~presencebot.errors.AlertNotFound`, or :class:`EvidenceTampered` when a
    message no longer matches the hash stored at capture, a custody audit entry fails its hash,
    or the alert is marked purged without an audited purge. Messages stored before per-message
    hashes existed (``sha256`` NULL) are refused too unless ``allow_unhashed``: then their hash is
    computed now and marked ``"sha256_from": "export"`` — it proves the file unchanged since
    export, not the store unchanged since capture.
    """
    when = utcnow() if at is None else at
    alert = _alert(conn, alert_id)
    purged = alert["purged_at"] is not None
    items, problems = _evidence(conn, alert_id, purged=purged, allow_unhashed=allow_unhashed)
    custody_entries = audit.entries(conn, object=alert_id, limit=None)
    problems += [f"custody: {p}" for p in audit.verify_entries(custody_entries, complete=False)]
    if purged and not any(e.action == "purge" and e.outcome == "ok" for e in custody_entries):
        problems.append("the alert is marked purged but the audit log records no purge of it")
    if problems:
        raise EvidenceTampered(alert_id, problems)
    custody = _custody(conn, alert_id, custody_entries)
    body = {
        "manifest": _manifest(conn, alert_id, exporter, when, items, custody, purged),
        "alert": alert,
        "evidence": items,
        "custody": custody,
    }
    digest = _sha256(body)
    audit.record(
        conn,
        actor=exporter,
        action="export",
        object=alert_id,
        outcome="ok",
        detail=f"bundle_sha256={digest}",
        at=when,
    )
    return _render({**body, "bundle_sha256": digest})


def _render(bundle: dict[str, Any]) -> bytes:
    # Top-level keys in reading order (manifest first, the hash last); the hash itself is over
    # the sorted canonical form, so this layout is presentation only.
    return (json.dumps(bundle, ensure_ascii=False, indent=2) + "\n").encode()


def recorded_export(conn: sqlite3.Connection, alert_id: str, bundle_sha256: str) -> audit.AuditEntry | None:
    """The audit entry that recorded exporting a bundle with this hash, if presencebot made it."""
    wanted = f"bundle_sha256={bundle_sha256}"
    found = [
        e
        for e in audit.entries(conn, object=alert_id, limit=None)
        if e.action == "export" and e.outcome == "ok" and e.detail == wanted
    ]
    return found[0] if found else None


_ALERT = (
    "SELECT id, created_at, network, room, rule_id, rule_version, category, severity, target_nick,"
    " target_account, requester_nick, requester_account, explanation, state, acknowledged_by,"
    " acknowledged_at, force, claimed_by, disposition, disposed_at, purged_at FROM alerts WHERE id = ?"
)


def _alert(conn: sqlite3.Connection, alert_id: str) -> dict[str, Any]:
    """The alert's row in the shape of ``Alert.to_json`` (less evidence and notifications), plus
    the console's columns."""
    row = conn.execute(_ALERT, (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    (aid, created, network, room, rule_id, rule_version, category, severity, t_nick, t_acct) = row[:10]
    (r_nick, r_acct, explanation, state, ack_by, ack_at, force, claimed, disp, disp_at, purged) = row[10:]
    return {
        "id": aid,
        "created_at": created,
        "network": network,
        "room": room,
        "rule": {"id": rule_id, "version": rule_version},
        "category": category,
        "severity": _severity(severity),
        "target": {"nick": t_nick, "account": t_acct},
        "requester": None if r_nick is None else {"nick": r_nick, "account": r_acct},
        "explanation": explanation,
        "state": state,
        "acknowledged_by": ack_by,
        "acknowledged_at": ack_at,
        "force": force,
        "claimed_by": claimed,
        "disposition": disp,
        "disposed_at": disp_at,
        "purged_at": purged,
    }


def _severity(value: object) -> str:
    try:
        return str(Severity(int(str(value))))
    except ValueError:
        return str(value)


def _evidence(
    conn: sqlite3.Connection, alert_id: str, *, purged: bool, allow_unhashed: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    rows = conn.execute(
        "SELECT seq, event_id, native_id, author_nick, author_account, at, text, flagged, sha256"
        " FROM evidence WHERE alert_id = ? ORDER BY seq",
        (alert_id,),
    ).fetchall()
    for row in rows:
        item = {
            "seq": row[0],
            "event_id": row[1],
            "native_id": row[2],
            "author_nick": row[3],
            "author_account": row[4],
            "at": row[5],
            "text": row[6],
            "flagged": bool(row[7]),
            "sha256": row[8],
            "sha256_from": "store",
            "purged": purged,
        }
        problem = _stored_problem(item, purged=purged, allow_unhashed=allow_unhashed)
        if problem is not None:
            problems.append(f"evidence {row[0]} ({row[1]}): {problem}")
        if item["sha256"] is None:
            item["sha256"], item["sha256_from"] = _item_hash(item), "export"
        items.append(item)
    return items, problems


def _stored_problem(item: dict[str, Any], *, purged: bool, allow_unhashed: bool) -> str | None:
    """Why this stored message cannot be exported as it stands, if it cannot."""
    stored = item["sha256"]
    if purged:
        if not _is_stub(item):
            return "the alert is marked purged but this message was not blanked"
        if not (isinstance(stored, str) and _HEX64.fullmatch(stored)):
            return "a purged message kept no valid hash"
        return None
    try:
        computed = _item_hash(item)
    except (TypeError, ValueError) as exc:
        return f"unreadable ({exc})"
    if stored is None:
        return None if allow_unhashed else "no hash was stored at capture (pass allow_unhashed to export it)"
    if computed != stored:
        return "does not match the hash stored at capture (the store was altered)"
    return None


def _is_stub(item: dict[str, Any]) -> bool:
    return item["text"] == "" and item["author_nick"] == "" and item["author_account"] is None


def _item_hash(item: dict[str, Any]) -> str:
    """The message's hash recomputed through ``EvidenceItem`` itself, so there is one definition."""
    fields = ("event_id", "author_nick", "at", "text")
    if not all(isinstance(item[k], str) for k in fields):
        raise TypeError("event_id, author_nick, at and text must be strings")
    if not all(item[k] is None or isinstance(item[k], str) for k in ("native_id", "author_account")):
        raise TypeError("native_id and author_account must be strings or null")
    if not isinstance(item["flagged"], bool):
        raise TypeError("flagged must be true or false")
    return EvidenceItem(
        event_id=EventId(item["event_id"]),
        native_id=item["native_id"],
        author=person_from(item["author_nick"], item["author_account"]),
        at=datetime.fromisoformat(item["at"]),
        text=item["text"],
        flagged=item["flagged"],
    ).sha256


def _custody(
    conn: sqlite3.Connection, alert_id: str, entries: Sequence[audit.AuditEntry]
) -> dict[str, list[dict[str, Any]]]:
    actions = conn.execute(
        "SELECT id, at, actor, kind, reason, text, until, request_id FROM alert_actions"
        " WHERE alert_id = ? ORDER BY id",
        (alert_id,),
    ).fetchall()
    keys = ("id", "at", "actor", "kind", "reason", "text", "until", "request_id")
    return {
        "audit": [e.to_json() for e in entries],
        "trace": [{"at": at.isoformat(), "line": line} for at, line in delivery.traces(conn, alert_id)],
        "actions": [dict(zip(keys, row, strict=True)) for row in actions],
    }


def _manifest(
    conn: sqlite3.Connection,
    alert_id: str,
    exporter: str,
    when: datetime,
    items: Sequence[dict[str, Any]],
    custody: dict[str, list[dict[str, Any]]],
    purged: bool,
) -> dict[str, Any]:
    seq, hash_ = audit.head_seq(conn)
    return {
        "format": FORMAT,
        "version": VERSION,
        "alert_id": alert_id,
        "exported_at": when.isoformat(),
        "exporter": exporter,
        "algorithm": ALGORITHM,
        "purged": purged,
        "counts": {
            "evidence": len(items),
            "audit": len(custody["audit"]),
            "trace": len(custody["trace"]),
            "actions": len(custody["actions"]),
        },
        "audit_head": {"seq": seq, "hash": hash_},
        "verification": _VERIFICATION,
    }


# --- verification ------------------------------------------------------------------------------


def verify_bundle(data: bytes) -> list[str]:
    """Every problem with an exported file; an empty list means it is intact.

    Checks the bundle hash, each message's hash against its fields, the custody audit entries'
    hashes and chain links among themselves, and the manifest against the contents. Malformed
    input is reported as a problem, never raised.
    """
    try:
        bundle = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, ValueError) as exc:
        return [f"not a readable bundle: {exc}"]
    if not isinstance(bundle, dict):
        return ["not a readable bundle: the top level is not an object"]
    missing = [k for k in _TOP if k not in bundle]
    extra = sorted(set(bundle) - set(_TOP))
    problems = [f"missing section {k!r}" for k in missing] + [f"unexpected section {k!r}" for k in extra]
    if missing:
        return problems
    body = {k: bundle[k] for k in _TOP[:-1]}
    if _sha256(body) != bundle["bundle_sha256"]:
        problems.append("bundle hash mismatch (the file was changed after export)")
    for section, check in (("manifest", _check_manifest), ("evidence", _check_evidence)):
        try:
            problems += check(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{section}: malformed ({exc!r})")
    try:
        problems += _check_custody(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problems.append(f"custody: malformed ({exc!r})")
    return problems


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key: a reader might see one and the hash the other.
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys in one object: {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_manifest(body: dict[str, Any]) -> list[str]:
    manifest, custody = body["manifest"], body["custody"]
    problems: list[str] = []
    if manifest["format"] != FORMAT or manifest["version"] != VERSION:
        problems.append(f"manifest: unknown format {manifest['format']!r} version {manifest['version']!r}")
    if manifest["algorithm"] != ALGORITHM:
        problems.append(f"manifest: unknown algorithm {manifest['algorithm']!r}")
    if manifest["alert_id"] != body["alert"]["id"]:
        problems.append("manifest: alert_id is not the alert's id")
    if manifest["purged"] != (body["alert"]["purged_at"] is not None):
        problems.append("manifest: purged does not agree with the alert's purged_at")
    actual = {
        "evidence": len(body["evidence"]),
        "audit": len(custody["audit"]),
        "trace": len(custody["trace"]),
        "actions": len(custody["actions"]),
    }
    counts = manifest["counts"]
    problems += [
        f"manifest: counts.{name} is {counts.get(name)!r} but the bundle holds {n}"
        for name, n in actual.items()
        if counts.get(name) != n
    ]
    return problems


def _check_evidence(body: dict[str, Any]) -> list[str]:
    purged = body["manifest"]["purged"] is True
    problems: list[str] = []
    previous = -1
    for index, item in enumerate(body["evidence"]):
        where = f"evidence {item.get('seq', index)} ({item.get('event_id')})"
        if not isinstance(item["seq"], int) or item["seq"] <= previous:
            problems.append(f"{where}: out of order")
        previous = item["seq"] if isinstance(item["seq"], int) else previous
        problems += [f"{where}: {p}" for p in _item_problems(item, purged=purged)]
    return problems


def _item_problems(item: dict[str, Any], *, purged: bool) -> list[str]:
    stored = item["sha256"]
    if not (isinstance(stored, str) and _HEX64.fullmatch(stored)):
        return ["sha256 is not a SHA-256 hex digest"]
    if item["purged"] is True:
        if not purged:
            return ["marked purged in a bundle of an alert that was not purged"]
        if not _is_stub(item):
            return ["marked purged but not blank"]
        return []  # only the hash remains: nothing to recompute it from
    if purged:
        return ["the alert was purged but this message was not"]
    try:
        computed = _item_hash(item)
    except (TypeError, ValueError) as exc:
        return [f"malformed ({exc})"]
    if computed != stored:
        return ["content changed (sha256 mismatch: text, author, time, ids or flag differ from capture)"]
    return []


def _check_custody(body: dict[str, Any]) -> list[str]:
    alert_id = body["manifest"]["alert_id"]
    problems: list[str] = []
    entries: list[audit.AuditEntry] = []
    for index, data in enumerate(body["custody"]["audit"]):
        try:
            entry = audit.AuditEntry.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"custody: audit entry {index} is malformed ({exc!r})")
            continue
        if entry.object != alert_id:
            problems.append(f"custody: audit entry {entry.seq} is about {entry.object!r}, not this alert")
        entries.append(entry)
    problems += [f"custody: {p}" for p in audit.verify_entries(entries, complete=False)]
    head = body["manifest"]["audit_head"]
    for entry in entries:
        if entry.seq > head["seq"]:
            problems.append(f"custody: audit entry {entry.seq} is newer than the manifest's audit_head")
        elif entry.seq == head["seq"] and entry.hash != head["hash"]:
            problems.append(
                f"custody: audit entry {entry.seq} is the log head but its hash is not audit_head"
            )
    return problems
