"""Chat text is hostile input and private: it never reaches logs, and no input breaks the bot."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from presencebot import log
from presencebot.adapters.terminal import parse_line
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import RoomId
from presencebot.pipeline import Pipeline
from presencebot.rooms import RoomContext
from presencebot.rule import RoomSettingsView
from presencebot.rules.minor_whereabouts import RULE, minor_whereabouts
from presencebot.testing import capture_logs

REF = RoomRef("net", RoomId("#r"))


def test_chat_text_is_redacted_above_debug() -> None:
    stream = io.StringIO()
    log.configure("debug", "json", stream=stream)
    try:
        logger = structlog.get_logger("t")
        logger.info("thing", text="secret chat 1")
        logger.warning("thing", chat_text="secret chat 2")
        logger.debug("thing", text="debug chat")
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry.get("text") or entry.get("chat_text") for entry in lines] == [
        "[redacted]",
        "[redacted]",
        "debug chat",
    ]
    assert "secret chat" not in stream.getvalue()


def test_level_filter_and_bound_context() -> None:
    stream = io.StringIO()
    log.configure("warning", "json", stream=stream)
    try:
        logger = structlog.get_logger("t")
        with structlog.contextvars.bound_contextvars(network="libera", room="#kids", event_id="e1"):
            logger.info("dropped")
            logger.warning("kept")
    finally:
        structlog.reset_defaults()
    (entry,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entry["event"] == "kept"
    assert (entry["network"], entry["room"], entry["event_id"]) == ("libera", "#kids", "e1")


def test_capture_logs_helper_applies_redaction() -> None:
    with capture_logs() as logs:
        structlog.get_logger().info("x", text="hello")
    assert logs[0]["text"] == "[redacted]"


@st.composite
def nasty_text(draw: st.DrawFn) -> str:
    pieces = draw(
        st.lists(
            st.one_of(
                st.text(max_size=200),
                st.sampled_from(
                    [
                        "\u200b",
                        "\u202e",
                        "\ufeff",
                        "\x00",
                        "\r",
                        "\n",
                        "\u0301" * 50,
                        "im 12 ",
                        "where do u live",
                        "@",
                    ]
                ),
            ),
            max_size=30,
        )
    )
    return "".join(pieces)


@settings(max_examples=300, deadline=None)
@given(nasty_text(), nasty_text())
async def test_pipeline_never_raises_on_any_text(a: str, b: str) -> None:
    room = RoomContext(REF, RoomSettingsView(rules=("minor_whereabouts",)))
    pipeline = Pipeline([RULE])
    for nick, text in (("amy", a), ("bob", b), ("amy", b)):
        await pipeline.process(Message(REF, Author(nick), text), room)
    assert pipeline.stats["minor_whereabouts"].errors == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_terminal_line_parser_never_raises(line: str) -> None:
    parsed = parse_line(line)
    if parsed is not None:
        nick, _text, _direct = parsed
        assert 1 <= len(nick) <= 32 and ":" not in nick


def test_the_rule_reads_a_bounded_prefix_of_any_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work per message is bounded structurally: every regex of the rule sees normalised text,
    which is at most 3 * MAX_SCAN characters however long the message (time is in bench/)."""
    from presencebot.rules import ages, requests
    from presencebot.rules import minor_whereabouts as module
    from presencebot.text import MAX_SCAN

    seen: list[int] = []
    real_find, real_statement = requests.find, ages.statement

    def find(text, **kw):  # type: ignore[no-untyped-def]
        seen.append(max(len(text.plain), len(text.leet), len(kw.get("context", "")) // 5))
        return real_find(text, **kw)

    def statement(plain):  # type: ignore[no-untyped-def]
        seen.append(len(plain))
        return real_statement(plain)

    monkeypatch.setattr(module.requests, "find", find)
    monkeypatch.setattr(module.ages, "statement", statement)
    room = RoomContext(REF, RoomSettingsView(rules=("minor_whereabouts",)))
    for text in ("im 12", "where do u live " * 5000, "a" + "\u0301" * 10_000, "a.d.d.r.e.s.s " * 5000):
        message = Message(REF, Author("amy" if text == "im 12" else "bob"), text)
        room.add(message)
        list(minor_whereabouts.check(message, room) or ())  # type: ignore[arg-type]
    assert seen
    assert max(seen) <= 3 * MAX_SCAN


def iter_lines() -> Iterator[str]:  # pragma: no cover - kept for debugging fuzz failures
    yield from ()


def test_a_crashing_rule_does_not_leak_chat_text_through_its_traceback() -> None:
    """Tracebacks are logged without local variables: a rule's locals hold the message."""
    import asyncio

    from presencebot.rule import rule

    @rule("leaky")
    def leaky(message: Message, room: object) -> list[object]:
        secret_text = message.text  # noqa: F841 - a local a traceback could show
        raise RuntimeError("boom")

    for fmt in ("json", "console"):
        stream = io.StringIO()
        log.configure("info", fmt, stream=stream)
        try:
            pipeline = Pipeline([leaky])  # type: ignore[list-item]
            room = RoomContext(REF, RoomSettingsView(rules=("leaky",)))
            asyncio.run(pipeline.process(Message(REF, Author("amy"), "my secret chat line 42"), room))
        finally:
            structlog.reset_defaults()
        output = stream.getvalue()
        assert "rule.error" in output
        assert "RuntimeError" in output
        assert "my secret chat line 42" not in output, fmt
