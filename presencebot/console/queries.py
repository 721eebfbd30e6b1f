"""What the console reads and writes about alerts, as plain functions on a ``sqlite3.Connection``
(run on the store's thread by ``SQLStore.read`` / ``transaction``).

Every function that returns alerts takes the officer's :class:`~presencebot.accounts.User` and
applies the force scoping in SQL, so a page cannot forget it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from presencebot import audit
from presencebot.accounts import User

DISPOSITIONS: Final = {
    "false_positive": "False positive",
    "intervened": "Intervened",
    "referred": "Referred",
    "duplicate": "Duplicate",
}
SEVERITIES: Final = {1: "low", 2: "medium", 3: "high", 4: "critical"}


@dataclass(frozen=True, slots=True)
class QueueRow:
    id: str
    created_at: datetime
    network: str
    room: str
    category: str
    severity: int
    target: str
    requester: str
    state: str
    force: str | None
    claimed_by: str | None
    disposition: str | None
    acknowledged_at: datetime | None
    snoozed_until: datetime | None

    @property
    def severity_name(self) -> str:
        return SEVERITIES.get(self.severity, str(self.severity))

    def snoozed(self, now: datetime) -> bool:
        """Snoozed until later than ``now``: still listed, but after the alerts awaiting someone."""
        return self.snoozed_until is not None and self.snoozed_until > now

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "age_seconds": int((now - self.created_at).total_seconds()),
            "where": f"{self.network}/{self.room}",
            "category": self.category,
            "severity": self.severity_name,
            "target": self.target,
            "requester": self.requester,
            "state": self.state,
            "force": self.force,
            "claimed_by": self.claimed_by,
            "disposition": self.disposition,
            "snoozed_until": self.snoozed_until.isoformat()
            if self.snoozed_until is not None and self.snoozed(now)
            else None,
        }


def _scope(user: User) -> tuple[str, list[object]]:
    if user.sees_all_forces:
        return "", []
    return " AND (force = ? OR force IS NULL)", [user.force]


def _dt(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


_QUEUE = (
    "SELECT id, created_at, network, room, category, severity, target_nick"
    " || COALESCE(' (' || target_account || ')', ''), COALESCE(requester_nick, '')"
    " || COALESCE(' (' || requester_account || ')', ''), state, force, claimed_by, disposition,"
    " acknowledged_at, snoozed_until FROM alerts WHERE 1 = 1"
)


def _row(r: tuple[object, ...]) -> QueueRow:
    return QueueRow(
        id=str(r[0]),
        created_at=datetime.fromisoformat(str(r[1])),
        network=str(r[2]),
        room=str(r[3]),
        category=str(r[4]),
        severity=int(str(r[5])),
        target=str(r[6]),
        requester=str(r[7]),
        state=str(r[8]),
        force=None if r[9] is None else str(r[9]),
        claimed_by=None if r[10] is None else str(r[10]),
        disposition=None if r[11] is None else str(r[11]),
        acknowledged_at=_dt(r[12]),
        snoozed_until=_dt(r[13]),
    )


def queue(
    conn: sqlite3.Connection,
    user: User,
    *,
    state: str | None = "open",
    network: str | None = None,
    room: str | None = None,
    category: str | None = None,
    force: str | None = None,
    now: datetime | None = None,
    limit: int = 200,
) -> list[QueueRow]:
    """Alerts the user may see, most severe first, then oldest first (the longest waiting).

    With ``now``, alerts snoozed past ``now`` come last: a snooze only moves an alert down the
    queue, it never hides it (and it does not stop escalation; acknowledging does).
    """
    sql, params = _QUEUE, []
    where, scoped = _scope(user)
    sql += where
    params += scoped
    for column, value in (("state", state), ("network", network), ("room", room), ("category", category)):
        if value:
            sql += f" AND {column} = ?"
            params.append(value)
    if force:
        sql += " AND force = ?"
        params.append(force)
    sql += " ORDER BY"
    if now is not None:  # ISO 8601 text in UTC, as every writer stores it, compares in time order
        sql += " CASE WHEN snoozed_until > ? THEN 1 ELSE 0 END,"
        params.append(now.isoformat())
    sql += " severity DESC, created_at ASC LIMIT ?"
    params.append(limit)
    return [_row(r) for r in conn.execute(sql, params)]


def visible(conn: sqlite3.Connection, user: User, alert_id: str) -> QueueRow | None:
    """The alert's queue row if it exists and the user may see it; ``None`` otherwise (both cases
    look the same to the user: an officer learns nothing about another force's alerts)."""
    where, scoped = _scope(user)
    row = conn.execute(_QUEUE + " AND id = ?" + where, [alert_id, *scoped]).fetchone()
    return None if row is None else _row(row)


def earlier_alerts(
    conn: sqlite3.Connection,
    user: User,
    row: QueueRow,
    requester_account: str | None,
    requester_nick: str | None,
) -> list[QueueRow]:
    """The requester's other alerts (by account where known), newest first."""
    if requester_account is None and requester_nick is None:
        return []
    where, scoped = _scope(user)
    params: list[object]
    if requester_account is not None:
        sql, params = _QUEUE + " AND requester_account = ?", [requester_account]
    else:
        sql, params = _QUEUE + " AND requester_account IS NULL AND requester_nick = ?", [requester_nick]
    sql += " AND id != ?" + where + " ORDER BY created_at DESC LIMIT 20"
    return [_row(r) for r in conn.execute(sql, [*params, row.id, *scoped])]


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime
    actor: str
    kind: str
    reason: str | None
    text: str | None
    until: datetime | None


def actions(conn: sqlite3.Connection, alert_id: str) -> list[Action]:
    return [
        Action(datetime.fromisoformat(at), actor, kind, reason, text, _dt(until))
        for at, actor, kind, reason, text, until in conn.execute(
            "SELECT at, actor, kind, reason, text, until FROM alert_actions WHERE alert_id = ? ORDER BY id",
            (alert_id,),
        )
    ]


def act(
    conn: sqlite3.Connection,
    user: User,
    alert_id: str,
    kind: str,
    now: datetime,
    *,
    reason: str | None = None,
    text: str | None = None,
    until: datetime | None = None,
    request_id: str | None = None,
) -> bool:
    """Record an officer's action on an alert (and in the audit log, in the same transaction).

    Returns False when ``request_id`` was already used: the same form submitted twice (a double
    click) does nothing the second time.
    """
    if request_id is not None:
        seen = conn.execute("SELECT 1 FROM alert_actions WHERE request_id = ?", (request_id,)).fetchone()
        if seen is not None:
            return False
    actor = f"{user.username} ({user.public_id}, {user.force})"
    conn.execute(
        "INSERT INTO alert_actions (alert_id, at, actor, kind, reason, text, until, request_id)"
        " VALUES (?,?,?,?,?,?,?,?)",
        (
            alert_id,
            now.isoformat(),
            actor,
            kind,
            reason,
            text,
            None if until is None else until.isoformat(),
            request_id,
        ),
    )
    if kind == "claim":
        conn.execute("UPDATE alerts SET claimed_by = ? WHERE id = ?", (actor, alert_id))
    elif kind == "acknowledge":
        cur = conn.execute(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_by = ?, acknowledged_at = ?,"
            " escalate_at = NULL WHERE id = ? AND state = 'open'",
            (actor, now.isoformat(), alert_id),
        )
        if cur.rowcount:
            from presencebot.store import delivery

            delivery.add_trace(
                conn, alert_id, [f"acknowledged by {actor} in the console: escalation stopped"], now
            )
    elif kind == "disposition":
        conn.execute(
            "UPDATE alerts SET disposition = ?, disposed_at = ?, state = 'acknowledged',"
            " acknowledged_by = COALESCE(acknowledged_by, ?), acknowledged_at = COALESCE(acknowledged_at, ?),"
            " escalate_at = NULL WHERE id = ?",
            (text, now.isoformat(), actor, now.isoformat(), alert_id),
        )
    elif kind == "snooze":
        conn.execute(
            "UPDATE alerts SET snoozed_until = ? WHERE id = ?",
            (until.isoformat() if until else None, alert_id),
        )
    detail = " ".join(part for part in (reason or "", (text or "")[:200]) if part)
    audit.record(conn, actor=user.username, action=kind, object=alert_id, outcome="ok", detail=detail, at=now)
    return True


def unsent(
    conn: sqlite3.Connection, user: User, alert_id: str, request_id: str, why: str, now: datetime
) -> None:
    """Take a recorded intervention the bot could not say back out of the alert's history (the
    officer may press Send again: the request id is free again), and audit the failure; the
    audit log keeps both entries, recorded then failed."""
    conn.execute("DELETE FROM alert_actions WHERE request_id = ? AND kind = 'intervene'", (request_id,))
    audit.record(
        conn, actor=user.username, action="intervene", object=alert_id, outcome="failed", detail=why, at=now
    )


def snooze_until(now: datetime, minutes: int) -> datetime:
    return now + timedelta(minutes=max(1, min(minutes, 24 * 60)))
