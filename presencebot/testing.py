"""Helpers for testing rules: a few lines of chat in, the flags out, through the live pipeline.

::

    from presencebot.testing import check_chat
    from presencebot.rules.minor_whereabouts import RULE

    def test_asks_where_she_lives():
        result = check_chat(RULE, '''
            lily: hiii im 12
            mark: lily where do u live?
        ''')
        assert result.flagged == {1: ["lily"]}

Each line is ``nick: text``; ``nick > other: text`` replies to ``other``; a ``[+35]`` prefix sets
the time in seconds since the start (otherwise lines are 10 seconds apart).

The same helper is available to any pytest suite as the ``rule_chat`` fixture (presencebot
registers this module as a pytest plugin), and :func:`capture_logs` records log lines exactly as
presencebot's logging would emit them: with the bound context and with chat text redacted.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from structlog.testing import LogCapture

from presencebot.log import merge_message_context, redact_chat_text
from presencebot.replay import Line, replay
from presencebot.rule import Flag, Rule

__all__ = ["ChatResult", "capture_logs", "check_chat", "check_chat_async", "parse_chat"]

_LINE = re.compile(r"(?:\[\+(\d+(?:\.\d+)?)\]\s*)?([^\s:>]+)\s*(?:>\s*([^\s:]+)\s*)?:\s?(.*)")


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Collect log events (dicts) instead of printing them, with context and redaction applied."""
    capture = LogCapture()
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_message_context,
            redact_chat_text,
            capture,
        ],
        cache_logger_on_first_use=False,
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**previous)


def parse_chat(chat: str) -> list[Line]:
    lines: list[Line] = []
    for number, raw in enumerate(textwrap.dedent(chat).strip().splitlines(), start=1):
        match = _LINE.fullmatch(raw.strip())
        if match is None:
            raise ValueError(f"chat line {number} is not `nick: text`: {raw!r}")
        at, user, reply_to, text = match.groups()
        t = float(at) if at is not None else (lines[-1].t + 10 if lines else 0.0)
        lines.append(Line(user=user, text=text, t=t, reply_to=reply_to))
    return lines


@dataclass(frozen=True, slots=True)
class ChatResult:
    lines: tuple[Line, ...]
    flags: tuple[tuple[Flag, ...], ...]
    """The flags raised on each line, by line index (0-based)."""

    @property
    def flagged(self) -> dict[int, list[str]]:
        """``{line index: [target nicks]}`` for every line that raised a flag."""
        return {i: [f.target.nick for f in fs] for i, fs in enumerate(self.flags) if fs}

    def on(self, index: int) -> tuple[Flag, ...]:
        return self.flags[index]

    @property
    def all(self) -> list[Flag]:
        return [f for fs in self.flags for f in fs]


async def check_chat_async(rules: Rule | Sequence[Rule], chat: str, **room: Any) -> ChatResult:
    rule_list = [rules] if isinstance(rules, Rule) else list(rules)
    lines = parse_chat(chat)
    flags = await replay(lines, rule_list, **room)
    return ChatResult(tuple(lines), tuple(tuple(f) for f in flags))


def check_chat(rules: Rule | Sequence[Rule], chat: str, **room: Any) -> ChatResult:
    """Replay ``chat`` through ``rules`` in a fresh room (``audience=``, ``language=``, ...)."""
    return asyncio.run(check_chat_async(rules, chat, **room))


try:  # the pytest plugin part: only when pytest is installed
    import pytest

    @pytest.fixture
    def rule_chat() -> Callable[..., ChatResult]:
        """``rule_chat(RULE, "lily: im 12\\nmark: lily where do u live")`` in any test."""
        return check_chat

except ImportError:  # pragma: no cover - pytest is a dev dependency
    pass
