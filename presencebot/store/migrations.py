"""Schema migrations, applied in order; ``PRAGMA user_version`` records the last one applied.

Never edit a migration that has shipped: add a new one. Each runs in its own transaction with
the version bump, so a crash mid-migration leaves the previous version intact.
"""

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: alerts, their evidence, and the outbox.
    """
    CREATE TABLE alerts (
        id              TEXT PRIMARY KEY,
        created_at      TEXT NOT NULL,
        network         TEXT NOT NULL,
        room            TEXT NOT NULL,
        rule_id         TEXT NOT NULL,
        rule_version    TEXT NOT NULL,
        category        TEXT NOT NULL,
        severity        INTEGER NOT NULL,
        target_nick     TEXT NOT NULL,
        target_account  TEXT,
        requester_nick  TEXT,
        requester_account TEXT,
        explanation     TEXT NOT NULL,
        state           TEXT NOT NULL,
        acknowledged_by TEXT,
        acknowledged_at TEXT
    );
    CREATE INDEX alerts_state_created ON alerts (state, created_at);
    CREATE TABLE evidence (
        alert_id       TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        seq            INTEGER NOT NULL,
        event_id       TEXT NOT NULL,
        native_id      TEXT,
        author_nick    TEXT NOT NULL,
        author_account TEXT,
        at             TEXT NOT NULL,
        text           TEXT NOT NULL,
        flagged        INTEGER NOT NULL,
        PRIMARY KEY (alert_id, seq)
    );
    CREATE TABLE outbox (
        id            TEXT PRIMARY KEY,
        alert_id      TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        target        TEXT NOT NULL,
        sink          TEXT NOT NULL,
        state         TEXT NOT NULL DEFAULT 'pending',
        attempts      INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error    TEXT,
        UNIQUE (alert_id, target)
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    """,
    # 2: what the room operators decided about the bot (kicked, banned, asked to leave, invited),
    # so that a restart does not walk back into a room it was told to leave.
    """
    CREATE TABLE room_states (
        network     TEXT NOT NULL,
        room        TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (network, room)
    );
    """,
    # 3: delivery — what kind of notice each outbox row is, when it was delivered, escalation
    # state per alert, a trace of every routing and delivery decision, disabled targets.
    """
    CREATE TABLE outbox_v3 (
        id              TEXT PRIMARY KEY,
        alert_id        TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        target          TEXT NOT NULL,
        sink            TEXT NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error      TEXT,
        kind            TEXT NOT NULL DEFAULT 'alert',
        step            INTEGER NOT NULL DEFAULT 0,
        delivered_at    TEXT
    );
    INSERT INTO outbox_v3 (id, alert_id, target, sink, state, attempts, next_attempt_at, last_error)
        SELECT id, alert_id, target, sink, state, attempts, next_attempt_at, last_error
        FROM outbox ORDER BY rowid;
    DROP TABLE outbox;
    ALTER TABLE outbox_v3 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    -- One first notice per alert and target; escalations and failure notices may repeat.
    CREATE UNIQUE INDEX outbox_first_notice ON outbox (alert_id, target) WHERE kind = 'alert';
    ALTER TABLE alerts ADD COLUMN escalation_step INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE alerts ADD COLUMN escalate_at TEXT;
    ALTER TABLE alerts ADD COLUMN force TEXT;
    ALTER TABLE alerts ADD COLUMN updated_at TEXT;
    CREATE INDEX alerts_escalate ON alerts (state, escalate_at);
    CREATE INDEX alerts_group ON alerts (network, room, category, state, created_at);
    CREATE TABLE alert_trace (
        alert_id  TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        seq       INTEGER NOT NULL,
        at        TEXT NOT NULL,
        line      TEXT NOT NULL,
        PRIMARY KEY (alert_id, seq)
    );
    CREATE TABLE disabled_targets (
        target  TEXT PRIMARY KEY,
        at      TEXT NOT NULL,
        reason  TEXT NOT NULL
    );
    """,
    # 4: the officers' console — accounts and sessions, what officers do with alerts, the
    # hash-chained audit log, and the per-message hashes that outlive purged evidence.
    """
    CREATE TABLE users (
        id             INTEGER PRIMARY KEY,
        username       TEXT NOT NULL UNIQUE,
        public_id      TEXT NOT NULL,
        force          TEXT NOT NULL,
        role           TEXT NOT NULL CHECK (role IN ('officer', 'supervisor', 'auditor', 'admin')),
        password_hash  TEXT NOT NULL,
        totp_secret    TEXT,
        disabled       INTEGER NOT NULL DEFAULT 0,
        failed_logins  INTEGER NOT NULL DEFAULT 0,
        locked_until   TEXT,
        created_at     TEXT NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf        TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        expires_at  TEXT NOT NULL,
        revoked     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_user ON sessions (user_id, revoked);
    CREATE TABLE audit_log (
        seq        INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        actor      TEXT,
        action     TEXT NOT NULL,
        object     TEXT,
        outcome    TEXT NOT NULL,
        detail     TEXT NOT NULL DEFAULT '',
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
    );
    CREATE TABLE alert_actions (
        id          INTEGER PRIMARY KEY,
        alert_id    TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        at          TEXT NOT NULL,
        actor       TEXT NOT NULL,
        kind        TEXT NOT NULL,
        reason      TEXT,
        text        TEXT,
        until       TEXT,
        request_id  TEXT UNIQUE
    );
    CREATE INDEX alert_actions_alert ON alert_actions (alert_id, at);
    ALTER TABLE alerts ADD COLUMN claimed_by TEXT;
    ALTER TABLE alerts ADD COLUMN disposition TEXT;
    ALTER TABLE alerts ADD COLUMN disposed_at TEXT;
    ALTER TABLE alerts ADD COLUMN snoozed_until TEXT;
    ALTER TABLE alerts ADD COLUMN purged_at TEXT;
    ALTER TABLE evidence ADD COLUMN sha256 TEXT;
    """,
    # 5: a notification being delivered is claimed (by a worker, until a time), so that several
    # dispatchers sharing one store never send the same row at once, and a claim left by a
    # worker that died expires on its own.
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claimed_until TEXT;
    """,
)
