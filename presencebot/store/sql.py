"""What the SQL alert stores share: one dedicated database thread and every query of the store.

:class:`SQLStore` holds the store interface (alerts, evidence, outbox rows, room states,
``transaction``/``read`` for the data functions) written once; a backend supplies the connection:
:class:`~presencebot.store.sqlite.SQLiteStore` a ``sqlite3.Connection``,
:class:`~presencebot.store.postgres.PostgresStore` a :class:`~presencebot.store.postgres.PgConnection`
that speaks the part of sqlite3's API the data functions use (``?`` placeholders, ``BEGIN
IMMEDIATE``, ``in_transaction``). The data functions (:mod:`.delivery`, :mod:`presencebot.audit`,
:mod:`presencebot.accounts`, :mod:`presencebot.evidence`, :mod:`presencebot.retention`, the
console's queries) are plain synchronous functions on that connection, so there is one code path
for both backends.

Every database call runs on the store's one thread, which owns the connection; the event loop
only awaits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import ClassVar, TypeVar

from presencebot.alerts import Alert, AlertState, EvidenceItem, Notification, person_from
from presencebot.errors import AlertNotFound, Fenced, StoreError
from presencebot.events import RoomRef, utcnow
from presencebot.ids import AlertId, EventId, RoomId
from presencebot.rule import Severity
from presencebot.store import Fence, RoomStateRow, delivery
from presencebot.store.delivery import NewNotice

T = TypeVar("T")

POSTGRESQL = "postgresql"
"""The :func:`dialect` of a PostgreSQL connection."""

# Named, not ``SELECT *``: _hydrate unpacks by position, and a later migration that adds a column
# (ALTER TABLE appends it) must not shift or break that unpacking.
_SELECT_ALERTS = (
    "SELECT id, created_at, network, room, rule_id, rule_version, category, severity, target_nick,"
    " target_account, requester_nick, requester_account, explanation, state, acknowledged_by,"
    " acknowledged_at FROM alerts"
)


def dialect(conn: object) -> str:
    """``"sqlite"`` or ``"postgresql"``: for the rare data function that must differ."""
    return str(getattr(conn, "dialect", "sqlite"))


def is_unique_violation(exc: BaseException) -> bool:
    """Whether ``exc`` is a UNIQUE (or primary key) violation, from either backend.

    Checked by attribute, so that this module does not need to import the PostgreSQL driver.
    """
    if isinstance(exc, sqlite3.IntegrityError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code in (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
    return getattr(exc, "sqlstate", None) == "23505"  # PostgreSQL's unique_violation


_FENCE = (
    "SELECT 1 FROM fleet_units WHERE unit = ? AND owner = ? AND epoch = ?"
    " AND expires_at > clock_timestamp() FOR KEY SHARE"
)


def check_fence(conn: sqlite3.Connection, fence: Fence | None) -> None:
    """Inside a write transaction: raise :class:`Fenced` unless the lease holds. The row lock
    (``FOR KEY SHARE``) makes a claimer skip the unit until this transaction ends, so a takeover
    cannot slip in between this check and the write it guards."""
    if fence is None:
        return
    if conn.execute(_FENCE, (fence.unit, fence.owner, fence.epoch)).fetchone() is None:
        raise Fenced(f"{fence.unit} is no longer held by {fence.owner} at epoch {fence.epoch}")


def has_lease_table(conn: sqlite3.Connection) -> bool:
    """Whether the leases live in this store's database, so that writes can be fenced inside
    their own transaction (PostgreSQL, with the fleet's tables in the same database)."""
    if dialect(conn) != POSTGRESQL:
        return False
    (found,) = conn.execute("SELECT to_regclass('fleet_units') IS NOT NULL").fetchone()
    return bool(found)


def insert_evidence(
    conn: sqlite3.Connection, alert_id: str, items: Sequence[EvidenceItem], *, first_seq: int
) -> None:
    """Write evidence items in order, numbered from ``first_seq`` (a new alert, or grouping)."""
    conn.executemany(
        "INSERT INTO evidence (alert_id, seq, event_id, native_id, author_nick,"
        " author_account, at, text, flagged, sha256) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (
                alert_id,
                first_seq + i,
                e.event_id,
                e.native_id,
                e.author.nick,
                e.author.account,
                e.at.isoformat(),
                e.text,
                int(e.flagged),
                e.sha256,
            )
            for i, e in enumerate(items)
        ],
    )


def rollback(conn: sqlite3.Connection) -> None:
    """End an open transaction (if any), so that the connection stays usable."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SQLStore:
    """The alert store on one SQL connection; subclasses open, close and describe it."""

    _thread_name: ClassVar[str] = "presencebot-store"
    _db_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """The backend's own errors, turned into :class:`StoreError` at every call."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    # --- what a backend provides -------------------------------------------------------------
    def describe(self) -> str:
        """Where the data lives, for messages (never a password)."""
        raise NotImplementedError

    def _open_sync(self) -> None:
        """Connect and migrate (on the store's thread); raise :class:`StoreError` on failure."""
        raise NotImplementedError

    def _close_sync(self) -> None:
        """Release the connection (on the store's thread)."""
        raise NotImplementedError

    def _before_call(self) -> None:
        """Run on the store's thread before each call (a backend may reconnect here)."""

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection the data functions receive (sqlite3's API; see the module docstring)."""
        raise NotImplementedError

    # --- plumbing ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        try:
            await self._call(self._open_sync)
        except BaseException:
            # A store that failed to open is closed, not half-open: open() may be retried and
            # no worker thread is left behind.
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)
            raise

    async def _call(self, func: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError("the alert store is not open")
        loop = asyncio.get_running_loop()

        def guarded() -> T:
            # Callers (the runtime, the CLI) handle StoreError; a raw driver error such as
            # "database is locked" from get/list/acknowledge must not escape as something else.
            try:
                self._before_call()
                return func()
            except self._db_errors as exc:
                raise StoreError(f"the alert store {self.describe()} failed: {exc}") from exc

        # shield: a cancelled caller must not abandon a write half-way; the thread finishes it.
        return await asyncio.shield(loop.run_in_executor(self._executor, guarded))

    async def close(self) -> None:
        """Finish every write already accepted, then release the database."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        executor.shutdown(wait=True)

    # --- room states -------------------------------------------------------------------------
    async def set_room_state(self, network: str, room: str, state: str, reason: str) -> None:
        def write() -> None:
            # One statement outside any transaction: it commits on its own.
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
        fence: Fence | None = None,
    ) -> Alert:
        notices = [n if isinstance(n, NewNotice) else NewNotice(n[0], n[1]) for n in notify]
        notifications = tuple(Notification(uuid.uuid4().hex, n.target, n.sink) for n in notices)
        await self._call(
            lambda: self._add_sync(alert, notifications, notices, trace, escalate_at, force, fence)
        )
        return replace(alert, notifications=notifications)

    def _add_sync(
        self,
        alert: Alert,
        notifications: tuple[Notification, ...],
        notices: Sequence[NewNotice] = (),
        trace: Sequence[str] = (),
        escalate_at: datetime | None = None,
        force: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        conn = self.conn
        # ValueError: text the driver cannot encode (a lone surrogate from a lenient decoder).
        refused: tuple[type[Exception], ...] = (*self._db_errors, ValueError)
        # Due from the moment it was raised (the dispatcher's clock may be a test's).
        now = alert.created_at.isoformat()
        try:
            conn.execute("BEGIN IMMEDIATE")
            check_fence(conn, fence)
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
            insert_evidence(conn, alert.id, alert.evidence, first_seq=0)
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
        except refused as exc:
            rollback(conn)
            raise StoreError(f"could not store alert {alert.id}: {exc}") from exc
        except BaseException:
            # Anything else must not leave the transaction open: every later add would fail.
            rollback(conn)
            raise

    async def extend(
        self,
        alert_id: AlertId,
        evidence: Sequence[EvidenceItem],
        trace: Sequence[str],
        *,
        fence: Fence | None = None,
    ) -> None:
        """Add evidence to an open alert (grouping: the same request again, no new page)."""

        def write() -> None:
            conn = self.conn
            now = utcnow()
            conn.execute("BEGIN IMMEDIATE")
            try:
                check_fence(conn, fence)
                known = {
                    r[0]
                    for r in conn.execute("SELECT event_id FROM evidence WHERE alert_id = ?", (alert_id,))
                }
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(seq), -1) FROM evidence WHERE alert_id = ?", (alert_id,)
                ).fetchone()
                fresh = [e for e in evidence if e.event_id not in known]
                insert_evidence(conn, alert_id, fresh, first_seq=int(last) + 1)
                conn.execute("UPDATE alerts SET updated_at = ? WHERE id = ?", (now.isoformat(), alert_id))
                delivery.add_trace(conn, alert_id, trace, now)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
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
                rollback(conn)
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
                rollback(conn)
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
