"""Small pieces: backoff, events, and plugin loading through entry points."""

from __future__ import annotations

import ast
import dataclasses
import random
import sys
from pathlib import Path

import pytest

from presencebot import plugins
from presencebot.adapter import Adapter
from presencebot.backoff import ExponentialBackoff
from presencebot.errors import PluginError
from presencebot.events import Author, Message, RoomRef, new_event_id
from presencebot.ids import AccountId, RoomId


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_exponentially_within_full_jitter_and_caps() -> None:
    clock = FakeClock()
    backoff = ExponentialBackoff(1.0, 8.0, rng=random.Random(1), clock=clock, floor=0.0)
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        assert 0.0 <= backoff.delay() <= ceilings[-1]
        clock.now += 1
    assert ceilings == [1, 2, 4, 8, 8, 8]


def test_backoff_jitter_spreads_delays() -> None:
    delays = {round(ExponentialBackoff(1, 60, rng=random.Random(seed)).delay(), 6) for seed in range(20)}
    assert len(delays) > 15  # bots restarting together do not reconnect in lockstep


def test_backoff_resets_after_a_healthy_period() -> None:
    clock = FakeClock()
    backoff = ExponentialBackoff(1.0, 8.0, reset_after=30, clock=clock)
    for _ in range(4):
        backoff.delay()
    assert backoff.ceiling() == 8
    clock.now += 31
    backoff.delay()
    assert backoff.failures == 1


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="base"):
        ExponentialBackoff(5, 1)


def test_events_are_immutable_and_ids_unique() -> None:
    m = Message(RoomRef("n", RoomId("#r")), Author("lily", AccountId("u1")), "hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.text = "changed"  # type: ignore[misc]
    assert len({new_event_id() for _ in range(10_000)}) == 10_000


def test_author_identity_prefers_the_account() -> None:
    assert Author("lily", AccountId("u1")).key == Author("lily_", AccountId("u1")).key
    assert Author("lily").key == Author("LILY").key
    assert Author("lily").key != Author("lily", AccountId("lily")).key
    assert str(Author("lily", AccountId("u1"))) == "lily (u1)"


def test_unknown_plugins_name_what_is_installed() -> None:
    with pytest.raises(PluginError, match=r"no adapter named 'nope'.*terminal"):
        plugins.load_adapter("nope")
    with pytest.raises(PluginError, match="no rule named 'nope'"):
        plugins.load_rule("nope")


def test_a_third_party_package_plugs_in_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Install a fake distribution on sys.path and load its adapter and rule by name."""
    pkg = tmp_path / "acme_presence"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from presencebot.adapter import Adapter\n"
        "from presencebot.rule import rule\n"
        "class AcmeAdapter(Adapter):\n"
        "    async def run(self): pass\n"
        "    async def join(self, room): pass\n"
        "    async def leave(self, room, reason): pass\n"
        "    async def send(self, room, text): pass\n"
        "@rule('acme_rule')\n"
        "def acme_rule(message, room):\n"
        "    return []\n"
        "class NotAnAdapter: pass\n"
    )
    dist = tmp_path / "acme_presence-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-presence\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[presencebot.adapters]\nacme = acme_presence:AcmeAdapter\nbroken = acme_presence:NotAnAdapter\n"
        "[presencebot.rules]\nacme_rule = acme_presence:acme_rule\nmislabelled = acme_presence:acme_rule\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cls = plugins.load_adapter("acme")
        assert issubclass(cls, Adapter)
        assert cls.__module__ == "acme_presence"
        assert plugins.load_rule("acme_rule").id == "acme_rule"
        with pytest.raises(PluginError, match="not an Adapter subclass"):
            plugins.load_adapter("broken")
        with pytest.raises(PluginError, match="whose id is 'acme_rule'"):
            plugins.load_rule("mislabelled")
    finally:
        sys.modules.pop("acme_presence", None)


def test_the_core_never_imports_an_adapter() -> None:
    core = Path(__file__).resolve().parent.parent / "presencebot"
    offenders = []
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("presencebot.adapters")]
    assert offenders == []
