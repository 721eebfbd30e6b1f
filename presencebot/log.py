"""Logging: structlog, readable in a terminal, JSON lines everywhere else.

Two rules hold for every line: the adapter/room/event being handled is bound by the task
(``structlog.contextvars``), and chat text never reaches a log at info level or above — the
:func:`redact_chat_text` processor drops it even if a caller forgets.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

CHAT_TEXT_KEYS = frozenset({"text", "chat_text", "message_text"})
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact_chat_text(
    _logger: object, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop chat text from every line above debug: ordinary chat must never be persisted."""
    if method != "debug":
        for key in CHAT_TEXT_KEYS & event_dict.keys():
            event_dict[key] = "[redacted]"
    return event_dict


# The room and event id of the message being handled. One ContextVar set per message (instead of
# structlog's one per key) because it is set at chat speed; merge_message_context puts it on
# every line logged meanwhile, like structlog.contextvars does for the rest.
_MESSAGE: ContextVar[tuple[str, str] | None] = ContextVar("presencebot_message", default=None)
MessageToken = Token[tuple[str, str] | None]


def bind_message(room: str, event_id: str) -> MessageToken:
    return _MESSAGE.set((room, event_id))


def unbind_message(token: MessageToken) -> None:
    _MESSAGE.reset(token)


def merge_message_context(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    bound = _MESSAGE.get()
    if bound is not None:
        event_dict.setdefault("room", bound[0])
        event_dict.setdefault("event_id", bound[1])
    return event_dict


class _Stderr:
    """Writes to whatever ``sys.stderr`` is *now*, so a redirected or replaced stderr (pytest's
    capture, a daemon manager) never leaves the logger holding a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or _Stderr()  # type: ignore[assignment]
    assert stream is not None
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            exception_formatter=structlog.dev.plain_traceback,  # never rich's locals: chat text
        )
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_message_context,
            redact_chat_text,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks without local variables: a rule's locals hold chat text.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
            if not use_console
            else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
