"""The SQLite alert store: the embedded default, one file, no server.

sqlite3 blocks, so every call runs on one dedicated thread that owns the connection; the event
loop only awaits. Writes use ``synchronous=FULL`` in WAL mode: an alert is on disk before the
call that stored it returns, which is what lets the outbox promise that nothing is lost.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from presencebot.alerts import Alert, AlertState, EvidenceItem, Notification, person_from
from presencebot.errors import AlertNotFound, StoreError
from presencebot.events import RoomRef, utcnow
from presencebot.ids import AlertId, EventId, RoomId
from presencebot.rule import Severity
from presencebot.store import RoomStateRow, delivery
from presencebot.store.delivery import NewNotice
from presencebot.store.migrations import MIGRATIONS

T = TypeVar("T")

# Named, not ``SELECT *``: _hydrate unpacks by position, and a later migration that adds a column
# (ALTER TABLE appends it) must not shift or break that unpacking.
_SELECT_ALERTS = (
    "SELECT id, created_at, network, room, rule_id, rule_version, category, severity, target_nick,"
    " target_account, requester_nick, requester_account, explanation, state, acknowledged_by,"
    " acknowledged_at FROM alerts"
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version now in the file."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database is at schema version {version}, newer than this presencebot "
            f"understands ({len(MIGRATIONS)}): upgrade presencebot instead"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; wrap each step explicitly so it is all-or-nothing.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            # executescript stops at the failing statement with the step's transaction still
            # open (and the write lock held): undo the half-applied step here, not at garbage
            # collection, so the file stays at the previous version and usable by others.
            _rollback(conn)
            raise
    return len(MIGRATIONS)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SQLiteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    # --- plumbing ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="presencebot-sqlite")
        try:
            await self._call(self._open_sync)
        except BaseException:
            # A store that failed to open is closed, not half-open: open() may be retried and
            # no worker thread is left behind.
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)
            raise

    def _open_sync(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            # Migrate (which first refuses a schema newer than ours) before switching to WAL:
            # journal_mode=WAL rewrites the file header, and a file this version cannot read
            # must be left exactly as it was for the newer presencebot that wrote it.
            migrate(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except (sqlite3.Error, OSError, StoreError) as exc:
            if conn is not None:
                conn.close()  # release the file (and any lock) now, not at garbage collection
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the alert store {self.path}: {exc}") from exc
        self._conn = conn

    async def _call(self, func: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError("the alert store is not open")
        loop = asyncio.get_running_loop()

        def guarded() -> T:
            # Callers (the runtime, the CLI) handle StoreError; a raw sqlite3 error such as
            # "database is locked" from get/list/acknowledge must not escape as something else.
            try:
                return func()
            except sqlite3.Error as exc:
                raise StoreError(f"the alert store {self.path} failed: {exc}") from exc

        # shield: a cancelled caller must not abandon a write half-way; the thread finishes it.
        return await asyncio.shield(loop.run_in_executor(self._executor, guarded))

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn = self._conn

        def finish() -> None:
            if conn is not None:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(executor, finish)
        executor.shutdown(wait=True)
        self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the alert store is not open")
        return self._conn

    # --- room states -------------------------------------------------------------------------
    async def set_room_state(self, network: str, room: str, state: str, reason: str) -> None:
        def write() -> None:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO room_states (network, room, state, reason, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (network, room) DO UPDATE SET"
                    " state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at",
                    (network, room, state, reason[:500], utcnow().isoformat()),
                )

        await self._call(write)

    async def clear_room_state(self, network: str, room: str) -> None:
        def write() -> None:
            with self.conn:
                self.conn.execute("DELETE FROM room_states WHERE network = ? AND room = ?", (network, room))

        await self._call(write)

    async def room_states(self) -> list[RoomStateRow]:
        def query() -> list[RoomStateRow]:
            rows = self.conn.execute(
                "SELECT network, room, state, reason, updated_at FROM room_states ORDER BY network, room"
            ).fetchall()
            return [RoomStateRow(*row) for row in rows]

        return await self._call(query)

    # --- alerts ------------------------------------------------------------------------------
    async def add(
        self,
        alert: Alert,
        notify: Sequence[tuple[str, str] | NewNotice],
        *,
        trace: Sequence[str] = (),
        escalate_at: datetime | None = None,
        force: str | None = None,
    ) -> Alert:
        notices = [n if isinstance(n, NewNotice) else NewNotice(n[0], n[1]) for n in notify]
        notifications = tuple(Notification(uuid.uuid4().hex, n.target, n.sink) for n in notices)
        await self._call(lambda: self._add_sync(alert, notifications, notices, trace, escalate_at, force))
        return _replace_notifications(alert, notifications)

    def _add_sync(
        self,
        alert: Alert,
        notifications: tuple[Notification, ...],
        notices: Sequence[NewNotice] = (),
        trace: Sequence[str] = (),
        escalate_at: datetime | None = None,
        force: str | None = None,
    ) -> None:
        conn = self.conn
        # Due from the moment it was raised (the dispatcher's clock may be a test's).
        now = alert.created_at.isoformat()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO alerts (id, created_at, network, room, rule_id, rule_version, category,"
                " severity, target_nick, target_account, requester_nick, requester_account,"
                " explanation, state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    alert.id,
                    alert.created_at.isoformat(),
                    alert.room.network,
                    alert.room.id,
                    alert.rule_id,
                    alert.rule_version,
                    alert.category,
                    int(alert.severity),
                    alert.target.nick,
                    alert.target.account,
                    alert.requester.nick if alert.requester else None,
                    alert.requester.account if alert.requester else None,
                    alert.explanation,
                    str(alert.state),
                ),
            )
            conn.executemany(
                "INSERT INTO evidence (alert_id, seq, event_id, native_id, author_nick,"
                " author_account, at, text, flagged, sha256) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        alert.id,
                        seq,
                        e.event_id,
                        e.native_id,
                        e.author.nick,
                        e.author.account,
                        e.at.isoformat(),
                        e.text,
                        int(e.flagged),
                        e.sha256,
                    )
                    for seq, e in enumerate(alert.evidence)
                ],
            )
            conn.executemany(
                "INSERT INTO outbox (id, alert_id, target, sink, next_attempt_at, kind, step)"
                " VALUES (?,?,?,?,?,?,?)",
                [
                    (n.id, alert.id, n.target, n.sink, now, notice.kind, notice.step)
                    for n, notice in zip(
                        notifications,
                        notices or [NewNotice(n.target, n.sink) for n in notifications],
                        strict=True,
                    )
                ],
            )
            conn.execute(
                "UPDATE alerts SET escalate_at = ?, force = ?, updated_at = ? WHERE id = ?",
                (None if escalate_at is None else escalate_at.isoformat(), force, now, alert.id),
            )
            delivery.add_trace(conn, alert.id, trace, alert.created_at)
            conn.execute("COMMIT")
        except (sqlite3.Error, ValueError) as exc:
            # ValueError: text sqlite3 cannot encode (a lone surrogate from a lenient decoder).
            _rollback(conn)
            raise StoreError(f"could not store alert {alert.id}: {exc}") from exc
        except BaseException:
            # Anything else must not leave the transaction open: every later add would fail.
            _rollback(conn)
            raise

    async def extend(self, alert_id: AlertId, evidence: Sequence[EvidenceItem], trace: Sequence[str]) -> None:
        """Add evidence to an open alert (grouping: the same request again, no new page)."""

        def write() -> None:
            conn = self.conn
            now = utcnow()
            conn.execute("BEGIN IMMEDIATE")
            try:
                known = {
                    r[0]
                    for r in conn.execute("SELECT event_id FROM evidence WHERE alert_id = ?", (alert_id,))
                }
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(seq), -1) FROM evidence WHERE alert_id = ?", (alert_id,)
                ).fetchone()
                fresh = [e for e in evidence if e.event_id not in known]
                conn.executemany(
                    "INSERT INTO evidence (alert_id, seq, event_id, native_id, author_nick,"
                    " author_account, at, text, flagged, sha256) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            alert_id,
                            int(last) + 1 + i,
                            e.event_id,
                            e.native_id,
                            e.author.nick,
                            e.author.account,
                            e.at.isoformat(),
                            e.text,
                            int(e.flagged),
                            e.sha256,
                        )
                        for i, e in enumerate(fresh)
                    ],
                )
                conn.execute("UPDATE alerts SET updated_at = ? WHERE id = ?", (now.isoformat(), alert_id))
                delivery.add_trace(conn, alert_id, trace, now)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

        await self._call(write)

    async def find_group(self, alert: Alert, since: datetime) -> AlertId | None:
        def query() -> str | None:
            requester = alert.requester
            return delivery.find_group(
                self.conn,
                network=alert.room.network,
                room=alert.room.id,
                category=alert.category,
                target=(alert.target.nick, alert.target.account),
                requester=None if requester is None else (requester.nick, requester.account),
                since=since,
            )

        found = await self._call(query)
        return None if found is None else AlertId(found)

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction on the store's thread (the dispatcher's steps)."""

        def run() -> T:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return result

        return await self._call(run)

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query function on the store's thread."""
        return await self._call(lambda: work(self.conn))

    async def get(self, alert_id: AlertId) -> Alert:
        return await self._call(lambda: self._get_sync(alert_id))

    def _get_sync(self, alert_id: str) -> Alert:
        row = self.conn.execute(_SELECT_ALERTS + " WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id!r}")
        return self._hydrate(row)

    async def list(self, *, state: AlertState | None = None, limit: int = 100) -> list[Alert]:
        def query() -> list[Alert]:
            sql = _SELECT_ALERTS
            params: tuple[object, ...] = ()
            if state is not None:
                sql += " WHERE state = ?"
                params = (str(state),)
            sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
            rows = self.conn.execute(sql, (*params, limit)).fetchall()
            return [self._hydrate(r) for r in rows]

        return await self._call(query)

    async def acknowledge(self, alert_id: AlertId, by: str) -> Alert:
        def ack() -> Alert:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = utcnow()
                cur = conn.execute(
                    "UPDATE alerts SET state = ?, acknowledged_by = ?, acknowledged_at = ?,"
                    " escalate_at = NULL WHERE id = ? AND state = ?",
                    (
                        str(AlertState.ACKNOWLEDGED),
                        by,
                        now.isoformat(),
                        alert_id,
                        str(AlertState.OPEN),
                    ),
                )
                if cur.rowcount == 0:
                    self._get_sync(alert_id)  # raises AlertNotFound; else it was already acked
                else:
                    delivery.add_trace(conn, alert_id, [f"acknowledged by {by}: escalation stopped"], now)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return self._get_sync(alert_id)

        return await self._call(ack)

    def _hydrate(self, row: tuple[object, ...]) -> Alert:
        (
            aid,
            created,
            network,
            room,
            rule_id,
            rule_version,
            category,
            severity,
            t_nick,
            t_acct,
            r_nick,
            r_acct,
            explanation,
            state,
            ack_by,
            ack_at,
        ) = row
        evidence = tuple(
            EvidenceItem(
                event_id=EventId(str(e[0])),
                native_id=e[1],
                author=person_from(e[2], e[3]),
                at=datetime.fromisoformat(e[4]),
                text=e[5],
                flagged=bool(e[6]),
            )
            for e in self.conn.execute(
                "SELECT event_id, native_id, author_nick, author_account, at, text, flagged"
                " FROM evidence WHERE alert_id = ? ORDER BY seq",
                (aid,),
            )
        )
        # rowid: insertion order, i.e. the configured order add() returned them in.
        notifications = tuple(
            Notification(id=n[0], target=n[1], sink=n[2], state=n[3], attempts=n[4])
            for n in self.conn.execute(
                "SELECT id, target, sink, state, attempts FROM outbox WHERE alert_id = ? ORDER BY rowid",
                (aid,),
            )
        )
        return Alert(
            id=AlertId(str(aid)),
            created_at=datetime.fromisoformat(str(created)),
            room=RoomRef(str(network), RoomId(str(room))),
            rule_id=str(rule_id),
            rule_version=str(rule_version),
            category=str(category),
            severity=Severity(int(str(severity))),
            target=person_from(str(t_nick), None if t_acct is None else str(t_acct)),
            requester=None
            if r_nick is None
            else person_from(str(r_nick), None if r_acct is None else str(r_acct)),
            explanation=str(explanation),
            evidence=evidence,
            state=AlertState(str(state)),
            acknowledged_by=None if ack_by is None else str(ack_by),
            acknowledged_at=None if ack_at is None else datetime.fromisoformat(str(ack_at)),
            notifications=notifications,
        )


def _replace_notifications(alert: Alert, notifications: tuple[Notification, ...]) -> Alert:

    return replace(alert, notifications=notifications)
