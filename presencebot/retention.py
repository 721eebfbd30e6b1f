"""Retention: what the bot captured about people in alerts officers dismissed is not kept forever.

An alert dismissed as ``false_positive`` or ``duplicate`` holds chat messages of people who, by
the officers' own decision, did nothing that needs them. After a configurable period its evidence
is purged:

* blanked: the message ``text``, the author's ``author_nick`` (set to ``""``) and
  ``author_account`` (NULL) — the personal content;
* kept: the row itself, ``seq``, ``event_id``, ``native_id``, ``at``, ``flagged`` and ``sha256``
  (the hash taken at capture). These say that a message existed, when, and which one, without
  saying what or by whom; the hash lets a copy of the original obtained elsewhere (the platform,
  an earlier export) be shown to be exactly what the bot captured.

A purged alert can still be exported: its messages appear as stubs (``"purged": true``) whose
hashes are carried but cannot be recomputed from the bundle. The alert row itself (target,
requester, explanation), its delivery trace and the officers' actions are not touched here.

Each purge is one ``purge`` entry in the audit log, in the same transaction as the blanking.
Alerts kept for any other disposition (``intervened``, ``referred``) or none are never purged.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Final

from presencebot import audit
from presencebot.alerts import EvidenceItem, person_from
from presencebot.ids import EventId

DISMISSED: Final = frozenset({"false_positive", "duplicate"})


def due(conn: sqlite3.Connection, now: datetime, *, dismissed_after: timedelta) -> list[str]:
    """Ids of dismissed, not yet purged alerts disposed of at least ``dismissed_after`` ago,
    oldest disposal first."""
    if dismissed_after < timedelta(0):
        raise ValueError("the retention period cannot be negative")
    cutoff = now - dismissed_after
    marks = ",".join("?" * len(DISMISSED))
    rows = conn.execute(
        f"SELECT id, disposed_at FROM alerts WHERE disposition IN ({marks})"  # noqa: S608 (placeholders only)
        " AND disposed_at IS NOT NULL AND purged_at IS NULL",
        sorted(DISMISSED),
    ).fetchall()
    # Compared as datetimes, not as text: the ISO strings may carry different UTC offsets.
    dated = [(_aware(str(at)), str(aid)) for aid, at in rows]
    return [aid for at, aid in sorted(dated) if at <= cutoff]


def _aware(text: str) -> datetime:
    """A stored time; one without an offset is taken as UTC (every writer stores aware times)."""
    at = datetime.fromisoformat(text)
    return at if at.utcoffset() is not None else at.replace(tzinfo=UTC)


def purge(conn: sqlite3.Connection, now: datetime, *, dismissed_after: timedelta, actor: str) -> list[str]:
    """Purge every due alert's evidence inside the caller's transaction; returns their ids.

    Idempotent: a purged alert is never due again, so a second run returns ``[]``.
    """
    purged = due(conn, now, dismissed_after=dismissed_after)
    for alert_id in purged:
        _purge_one(conn, alert_id, now, actor, dismissed_after)
    return purged


def _purge_one(
    conn: sqlite3.Connection, alert_id: str, now: datetime, actor: str, dismissed_after: timedelta
) -> None:
    backfilled = _backfill_hashes(conn, alert_id)
    blanked = conn.execute(
        "UPDATE evidence SET text = '', author_nick = '', author_account = NULL WHERE alert_id = ?",
        (alert_id,),
    ).rowcount
    disposition, disposed_at = conn.execute(
        "SELECT disposition, disposed_at FROM alerts WHERE id = ?", (alert_id,)
    ).fetchone()
    conn.execute("UPDATE alerts SET purged_at = ? WHERE id = ?", (now.isoformat(), alert_id))
    detail = (
        f"{blanked} evidence messages blanked (hashes kept); dismissed as {disposition} at {disposed_at};"
        f" retention {dismissed_after}"
    )
    if backfilled:
        detail += f"; {backfilled} hashes first computed now (captured before hashes were stored)"
    audit.record(conn, actor=actor, action="purge", object=alert_id, outcome="ok", detail=detail, at=now)


def _backfill_hashes(conn: sqlite3.Connection, alert_id: str) -> int:
    """Hash, before blanking, messages stored before per-message hashes existed: otherwise the
    stub would keep nothing that could ever be matched against the original."""
    rows = conn.execute(
        "SELECT seq, event_id, native_id, author_nick, author_account, at, text, flagged"
        " FROM evidence WHERE alert_id = ? AND sha256 IS NULL",
        (alert_id,),
    ).fetchall()
    for seq, event_id, native_id, nick, account, at, text, flagged in rows:
        item = EvidenceItem(
            EventId(event_id),
            native_id,
            person_from(nick, account),
            datetime.fromisoformat(at),
            text,
            bool(flagged),
        )
        conn.execute(
            "UPDATE evidence SET sha256 = ? WHERE alert_id = ? AND seq = ?", (item.sha256, alert_id, seq)
        )
    return len(rows)
