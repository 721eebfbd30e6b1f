"""The officers' console audit log: append-only and hash-chained, so that who saw or did what with
an alert can be shown to a court, a complaints body or a data-protection auditor afterwards.

Every entry carries the hash of the entry before it (``prev_hash``) and its own ``hash``::

    hash = SHA-256( canonical(entry) ), as lowercase hex
    canonical(entry) = UTF-8 bytes of the JSON object
        {"action": ..., "actor": ..., "at": ..., "detail": ..., "object": ...,
         "outcome": ..., "prev_hash": ..., "seq": ...}
      with keys sorted, no whitespace (separators "," and ":"), non-ASCII characters written
      as themselves (not \\u escapes), ``seq`` a JSON integer, ``actor``/``object`` JSON null
      when absent, ``at`` the ISO 8601 text exactly as stored (``datetime.isoformat()``), and
      ``prev_hash`` 64 zeros for the first entry.

In Python that is ``json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
.encode()`` — the same encoding as :meth:`presencebot.alerts.EvidenceItem.canonical`, so an auditor
can recompute any entry by hand from the row.

What the chain does and does not prove: editing any column of an entry, deleting an entry from
the middle, inserting one, or reordering entries breaks a hash or a link, and :func:`verify`
reports it. It cannot detect someone with write access to the database who truncates the tail
or rewrites the whole chain from some point on and recomputes every hash: nothing secret goes
into a hash. The remedy is anchoring — record :func:`head` somewhere the database's writers cannot
reach (a daily e-mail to the force's professional standards unit, a printed log, another system)
and pass those anchors to :func:`verify`, which then also checks that each is still in the chain.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, NamedTuple

from presencebot.events import utcnow
from presencebot.store.sql import POSTGRESQL, dialect

GENESIS: Final = "0" * 64
"""The ``prev_hash`` of the first entry."""

ACTIONS: Final = frozenset(
    {
        "login",
        "logout",
        "view_alert",
        "search",
        "claim",
        "acknowledge",
        "note",
        "disposition",
        "snooze",
        "intervene",
        "export",
        "user_add",
        "user_disable",
        "user_enable",
        "user_reset",
        "purge",
        "view_audit",
        "csrf",
    }
)
OUTCOMES: Final = frozenset({"ok", "denied", "failed"})
MAX_DETAIL: Final = 2000
"""Longer details are cut (before hashing): a search query must not bloat the log."""

_SELECT = "SELECT seq, at, actor, action, object, outcome, detail, prev_hash, hash FROM audit_log"
_INSERT = (
    "INSERT INTO audit_log (seq, at, actor, action, object, outcome, detail, prev_hash, hash)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str | None
    action: str
    object: str | None
    outcome: str
    detail: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """What :attr:`hash` must be if the entry is unchanged."""
        return entry_hash(
            seq=self.seq,
            at=self.at.isoformat(),
            actor=self.actor,
            action=self.action,
            object=self.object,
            outcome=self.outcome,
            detail=self.detail,
            prev_hash=self.prev_hash,
        )

    def to_json(self) -> dict[str, Any]:
        """Every column, ``at`` as ISO 8601: enough to recompute the hash from the JSON alone."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "object": self.object,
            "outcome": self.outcome,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        """The inverse of :meth:`to_json` (an evidence bundle's custody entries); raises
        ``ValueError``/``TypeError``/``KeyError`` on a malformed object."""
        text_fields = ("action", "outcome", "detail", "prev_hash", "hash")
        if not isinstance(data["seq"], int) or isinstance(data["seq"], bool):
            raise TypeError("seq is not an integer")
        if not all(isinstance(data[k], str) for k in (*text_fields, "at")):
            raise TypeError("a text field is not a string")
        if not all(data[k] is None or isinstance(data[k], str) for k in ("actor", "object")):
            raise TypeError("actor or object is neither a string nor null")
        return cls(
            seq=data["seq"],
            at=datetime.fromisoformat(data["at"]),
            actor=data["actor"],
            action=data["action"],
            object=data["object"],
            outcome=data["outcome"],
            detail=data["detail"],
            prev_hash=data["prev_hash"],
            hash=data["hash"],
        )


def canonical(
    *,
    seq: int,
    at: str,
    actor: str | None,
    action: str,
    object: str | None,
    outcome: str,
    detail: str,
    prev_hash: str,
) -> bytes:
    """The exact bytes an entry's hash is computed over (see the module docstring)."""
    fields = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "object": object,
        "outcome": outcome,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def entry_hash(
    *,
    seq: int,
    at: str,
    actor: str | None,
    action: str,
    object: str | None,
    outcome: str,
    detail: str,
    prev_hash: str,
) -> str:
    """SHA-256 (lowercase hex) of :func:`canonical`."""
    data = canonical(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        object=object,
        outcome=outcome,
        detail=detail,
        prev_hash=prev_hash,
    )
    return hashlib.sha256(data).hexdigest()


def head(conn: sqlite3.Connection) -> str:
    """The newest entry's hash (64 zeros for an empty log): the value to anchor elsewhere."""
    return head_seq(conn)[1]


def head_seq(conn: sqlite3.Connection) -> tuple[int, str]:
    """The newest entry's ``(seq, hash)``; ``(0, 64 zeros)`` for an empty log."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def record(
    conn: sqlite3.Connection,
    *,
    actor: str | None,
    action: str,
    object: str | None,
    outcome: str,
    detail: str = "",
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction (``SQLStore.transaction``).

    It must be the caller's transaction, not one of its own: the entry then commits or rolls back
    with what it records, and ``BEGIN IMMEDIATE`` holds the write lock between reading the head
    and appending, so two writers cannot both chain onto the same entry. On PostgreSQL the log is
    also locked here, whichever way the transaction began.
    """
    if not conn.in_transaction:
        raise RuntimeError("audit.record must run inside the caller's transaction (BEGIN IMMEDIATE)")
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    when = utcnow() if at is None else at
    if when.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    if dialect(conn) == POSTGRESQL:
        # Other processes may append too: hold the log (readers still read) until this
        # transaction ends, so that the head read below is still the head when we append.
        conn.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
    last_seq, prev_hash = head_seq(conn)
    entry = AuditEntry(
        seq=last_seq + 1,
        at=when,
        actor=actor,
        action=action,
        object=object,
        outcome=outcome,
        detail=detail[:MAX_DETAIL],
        prev_hash=prev_hash,
        hash="",
    )
    entry = replace(entry, hash=entry.computed_hash())
    conn.execute(
        _INSERT,
        (
            entry.seq,
            entry.at.isoformat(),
            entry.actor,
            entry.action,
            entry.object,
            entry.outcome,
            entry.detail,
            entry.prev_hash,
            entry.hash,
        ),
    )
    return entry


def _entry(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        seq=int(r[0]),
        at=datetime.fromisoformat(str(r[1])),
        actor=None if r[2] is None else str(r[2]),
        action=str(r[3]),
        object=None if r[4] is None else str(r[4]),
        outcome=str(r[5]),
        detail=str(r[6]),
        prev_hash=str(r[7]),
        hash=str(r[8]),
    )


def entries(
    conn: sqlite3.Connection, *, object: str | None = None, limit: int | None = 1000
) -> list[AuditEntry]:
    """The newest ``limit`` entries (all with ``None``), optionally only those about ``object``,
    returned oldest first — the order the chain is checked in."""
    sql = _SELECT
    params: list[str | int] = []
    if object is not None:
        sql += " WHERE object = ?"
        params.append(object)
    sql += " ORDER BY seq DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_entry(r) for r in reversed(conn.execute(sql, params).fetchall())]


class _Link(NamedTuple):
    """What the chain check needs of one entry, however it was read."""

    seq: int
    prev_hash: str
    hash: str
    computed: str | None
    """``None`` when the entry could not even be read (a malformed timestamp)."""


def verify(conn: sqlite3.Connection, *, anchors: Iterable[str] = ()) -> list[str]:
    """Every problem in the whole log; an empty list means the chain is intact.

    Hashes are recomputed from the stored text (``at`` as stored, not re-formatted), so any
    changed byte counts. ``anchors`` are earlier :func:`head` values kept elsewhere: each must
    still be an entry's hash, or the log was truncated or rewritten after it was taken.
    """
    links = [_raw_link(r) for r in conn.execute(_SELECT + " ORDER BY seq")]
    problems = _check(links, complete=True)
    known = {link.hash for link in links}
    problems += [
        f"anchor {a} is not in the log: it was truncated or rewritten after the anchor was taken"
        for a in anchors
        if a not in known and a != GENESIS
    ]
    return problems


def _raw_link(r: Sequence[Any]) -> _Link:
    seq, at, actor, action, obj, outcome, detail, prev_hash, stored = r
    computed = None
    if all(isinstance(v, str) for v in (at, action, outcome, detail, prev_hash)) and all(
        v is None or isinstance(v, str) for v in (actor, obj)
    ):
        computed = entry_hash(
            seq=int(seq),
            at=at,
            actor=actor,
            action=action,
            object=obj,
            outcome=outcome,
            detail=detail,
            prev_hash=prev_hash,
        )
    return _Link(int(seq), str(prev_hash), str(stored), computed)


def verify_entries(entries: Sequence[AuditEntry], *, complete: bool = True) -> list[str]:
    """Check a list of entries in the order given: each hash recomputed, seqs strictly rising,
    and ``prev_hash`` equal to the previous entry's hash wherever the seqs are consecutive.

    ``complete=False`` is for a selection (an alert's custody entries): gaps in seq are expected
    there and not reported, and the first entry need not be the log's first.
    """
    links = [_Link(e.seq, e.prev_hash, e.hash, e.computed_hash()) for e in entries]
    return _check(links, complete=complete)


def _check(links: Sequence[_Link], *, complete: bool) -> list[str]:
    problems: list[str] = []
    previous: _Link | None = None
    for link in links:
        if link.computed is None:
            problems.append(f"entry {link.seq}: malformed, its hash cannot be recomputed (edited)")
        elif link.computed != link.hash:
            problems.append(f"entry {link.seq}: hash mismatch (the entry was edited)")
        problems += _link_problems(previous, link, complete=complete)
        previous = link
    return problems


def _link_problems(previous: _Link | None, link: _Link, *, complete: bool) -> list[str]:
    if previous is None:
        if not complete:
            return []
        if link.seq != 1:
            return [f"entries before {link.seq} are missing (the log starts at {link.seq}: deleted)"]
        if link.prev_hash != GENESIS:
            return ["entry 1: prev_hash is not the genesis value (entries before it were deleted)"]
        return []
    if link.seq <= previous.seq:
        return [f"entry {link.seq} comes after entry {previous.seq}: entries reordered"]
    found: list[str] = []
    if link.seq != previous.seq + 1:
        if not complete:
            return []
        if link.seq == previous.seq + 2:
            found.append(f"entry {previous.seq + 1} is missing (deleted)")
        else:
            found.append(f"entries {previous.seq + 1}–{link.seq - 1} are missing (deleted)")
    if link.prev_hash != previous.hash:
        found.append(
            f"entry {link.seq}: prev_hash does not match the hash of entry {previous.seq}"
            " (an entry was deleted, inserted, edited or reordered)"
        )
    return found
