"""Alerts: a flag turned into a durable record with its evidence, for officers to act on.

The evidence is the flagged message, the earlier messages the rule named, and a bounded context
window before it (``[evidence]`` in config) — never more. Building the alert is pure; storing it
(alert, evidence and one outbox row per notification, in one transaction) is the store's job.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from presencebot.config import EvidenceConfig
from presencebot.events import Author, Message, RoomRef, utcnow
from presencebot.ids import AccountId, AlertId, EventId
from presencebot.rule import Flag, Severity


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    event_id: EventId
    native_id: str | None
    author: Author
    at: datetime
    text: str
    flagged: bool
    """True for the message that completed the request."""

    def canonical(self) -> bytes:
        """The item as fixed bytes (sorted-key JSON, UTF-8): what its SHA-256 is computed over, at
        storage and again by ``presencebot evidence verify``."""
        return json.dumps(
            {
                "event_id": self.event_id,
                "native_id": self.native_id,
                "author_nick": self.author.nick,
                "author_account": self.author.account,
                "at": self.at.isoformat(),
                "text": self.text,
                "flagged": self.flagged,
            },
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


@dataclass(frozen=True, slots=True)
class Notification:
    """One outbox row: the alert must reach this configured notification target."""

    id: str
    target: str
    sink: str
    state: str = "pending"
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    id: AlertId
    created_at: datetime
    room: RoomRef
    rule_id: str
    rule_version: str
    category: str
    severity: Severity
    target: Author
    requester: Author | None
    explanation: str
    evidence: tuple[EvidenceItem, ...]
    state: AlertState = AlertState.OPEN
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    notifications: tuple[Notification, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape used by ``presencebot alerts ... --json``."""

        def person(a: Author | None) -> dict[str, str | None] | None:
            return None if a is None else {"nick": a.nick, "account": a.account}

        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "network": self.room.network,
            "room": self.room.id,
            "rule": {"id": self.rule_id, "version": self.rule_version},
            "category": self.category,
            "severity": str(self.severity),
            "target": person(self.target),
            "requester": person(self.requester),
            "explanation": self.explanation,
            "state": str(self.state),
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "evidence": [
                {
                    "event_id": e.event_id,
                    "native_id": e.native_id,
                    "author": person(e.author),
                    "at": e.at.isoformat(),
                    "text": e.text,
                    "flagged": e.flagged,
                }
                for e in self.evidence
            ],
            "notifications": [
                {
                    "id": n.id,
                    "target": n.target,
                    "sink": n.sink,
                    "state": n.state,
                    "attempts": n.attempts,
                }
                for n in self.notifications
            ],
        }


def new_alert_id() -> AlertId:
    """Short enough to type in ``!ack <id>``, random enough (48 bits) never to collide here."""
    return AlertId(secrets.token_hex(6))


def evidence_window(
    flagged: Message, recent: Sequence[Message], named: Iterable[EventId], policy: EvidenceConfig
) -> tuple[EvidenceItem, ...]:
    """The flagged message, the messages the rule named, and at most ``context_messages`` earlier
    messages from the last ``context_seconds`` — in time order."""
    # Never anything said after the flagged message, named or not: the evidence is what led up
    # to the flag. ``recent`` is the room's live buffer, so should it already hold later messages,
    # cut at the flagged message's position as well as by time (equal timestamps are common).
    earlier = [m for m in itertools.takewhile(lambda m: m.id != flagged.id, recent) if m.at <= flagged.at]
    horizon = flagged.at - timedelta(seconds=policy.context_seconds)
    before = [m for m in earlier if horizon <= m.at]
    chosen = (
        {m.id: m for m in before[len(before) - policy.context_messages :]} if policy.context_messages else {}
    )
    wanted = set(named)
    for m in earlier:
        if m.id in wanted:
            chosen[m.id] = m
    chosen[flagged.id] = flagged
    ordered = sorted(chosen.values(), key=lambda m: m.at)
    return tuple(EvidenceItem(m.id, m.native_id, m.author, m.at, m.text, m.id == flagged.id) for m in ordered)


def from_flag(flag: Flag, message: Message, recent: Sequence[Message], policy: EvidenceConfig) -> Alert:
    return Alert(
        id=new_alert_id(),
        created_at=utcnow(),
        room=message.room,
        rule_id=flag.rule_id,
        rule_version=flag.rule_version,
        category=flag.category,
        severity=flag.severity,
        target=flag.target,
        requester=flag.requester,
        explanation=flag.explanation,
        evidence=evidence_window(message, recent, flag.evidence, policy),
    )


def from_report(message: Message) -> Alert:
    """A person's own ``!report``: the reporter is the target (the one who may need help)."""
    return Alert(
        id=new_alert_id(),
        created_at=utcnow(),
        room=message.room,
        rule_id="report",
        rule_version="1",
        category="report",
        severity=Severity.HIGH,
        target=message.author,
        requester=None,
        explanation=f"{message.author.nick} sent a report to the bot"
        + (" privately" if message.is_direct else " in the room"),
        evidence=(
            EvidenceItem(message.id, message.native_id, message.author, message.at, message.text, True),
        ),
    )


def person_from(nick: str, account: str | None) -> Author:
    return Author(nick=nick, account=AccountId(account) if account is not None else None)
