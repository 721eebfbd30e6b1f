"""PostgreSQL schema migrations: the same steps as :mod:`presencebot.store.migrations`
(SQLite), so that a schema version means the same tables on both backends.

``schema_version`` (one row) plays the part of SQLite's ``PRAGMA user_version``. Each step runs in
its own transaction together with the version bump, under an advisory lock, so a crash or a
failing statement leaves the previous version intact and two processes starting at once migrate
once. Never edit a step that has shipped: add one here *and* in ``migrations.py``.

Written to behave exactly like the SQLite schema, not to be idiomatic PostgreSQL:

* every text column is ``COLLATE "C"``: comparisons and ``ORDER BY`` are by code point, like
  SQLite's BINARY collation, whatever the database's locale. The stored times are ISO 8601 TEXT on
  both backends, and the code compares them as text (``next_attempt_at <= ?``), which only holds
  in code point order;
* tables read in insertion order (``alerts``, ``outbox``) have a ``rowid`` identity column, which
  is what ``ORDER BY rowid`` meant in SQLite;
* SQLite's ``INTEGER PRIMARY KEY`` auto ids (``users.id``, ``alert_actions.id``) are identity
  columns; ``audit_log.seq`` is always written explicitly, as in SQLite;
* booleans stay ``INTEGER`` 0/1 (``flagged``, ``disabled``, ``revoked``), as the code writes them.

Step 3 rebuilt ``outbox`` in SQLite (which cannot drop a constraint); here it is altered in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from presencebot.errors import StoreError

if TYPE_CHECKING:
    from presencebot.store.postgres import PgConnection

LOCK_NAMESPACE: Final = 0x70B5_0001
"""First key of this store's advisory locks (the two-key form; its second key is a hash of the
schema name, so stores in different schemas of one database do not wait for each other)."""
MIGRATION_LOCK: Final = 1
WRITE_LOCK: Final = 2
"""``BEGIN IMMEDIATE`` (see :class:`~presencebot.store.postgres.PgConnection`)."""

LOCK_SQL: Final = (
    "SELECT pg_advisory_xact_lock($1::integer,"
    " hashtext(COALESCE(current_schema(), '') || '/' || $2::integer::text))"
)
"""Take lock ``(LOCK_NAMESPACE, hash(schema/name))`` until the transaction ends."""

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: alerts, their evidence, and the outbox.
    """
    CREATE TABLE alerts (
        rowid           BIGINT GENERATED ALWAYS AS IDENTITY,
        id              TEXT COLLATE "C" PRIMARY KEY,
        created_at      TEXT COLLATE "C" NOT NULL,
        network         TEXT COLLATE "C" NOT NULL,
        room            TEXT COLLATE "C" NOT NULL,
        rule_id         TEXT COLLATE "C" NOT NULL,
        rule_version    TEXT COLLATE "C" NOT NULL,
        category        TEXT COLLATE "C" NOT NULL,
        severity        INTEGER NOT NULL,
        target_nick     TEXT COLLATE "C" NOT NULL,
        target_account  TEXT COLLATE "C",
        requester_nick  TEXT COLLATE "C",
        requester_account TEXT COLLATE "C",
        explanation     TEXT COLLATE "C" NOT NULL,
        state           TEXT COLLATE "C" NOT NULL,
        acknowledged_by TEXT COLLATE "C",
        acknowledged_at TEXT COLLATE "C"
    );
    CREATE INDEX alerts_state_created ON alerts (state, created_at);
    CREATE TABLE evidence (
        alert_id       TEXT COLLATE "C" NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        seq            INTEGER NOT NULL,
        event_id       TEXT COLLATE "C" NOT NULL,
        native_id      TEXT COLLATE "C",
        author_nick    TEXT COLLATE "C" NOT NULL,
        author_account TEXT COLLATE "C",
        at             TEXT COLLATE "C" NOT NULL,
        text           TEXT COLLATE "C" NOT NULL,
        flagged        INTEGER NOT NULL,
        PRIMARY KEY (alert_id, seq)
    );
    CREATE TABLE outbox (
        rowid           BIGINT GENERATED ALWAYS AS IDENTITY,
        id              TEXT COLLATE "C" PRIMARY KEY,
        alert_id        TEXT COLLATE "C" NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        target          TEXT COLLATE "C" NOT NULL,
        sink            TEXT COLLATE "C" NOT NULL,
        state           TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT COLLATE "C" NOT NULL,
        last_error      TEXT COLLATE "C",
        CONSTRAINT outbox_alert_target UNIQUE (alert_id, target)
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    """,
    # 2: what the room operators decided about the bot (kicked, banned, asked to leave, invited).
    """
    CREATE TABLE room_states (
        network     TEXT COLLATE "C" NOT NULL,
        room        TEXT COLLATE "C" NOT NULL,
        state       TEXT COLLATE "C" NOT NULL,
        reason      TEXT COLLATE "C" NOT NULL DEFAULT '',
        updated_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (network, room)
    );
    """,
    # 3: delivery — notice kinds, delivery time, escalation state, traces, disabled targets.
    """
    ALTER TABLE outbox DROP CONSTRAINT outbox_alert_target;
    ALTER TABLE outbox
        ADD COLUMN kind         TEXT COLLATE "C" NOT NULL DEFAULT 'alert',
        ADD COLUMN step         INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN delivered_at TEXT COLLATE "C";
    -- One first notice per alert and target; escalations and failure notices may repeat.
    CREATE UNIQUE INDEX outbox_first_notice ON outbox (alert_id, target) WHERE kind = 'alert';
    ALTER TABLE alerts
        ADD COLUMN escalation_step INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN escalate_at     TEXT COLLATE "C",
        ADD COLUMN force           TEXT COLLATE "C",
        ADD COLUMN updated_at      TEXT COLLATE "C";
    CREATE INDEX alerts_escalate ON alerts (state, escalate_at);
    CREATE INDEX alerts_group ON alerts (network, room, category, state, created_at);
    CREATE TABLE alert_trace (
        alert_id  TEXT COLLATE "C" NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        seq       INTEGER NOT NULL,
        at        TEXT COLLATE "C" NOT NULL,
        line      TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (alert_id, seq)
    );
    CREATE TABLE disabled_targets (
        target  TEXT COLLATE "C" PRIMARY KEY,
        at      TEXT COLLATE "C" NOT NULL,
        reason  TEXT COLLATE "C" NOT NULL
    );
    """,
    # 4: the officers' console — accounts, sessions, officers' actions, the hash-chained audit
    # log, and the per-message hashes that outlive purged evidence.
    """
    CREATE TABLE users (
        id             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        username       TEXT COLLATE "C" NOT NULL UNIQUE,
        public_id      TEXT COLLATE "C" NOT NULL,
        force          TEXT COLLATE "C" NOT NULL,
        role           TEXT COLLATE "C" NOT NULL
                       CHECK (role IN ('officer', 'supervisor', 'auditor', 'admin')),
        password_hash  TEXT COLLATE "C" NOT NULL,
        totp_secret    TEXT COLLATE "C",
        disabled       INTEGER NOT NULL DEFAULT 0,
        failed_logins  INTEGER NOT NULL DEFAULT 0,
        locked_until   TEXT COLLATE "C",
        created_at     TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  TEXT COLLATE "C" PRIMARY KEY,
        user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf        TEXT COLLATE "C" NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        last_seen   TEXT COLLATE "C" NOT NULL,
        expires_at  TEXT COLLATE "C" NOT NULL,
        revoked     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_user ON sessions (user_id, revoked);
    CREATE TABLE audit_log (
        seq        BIGINT PRIMARY KEY,
        at         TEXT COLLATE "C" NOT NULL,
        actor      TEXT COLLATE "C",
        action     TEXT COLLATE "C" NOT NULL,
        object     TEXT COLLATE "C",
        outcome    TEXT COLLATE "C" NOT NULL,
        detail     TEXT COLLATE "C" NOT NULL DEFAULT '',
        prev_hash  TEXT COLLATE "C" NOT NULL,
        hash       TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE alert_actions (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        alert_id    TEXT COLLATE "C" NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        at          TEXT COLLATE "C" NOT NULL,
        actor       TEXT COLLATE "C" NOT NULL,
        kind        TEXT COLLATE "C" NOT NULL,
        reason      TEXT COLLATE "C",
        text        TEXT COLLATE "C",
        until       TEXT COLLATE "C",
        request_id  TEXT COLLATE "C" UNIQUE
    );
    CREATE INDEX alert_actions_alert ON alert_actions (alert_id, at);
    ALTER TABLE alerts
        ADD COLUMN claimed_by    TEXT COLLATE "C",
        ADD COLUMN disposition   TEXT COLLATE "C",
        ADD COLUMN disposed_at   TEXT COLLATE "C",
        ADD COLUMN snoozed_until TEXT COLLATE "C",
        ADD COLUMN purged_at     TEXT COLLATE "C";
    ALTER TABLE evidence ADD COLUMN sha256 TEXT COLLATE "C";
    """,
    # 5: outbox claims (see migrations.py).
    """
    ALTER TABLE outbox
        ADD COLUMN claimed_by    TEXT COLLATE "C",
        ADD COLUMN claimed_until TEXT COLLATE "C";
    """,
)

_VERSION_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS schema_version (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        version   INTEGER NOT NULL
    );
    INSERT INTO schema_version (singleton, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
"""


def schema_version(conn: PgConnection) -> int:
    """The version recorded in the current schema (after :data:`_VERSION_TABLE` ran)."""
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: PgConnection, migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Bring the schema (the first of ``search_path``) up to date; returns the version now in it.

    Each step is its own transaction, taken under the migration lock, so a failing step leaves
    the previous version and two processes starting together migrate once. Refuses, changing
    nothing, a schema newer than ``migrations`` knows.
    """
    while True:
        conn.execute("BEGIN")
        try:
            conn.raw_execute(LOCK_SQL, LOCK_NAMESPACE, MIGRATION_LOCK)
            conn.execute(_VERSION_TABLE)
            version = schema_version(conn)
            if version > len(migrations):
                raise StoreError(
                    f"the database is at schema version {version}, newer than this presencebot "
                    f"understands ({len(migrations)}): upgrade presencebot instead"
                )
            if version == len(migrations):
                conn.commit()
                return version
            conn.execute(migrations[version])
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
