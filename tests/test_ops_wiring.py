"""The wiring of presencebot.metrics into the runtime, pipeline and dispatcher (run after applying it)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from presencebot import metrics
from presencebot.events import Author, Message
from presencebot.ids import AccountId
from presencebot.rule import Flag, RoomView, rule
from presencebot.runtime import RoomState
from presencebot.testing import capture_logs
from tests.support import RuntimeHarness, ScriptedAdapter, free_port, make_config, until
from tests.test_dispatch import T0, make_alert, receivers, setup, webhook  # noqa: F401 - fixtures
from tests.test_ops import KIDS, parse, sample

Start = Callable[..., RuntimeHarness]


@rule("wired_every")
def every(message: Message, room: RoomView) -> Iterator[Flag]:
    yield Flag("test", target=message.author, explanation="flags every message")


async def test_runtime_counts_and_serves(start_runtime: Start, scripted: type[ScriptedAdapter]) -> None:
    port = free_port()
    config = make_config(
        ops={"enabled": True, "port": port, "worker_id": "w-test"},
        networks=[
            {"name": "net", "adapter": "scripted", "rooms": [{"id": "#kids", "rules": ["wired_every"]}]}
        ],
    )
    messages = metrics.MESSAGES.labels("net", scripted.__name__)
    before = messages.value
    alerts_before = metrics.ALERTS.labels("wired_every", "test").value
    rule_before = metrics.RULE_SECONDS.labels("wired_every").count
    reconnects_before = metrics.RECONNECTS.labels("net").value
    with capture_logs() as logs:
        h = start_runtime(config, {"net": scripted}, [every])
        await until(lambda: h.runtime.networks["net"].rooms[KIDS.id].state is RoomState.ACTIVE)
        await scripted.instances[0].inbox.put(Message(KIDS, Author("mark", AccountId("mark")), "hi"))
        await until(lambda: messages.value == before + 1)
        await until(lambda: metrics.ALERTS.labels("wired_every", "test").value == alerts_before + 1)
        assert metrics.RULE_SECONDS.labels("wired_every").count == rule_before + 1
        await scripted.instances[0].inbox.put(ConnectionError("drop"))
        await until(lambda: metrics.RECONNECTS.labels("net").value == reconnects_before + 1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                families = parse(await r.text())
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200, await r.text()
        await h.stop()
    assert sample(families, "presencebot_worker_info", worker="w-test", version=metrics.__version__) == 1
    assert sample(families, "presencebot_flags_total", rule="wired_every") == 1
    assert sample(families, "presencebot_adapter_restarts_total", network="net") == 1
    assert all(e.get("worker") == "w-test" for e in logs if e["event"].startswith("room."))
    assert any(e["event"] == "ops.serving" and e.get("worker") == "w-test" for e in logs)


async def test_delivery_latency_is_observed_for_first_notices(setup: Any, receivers: Any) -> None:  # noqa: F811
    s = await setup({"notify": [webhook("officers", receivers["officers"])]})
    child = metrics.DELIVERY_SECONDS.labels("webhook")
    before = child.count
    await s.raise_alert(make_alert())
    assert await s.dispatcher.tick(T0) == 1
    assert child.count == before + 1


async def test_a_console_port_in_use_is_logged_and_the_bot_keeps_watching(
    start_runtime: Start, scripted: type[ScriptedAdapter], tmp_path: Any
) -> None:
    from presencebot.store.sqlite import SQLiteStore
    from tests.support import announced

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with capture_logs() as logs:
            h = start_runtime(
                make_config(console={"enabled": True, "port": port, "secure_cookies": False}),
                {"net": scripted},
                [],
                SQLiteStore(tmp_path / "c.db"),
            )
            await announced(scripted)
        assert not h.task.done()  # the bot is still running, its room announced
        assert any(e["event"] == "ops.bind_failed" and e["port"] == port for e in logs)
