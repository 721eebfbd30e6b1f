"""The terminal room: the embedded default, a chat room in your terminal with no network at all.

Each input line is one message: ``nick: text`` is said in the room, ``nick -> bot: text`` is a
private message to the bot (for ``!report``). It reads a TTY interactively, or a piped file
(``presencebot run < transcript.txt``) and finishes cleanly at end of input. The bot's badge,
replies and alerts are printed to standard output, in colour on a terminal.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from typing import TYPE_CHECKING, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from presencebot.adapter import Adapter, AdapterHost, Capabilities
from presencebot.badge import Badge
from presencebot.events import Author, Connected, Joined, Left, Message
from presencebot.ids import AccountId, RoomId

if TYPE_CHECKING:
    from presencebot.alerts import Alert

MAX_LINE = 65_536
_PRIVATE = re.compile(r"\s*([^\s:>]{1,32})\s*->\s*[^\s:]{1,32}\s*:\s?(.*)", re.DOTALL)
_PUBLIC = re.compile(r"\s*([^\s:]{1,32})\s*:\s?(.*)", re.DOTALL)

_RED, _DIM, _RESET = "\x1b[1;31m", "\x1b[2m", "\x1b[0m"


class TerminalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    color: Literal["auto", "always", "never"] = "auto"
    bot_nick: str = Field(default="presencebot", min_length=1, max_length=32)


def parse_line(line: str) -> tuple[str, str, bool] | None:
    """``"lily: hi"`` -> ``("lily", "hi", False)``; ``"lily -> bot: !report x"`` -> direct."""
    if not line.strip():
        return None
    for pattern, direct in ((_PRIVATE, True), (_PUBLIC, False)):
        match = pattern.fullmatch(line)
        if match:
            return match.group(1), match.group(2), direct
    return None


class TerminalAdapter(Adapter):
    Settings = TerminalSettings
    capabilities = Capabilities(colours=True, direct_messages=True)

    def __init__(self, network: str, settings: BaseModel, host: AdapterHost) -> None:
        super().__init__(network, settings, host)
        assert isinstance(settings, TerminalSettings)
        self.opts = settings
        self.stdin = sys.stdin
        self.out: TextIO = sys.stdout
        self.rooms: list[RoomId] = []

    @property
    def colour(self) -> bool:
        return self.opts.color == "always" or (self.opts.color == "auto" and self.out.isatty())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reconfigure = getattr(self.stdin, "reconfigure", None)
        if reconfigure is not None:  # a stray Latin-1 byte must not end the session
            reconfigure(errors="replace")
        lines: asyncio.Queue[str | None] = asyncio.Queue(maxsize=256)
        reader = threading.Thread(
            target=_read_lines, args=(self.stdin, lines, loop), name="terminal-stdin", daemon=True
        )
        reader.start()
        if self.stdin.isatty():
            print(
                "Type lines as `nick: text` (private to the bot: `nick -> bot: text`). Ctrl-D leaves.",
                file=sys.stderr,
            )
        await self.host.emit(Connected(self.network))
        while (line := await lines.get()) is not None:
            await self._on_line(line)
        for room in list(self.rooms):
            await self.host.emit(Left(self.room(room), "end of input"))
        self.out.flush()

    async def _on_line(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            if line.strip():
                print(f"(ignored: expected `nick: text`, got {line[:40]!r})", file=sys.stderr)
            return
        nick, text, direct = parsed
        author = Author(nick=nick, account=AccountId(nick))
        if direct:
            room = RoomId(f"@{nick}")
        elif self.rooms:
            room = self.rooms[0]
        else:
            print("(no room joined: the message was not delivered)", file=sys.stderr)
            return
        await self.host.emit(Message(self.room(room), author, text, is_direct=direct))

    async def join(self, room: RoomId) -> None:
        if room not in self.rooms:
            self.rooms.append(room)
        self._write(self._dim(f"*** {self.opts.bot_nick} joined {room}"))
        await self.host.emit(Joined(self.room(room)))

    async def leave(self, room: RoomId, reason: str) -> None:
        if room in self.rooms:
            self.rooms.remove(room)
        self._write(self._dim(f"*** {self.opts.bot_nick} left {room} ({reason})"))

    async def send(self, room: RoomId, text: str) -> None:
        if room.startswith("@"):
            self._write(f"{self.opts.bot_nick} -> {room[1:]}: {text}")
        else:
            self._write(f"<{self.opts.bot_nick}> {text}")

    async def announce(self, room: RoomId, badge: Badge) -> None:
        self._write(badge.ansi() if self.colour else badge.plain())

    async def show_alert(self, room: RoomId, alert: Alert) -> None:
        head = f"!!! ALERT {alert.id} [{alert.severity}] {alert.category}: {alert.explanation}"
        self._write(f"{_RED}{head}{_RESET}" if self.colour else head)

    def _dim(self, text: str) -> str:
        return f"{_DIM}{text}{_RESET}" if self.colour else text

    def _write(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _read_lines(stream: TextIO, queue: asyncio.Queue[str | None], loop: asyncio.AbstractEventLoop) -> None:
    """Blocking reads on a daemon thread (works for TTYs, pipes and redirected files alike)."""

    def put(item: str | None) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except RuntimeError:  # the loop is closed: we are shutting down
            return False
        return True

    try:
        while True:
            line = stream.readline()
            if not line:
                break
            if not put(line.rstrip("\r\n")[:MAX_LINE]):
                return
    except (OSError, ValueError):
        pass
    put(None)
