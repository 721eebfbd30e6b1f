"""Test support: a scripted in-process adapter and helpers to run a runtime against a real store.

The scripted adapter stands in for a *protocol*, not for a server: the runtime's policy (joins,
badge, rules, alerts) is what these tests exercise. Real servers are used by each adapter's own
integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from presencebot.adapter import Adapter, AdapterHost
from presencebot.alerts import Alert, EvidenceItem
from presencebot.badge import Badge
from presencebot.config import Config
from presencebot.events import Author, Connected, Event, Invited, Joined, RoomRef
from presencebot.ids import AccountId, AlertId, EventId, RoomId
from presencebot.rule import Severity
from presencebot.runtime import Runtime
from presencebot.store import AlertStore
from presencebot.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parent.parent


class ScriptedAdapter(Adapter):
    """An adapter driven by the test: push events (or an exception to crash) into ``inbox``."""

    instances: ClassVar[list[ScriptedAdapter]]
    fail_announce: ClassVar[bool] = False
    crash_on_start: ClassVar[int] = 0  # how many instances crash immediately

    def __init__(self, network: str, settings: BaseModel, host: AdapterHost) -> None:
        super().__init__(network, settings, host)
        self.inbox: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self.joins: list[RoomId] = []
        self.leaves: list[tuple[RoomId, str]] = []
        self.sent: list[tuple[RoomId, str]] = []
        self.announced: list[tuple[RoomId, Badge]] = []
        self.declined: list[tuple[Invited, str]] = []
        self.closed = False
        type(self).instances.append(self)

    async def run(self) -> None:
        cls = type(self)
        if cls.crash_on_start > 0:
            cls.crash_on_start -= 1
            raise ConnectionError("scripted crash on start")
        await self.host.emit(Connected(self.network))
        while True:
            item = await self.inbox.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            await self.host.emit(item)

    async def join(self, room: RoomId) -> None:
        self.joins.append(room)
        await self.host.emit(Joined(self.room(room)))

    async def leave(self, room: RoomId, reason: str) -> None:
        self.leaves.append((room, reason))

    async def send(self, room: RoomId, text: str) -> None:
        self.sent.append((room, text))

    async def announce(self, room: RoomId, badge: Badge) -> None:
        if type(self).fail_announce:
            raise PermissionError("cannot post here")
        self.announced.append((room, badge))

    async def decline_invite(self, event: Invited, reason: str) -> None:
        self.declined.append((event, reason))

    async def close(self) -> None:
        self.closed = True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free right now (bound to port 0, all at once, so
    the kernel cannot hand out the same one twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (bind to port 0 and let the kernel pick)."""
    return free_ports(1, host)[0]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``predicate`` to hold, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def stored(store: AlertStore, count: int = 1, timeout: float = 5.0) -> list[Alert]:
    """The store's alerts once there are ``count`` of them: a rule's stats count the call before
    the alert it raised is written, so tests wait for the write itself."""
    deadline = time.monotonic() + timeout
    while len(alerts := await store.list()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} alert(s) not stored in time (found {len(alerts)})")
        await asyncio.sleep(0.01)
    return alerts


async def announced(adapter_cls: type[ScriptedAdapter], index: int = 0) -> ScriptedAdapter:
    """Wait until instance ``index`` of ``adapter_cls`` has shown a badge; return it."""
    await until(lambda: len(adapter_cls.instances) > index and bool(adapter_cls.instances[index].announced))
    return adapter_cls.instances[index]


def make_config(**overrides: Any) -> Config:
    """A config with one network ``net`` (adapter ``scripted``) and room ``#kids``, fast restarts."""
    raw: dict[str, Any] = {
        "networks": [{"name": "net", "adapter": "scripted", "rooms": [{"id": "#kids"}]}],
        "supervisor": {"restart_base_seconds": 0.01, "restart_cap_seconds": 0.05},
    }
    raw.update(overrides)
    return Config.model_validate(raw)


class RuntimeHarness:
    def __init__(self, runtime: Runtime, task: asyncio.Task[int], store: SQLiteStore) -> None:
        self.runtime = runtime
        self.task = task
        self.store = store

    async def stop(self) -> int:
        self.runtime.stop()
        return await asyncio.wait_for(self.task, 5)


def require(available: bool, reason: str) -> None:
    """Skip with ``reason`` on a developer machine, but fail in CI, where everything must run."""
    import os

    import pytest

    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def sample_alert(
    alert_id: str = "a00000000001",
    *,
    at: datetime | None = None,
    target: Author | None = None,
    requester: Author | None = None,
    category: str = "location",
    severity: Severity = Severity.HIGH,
    explanation: str = "lily stated age 12; mark asked where she lives",
    texts: tuple[str, str] = ("im 12", "where do u live"),
    event_prefix: str | None = None,
) -> Alert:
    """An alert as the rule would raise it: the child's age statement, then the flagged request."""
    at = at or datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC)
    target = target or Author("lily", AccountId("lily-acct"))
    asker = requester or Author("mark")
    prefix = event_prefix or alert_id
    return Alert(
        id=AlertId(alert_id),
        created_at=at,
        room=RoomRef("libera", RoomId("#kids")),
        rule_id="minor_whereabouts",
        rule_version="1.0",
        category=category,
        severity=severity,
        target=target,
        requester=asker,
        explanation=explanation,
        evidence=(
            EvidenceItem(
                EventId(f"{prefix}-1"), "native-1", target, at - timedelta(minutes=1), texts[0], False
            ),
            EvidenceItem(EventId(f"{prefix}-2"), None, asker, at, texts[1], True),
        ),
    )
