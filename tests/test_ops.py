"""The operations endpoint: metrics in a valid text format, and health room by room.

The exposition is checked by parsing it back with a small, strict parser of the text format 0.0.4
(below), not by comparing strings, so a test fails on output Prometheus would reject.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import structlog

from presencebot import __version__, metrics
from presencebot.events import Author, JoinFailed, Kicked, RoomRef
from presencebot.health import check, health
from presencebot.ids import RoomId
from presencebot.metrics import Counter, Registry
from presencebot.ops_server import CONTENT_TYPE, OpsServer, ops_app
from presencebot.rules.minor_whereabouts import RULE as WHEREABOUTS
from presencebot.runtime import RoomRecord, RoomState, Runtime
from tests.support import RuntimeHarness, ScriptedAdapter, make_config, until

KIDS = RoomRef("net", RoomId("#kids"))
NASTY = '#kids"\n\\ é'
Start = Callable[..., RuntimeHarness]


# --- a strict parser of the text exposition format 0.0.4 ------------------------------------------
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _unescape_help(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"\\": "\\", "n": "\n"}[m.group(1)], text)


def _labels(line: str, at: int) -> tuple[dict[str, str], int]:
    """Parse ``{name="value",...}`` starting at ``line[at] == "{"``; returns labels and the index after."""
    labels: dict[str, str] = {}
    at += 1
    while line[at] != "}":
        name = _LABEL.match(line, at)
        assert name, f"bad label name at {at}: {line!r}"
        at = name.end()
        assert line[at : at + 2] == '="', f'expected =" at {at}: {line!r}'
        at += 2
        value = []
        while line[at] != '"':
            if line[at] == "\\":
                value.append(_ESCAPES[line[at + 1]])  # KeyError: an escape the format does not have
                at += 2
            else:
                value.append(line[at])
                at += 1
        assert name.group() not in labels, f"repeated label in {line!r}"
        labels[name.group()] = "".join(value)
        at += 1
        if line[at] == ",":
            at += 1
    return labels, at + 1


def _value(text: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


def parse(text: str) -> dict[str, Family]:
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, keyword, name, rest = line.split(" ", 3)
            family = families.setdefault(name, Family(name))
            if keyword == "HELP":
                assert not family.help, f"second HELP for {name}"
                family.help = _unescape_help(rest)
            else:
                assert not family.type and not family.samples, f"TYPE of {name} late or twice"
                assert rest in _SUFFIXES, rest
                family.type = rest
            continue
        assert line and not line.startswith("#"), f"unexpected line {line!r}"
        name = _NAME.match(line)
        assert name, line
        labels, at = _labels(line, name.end()) if line[name.end()] == "{" else ({}, name.end())
        assert line[at] == " ", line
        value = _value(line[at + 1 :])
        owner = next(
            f
            for f in families.values()
            for suffix in _SUFFIXES.get(f.type, ())
            if name.group() == f.name + suffix
        )
        owner.samples.append((name.group(), labels, value))
    return families


def sample(families: dict[str, Family], name: str, **labels: str) -> float:
    family = families[re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name]
    found = [v for n, ls, v in family.samples if n == name and ls == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


# --- the registry and the format -------------------------------------------------------------------
def test_label_values_and_help_are_escaped_and_parse_back() -> None:
    registry = Registry()
    counter = registry.counter("t_messages_total", 'Says "hi"\nand a \\ backslash.', ("room", "kind"))
    counter.labels(NASTY, "live").inc()
    counter.labels(room=NASTY, kind="live").inc(2)
    registry.gauge("t_up", "Up.").set(1)
    text = registry.render()
    assert '{room="#kids\\"\\n\\\\ é",kind="live"} 3.0' in text
    assert '# HELP t_messages_total Says "hi"\\nand a \\\\ backslash.\n' in text
    families = parse(text)
    assert families["t_messages_total"].type == "counter"
    assert families["t_messages_total"].help == 'Says "hi"\nand a \\ backslash.'
    assert sample(families, "t_messages_total", room=NASTY, kind="live") == 3
    assert sample(families, "t_up") == 1


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = Registry()
    hist = registry.histogram("t_seconds", "Time.", ("sink",), buckets=(0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 0.5, 3.0, math.nan):
        hist.labels("webhook").observe(value)
    families = parse(registry.render())
    buckets = [(ls["le"], v) for n, ls, v in families["t_seconds"].samples if n == "t_seconds_bucket"]
    # le is "less than or equal": 0.01 falls in the 0.01 bucket; NaN is dropped.
    assert buckets == [("0.01", 2), ("0.1", 3), ("1.0", 5), ("+Inf", 6)]
    assert [float(le) for le, _ in buckets] == sorted(float(le) for le, _ in buckets)
    assert sample(families, "t_seconds_count", sink="webhook") == 6
    assert sample(families, "t_seconds_sum", sink="webhook") == pytest.approx(4.065)


def test_metric_misuse_is_refused() -> None:
    registry = Registry()
    counter = registry.counter("t_total", "T.", ("rule",))
    with pytest.raises(ValueError, match="already registered"):
        registry.counter("t_total", "Again.")
    with pytest.raises(ValueError, match="label values"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels(room="x")
    with pytest.raises(TypeError):
        counter.inc()
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter("presencebot-bad", "Bad.")
    with pytest.raises(ValueError, match="invalid label name"):
        registry.histogram("t_h", "H.", ("le",), buckets=(1.0,))
    with pytest.raises(ValueError, match="increasing"):
        registry.histogram("t_h2", "H.", buckets=(1.0, 0.5))


async def test_collectors_fill_gauges_at_scrape_time_and_a_broken_one_is_skipped() -> None:
    registry = Registry()
    gauge = registry.gauge("t_depth", "Depth.", ("state",))
    live = {"pending": 2}

    def broken() -> None:
        raise RuntimeError("collector bug")

    async def from_store() -> None:
        await asyncio.sleep(0)
        gauge.clear()
        for state, count in live.items():
            gauge.labels(state).set(count)

    remove = registry.add_collector(from_store)
    assert sample(parse(await registry.scrape(broken)), "t_depth", state="pending") == 2
    live = {"dead": 1}
    families = parse(await registry.scrape())
    assert [s[1] for s in families["t_depth"].samples] == [{"state": "dead"}]
    remove()
    live = {"pending": 9}
    assert sample(parse(await registry.scrape()), "t_depth", state="dead") == 1


def test_lease_state_keeps_one_series_per_unit() -> None:
    gauge = Registry().gauge("t_lease", "L.", ("unit", "state"))
    metrics.set_lease_state("net/#kids", "waiting", gauge)
    metrics.set_lease_state("net/#teens", "held", gauge)
    metrics.set_lease_state("net/#kids", "held", gauge)
    assert sorted(key for key, _ in gauge.series()) == [("net/#kids", "held"), ("net/#teens", "held")]


def test_bind_worker_puts_the_worker_on_log_context_and_in_metrics() -> None:
    def bind() -> dict[str, Any]:
        assert metrics.bind_worker("w-7") == "w-7"
        return structlog.contextvars.get_contextvars()

    # A copied context: the binding must not leak into the other tests.
    assert contextvars.copy_context().run(bind)["worker"] == "w-7"
    assert ("w-7", __version__) in [key for key, _ in metrics.WORKER.series()]
    assert ":" in metrics.default_worker_id()


def test_the_default_registry_renders_every_presencebot_metric() -> None:
    families = parse(metrics.REGISTRY.render())
    expected = {
        "presencebot_messages_total": "counter",
        "presencebot_flags_total": "counter",
        "presencebot_alerts_total": "counter",
        "presencebot_rule_seconds": "histogram",
        "presencebot_outbox_depth": "gauge",
        "presencebot_delivery_seconds": "histogram",
        "presencebot_reconnects_total": "counter",
        "presencebot_rooms": "gauge",
        "presencebot_lease_state": "gauge",
    }
    assert {name: families[name].type for name in expected} == expected
    assert all(name.startswith("presencebot_") for name in families)
    assert metrics.RULE_SECONDS.buckets[0] == 1e-5 and metrics.RULE_SECONDS.buckets[-1] == 1.0
    assert metrics.DELIVERY_SECONDS.buckets[0] == 0.005 and metrics.DELIVERY_SECONDS.buckets[-1] == 60.0


# --- health with a running runtime -----------------------------------------------------------------
def record(runtime: Runtime, room: str = "#kids") -> RoomRecord:
    return runtime.networks["net"].rooms[RoomId(room)]


async def active(start_runtime: Start, scripted: type[ScriptedAdapter]) -> RuntimeHarness:
    h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS])
    await until(lambda: record(h.runtime).state is RoomState.ACTIVE)
    return h


async def test_healthy_when_every_room_is_joined_with_the_badge(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = await active(start_runtime, scripted)
    ok, report = await check(h.runtime)
    assert ok and report["ok"]
    net = report["networks"]["net"]
    assert net["connected"] and net["fatal"] is None and net["adapter"] == scripted.__name__
    assert net["rooms"]["#kids"] == {
        "ok": True,
        "state": "active",
        "announcements": 1,
        "reason": None,
        "why": "joined; badge announced 1 time(s)",
    }


async def test_before_connecting_rooms_are_reported_not_connected(scripted: type[ScriptedAdapter]) -> None:
    runtime = Runtime(make_config(), _NoStore(), adapters={"net": (scripted, scripted.Settings())}, rules=[])
    ok, report = health(runtime)
    assert not ok
    assert report["networks"]["net"]["rooms"]["#kids"]["why"] == "network not connected"
    runtime.networks["net"].fatal = "bad password"
    ok, report = health(runtime)
    assert not report["networks"]["net"]["ok"]
    assert "bad password" in report["networks"]["net"]["rooms"]["#kids"]["why"]


class _NoStore:
    """Health reads only the runtime's memory; a store that is never opened will do."""


async def test_a_kicked_room_is_reported_with_its_reason_but_healthy(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = await active(start_runtime, scripted)
    await scripted.instances[0].inbox.put(Kicked(KIDS, by=Author("op"), reason="no bots here"))
    await until(lambda: record(h.runtime).state is RoomState.KICKED)
    report: dict[str, Any] = {}
    for _ in range(200):  # the store remembers the kick just after the state changes
        ok, report = await check(h.runtime)
        if report["networks"]["net"]["rooms"]["#kids"]["reason"]:
            break
        await asyncio.sleep(0.01)
    room = report["networks"]["net"]["rooms"]["#kids"]
    assert ok and room["ok"] and room["state"] == "kicked"
    assert room["reason"] == "by op: no bots here"
    assert room["why"] == "out by the room's choice (kicked): by op: no bots here"


async def test_a_failed_room_is_unhealthy_and_says_why(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    scripted.fail_announce = True
    h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS])
    await until(lambda: record(h.runtime).state is RoomState.FAILED)
    ok, report = await check(h.runtime)
    room = report["networks"]["net"]["rooms"]["#kids"]
    assert not ok and not report["networks"]["net"]["ok"] and not room["ok"]
    assert room["state"] == "failed"
    assert room["why"].startswith("failed: could not join or could not show the badge")
    if "reason" in RoomRecord.__dataclass_fields__:  # once the runtime keeps reasons (see the wiring)
        assert "cannot post here" in room["why"]


async def test_an_old_kick_is_not_shown_once_the_room_is_back(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = await active(start_runtime, scripted)
    await h.store.set_room_state("net", "#kids", "kicked", "by op: long ago")
    ok, report = await check(h.runtime)
    assert ok and report["networks"]["net"]["rooms"]["#kids"]["reason"] is None


# --- the HTTP endpoints through a real uvicorn -----------------------------------------------------
async def get(session: aiohttp.ClientSession, server: OpsServer, path: str) -> tuple[int, str, str]:
    async with session.get(f"http://127.0.0.1:{server.port}{path}") as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_http_metrics_and_healthz(start_runtime: Start, scripted: type[ScriptedAdapter]) -> None:
    h = await active(start_runtime, scripted)
    server = OpsServer(ops_app(h.runtime), "127.0.0.1", 0)
    assert await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            status, content_type, text = await get(session, server, "/metrics")
            assert status == 200 and content_type == CONTENT_TYPE
            families = parse(text)
            assert sample(families, "presencebot_rooms", network="net", state="active") == 1
            assert sample(families, "presencebot_rooms", network="net", state="failed") == 0
            assert sample(families, "presencebot_network_connected", network="net") == 1
            assert sample(families, "presencebot_outbox_depth", state="pending") == 0
            assert sample(families, "presencebot_store_up") == 1
            assert sample(families, "presencebot_flags_total", rule=WHEREABOUTS.id) == 0

            status, content_type, text = await get(session, server, "/healthz")
            assert status == 200 and content_type == "application/json"
            assert '"ok":true' in text

            await scripted.instances[0].inbox.put(JoinFailed(KIDS, "#kids is invite-only"))
            await until(lambda: record(h.runtime).state is RoomState.FAILED)
            status, _, text = await get(session, server, "/healthz")
            assert status == 503 and "could not join" in text

            async with session.post(f"http://127.0.0.1:{server.port}/metrics") as response:
                assert response.status == 405
    finally:
        await server.stop()


async def test_http_without_a_runtime_serves_the_registry_and_is_healthy() -> None:
    registry = Registry()
    registry.counter("t_total", "T.", ("room",)).labels(NASTY).inc()
    server = OpsServer(ops_app(None, registry), "127.0.0.1", 0)
    assert await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            status, _, text = await get(session, server, "/metrics")
            assert status == 200 and sample(parse(text), "t_total", room=NASTY) == 1
            status, _, text = await get(session, server, "/healthz")
            assert status == 200
    finally:
        await server.stop()


async def test_a_port_in_use_is_logged_not_fatal() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = OpsServer(ops_app(None, Registry()), "127.0.0.1", taken.getsockname()[1])
        assert not await server.start()
        await server.stop()  # nothing started: nothing to stop
