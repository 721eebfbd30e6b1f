"""Room memory bounds, effective settings, and the pipeline's contract with rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from presencebot.config import Audience, Config
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, RoomId
from presencebot.pipeline import Pipeline
from presencebot.rooms import RoomContext, effective_settings
from presencebot.rule import Flag, Observe, RoomSettingsView, RoomView, rule

REF = RoomRef("net", RoomId("#r"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def msg(nick: str, text: str, seconds: float = 0, account: str | None = None) -> Message:
    return Message(REF, Author(nick, AccountId(account or nick)), text, at=T0 + timedelta(seconds=seconds))


def test_window_is_bounded_by_count() -> None:
    room = RoomContext(REF, RoomSettingsView(), max_messages=3)
    for i in range(10):
        room.add(msg("a", f"m{i}", i))
    assert [m.text for m in room.recent] == ["m7", "m8", "m9"]


def test_window_is_bounded_by_age() -> None:
    room = RoomContext(REF, RoomSettingsView(), max_messages=100, max_age_seconds=60)
    for i in range(10):
        room.add(msg("a", f"m{i}", i * 20))
    assert [m.text for m in room.recent] == ["m6", "m7", "m8", "m9"]  # 120..180 s


def test_participants_are_bounded_and_keyed_by_account() -> None:
    room = RoomContext(REF, RoomSettingsView(), max_participants=3)
    for i in range(5):
        room.add(msg(f"n{i}", "hi", i))
    assert [p.author.nick for p in room.participants.values()] == ["n2", "n3", "n4"]
    room.add(msg("renamed", "hi", 10, account="n3"))  # same account, new nick
    assert room.find_nick("renamed") is not None
    assert room.find_nick("N3") is None
    assert len(room.participants) == 3


def test_facts_expire() -> None:
    room = RoomContext(REF, RoomSettingsView())
    m = msg("lily", "im 12")
    room.add(m)
    room.observe(Observe(m.author, "age", 12, "said so", ttl_seconds=60), m)
    assert room.fact(m.author, "age", T0 + timedelta(seconds=30)).value == 12  # type: ignore[union-attr]
    assert room.fact(m.author, "age", T0 + timedelta(seconds=61)) is None


def test_effective_settings_layering() -> None:
    config = Config.model_validate(
        {
            "agency": {"region": "au"},
            "room_defaults": {"language": "en", "audience": "general"},
            "networks": [
                {
                    "name": "net",
                    "adapter": "terminal",
                    "room_defaults": {"language": "fr"},
                    "rooms": [{"id": "#kids", "audience": "minors", "region": "ca"}, {"id": "#other"}],
                }
            ],
        }
    )
    kids = effective_settings(config, "net", "#kids")
    assert (kids.audience, kids.language, kids.region) == (Audience.MINORS, "fr", "ca")
    other = effective_settings(config, "net", "#other")
    assert (other.audience, other.language, other.region) == (Audience.GENERAL, "fr", "au")
    assert effective_settings(config, "elsewhere", "#x").language == "en"


@rule("observer")
def observer(message: Message, room: RoomView) -> Iterator[Observe]:
    yield Observe(message.author, "seen", message.text, "test")


@rule("reader")
def reader(message: Message, room: RoomView) -> Iterator[Flag]:
    fact = room.fact(message.author, "seen", message.at)
    if fact is not None:
        yield Flag("saw-before", target=message.author, explanation=f"earlier: {fact.value}")


async def test_observations_apply_after_all_rules_so_order_does_not_matter() -> None:
    for order in ([observer, reader], [reader, observer]):
        pipeline = Pipeline(order)
        room = RoomContext(REF, RoomSettingsView(rules=tuple(r.id for r in order)))
        assert await pipeline.process(msg("a", "one"), room) == []
        (flag,) = await pipeline.process(msg("a", "two", 1), room)
        assert flag.explanation == "earlier: one"


async def test_pipeline_stamps_provenance_a_rule_cannot_forge() -> None:
    @rule("forger", version="3")
    def forger(message: Message, room: RoomView) -> Iterator[Flag]:
        yield Flag("x", target=message.author, explanation="e", rule_id="someone-else", rule_version="99")

    pipeline = Pipeline([forger])
    room = RoomContext(REF, RoomSettingsView(rules=("forger",)))
    m = msg("a", "hi")
    (flag,) = await pipeline.process(m, room)
    assert (flag.rule_id, flag.rule_version, flag.message, flag.requester) == ("forger", "3", m.id, m.author)


async def test_a_rule_returning_garbage_is_isolated() -> None:
    @rule("garbage")
    def garbage(message: Message, room: RoomView) -> object:
        return 42

    @rule("bad_items")
    def bad_items(message: Message, room: RoomView) -> list[object]:
        return ["not a finding"]

    pipeline = Pipeline([garbage, bad_items, observer])  # type: ignore[list-item]
    room = RoomContext(REF, RoomSettingsView(rules=("garbage", "bad_items", "observer")))
    assert await pipeline.process(msg("a", "hi"), room) == []
    assert pipeline.stats["garbage"].errors == 1
    assert pipeline.stats["bad_items"].errors == 1
    assert room.fact(Author("a", AccountId("a")), "seen", T0) is not None


async def test_slow_sync_rule_is_counted_as_overrun_but_keeps_its_flags() -> None:
    import time

    @rule("sluggish")
    def sluggish(message: Message, room: RoomView) -> Iterator[Flag]:
        time.sleep(0.02)
        yield Flag("x", target=message.author, explanation="slow but right")

    pipeline = Pipeline([sluggish], time_budget=0.005)
    room = RoomContext(REF, RoomSettingsView(rules=("sluggish",)))
    assert len(await pipeline.process(msg("a", "hi"), room)) == 1
    assert pipeline.stats["sluggish"].overruns == 1


async def test_rules_not_enabled_for_the_room_do_not_run() -> None:
    pipeline = Pipeline([observer, reader])
    room = RoomContext(REF, RoomSettingsView(rules=("reader",)))
    await pipeline.process(msg("a", "one"), room)
    assert pipeline.stats["observer"].calls == 0
    assert pipeline.stats["reader"].calls == 1
