"""The PostgreSQL alert store: the same store, the same queries, a server instead of a file.

Selected by ``[store] url = "postgresql://user@host/db"`` (the password belongs in
``PRESENCEBOT_STORE__URL``). Built exactly like :class:`~presencebot.store.sqlite.SQLiteStore`: one
connection owned by the store's one thread, the queries of :class:`~presencebot.store.sql.SQLStore`,
and the project's data functions (written against sqlite3's API) handed a :class:`PgConnection`
that speaks that API.

The driver is asyncpg, as in the fleet's leases. The data functions are synchronous and shared
with SQLite, so the store thread keeps a private event loop of its own and runs each asyncpg call
to completion on it: the bot's loop only ever awaits the thread, as with SQLite.

What the translation does, and why it is enough:

* ``?`` placeholders become ``$1``, ``$2``… (outside quotes and comments);
* ``BEGIN IMMEDIATE`` — SQLite's "take the write lock now" — becomes ``BEGIN`` plus a
  transaction-scoped advisory lock shared by every store on the same schema: one writing
  transaction at a time, as in SQLite. The data functions rely on it (the next ``seq`` of a trace
  or of the evidence is read, then written); readers are never blocked;
* :func:`presencebot.audit.record` also locks ``audit_log`` itself on PostgreSQL, so the audit
  chain stays linear even in a transaction opened without ``BEGIN IMMEDIATE``;
* every text column is ``COLLATE "C"`` and times stay ISO 8601 TEXT (see :mod:`.pg_schema`), so
  comparisons and orderings are those of SQLite;
* rows come back as tuples, and ``rowcount`` is read from the command status (``UPDATE 3``).

Session settings mirror SQLite's pragmas: ``synchronous_commit = on`` (an alert is durable before
``add`` returns, like ``synchronous=FULL``) and ``lock_timeout = 5s`` (like ``busy_timeout``). A
connection the server dropped is replaced on the next call; the call that saw it fail raises
:class:`~presencebot.errors.StoreError`, like every other driver error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from presencebot.errors import StoreError
from presencebot.store import pg_schema
from presencebot.store.sql import POSTGRESQL, SQLStore

T = TypeVar("T")
Params = Sequence[Any]

SESSION_SETTINGS: Final = {
    "client_encoding": "UTF8",
    "synchronous_commit": "on",
    "lock_timeout": "5s",
    # A transaction left open by a stuck process must not hold the write lock for ever.
    "idle_in_transaction_session_timeout": "60s",
}
DRIVER_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
"""What the driver raises: a server error, a dead connection, the network."""

# A quoted literal or identifier, a comment, or a placeholder to number.
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|--[^\n]*|/\*.*?\*/|\?", re.DOTALL)
_BEGIN_WRITE = frozenset({"BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"})
# Statements that return rows (the others report a status such as ``UPDATE 3``).
_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW)\b|\bRETURNING\b", re.IGNORECASE)
_STATUS_COUNT = re.compile(r"(\d+)$")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """sqlite3's SQL (``?`` placeholders) as asyncpg's (``$1``, ``$2``…, in order)."""
    counter = iter(range(1, 1 << 16))

    def number(match: re.Match[str]) -> str:
        found = match.group()
        return f"${next(counter)}" if found == "?" else found

    return _TOKEN.sub(number, sql)


def _transaction_command(sql: str) -> str | None:
    """``"write"`` for ``BEGIN IMMEDIATE``/``EXCLUSIVE``, ``"begin"`` for ``BEGIN [DEFERRED]``."""
    words = " ".join(sql.strip().rstrip(";").split()).upper().removesuffix(" TRANSACTION")
    if words in _BEGIN_WRITE:
        return "write"
    if words in ("BEGIN", "BEGIN DEFERRED"):
        return "begin"
    return None


class Cursor:
    """The result of one statement, read the way the data functions read sqlite3's cursors."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class PgConnection:
    """An asyncpg connection with the part of ``sqlite3.Connection``'s API the data functions use.

    Outside ``BEGIN`` … ``COMMIT`` a statement commits on its own, like sqlite3's
    ``isolation_level=None``. Every call runs on ``loop``, the store thread's private loop.

    One difference cannot be hidden: after an error, PostgreSQL refuses every further statement of
    the transaction until it is rolled back, where SQLite only undoes the failed statement. No
    data function carries on in a transaction after a database error (each lets it propagate and
    the store rolls back), which keeps that difference out of sight.
    """

    dialect: Final = POSTGRESQL

    def __init__(self, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.raw = conn
        self._loop = loop

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    def raw_execute(self, sql: str, *args: Any) -> str:
        """A statement in PostgreSQL's own form (``$1`` placeholders); returns its status."""
        return str(self._run(self.raw.execute(sql, *args)))

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        command = _transaction_command(sql)
        if command is not None:
            self.raw_execute("BEGIN")
            if command == "write":
                self.raw_execute(pg_schema.LOCK_SQL, pg_schema.LOCK_NAMESPACE, pg_schema.WRITE_LOCK)
            return Cursor([], -1)
        if not params and ";" in sql.strip().rstrip(";"):
            self._run(self.raw.execute(sql))  # a script: several statements, no parameters
            return Cursor([], -1)
        query = translate(sql)
        if _ROWS.search(sql):
            records = self._run(self.raw.fetch(query, *params))
            return Cursor([tuple(r) for r in records], len(records))
        status = self._run(self.raw.execute(query, *params))
        found = _STATUS_COUNT.search(status or "")
        return Cursor([], int(found.group(1)) if found else -1)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Cursor:
        rows = [tuple(p) for p in seq_of_params]
        if rows:
            self._run(self.raw.executemany(translate(sql), rows))
        return Cursor([], len(rows))

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())

    def commit(self) -> None:
        if self.in_transaction:
            self._run(self.raw.execute("COMMIT"))

    def rollback(self) -> None:
        if self.in_transaction:
            self._run(self.raw.execute("ROLLBACK"))

    @property
    def closed(self) -> bool:
        return bool(self.raw.is_closed())

    def close(self) -> None:
        self._run(self.raw.close(timeout=5))

    # ``with conn:`` as in sqlite3: commit on success, roll back on error, do not close.
    def __enter__(self) -> PgConnection:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()


def redact(url: str) -> str:
    """``url`` without its password and query parameters (which may hold one), for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PostgresStore(SQLStore):
    _thread_name = "presencebot-postgres"
    _db_errors = DRIVER_ERRORS

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        super().__init__()
        self.url = url
        self._connect_timeout = connect_timeout
        self._pg: PgConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> str:
        return redact(self.url)

    def _scrub(self, exc: BaseException) -> str:
        """The driver's message, with the password cut out should the driver ever quote it."""
        text = str(exc) or type(exc).__name__
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def _connect(self) -> PgConnection:
        """A new connection on the store thread's loop (made on first use, on that thread)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        loop = self._loop
        raw = loop.run_until_complete(
            asyncpg.connect(
                self.url,
                timeout=self._connect_timeout,
                server_settings=SESSION_SETTINGS,
                statement_cache_size=256,
            )
        )
        return PgConnection(raw, loop)

    def _open_sync(self) -> None:
        try:
            pg = self._connect()
        except (*DRIVER_ERRORS, TimeoutError) as exc:
            self._close_loop()
            raise StoreError(f"cannot open the alert store {self.describe()}: {self._scrub(exc)}") from exc
        try:
            pg_schema.migrate(pg)
        except BaseException as exc:
            pg.close()  # release the connection (and any lock) now, not at garbage collection
            self._close_loop()
            if isinstance(exc, DRIVER_ERRORS):
                raise StoreError(
                    f"cannot open the alert store {self.describe()}: {self._scrub(exc)}"
                ) from exc
            raise
        self._pg = pg

    def _before_call(self) -> None:
        # The server restarted or dropped us: a fresh connection (same settings, no migration).
        if self._pg is not None and self._pg.closed:
            self._pg = self._connect()

    def _close_sync(self) -> None:
        pg, self._pg = self._pg, None
        if pg is not None:
            with contextlib.suppress(*DRIVER_ERRORS):  # already gone
                pg.close()
        self._close_loop()

    def _close_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    @property
    def pg(self) -> PgConnection:
        if self._pg is None:
            raise StoreError("the alert store is not open")
        return self._pg

    @property
    def conn(self) -> sqlite3.Connection:
        # The data functions are annotated with sqlite3.Connection, the API PgConnection speaks.
        return cast(sqlite3.Connection, self.pg)
