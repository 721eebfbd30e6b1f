"""The PostgreSQL alert store: the same store, the same queries, a server instead of a file.

Selected by ``[store] url = "postgresql://user@host/db"`` (the password belongs in
``PRESENCEBOT_STORE__URL``). Built exactly like :class:`~presencebot.store.sqlite.SQLiteStore`: one
synchronous psycopg connection owned by one dedicated thread, the queries of
:class:`~presencebot.store.sql.SQLStore`, and the project's data functions (written against
sqlite3's API) handed a :class:`PgConnection` that speaks that API.

What the translation does, and why it is enough:

* ``?`` placeholders become ``%s`` (outside quotes and comments) and a literal ``%`` becomes ``%%``;
* ``BEGIN IMMEDIATE`` — SQLite's "take the write lock now" — becomes ``BEGIN`` plus a
  transaction-scoped advisory lock shared by every store on the same schema: one writing
  transaction at a time, as in SQLite. The data functions rely on it (the next ``seq`` of a trace
  or of the evidence is read, then written); readers are never blocked;
* :func:`presencebot.audit.record` also locks ``audit_log`` itself on PostgreSQL, so the audit
  chain stays linear even in a transaction opened without ``BEGIN IMMEDIATE``;
* every text column is ``COLLATE "C"`` and times stay ISO 8601 TEXT (see :mod:`.pg_schema`), so
  comparisons and orderings are those of SQLite.

Session settings mirror SQLite's pragmas: ``synchronous_commit = on`` (an alert is durable before
``add`` returns, like ``synchronous=FULL``) and ``lock_timeout = 5s`` (like ``busy_timeout``). A
connection the server dropped is replaced on the next call; the call that saw it fail raises
:class:`~presencebot.errors.StoreError`, like every other driver error.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.pq import TransactionStatus

from presencebot.errors import StoreError
from presencebot.store import pg_schema
from presencebot.store.sql import POSTGRESQL, SQLStore

Params = Sequence[Any] | Mapping[str, Any]
Cursor = psycopg.Cursor[tuple[Any, ...]]

SESSION_SETTINGS: Final = (
    "SET client_encoding = 'UTF8'",
    "SET synchronous_commit = on",
    "SET lock_timeout = '5s'",
    # A transaction left open by a stuck process must not hold the write lock for ever.
    "SET idle_in_transaction_session_timeout = '60s'",
)

# A quoted literal or identifier, a comment, or one of the two characters to translate.
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|--[^\n]*|/\*.*?\*/|[?%]", re.DOTALL)
_BEGIN_WRITE = frozenset({"BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"})


def _replace(match: re.Match[str]) -> str:
    found = match.group()
    if found == "?":
        return "%s"
    return found.replace("%", "%%")  # psycopg reads % everywhere, even inside quotes


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """sqlite3's SQL (``?`` placeholders) as psycopg's (``%s``; a literal ``%`` doubled)."""
    return _TOKEN.sub(_replace, sql)


def _transaction_command(sql: str) -> str | None:
    """``"write"`` for ``BEGIN IMMEDIATE``/``EXCLUSIVE``, ``"begin"`` for ``BEGIN [DEFERRED]``."""
    words = " ".join(sql.strip().rstrip(";").split()).upper().removesuffix(" TRANSACTION")
    if words in _BEGIN_WRITE:
        return "write"
    if words in ("BEGIN", "BEGIN DEFERRED"):
        return "begin"
    return None


class PgConnection:
    """A psycopg connection with the part of ``sqlite3.Connection``'s API the data functions use.

    The wrapped connection is in autocommit mode, like sqlite3's ``isolation_level=None``: a
    statement outside ``BEGIN`` … ``COMMIT`` commits on its own.

    One difference cannot be hidden: after an error, PostgreSQL refuses every further statement of
    the transaction until it is rolled back, where SQLite only undoes the failed statement. No
    data function carries on in a transaction after a database error (each lets it propagate and
    the store rolls back), which keeps that difference out of sight.
    """

    dialect: Final = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        command = _transaction_command(sql)
        if command is not None:
            cursor = self.raw.execute("BEGIN")
            if command == "write":
                self.raw.execute(pg_schema.LOCK_SQL, (pg_schema.LOCK_NAMESPACE, pg_schema.WRITE_LOCK))
            return cursor
        return self.raw.execute(translate(sql), params)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), seq_of_params)
        return cursor

    @property
    def in_transaction(self) -> bool:
        status = self.raw.info.transaction_status
        return status not in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN)

    def commit(self) -> None:
        if self.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    @property
    def closed(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()

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
    _db_errors = (psycopg.Error,)

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        super().__init__()
        self.url = url
        self._connect_timeout = connect_timeout
        self._pg: PgConnection | None = None

    def describe(self) -> str:
        return redact(self.url)

    def _scrub(self, exc: BaseException) -> str:
        """The driver's message, with the password cut out should the driver ever quote it."""
        text = str(exc)
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        raw = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
        try:
            for setting in SESSION_SETTINGS:
                raw.execute(setting)
        except BaseException:
            raw.close()
            raise
        return raw

    def _open_sync(self) -> None:
        try:
            raw = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the alert store {self.describe()}: {self._scrub(exc)}") from exc
        try:
            pg_schema.migrate(raw)
        except BaseException as exc:
            raw.close()  # release the connection (and any lock) now, not at garbage collection
            if isinstance(exc, psycopg.Error):
                raise StoreError(
                    f"cannot open the alert store {self.describe()}: {self._scrub(exc)}"
                ) from exc
            raise
        self._pg = PgConnection(raw)

    def _before_call(self) -> None:
        # The server restarted or dropped us: a fresh connection (same settings, no migration).
        if self._pg is not None and self._pg.closed:
            self._pg = PgConnection(self._connect())

    def _close_sync(self) -> None:
        pg, self._pg = self._pg, None
        if pg is not None:
            pg.close()

    @property
    def pg(self) -> PgConnection:
        if self._pg is None:
            raise StoreError("the alert store is not open")
        return self._pg

    @property
    def conn(self) -> sqlite3.Connection:
        # The data functions are annotated with sqlite3.Connection, the API PgConnection speaks.
        return cast(sqlite3.Connection, self.pg)
