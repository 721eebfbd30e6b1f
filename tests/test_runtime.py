"""The runtime's policies, driven through a scripted adapter and a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from presencebot.alerts import Alert
from presencebot.errors import FatalAdapterError, StoreError
from presencebot.events import Author, Banned, Invited, Joined, Kicked, Message, RoomRef
from presencebot.ids import AccountId, RoomId
from presencebot.rule import Flag, RoomView, rule
from presencebot.rules.minor_whereabouts import RULE as WHEREABOUTS
from presencebot.runtime import RoomState
from presencebot.store.sqlite import SQLiteStore
from presencebot.testing import capture_logs
from tests.support import RuntimeHarness, ScriptedAdapter, announced, make_config, stored, until

KIDS = RoomRef("net", RoomId("#kids"))


def msg(nick: str, text: str, room: RoomRef = KIDS, **kw: object) -> Message:
    return Message(room, Author(nick, AccountId(nick)), text, **kw)  # type: ignore[arg-type]


@rule("every_message", version="7")
def flag_everything(message: Message, room: RoomView) -> Iterator[Flag]:
    yield Flag("test", target=message.author, explanation="flags every message")


@rule("boom")
def boom(message: Message, room: RoomView) -> Iterator[Flag]:
    raise RuntimeError("rule bug")
    yield  # pragma: no cover


@rule("slow")
async def slow(message: Message, room: RoomView) -> list[Flag]:
    await asyncio.sleep(10)
    return []  # pragma: no cover


Start = Callable[..., RuntimeHarness]
EVERY = {"rules": ["every_message"]}


async def test_badge_is_announced_on_join_before_any_message(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS])
    adapter = await announced(scripted)
    assert adapter.joins == ["#kids"]
    room, badge = adapter.announced[0]
    assert room == "#kids"
    assert "Demo Police Service" in badge.who and badge.title == "POLICE PRESENCE"
    assert h.runtime.networks["net"].rooms[RoomId("#kids")].state is RoomState.ACTIVE


async def test_crashed_adapter_is_restarted_and_rejoins_with_a_new_badge(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    with capture_logs() as logs:
        h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS])
        await announced(scripted)
        first = scripted.instances[0]
        await first.inbox.put(ConnectionResetError("socket closed"))
        await until(lambda: len(scripted.instances) == 2 and bool(scripted.instances[1].announced))
    assert first.closed
    assert h.runtime.networks["net"].restarts == 1
    crash = next(e for e in logs if e["event"] == "adapter.crashed")
    assert 0 < crash["restart_in"] <= 0.05  # within the configured cap
    assert crash["network"] == "net"
    assert [e["event"] for e in logs].count("room.announced") == 2


async def test_restart_delays_follow_the_backoff_bound(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    scripted.crash_on_start = 4
    config = make_config(supervisor={"restart_base_seconds": 0.01, "restart_cap_seconds": 0.04})
    with capture_logs() as logs:
        start_runtime(config, {"net": scripted}, [])
        await until(lambda: len(scripted.instances) == 5 and bool(scripted.instances[4].announced))
    delays = [e["restart_in"] for e in logs if e["event"] == "adapter.crashed"]
    assert len(delays) == 4
    ceilings = [0.01, 0.02, 0.04, 0.04]  # base * 2**n, capped
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True))


async def test_one_adapter_failing_never_stops_another(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    class Broken(ScriptedAdapter):
        instances: list[ScriptedAdapter] = []  # type: ignore[misc]
        crash_on_start = 10_000

    config = make_config(
        networks=[
            {"name": "net", "adapter": "scripted", "rooms": [{"id": "#kids"}]},
            {"name": "bad", "adapter": "broken", "rooms": [{"id": "#x"}]},
        ],
        room_defaults=EVERY,
    )
    h = start_runtime(config, {"net": scripted, "bad": Broken}, [flag_everything])
    await announced(scripted)
    await until(lambda: len(Broken.instances) >= 3)
    await scripted.instances[0].inbox.put(msg("lily", "hello"))
    await until(lambda: h.runtime.pipeline.stats["every_message"].flags == 1)
    alerts = await h.store.list()
    assert [a.target.nick for a in alerts] == ["lily"]


async def test_fatal_adapter_error_stops_that_adapter_and_exit_status_is_1(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [])
    await announced(scripted)
    await scripted.instances[0].inbox.put(FatalAdapterError("the token was refused"))
    assert await asyncio.wait_for(h.task, 5) == 1
    assert len(scripted.instances) == 1  # not restarted
    assert h.runtime.networks["net"].fatal == "the token was refused"


async def test_a_raising_rule_is_isolated_and_the_others_still_run(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(room_defaults={"rules": ["boom", "every_message"]})
    with capture_logs() as logs:
        h = start_runtime(config, {"net": scripted}, [boom, flag_everything])
        await announced(scripted)
        await scripted.instances[0].inbox.put(msg("lily", "hi"))
        await scripted.instances[0].inbox.put(msg("mark", "hi"))
        await until(lambda: h.runtime.pipeline.stats["every_message"].flags == 2)
    assert h.runtime.pipeline.stats["boom"].errors == 2
    errors = [e for e in logs if e["event"] == "rule.error"]
    assert len(errors) == 2 and errors[0]["rule"] == "boom"
    alerts = await h.store.list()
    assert {a.rule_id for a in alerts} == {"every_message"}
    assert {a.rule_version for a in alerts} == {"7"}


async def test_an_async_rule_over_budget_is_cut_off(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(room_defaults={"rules": ["slow", "every_message"]}, rules={"time_budget_ms": 20})
    with capture_logs() as logs:
        h = start_runtime(config, {"net": scripted}, [slow, flag_everything])
        await announced(scripted)
        await scripted.instances[0].inbox.put(msg("lily", "hi"))
        await until(lambda: h.runtime.pipeline.stats["every_message"].flags == 1, timeout=2)
    assert h.runtime.pipeline.stats["slow"].overruns == 1
    assert any(e["event"] == "rule.timeout" and e["rule"] == "slow" for e in logs)


async def test_messages_from_a_room_without_badge_are_ignored(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(room_defaults=EVERY), {"net": scripted}, [flag_everything])
    await announced(scripted)
    await scripted.instances[0].inbox.put(msg("lily", "hi", room=RoomRef("net", RoomId("#elsewhere"))))
    await scripted.instances[0].inbox.put(msg("lily", "hi"))
    await until(lambda: h.runtime.pipeline.stats["every_message"].calls == 1)
    assert [a.room.id for a in await stored(h.store)] == ["#kids"]


async def test_if_the_badge_cannot_be_shown_the_bot_leaves(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    scripted.fail_announce = True
    h = start_runtime(make_config(room_defaults=EVERY), {"net": scripted}, [flag_everything])
    await until(lambda: bool(scripted.instances) and bool(scripted.instances[0].leaves))
    adapter = scripted.instances[0]
    assert adapter.leaves[0][0] == "#kids"
    assert h.runtime.networks["net"].rooms[RoomId("#kids")].state is RoomState.FAILED
    await adapter.inbox.put(msg("lily", "hi"))
    await adapter.inbox.put(None)
    await asyncio.wait_for(h.task, 5)
    assert h.runtime.pipeline.stats["every_message"].calls == 0


async def test_a_join_nobody_asked_for_is_left_at_once(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    start_runtime(make_config(), {"net": scripted}, [])
    adapter = await announced(scripted)
    await adapter.inbox.put(Joined(RoomRef("net", RoomId("#forced"))))
    await until(lambda: bool(adapter.leaves))
    assert adapter.leaves[0][0] == "#forced"
    assert [room for room, _ in adapter.announced] == ["#kids"]


async def test_invites_are_accepted_only_from_allowed_accounts(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(
        networks=[{"name": "net", "adapter": "scripted", "invites": {"allow": ["op-account"]}}]
    )
    with capture_logs() as logs:
        start_runtime(config, {"net": scripted}, [])
        await until(lambda: bool(scripted.instances))
        adapter = scripted.instances[0]
        await adapter.inbox.put(Invited(RoomRef("net", RoomId("#a")), by=Author("eve", AccountId("eve"))))
        await adapter.inbox.put(Invited(RoomRef("net", RoomId("#b")), by=Author("op-account")))  # nick only
        await adapter.inbox.put(
            Invited(RoomRef("net", RoomId("#c")), by=Author("op", AccountId("op-account")))
        )
        await until(lambda: bool(adapter.announced))
    assert adapter.joins == ["#c"]
    assert [room for room, _ in adapter.announced] == ["#c"]
    assert sum(e["event"] == "room.invite_declined" for e in logs) == 2


async def test_kicked_means_no_automatic_rejoin(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(
        networks=[
            {
                "name": "net",
                "adapter": "scripted",
                "rooms": [{"id": "#kids"}, {"id": "#ok", "rejoin_on_kick": True}],
            }
        ]
    )
    h = start_runtime(config, {"net": scripted}, [])
    await until(lambda: bool(scripted.instances) and len(scripted.instances[0].announced) == 2)
    adapter = scripted.instances[0]
    await adapter.inbox.put(
        Kicked(KICKS := RoomRef("net", RoomId("#kids")), by=Author("op"), reason="no bots")
    )
    await adapter.inbox.put(Kicked(RoomRef("net", RoomId("#ok")), by=Author("op")))
    await until(lambda: len(adapter.announced) == 3)
    rooms = h.runtime.networks["net"].rooms
    assert rooms[KICKS.id].state is RoomState.KICKED
    assert rooms[RoomId("#ok")].state is RoomState.ACTIVE
    assert adapter.joins == ["#kids", "#ok", "#ok"]
    # A reconnect (crash + restart) does not bring the bot back into the room it was kicked from.
    await adapter.inbox.put(ConnectionResetError())
    await until(lambda: len(scripted.instances) == 2 and bool(scripted.instances[1].announced))
    assert scripted.instances[1].joins == ["#ok"]


async def test_banned_is_recorded_without_retry(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [])
    await announced(scripted)
    await scripted.instances[0].inbox.put(Banned(KIDS, reason="banned"))
    await scripted.instances[0].inbox.put(ConnectionResetError())
    await until(lambda: len(scripted.instances) == 2)
    await asyncio.sleep(0.05)
    assert h.runtime.networks["net"].rooms[KIDS.id].state is RoomState.BANNED
    assert scripted.instances[1].joins == []


async def test_commands_answer_in_the_room_language(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(
        agency={"name": "Service de police de Test", "region": "ca"},
        networks=[{"name": "net", "adapter": "scripted", "rooms": [{"id": "#kids", "language": "fr"}]}],
    )
    start_runtime(config, {"net": scripted}, [])
    adapter = await announced(scripted)
    assert adapter.announced[0][1].language == "fr"
    await adapter.inbox.put(msg("lily", "!police"))
    await adapter.inbox.put(msg("lily", "!HELP"))
    await until(lambda: len(adapter.sent) >= 5)
    texts = [t for _, t in adapter.sent]
    assert "robot de présence policière" in texts[0] and "Service de police de Test" in texts[0]
    assert any("Jeunesse, J'écoute" in t and "1-800-668-6868" in t for t in texts)
    assert any("911" in t for t in texts)


async def test_private_report_raises_a_report_alert_and_thanks_with_its_id(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [])
    adapter = await announced(scripted)
    dm = RoomRef("net", RoomId("@lily"))
    await adapter.inbox.put(msg("lily", "!report a man keeps asking for my address", room=dm, is_direct=True))
    await adapter.inbox.put(msg("lily", "!report", room=dm, is_direct=True))
    await until(lambda: len(adapter.sent) == 2)
    (alert,) = await h.store.list()
    assert alert.category == "report" and alert.target.nick == "lily"
    assert [e.text for e in alert.evidence] == ["!report a man keeps asking for my address"]
    assert adapter.sent[0] == ("@lily", adapter.sent[0][1])
    assert alert.id in adapter.sent[0][1]
    assert "!report" in adapter.sent[1][1]  # usage, no empty alert


async def test_public_report_still_raises_but_asks_for_privacy(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [])
    adapter = await announced(scripted)
    await adapter.inbox.put(msg("lily", "!report someone asked my school"))
    await until(lambda: len(adapter.sent) == 2)
    assert len(await h.store.list()) == 1
    assert "private" in adapter.sent[0][1]


async def test_history_is_context_but_never_flagged(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS])
    adapter = await announced(scripted)
    await adapter.inbox.put(msg("lily", "im 12", is_history=True))
    await adapter.inbox.put(msg("mark", "lily where do u live", is_history=True))
    await adapter.inbox.put(msg("mark", "lily what school do u go to"))
    await until(lambda: h.runtime.pipeline.stats["minor_whereabouts"].calls == 3)
    (alert,) = await stored(h.store)
    assert alert.category == "school"
    assert [e.text for e in alert.evidence] == [
        "im 12",
        "lily where do u live",
        "lily what school do u go to",
    ]


async def test_evidence_is_bounded_by_the_configured_window(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(evidence={"context_messages": 2, "context_seconds": 600})
    h = start_runtime(config, {"net": scripted}, [WHEREABOUTS])
    adapter = await announced(scripted)
    start = msg("x", "x").at
    lines = [
        ("lily", "hiii im 12"),
        *[(f"u{i}", f"chat {i}") for i in range(6)],
        ("mark", "lily where do u live?"),
    ]
    for i, (nick, text) in enumerate(lines):
        await adapter.inbox.put(msg(nick, text, at=start + timedelta(seconds=i)))
    await until(lambda: h.runtime.pipeline.stats["minor_whereabouts"].calls == len(lines))
    (alert,) = await stored(h.store)
    # the age statement the flag rests on, two messages of context, the flagged message
    assert [e.text for e in alert.evidence] == ["hiii im 12", "chat 4", "chat 5", "lily where do u live?"]
    assert [e.flagged for e in alert.evidence] == [False, False, False, True]


async def test_stop_closes_adapters_and_the_store(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [])
    await announced(scripted)
    assert await h.stop() == 0
    assert scripted.instances[0].closed
    with pytest.raises(Exception, match="not open"):
        await h.store.list()


class FlakyStore(SQLiteStore):
    """A real SQLite store whose next ``failures`` writes fail, as a full disk or a lock would."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def add(self, alert: Alert, notify: Sequence[Any], **kwargs: Any) -> Alert:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("database or disk is full")
        return await super().add(alert, notify, **kwargs)


async def test_an_alert_the_store_refuses_is_retried_until_it_lands(
    start_runtime: Start, scripted: type[ScriptedAdapter], tmp_path: Path
) -> None:
    store = FlakyStore(tmp_path / "flaky.db", failures=2)
    with capture_logs() as logs:
        h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS], store=store)
        adapter = await announced(scripted)
        await adapter.inbox.put(msg("lily", "im 12"))
        await adapter.inbox.put(msg("mark", "lily where do u live"))
        await adapter.inbox.put(msg("kian", "hi"))  # the adapter carries on meanwhile
        await until(lambda: any(e["event"] == "alert.stored_late" for e in logs), timeout=10)
    (alert,) = await h.store.list()
    assert alert.target.nick == "lily"
    assert [e["event"] for e in logs].count("alert.store_failed") == 1
    assert h.runtime.pipeline.stats["minor_whereabouts"].calls == 3


async def test_an_alert_still_unsaved_at_shutdown_is_logged_in_full(
    start_runtime: Start, scripted: type[ScriptedAdapter], tmp_path: Path
) -> None:
    store = FlakyStore(tmp_path / "flaky.db", failures=10_000)
    with capture_logs() as logs:
        h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS], store=store)
        adapter = await announced(scripted)
        dm = RoomRef("net", RoomId("@lily"))
        await adapter.inbox.put(msg("lily", "!report he wants my address", room=dm, is_direct=True))
        await until(lambda: bool(adapter.sent))
        assert await h.stop() == 0
    assert "could not be passed on straight away" in adapter.sent[0][1]
    (dump,) = [e for e in logs if e["event"] == "alert.unsaved_at_shutdown"]
    assert dump["alert"]["category"] == "report"
    assert dump["alert"]["evidence"][0]["text"] == "!report he wants my address"
    assert dump["alert"]["id"] in adapter.sent[0][1]


async def test_police_and_help_have_a_cooldown_per_room(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [WHEREABOUTS])
    adapter = await announced(scripted)
    for _ in range(5):
        await adapter.inbox.put(msg("prankster", "!police"))
    await adapter.inbox.put(msg("lily", "!police", room=RoomRef("net", RoomId("@lily")), is_direct=True))
    await adapter.inbox.put(msg("lily", "hi"))
    await until(lambda: h.runtime.pipeline.stats["minor_whereabouts"].calls == 1)  # "hi" came last
    assert [room for room, _ in adapter.sent] == ["#kids", "@lily"]


async def test_invites_by_mask_or_by_an_operator_of_that_room(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(
        networks=[
            {
                "name": "net",
                "adapter": "scripted",
                "invites": {"masks": ["*!*@trusted.example"], "room_operators": True},
            }
        ]
    )
    with capture_logs() as logs:
        start_runtime(config, {"net": scripted}, [])
        await until(lambda: bool(scripted.instances))
        adapter = scripted.instances[0]
        room = lambda name: RoomRef("net", RoomId(name))  # noqa: E731
        # Not an operator there, unknown address: declined.
        await adapter.inbox.put(
            Invited(room("#a"), Author("eve"), by_mask="eve!e@evil.example", by_operator=False)
        )
        # The protocol could not tell: declined (consent must be shown, not assumed).
        await adapter.inbox.put(Invited(room("#b"), Author("bob"), by_mask="bob!b@x", by_operator=None))
        await adapter.inbox.put(Invited(room("#c"), Author("tim"), by_mask="Tim!t@TRUSTED.example"))
        await adapter.inbox.put(Invited(room("#d"), Author("op"), by_mask="op!o@x", by_operator=True))
        await until(lambda: len(adapter.announced) == 2)
    assert adapter.joins == ["#c", "#d"]
    accepted = [e["because"] for e in logs if e["event"] == "room.invite_accepted"]
    assert accepted == ["address matches *!*@trusted.example", "an operator of the room"]
    assert sum(e["event"] == "room.invite_declined" for e in logs) == 2
    # The refused inviters are told why, where the protocol can say so.
    assert [e.by.nick for e, _ in adapter.declined] == ["eve", "bob"]
    assert "only joins a room at the invitation" in adapter.declined[0][1]


async def test_police_leave_is_obeyed_from_an_operator_only_and_remembered(
    start_runtime: Start, scripted: type[ScriptedAdapter], tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "alerts.db")
    h = start_runtime(make_config(), {"net": scripted}, [], store)
    adapter = await announced(scripted)
    await adapter.inbox.put(msg("kid", "!police leave"))
    await until(lambda: bool(adapter.sent))
    assert adapter.leaves == []
    assert "Only an operator" in adapter.sent[0][1]
    await adapter.inbox.put(msg("chanop", "!police leave", by_operator=True))
    await until(lambda: bool(adapter.leaves))
    room, goodbye = adapter.leaves[0]
    assert room == "#kids" and "operator" in goodbye and "invited again" in goodbye
    assert h.runtime.networks["net"].rooms[KIDS.id].state is RoomState.DISMISSED
    await h.stop()

    # A restart of the whole bot keeps out of the room, until someone allowed invites it again.
    config = make_config(
        networks=[
            {
                "name": "net",
                "adapter": "scripted",
                "rooms": [{"id": "#kids"}],
                "invites": {"room_operators": True},
            }
        ]
    )
    h2 = start_runtime(config, {"net": scripted}, [], SQLiteStore(tmp_path / "alerts.db"))
    await until(lambda: len(scripted.instances) == 2)
    again = scripted.instances[1]
    await asyncio.sleep(0.05)
    assert again.joins == []
    assert h2.runtime.networks["net"].rooms[KIDS.id].state is RoomState.DISMISSED
    await again.inbox.put(Invited(KIDS, Author("chanop"), by_operator=True))
    await until(lambda: bool(again.announced))
    assert again.joins == ["#kids"]


async def test_a_kick_is_remembered_across_a_restart(
    start_runtime: Start, scripted: type[ScriptedAdapter], tmp_path: Path
) -> None:
    h = start_runtime(make_config(), {"net": scripted}, [], SQLiteStore(tmp_path / "a.db"))
    adapter = await announced(scripted)
    await adapter.inbox.put(Kicked(KIDS, by=Author("op"), reason="no bots here"))
    await until(lambda: h.runtime.networks["net"].rooms[KIDS.id].state is RoomState.KICKED)
    await h.stop()
    h2 = start_runtime(make_config(), {"net": scripted}, [], SQLiteStore(tmp_path / "a.db"))
    await until(lambda: len(scripted.instances) == 2)
    await asyncio.sleep(0.05)
    assert scripted.instances[1].joins == []
    assert h2.runtime.networks["net"].rooms[KIDS.id].state is RoomState.KICKED


async def test_periodic_reannounce_only_where_configured(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    config = make_config(
        networks=[
            {
                "name": "net",
                "adapter": "scripted",
                "rooms": [{"id": "#kids", "announce_every_minutes": 5}, {"id": "#quiet"}],
            }
        ]
    )
    h = start_runtime(config, {"net": scripted}, [])
    h.runtime._reannounce_tick = 0.01  # before the runtime task first runs
    record = h.runtime.networks["net"].rooms[KIDS.id]
    assert record.announce_every == 300
    record.announce_every = 0.05  # 5 minutes, shortened for the test
    await until(lambda: bool(scripted.instances) and len(scripted.instances[0].announced) >= 2)
    adapter = scripted.instances[0]
    await until(lambda: len(adapter.announced) >= 4)
    rooms = [room for room, _ in adapter.announced[2:]]
    assert set(rooms) == {"#kids"}


async def test_a_resumed_session_keeps_its_rooms_and_posts_no_second_badge(
    start_runtime: Start, scripted: type[ScriptedAdapter]
) -> None:
    from presencebot.events import Connected, Disconnected

    h = start_runtime(make_config(), {"net": scripted}, [])
    adapter = await announced(scripted)
    await adapter.inbox.put(Disconnected("net", "gateway dropped", resumable=True))
    await until(lambda: not h.runtime.networks["net"].connected)
    assert h.runtime.networks["net"].rooms[KIDS.id].state is RoomState.ACTIVE
    await adapter.inbox.put(Connected("net", resumed=True))
    await until(lambda: h.runtime.networks["net"].connected)
    await asyncio.sleep(0.05)
    assert adapter.joins == ["#kids"] and len(adapter.announced) == 1
    # A session that could not be resumed: rooms are joined and announced again.
    await adapter.inbox.put(Disconnected("net", "gone"))
    await adapter.inbox.put(Connected("net"))
    await until(lambda: len(adapter.announced) == 2)
    assert adapter.joins == ["#kids", "#kids"]
