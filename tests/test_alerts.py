"""Building alerts: the bounded evidence window, flag/report conversion, the JSON shape, ids."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from presencebot.alerts import (
    Alert,
    AlertState,
    EvidenceItem,
    Notification,
    evidence_window,
    from_flag,
    from_report,
    new_alert_id,
)
from presencebot.config import EvidenceConfig
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, AlertId, EventId, RoomId
from presencebot.rule import Flag, Severity

ROOM = RoomRef("libera", RoomId("#kids"))
T0 = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC)
LILY = Author("lily", AccountId("lily-acct"))
MARK = Author("mark")


def msg(n: int, seconds: float, author: Author = MARK, text: str | None = None) -> Message:
    """Message ``m<n>`` at ``T0 + seconds``."""
    return Message(
        room=ROOM,
        author=author,
        text=text if text is not None else f"text {n}",
        at=T0 + timedelta(seconds=seconds),
        native_id=f"native-{n}",
        id=EventId(f"m{n}"),
    )


def ids(items: tuple[EvidenceItem, ...]) -> list[str]:
    return [e.event_id for e in items]


def policy(messages: int = 10, seconds: float = 600.0) -> EvidenceConfig:
    return EvidenceConfig(context_messages=messages, context_seconds=seconds)


# --- evidence_window ---------------------------------------------------------------------------


def test_window_includes_flagged_message_marked_and_copied() -> None:
    recent = [msg(1, 0), msg(2, 10), msg(3, 20, LILY, "where do u live")]
    items = evidence_window(recent[-1], recent, (), policy())
    assert ids(items) == ["m1", "m2", "m3"]
    assert [e.flagged for e in items] == [False, False, True]
    last = items[-1]
    assert last.native_id == "native-3"
    assert last.author == LILY
    assert last.at == T0 + timedelta(seconds=20)
    assert last.text == "where do u live"


def test_window_keeps_at_most_context_messages_most_recent() -> None:
    recent = [msg(i, i) for i in range(1, 11)]  # m1..m10, one second apart
    items = evidence_window(recent[-1], recent, (), policy(messages=3))
    assert ids(items) == ["m7", "m8", "m9", "m10"]


def test_window_fewer_messages_than_allowed_takes_them_all() -> None:
    recent = [msg(1, 0), msg(2, 1)]
    assert ids(evidence_window(recent[-1], recent, (), policy(messages=50))) == ["m1", "m2"]


def test_window_drops_messages_older_than_context_seconds() -> None:
    recent = [msg(1, 0), msg(2, 39), msg(3, 40), msg(4, 70), msg(5, 100)]
    # horizon = 100 - 60 = 40: m3 (exactly on the horizon) is in, m2 and m1 are out.
    items = evidence_window(recent[-1], recent, (), policy(messages=10, seconds=60))
    assert ids(items) == ["m3", "m4", "m5"]


def test_window_named_messages_included_even_outside_count_and_time_window() -> None:
    recent = [msg(1, 0, LILY, "im 12"), *(msg(i, 590 + i) for i in range(2, 8)), msg(8, 600)]
    flagged = recent[-1]
    items = evidence_window(flagged, recent, (EventId("m1"),), policy(messages=2, seconds=60))
    assert ids(items) == ["m1", "m6", "m7", "m8"]
    assert items[0].text == "im 12"
    assert items[0].flagged is False


def test_window_named_message_not_in_recent_is_ignored() -> None:
    recent = [msg(1, 0), msg(2, 10)]
    items = evidence_window(recent[-1], recent, (EventId("gone"),), policy())
    assert ids(items) == ["m1", "m2"]


def test_window_named_message_already_in_window_appears_once() -> None:
    recent = [msg(1, 0), msg(2, 10), msg(3, 20)]
    items = evidence_window(recent[-1], recent, (EventId("m2"), EventId("m2")), policy())
    assert ids(items) == ["m1", "m2", "m3"]


def test_window_is_in_time_order() -> None:
    # A named message that is older than the count window is inserted last into the selection;
    # the result must still be sorted by time.
    recent = [msg(1, 0), msg(2, 5), msg(3, 10), msg(4, 15)]
    items = evidence_window(recent[-1], recent, (EventId("m1"),), policy(messages=1))
    assert ids(items) == ["m1", "m3", "m4"]
    assert [e.at for e in items] == sorted(e.at for e in items)


def test_window_never_includes_messages_after_the_flagged_one() -> None:
    flagged = msg(2, 10)
    later_same_time = msg(3, 10)
    later = msg(4, 20)
    recent = [msg(1, 0), flagged, later_same_time, later]
    # Even when a rule names them.
    items = evidence_window(flagged, recent, (EventId("m3"), EventId("m4")), policy())
    assert ids(items) == ["m1", "m2"]


def test_window_zero_context_gives_only_flagged_and_named() -> None:
    recent = [msg(1, 0), msg(2, 5), msg(3, 10), msg(4, 15)]
    items = evidence_window(recent[-1], recent, (EventId("m2"),), policy(messages=0))
    assert ids(items) == ["m2", "m4"]
    assert [e.flagged for e in items] == [False, True]


def test_window_zero_context_and_nothing_named_is_just_the_flagged_message() -> None:
    recent = [msg(1, 0), msg(2, 5)]
    items = evidence_window(recent[-1], recent, (), policy(messages=0))
    assert ids(items) == ["m2"]
    assert items[0].flagged is True


def test_window_flagged_message_missing_from_recent_is_still_evidence() -> None:
    flagged = msg(9, 30)
    items = evidence_window(flagged, [msg(1, 0), msg(2, 10)], (), policy())
    assert ids(items) == ["m1", "m2", "m9"]
    assert items[-1].flagged is True


def test_window_accepts_the_rooms_deque() -> None:
    recent = deque([msg(1, 0), msg(2, 10), msg(3, 20)], maxlen=100)
    assert ids(evidence_window(recent[-1], recent, (), policy(messages=1))) == ["m2", "m3"]


# --- from_flag / from_report -------------------------------------------------------------------


def test_from_flag_copies_the_flag() -> None:
    recent = [msg(1, 0, LILY, "im 12"), msg(2, 10, MARK, "hi"), msg(3, 20, MARK, "where do u live")]
    flag = Flag(
        category="grooming",
        target=LILY,
        explanation="asked a 12-year-old where she lives",
        severity=Severity.CRITICAL,
        evidence=(EventId("m1"),),
        requester=MARK,
        rule_id="minor_whereabouts",
        rule_version="3",
        message=EventId("m3"),
    )
    before = datetime.now(UTC)
    alert = from_flag(flag, recent[-1], recent, policy(messages=0))
    after = datetime.now(UTC)
    assert alert.rule_id == "minor_whereabouts"
    assert alert.rule_version == "3"
    assert alert.category == "grooming"
    assert alert.severity is Severity.CRITICAL
    assert alert.target == LILY
    assert alert.requester == MARK
    assert alert.explanation == "asked a 12-year-old where she lives"
    assert alert.room == ROOM
    assert alert.state is AlertState.OPEN
    assert alert.acknowledged_by is None
    assert alert.acknowledged_at is None
    assert alert.notifications == ()
    assert before <= alert.created_at <= after
    assert alert.created_at.tzinfo is not None
    assert re.fullmatch(r"[0-9a-f]{12}", alert.id)
    assert ids(alert.evidence) == ["m1", "m3"]  # the named message and the flagged one


def test_from_flag_without_requester() -> None:
    recent = [msg(1, 0)]
    flag = Flag(category="c", target=MARK, explanation="e", rule_id="r", rule_version="1")
    alert = from_flag(flag, recent[0], recent, policy())
    assert alert.requester is None
    assert alert.severity is Severity.MEDIUM


def test_from_flag_gives_each_alert_its_own_id() -> None:
    recent = [msg(1, 0)]
    flag = Flag(category="c", target=MARK, explanation="e", rule_id="r", rule_version="1")
    assert from_flag(flag, recent[0], recent, policy()).id != from_flag(flag, recent[0], recent, policy()).id


@pytest.mark.parametrize(("direct", "where"), [(True, "privately"), (False, "in the room")])
def test_from_report(direct: bool, where: str) -> None:
    message = Message(
        room=ROOM,
        author=LILY,
        text="!report someone is scaring me",
        at=T0,
        native_id="n-1",
        is_direct=direct,
        id=EventId("r1"),
    )
    alert = from_report(message)
    assert alert.category == "report"
    assert alert.rule_id == "report"
    assert alert.target == LILY
    assert alert.requester is None
    assert alert.severity is Severity.HIGH
    assert alert.room == ROOM
    assert alert.explanation == f"lily sent a report to the bot {where}"
    assert alert.evidence == (
        EvidenceItem(EventId("r1"), "n-1", LILY, T0, "!report someone is scaring me", True),
    )


# --- to_json -----------------------------------------------------------------------------------


def test_to_json_shape() -> None:
    ack_at = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
    alert = Alert(
        id=AlertId("0123456789ab"),
        created_at=T0,
        room=ROOM,
        rule_id="minor_whereabouts",
        rule_version="2",
        category="grooming",
        severity=Severity.CRITICAL,
        target=LILY,
        requester=MARK,
        explanation="why",
        evidence=(EvidenceItem(EventId("m1"), None, MARK, T0, "where do u live", True),),
        state=AlertState.ACKNOWLEDGED,
        acknowledged_by="pc-smith",
        acknowledged_at=ack_at,
        notifications=(Notification("n1", "duty", "email"),),
    )
    assert alert.to_json() == {
        "id": "0123456789ab",
        "created_at": "2024-05-01T14:00:00+00:00",
        "network": "libera",
        "room": "#kids",
        "rule": {"id": "minor_whereabouts", "version": "2"},
        "category": "grooming",
        "severity": "critical",
        "target": {"nick": "lily", "account": "lily-acct"},
        "requester": {"nick": "mark", "account": None},
        "explanation": "why",
        "state": "acknowledged",
        "acknowledged_by": "pc-smith",
        "acknowledged_at": "2024-05-01T15:00:00+00:00",
        "evidence": [
            {
                "event_id": "m1",
                "native_id": None,
                "author": {"nick": "mark", "account": None},
                "at": "2024-05-01T14:00:00+00:00",
                "text": "where do u live",
                "flagged": True,
            }
        ],
        "notifications": [{"id": "n1", "target": "duty", "sink": "email", "state": "pending", "attempts": 0}],
    }


def test_to_json_open_alert_without_requester() -> None:
    alert = from_report(Message(room=ROOM, author=LILY, text="help", at=T0, id=EventId("r1")))
    data = alert.to_json()
    assert data["state"] == "open"
    assert data["severity"] == "high"
    assert data["requester"] is None
    assert data["acknowledged_by"] is None
    assert data["acknowledged_at"] is None
    assert data["notifications"] == []
    assert datetime.fromisoformat(data["created_at"]) == alert.created_at
    assert type(data["severity"]) is str
    assert type(data["state"]) is str


@pytest.mark.parametrize("severity", list(Severity))
def test_to_json_severity_is_lower_case_name(severity: Severity) -> None:
    alert = from_report(Message(room=ROOM, author=LILY, text="help", at=T0))
    data = replace(alert, severity=severity).to_json()
    assert data["severity"] == severity.name.lower()


# --- new_alert_id ------------------------------------------------------------------------------


def test_new_alert_id_format_and_uniqueness() -> None:
    generated = [new_alert_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in generated)
    assert len(set(generated)) == len(generated)
