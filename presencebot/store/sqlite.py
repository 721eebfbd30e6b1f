"""The SQLite alert store: the embedded default, one file, no server.

sqlite3 blocks, so every call runs on one dedicated thread that owns the connection; the event
loop only awaits (see :class:`~presencebot.store.sql.SQLStore`, which holds every query). Writes use
``synchronous=FULL`` in WAL mode: an alert is on disk before the call that stored it returns,
which is what lets the outbox promise that nothing is lost.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from presencebot.errors import StoreError
from presencebot.store.migrations import MIGRATIONS
from presencebot.store.sql import SQLStore, rollback


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
            rollback(conn)
            raise
    return len(MIGRATIONS)


class SQLiteStore(SQLStore):
    _thread_name = "presencebot-sqlite"
    _db_errors = (sqlite3.Error,)

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def describe(self) -> str:
        return str(self.path)

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

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the alert store is not open")
        return self._conn
