"""The delivery side of the store: outbox rows, escalation state, traces, disabled targets.

These are plain functions on a ``sqlite3.Connection`` (or PostgreSQL's
:class:`~presencebot.store.postgres.PgConnection`, which speaks the same API); the store
(:class:`~presencebot.store.sql.SQLStore`) runs them on its one database thread. Every state
change of a notification is one UPDATE, so a crash between two of them leaves a row either still
pending (it will be sent again: delivery is at least once, and the row id is the idempotency key
receivers deduplicate on) or done.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class NewNotice:
    """A notification to queue: this alert must reach ``target`` (a ``[[notify]]`` entry)."""

    target: str
    sink: str
    kind: str = "alert"
    """``alert`` (first notice), ``escalation``, ``dead_letter`` or ``disabled`` (to supervisors)."""
    step: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    alert_id: str
    target: str
    sink: str
    kind: str
    step: int
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None


_ROW = (
    "SELECT id, alert_id, target, sink, kind, step, state, attempts, next_attempt_at, last_error,"
    " delivered_at FROM outbox"
)


# Due: pending, its time has come, not held by a dispatcher, and its target not disabled.
_DUE = (
    " WHERE state = ? AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
    " AND target NOT IN (SELECT target FROM disabled_targets)"
    " ORDER BY next_attempt_at, rowid"
)


def _row(r: Sequence[object]) -> OutboxRow:
    return OutboxRow(
        id=str(r[0]),
        alert_id=str(r[1]),
        target=str(r[2]),
        sink=str(r[3]),
        kind=str(r[4]),
        step=int(str(r[5])),
        state=str(r[6]),
        attempts=int(str(r[7])),
        next_attempt_at=datetime.fromisoformat(str(r[8])),
        last_error=None if r[9] is None else str(r[9]),
        delivered_at=None if r[10] is None else datetime.fromisoformat(str(r[10])),
    )


def insert_notices(
    conn: sqlite3.Connection, alert_id: str, notices: Iterable[NewNotice], now: datetime
) -> list[str]:
    """Queue notices (inside the caller's transaction); returns their ids."""
    ids: list[str] = []
    for notice in notices:
        notice_id = uuid.uuid4().hex
        conn.execute(
            "INSERT INTO outbox (id, alert_id, target, sink, next_attempt_at, kind, step)"
            " VALUES (?,?,?,?,?,?,?)",
            (notice_id, alert_id, notice.target, notice.sink, now.isoformat(), notice.kind, notice.step),
        )
        ids.append(notice_id)
    return ids


def add_trace(conn: sqlite3.Connection, alert_id: str, lines: Iterable[str], now: datetime) -> None:
    """Append to the alert's "why notified / why not" trace (inside the caller's transaction)."""
    (last,) = conn.execute(
        "SELECT COALESCE(MAX(seq), -1) FROM alert_trace WHERE alert_id = ?", (alert_id,)
    ).fetchone()
    conn.executemany(
        "INSERT INTO alert_trace (alert_id, seq, at, line) VALUES (?,?,?,?)",
        [(alert_id, int(last) + 1 + i, now.isoformat(), line[:1000]) for i, line in enumerate(lines)],
    )


def traces(conn: sqlite3.Connection, alert_id: str) -> list[tuple[datetime, str]]:
    return [
        (datetime.fromisoformat(at), line)
        for at, line in conn.execute(
            "SELECT at, line FROM alert_trace WHERE alert_id = ? ORDER BY seq", (alert_id,)
        )
    ]


def due(conn: sqlite3.Connection, now: datetime, limit: int) -> list[OutboxRow]:
    """Pending notifications whose time has come and that no dispatcher holds, oldest first,
    skipping disabled targets."""
    stamp = now.isoformat()
    found = conn.execute(_ROW + _DUE + " LIMIT ?", (PENDING, stamp, stamp, limit)).fetchall()
    return [_row(r) for r in found]


def claim_due(
    conn: sqlite3.Connection, now: datetime, limit: int, *, worker: str, hold: timedelta
) -> list[OutboxRow]:
    """Claim up to ``limit`` due notifications for ``worker`` until ``now + hold``; run it in a
    write transaction (``BEGIN IMMEDIATE``).

    This is what lets every worker of a fleet run a dispatcher on one store: a claimed row is not
    due for anybody else until its claim expires, and on PostgreSQL ``SKIP LOCKED`` lets two
    claims run side by side without waiting for each other's rows. A row whose dispatcher died
    mid-delivery is claimed again once the hold has passed (delivery is at least once; the row
    id is the receivers' idempotency key).
    """
    from presencebot.store.sql import POSTGRESQL, dialect  # sql imports this module

    stamp = now.isoformat()
    lock = " FOR UPDATE SKIP LOCKED" if dialect(conn) == POSTGRESQL else ""
    found = conn.execute(_ROW + _DUE + " LIMIT ?" + lock, (PENDING, stamp, stamp, limit)).fetchall()
    rows = [_row(r) for r in found]
    until = (now + hold).isoformat()
    for row in rows:
        conn.execute(
            "UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE id = ?", (worker, until, row.id)
        )
    return rows


def release_claims(conn: sqlite3.Connection, worker: str, ids: Iterable[str] | None = None) -> int:
    """Give back ``worker``'s claims on rows still pending (all of them, or those in ``ids``):
    at a clean stop for what was in flight, and at start for what a previous run of the same
    worker left, so that nothing waits for a claim to expire when its owner is known to be gone."""
    sql = "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ? AND state = ?"
    params: list[str] = [worker, PENDING]
    if ids is not None:
        wanted = list(ids)
        if not wanted:
            return 0
        sql += f" AND id IN ({', '.join('?' * len(wanted))})"
        params += wanted
    return conn.execute(sql, params).rowcount


def rows(
    conn: sqlite3.Connection, *, alert_id: str | None = None, state: str | None = None
) -> list[OutboxRow]:
    sql, params = _ROW + " WHERE 1 = 1", []
    if alert_id is not None:
        sql += " AND alert_id = ?"
        params.append(alert_id)
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    return [_row(r) for r in conn.execute(sql + " ORDER BY rowid", params)]


def next_wakeup(conn: sqlite3.Connection) -> datetime | None:
    """The earliest pending delivery or escalation, for the dispatcher's sleep."""
    (delivery,) = conn.execute(
        "SELECT MIN(CASE WHEN claimed_until > next_attempt_at THEN claimed_until"
        " ELSE next_attempt_at END) FROM outbox WHERE state = ?"
        " AND target NOT IN (SELECT target FROM disabled_targets)",
        (PENDING,),
    ).fetchone()
    (escalation,) = conn.execute(
        "SELECT MIN(escalate_at) FROM alerts WHERE state = 'open' AND escalate_at IS NOT NULL"
    ).fetchone()
    times = [datetime.fromisoformat(t) for t in (delivery, escalation) if t is not None]
    return min(times) if times else None


def mark_delivered(conn: sqlite3.Connection, row_id: str, attempts: int, now: datetime) -> None:
    conn.execute(
        "UPDATE outbox SET state = ?, attempts = ?, delivered_at = ?, last_error = NULL,"
        " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
        (DELIVERED, attempts, now.isoformat(), row_id),
    )


def mark_retry(conn: sqlite3.Connection, row_id: str, attempts: int, at: datetime, error: str) -> None:
    conn.execute(
        "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?,"
        " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
        (attempts, at.isoformat(), error[:500], row_id),
    )


def mark_dead(conn: sqlite3.Connection, row_id: str, attempts: int, error: str) -> None:
    conn.execute(
        "UPDATE outbox SET state = ?, attempts = ?, last_error = ?,"
        " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
        (DEAD, attempts, error[:500], row_id),
    )


def requeue(conn: sqlite3.Connection, row_id: str, now: datetime) -> bool:
    """Give a dead notification another chance (an operator fixed the endpoint)."""
    cur = conn.execute(
        "UPDATE outbox SET state = ?, next_attempt_at = ?, claimed_by = NULL, claimed_until = NULL"
        " WHERE id = ? AND state = ?",
        (PENDING, now.isoformat(), row_id, DEAD),
    )
    return cur.rowcount == 1


def disable_target(conn: sqlite3.Connection, target: str, reason: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO disabled_targets (target, at, reason) VALUES (?,?,?)"
        " ON CONFLICT (target) DO UPDATE SET at = excluded.at, reason = excluded.reason",
        (target, now.isoformat(), reason[:500]),
    )


def enable_target(conn: sqlite3.Connection, target: str) -> bool:
    return conn.execute("DELETE FROM disabled_targets WHERE target = ?", (target,)).rowcount == 1


def disabled_targets(conn: sqlite3.Connection) -> dict[str, str]:
    return {t: r for t, r in conn.execute("SELECT target, reason FROM disabled_targets")}


def due_escalations(conn: sqlite3.Connection, now: datetime, limit: int) -> list[tuple[str, int, str | None]]:
    """Open alerts whose next escalation step is due: (alert id, step done so far, force)."""
    return [
        (str(a), int(s), None if f is None else str(f))
        for a, s, f in conn.execute(
            "SELECT id, escalation_step, force FROM alerts WHERE state = 'open'"
            " AND escalate_at IS NOT NULL AND escalate_at <= ? ORDER BY escalate_at LIMIT ?",
            (now.isoformat(), limit),
        )
    ]


def set_escalation(
    conn: sqlite3.Connection, alert_id: str, step: int, escalate_at: datetime | None, force: str | None
) -> None:
    conn.execute(
        "UPDATE alerts SET escalation_step = ?, escalate_at = ?, force = ? WHERE id = ?",
        (step, None if escalate_at is None else escalate_at.isoformat(), force, alert_id),
    )


def find_group(
    conn: sqlite3.Connection,
    *,
    network: str,
    room: str,
    category: str,
    target: tuple[str, str | None],
    requester: tuple[str, str | None] | None,
    since: datetime,
) -> str | None:
    """An open alert for the same requester, target, room and category since ``since``."""
    sql = (
        "SELECT id FROM alerts WHERE state = 'open' AND network = ? AND room = ? AND category = ?"
        " AND created_at >= ?"
    )
    params: list[object] = [network, room, category, since.isoformat()]
    # A person is the same person by account where there is one (a new nick changes nothing).
    for column, person in (("target", target), ("requester", requester)):
        if person is None:
            sql += f" AND {column}_nick IS NULL"
        elif person[1] is not None:
            sql += f" AND {column}_account = ?"
            params.append(person[1])
        else:
            sql += f" AND {column}_account IS NULL AND {column}_nick = ?"
            params.append(person[0])
    row = conn.execute(sql + " ORDER BY created_at DESC LIMIT 1", params).fetchone()
    return None if row is None else str(row[0])
