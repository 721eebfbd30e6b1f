"""Delivery and escalation: the dispatcher against a real local webhook receiver and a real store,
with time injected (``tick(now)``), never slept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from presencebot.alerts import Alert, AlertState
from presencebot.config import Config
from presencebot.dispatch import Dispatcher
from presencebot.events import Author
from presencebot.ids import AccountId
from presencebot.roster import Roster
from presencebot.sinks.factory import build_sinks
from presencebot.store import delivery as outbox
from presencebot.store.sqlite import SQLiteStore
from tests.support import sample_alert
from tests.webhooks import SECRET, Receiver
from tests.webhooks import receivers as webhook_receivers

T0 = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    async with webhook_receivers("officers", "supervisors", "uk", "au") as made:
        yield made


def webhook(name: str, receiver: Receiver, role: str = "officers") -> dict[str, Any]:
    return {
        "name": name,
        "sink": "webhook",
        "role": role,
        "settings": {"url": receiver.url, "secrets": [SECRET], "timeout_seconds": 2},
    }


def make_alert(n: int = 1, *, target: str = "lily", requester: str = "mark") -> Alert:
    return sample_alert(
        f"a{n:011d}",
        at=T0,
        target=Author(target, AccountId(target)),
        requester=Author(requester, AccountId(requester)),
        explanation=f"{target} stated age 12; {requester} asked where they live",
    )


@dataclass
class Setup:
    store: SQLiteStore
    dispatcher: Dispatcher
    config: Config

    async def raise_alert(self, alert: Alert, now: datetime = T0) -> Alert:
        routing = self.dispatcher.route(now)
        return await self.store.add(
            alert, routing.notices, trace=routing.trace, escalate_at=routing.escalate_at, force=routing.force
        )

    async def rows(self, alert_id: str) -> list[outbox.OutboxRow]:
        return await self.store.read(lambda conn: outbox.rows(conn, alert_id=alert_id))

    async def trace(self, alert_id: str) -> list[str]:
        return [line for _, line in await self.store.read(lambda conn: outbox.traces(conn, alert_id))]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Setup] = []

    async def make(raw: dict[str, Any]) -> Setup:
        config = Config.model_validate(raw)
        store = SQLiteStore(tmp_path / f"alerts-{len(made)}.db")
        await store.open()

        async def say(network: str, room: str, line: str) -> None:
            raise ConnectionError("no rooms in these tests")

        sinks = build_sinks(config, say)
        roster = Roster(config.roster) if config.roster.forces else None
        dispatcher = Dispatcher(config, store, sinks, roster=roster, clock=lambda: T0)
        s = Setup(store, dispatcher, config)
        made.append(s)
        return s

    yield make
    for s in made:
        for sink in s.dispatcher.sinks.values():
            await sink.close()
        await s.store.close()


async def test_a_notice_is_signed_delivered_once_and_traced(
    setup: Any, receivers: dict[str, Receiver]
) -> None:
    s = await setup({"notify": [webhook("officers", receivers["officers"])]})
    alert = await s.raise_alert(make_alert())
    assert await s.dispatcher.tick(T0) == 1
    officers = receivers["officers"]
    (row,) = await s.rows(alert.id)
    assert row.state == "delivered" and row.attempts == 1
    assert officers.ids == [row.id] and officers.bad_signatures == 0
    assert officers.received[0]["data"]["id"] == alert.id
    assert "where do u live" not in json.dumps(officers.received[0])  # no evidence text leaves
    assert await s.dispatcher.tick(T0 + timedelta(minutes=5)) == 0  # nothing more to do
    trace = await s.trace(alert.id)
    assert trace[0].startswith("no roster: notify every officers' target (officers)")
    assert "alert notice delivered to officers (attempt 1)" in trace


async def test_failures_are_retried_with_backoff_and_retry_after(
    setup: Any, receivers: dict[str, Receiver]
) -> None:
    s = await setup(
        {
            "notify": [webhook("officers", receivers["officers"])],
            "delivery": {"backoff_base_seconds": 2, "backoff_cap_seconds": 60},
        }
    )
    officers = receivers["officers"]
    officers.answers = [(500, {}), (429, {"Retry-After": "120"}), (200, {})]
    alert = await s.raise_alert(make_alert())
    await s.dispatcher.tick(T0)
    (row,) = await s.rows(alert.id)
    assert row.state == "pending" and row.attempts == 1 and row.next_attempt_at <= T0 + timedelta(seconds=2)
    await s.dispatcher.tick(T0 + timedelta(seconds=2))
    (row,) = await s.rows(alert.id)
    assert row.attempts == 2 and row.next_attempt_at >= T0 + timedelta(seconds=122)  # Retry-After won
    assert await s.dispatcher.tick(T0 + timedelta(seconds=60)) == 0  # not yet
    await s.dispatcher.tick(T0 + timedelta(seconds=123))
    (row,) = await s.rows(alert.id)
    assert row.state == "delivered" and row.attempts == 3
    assert officers.ids == [row.id]  # the same id on every attempt; received once
    trace = await s.trace(alert.id)
    assert sum("failed" in line for line in trace) == 2


async def test_a_dead_letter_is_kept_and_the_supervisors_are_told(
    setup: Any, receivers: dict[str, Receiver]
) -> None:
    s = await setup(
        {
            "notify": [
                webhook("officers", receivers["officers"]),
                webhook("supervisors", receivers["supervisors"], role="supervisors"),
            ],
            "delivery": {"max_attempts": 2, "backoff_base_seconds": 1, "backoff_cap_seconds": 1},
        }
    )
    receivers["officers"].answers = [(503, {}), (503, {})]
    alert = await s.raise_alert(make_alert())
    await s.dispatcher.tick(T0)
    await s.dispatcher.tick(T0 + timedelta(seconds=2))  # second failure: dead
    await s.dispatcher.tick(T0 + timedelta(seconds=3))  # the supervisors' notice
    rows = {r.target: r for r in await s.rows(alert.id)}
    assert rows["officers"].state == "dead" and rows["officers"].attempts == 2
    assert rows["supervisors"].kind == "dead_letter" and rows["supervisors"].state == "delivered"
    assert len(receivers["supervisors"].received) == 1
    dead = await s.store.read(lambda conn: outbox.rows(conn, state="dead"))
    assert [r.target for r in dead] == ["officers"]


async def test_gone_410_disables_the_target_and_tells_supervisors(
    setup: Any, receivers: dict[str, Receiver]
) -> None:
    s = await setup(
        {
            "notify": [
                webhook("officers", receivers["officers"]),
                webhook("supervisors", receivers["supervisors"], role="supervisors"),
            ]
        }
    )
    receivers["officers"].answers = [(410, {})]
    first = await s.raise_alert(make_alert(1))
    await s.dispatcher.tick(T0)
    await s.dispatcher.tick(T0 + timedelta(seconds=1))
    assert "officers" in await s.store.read(outbox.disabled_targets)
    assert [r.kind for r in await s.rows(first.id) if r.target == "supervisors"] == ["disabled"]
    second = await s.raise_alert(make_alert(2, target="max"))
    await s.dispatcher.tick(T0 + timedelta(seconds=2))
    (row,) = [r for r in await s.rows(second.id) if r.target == "officers"]
    assert row.state == "pending" and row.attempts == 0  # never tried while disabled
    assert receivers["officers"].received == []


ROSTER = {
    "forces": [
        {
            "name": "uk",
            "timezone": "Europe/London",
            "windows": [{"start": "08:00", "end": "20:00"}],
            "sinks": ["uk"],
            "supervisors": ["supervisors"],
        },
        {
            "name": "au",
            "timezone": "Australia/Sydney",
            "windows": [{"start": "07:00", "end": "19:00"}],
            "sinks": ["au"],
            "supervisors": ["supervisors"],
        },
    ]
}


async def test_the_force_on_duty_gets_the_alert_and_escalation_climbs_until_acknowledged(
    setup: Any, receivers: dict[str, Receiver]
) -> None:
    s = await setup(
        {
            "notify": [
                webhook("uk", receivers["uk"]),
                webhook("au", receivers["au"]),
                webhook("supervisors", receivers["supervisors"], role="supervisors"),
            ],
            "roster": ROSTER,
            "escalation": {
                "steps": [
                    {"after_minutes": 10, "notify": "supervisors"},
                    {"after_minutes": 10, "notify": "next_force"},
                ],
                "repeat": 1,
            },
        }
    )
    alert = await s.raise_alert(make_alert(), T0)  # noon in London (winter): the UK is on duty
    await s.dispatcher.tick(T0)
    assert len(receivers["uk"].received) == 1 and receivers["au"].received == []
    assert await s.dispatcher.tick(T0 + timedelta(minutes=9)) == 0
    await s.dispatcher.tick(T0 + timedelta(minutes=10))  # step 1: supervisors
    await s.dispatcher.tick(T0 + timedelta(minutes=10))
    assert len(receivers["supervisors"].received) == 1
    await s.dispatcher.tick(T0 + timedelta(minutes=20))  # step 2: hand over to the next force
    await s.dispatcher.tick(T0 + timedelta(minutes=20))
    assert len(receivers["au"].received) == 1
    await s.store.acknowledge(alert.id, "sgt-smith via CLI")
    for minutes in (30, 40, 50, 60):
        await s.dispatcher.tick(T0 + timedelta(minutes=minutes))
    assert len(receivers["supervisors"].received) == 1 and len(receivers["au"].received) == 1
    stored = await s.store.get(alert.id)
    assert stored.state is AlertState.ACKNOWLEDGED and stored.acknowledged_by == "sgt-smith via CLI"
    trace = await s.trace(alert.id)
    assert trace[0].startswith("roster: uk on duty at 2026-01-14 12:00 UTC; notify uk")
    assert any("escalation 1" in line and "supervisors" in line for line in trace)
    assert any("escalation 2" in line and "hand over to au" in line for line in trace)
    assert trace[-1] == "acknowledged by sgt-smith via CLI: escalation stopped"


async def test_escalation_ends_after_its_repeats_and_never_resolves(
    setup: Any, receivers: dict[str, Receiver]
) -> None:
    s = await setup(
        {
            "notify": [
                webhook("officers", receivers["officers"]),
                webhook("supervisors", receivers["supervisors"], role="supervisors"),
            ],
            "escalation": {"steps": [{"after_minutes": 5, "notify": "supervisors"}], "repeat": 2},
        }
    )
    alert = await s.raise_alert(make_alert())
    for minutes in range(0, 60, 5):
        await s.dispatcher.tick(T0 + timedelta(minutes=minutes))
        await s.dispatcher.tick(T0 + timedelta(minutes=minutes))
    assert len(receivers["supervisors"].received) == 3  # the step, then 2 repeats
    assert (await s.store.get(alert.id)).state is AlertState.OPEN
    assert "escalation steps exhausted" in (await s.trace(alert.id))[-2]


async def test_nobody_on_duty_goes_to_the_supervisors(setup: Any, receivers: dict[str, Receiver]) -> None:
    s = await setup(
        {
            "notify": [
                webhook("uk", receivers["uk"]),
                webhook("au", receivers["au"]),
                webhook("supervisors", receivers["supervisors"], role="supervisors"),
            ],
            "roster": ROSTER,
        }
    )
    night = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)  # London 23:30, Sydney 10:30
    assert s.dispatcher.route(night).force == "au"
    morning = datetime(2026, 1, 14, 8, 30, tzinfo=UTC)  # London 08:30, Sydney 19:30
    assert s.dispatcher.route(morning).force == "uk"
    # In July London is on BST and Sydney on standard time: 19:00-21:00 UTC nobody is on duty.
    hole = datetime(2026, 7, 15, 20, 0, tzinfo=UTC)
    routing = s.dispatcher.route(hole)
    assert routing.force is None
    assert [n.target for n in routing.notices] == ["supervisors"]
    assert routing.trace[0].startswith("roster: nobody on duty at 2026-07-15 20:00 UTC")
    problems = Roster(s.config.roster).coverage_problems(2026)
    assert problems and "19:00" in " ".join(problems)


async def test_delivery_survives_a_restart_of_the_dispatcher(
    setup: Any, receivers: dict[str, Receiver], tmp_path: Path
) -> None:
    """What was pending when the process died is delivered by the next one (same id)."""
    s = await setup({"notify": [webhook("officers", receivers["officers"])]})
    alert = await s.raise_alert(make_alert())
    await s.store.close()
    again = SQLiteStore(s.store.path)
    await again.open()
    try:
        dispatcher = Dispatcher(s.config, again, s.dispatcher.sinks, clock=lambda: T0)
        await dispatcher.tick(T0)
        (row,) = await again.read(lambda conn: outbox.rows(conn, alert_id=alert.id))
        assert row.state == "delivered" and receivers["officers"].ids == [row.id]
    finally:
        await again.close()
        await s.store.open()  # for the fixture's close


async def test_run_loop_wakes_on_kick(setup: Any, receivers: dict[str, Receiver]) -> None:
    s = await setup({"notify": [webhook("officers", receivers["officers"])]})
    task = asyncio.create_task(s.dispatcher.run())
    try:
        await asyncio.sleep(0.05)
        await s.raise_alert(make_alert())
        s.dispatcher.kick()
        for _ in range(100):
            if receivers["officers"].received:
                break
            await asyncio.sleep(0.02)
        assert len(receivers["officers"].received) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_cli_shows_dead_letters_retries_them_and_reenables_targets(
    setup: Any, receivers: dict[str, Receiver], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from presencebot import cli

    s = await setup(
        {
            "notify": [webhook("officers", receivers["officers"])],
            "delivery": {"max_attempts": 1},
            "store": {"path": str(tmp_path / "cli.db")},
        }
    )
    receivers["officers"].answers = [(400, {})]
    alert = await s.raise_alert(make_alert())
    await s.dispatcher.tick(T0)
    await s.store.transaction(lambda conn: outbox.disable_target(conn, "other", "410 Gone", T0))
    await s.store.close()
    config = tmp_path / "cli.toml"
    config.write_text(f'[store]\npath = "{s.store.path}"\n')

    def run(*argv: str) -> int:  # the CLI runs its own event loop
        return cli.main([*argv, "--config", str(config)])

    assert await asyncio.to_thread(run, "outbox", "list", "--state", "dead") == 0
    out = capsys.readouterr().out
    assert f"alert {alert.id}" in out and "dead" in out and "target other is disabled" in out
    (dead_id,) = [line.split()[0] for line in out.splitlines() if "dead" in line and "alert " in line]
    assert await asyncio.to_thread(run, "outbox", "retry", dead_id) == 0
    assert await asyncio.to_thread(run, "outbox", "enable", "other") == 0
    assert await asyncio.to_thread(run, "alerts", "trace", alert.id) == 0
    out = capsys.readouterr().out
    assert "queued again" in out and "other enabled again" in out and "dead letter" in out
    await s.store.open()  # for the fixture's close
    (row,) = await s.rows(alert.id)
    assert row.state == "pending"
