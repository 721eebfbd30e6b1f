"""Replaying a scripted conversation through the live pipeline, in a fresh room.

``presencebot eval`` and the rule-author test helper both use this, so a corpus figure and a
three-line rule test mean exactly what the live bot would do with the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from presencebot.config import Audience
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, RoomId
from presencebot.pipeline import Pipeline
from presencebot.rooms import RoomContext
from presencebot.rule import Flag, RoomSettingsView, Rule

EPOCH = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Line:
    """One scripted message: who, what, when (seconds from the start), replying to whom."""

    user: str
    text: str
    t: float = 0.0
    reply_to: str | None = None


def person(nick: str) -> Author:
    """Scripted people have no accounts; the nick stands in as the stable id."""
    return Author(nick=nick, account=AccountId(nick))


async def replay(
    lines: Sequence[Line],
    rules: Sequence[Rule],
    *,
    room: str = "#test",
    audience: Audience | str = Audience.GENERAL,
    language: str = "en",
    region: str = "uk",
    max_messages: int = 100,
    max_age_seconds: float = 900.0,
    time_budget: float = 0.05,
) -> list[list[Flag]]:
    """The flags raised on each line, in order."""
    pipeline = Pipeline(rules, time_budget=time_budget)
    settings = RoomSettingsView(
        audience=Audience(audience),
        language=language,
        rules=tuple(r.id for r in rules),
        region=region,
    )
    context = RoomContext(
        RoomRef("replay", RoomId(room)),
        settings,
        max_messages=max_messages,
        max_age_seconds=max_age_seconds,
    )
    results: list[list[Flag]] = []
    for index, line in enumerate(lines):
        message = Message(
            room=context.ref,
            author=person(line.user),
            text=line.text,
            at=EPOCH + timedelta(seconds=line.t),
            native_id=str(index),
            reply_to=person(line.reply_to) if line.reply_to else None,
        )
        results.append(await pipeline.process(message, context))
    return results
