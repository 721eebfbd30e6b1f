"""Checks that need the installed plugins: adapter settings and rule names.

``config.py`` validates the file's own shape; this module resolves each network's adapter through
its entry point and validates ``settings`` against the adapter's model, so ``presencebot check``
reports every problem (with its line) before ``run`` would trip over the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from presencebot import plugins
from presencebot.adapter import Adapter
from presencebot.config import Config, describe_errors, dotted_path
from presencebot.errors import ConfigError, PluginError
from presencebot.roster import Roster
from presencebot.rule import Rule
from presencebot.sinks.factory import settings_of
from presencebot.sinks.room import RoomSinkSettings
from presencebot.tomlpos import key_lines, locate


@dataclass(frozen=True, slots=True)
class Resolved:
    adapters: dict[str, tuple[type[Adapter], BaseModel]]
    rules: list[Rule]


def resolve(config: Config, *, text: str | None = None, source: str = "<defaults>") -> Resolved:
    """Load every enabled network's adapter and every rule rooms enable; raise one ConfigError
    listing all problems."""
    lines = key_lines(text) if text is not None else {}
    problems: list[str] = []

    def where(*path: str | int) -> str:
        line = locate(path, lines)
        return f"{source}:{line}" if line is not None else source

    adapters: dict[str, tuple[type[Adapter], BaseModel]] = {}
    for index, network in enumerate(config.networks):
        if not network.enabled:
            continue
        try:
            cls = plugins.load_adapter(network.adapter)
        except PluginError as exc:
            adapter_path = ("networks", index, "adapter")
            problems.append(f"{where(*adapter_path)}: {dotted_path(adapter_path)}: {exc}")
            continue
        try:
            settings = cls.Settings.model_validate(network.settings)
        except ValidationError as exc:
            problems += describe_errors(exc, source=source, text=text, prefix=("networks", index, "settings"))
            continue
        adapters[network.name] = (cls, settings)

    wanted: dict[str, tuple[str | int, ...]] = {}
    for name in config.room_defaults.rules:
        wanted.setdefault(name, ("room_defaults", "rules"))
    for n, network in enumerate(config.networks):
        for name in network.room_defaults.rules or []:
            wanted.setdefault(name, ("networks", n, "room_defaults", "rules"))
        for r, room in enumerate(network.rooms):
            for name in room.rules or []:
                wanted.setdefault(name, ("networks", n, "rooms", r, "rules"))
    rules: list[Rule] = []
    for name, path in sorted(wanted.items()):
        try:
            rules.append(plugins.load_rule(name))
        except PluginError as exc:
            problems.append(f"{where(*path)}: {dotted_path(path)}: {exc}")
    problems += _delivery_problems(config, source=source, text=text, where=where)
    if problems:
        raise ConfigError(problems)
    return Resolved(adapters, rules)


def _delivery_problems(config: Config, *, source: str, text: str | None, where: Any) -> list[str]:
    """Notification targets' settings, officers' rooms on known networks, and the roster's
    coverage over this year and the next (every clock change of every force's zone included)."""
    problems: list[str] = []
    networks = {n.name: n for n in config.networks}
    for index, target in enumerate(config.notify):
        try:
            settings = settings_of(target)
        except ValidationError as exc:
            problems += describe_errors(exc, source=source, text=text, prefix=("notify", index, "settings"))
            continue
        if isinstance(settings, RoomSinkSettings):
            network = networks.get(settings.network)
            path = ("notify", index, "settings")
            if network is None:
                problems.append(
                    f"{where(*path, 'network')}: notify[{index}]: no network named {settings.network!r}"
                )
            elif settings.room not in {r.id for r in network.rooms}:
                problems.append(
                    f"{where(*path, 'room')}: notify[{index}]: the officers' room {settings.room!r} must also"
                    f" be listed in the rooms of network {settings.network!r} (so the bot joins it)"
                )
    return problems


def coverage_problems(config: Config, *, source: str = "<defaults>", text: str | None = None) -> list[str]:
    """Hours with nobody on duty, over this year and the next (every clock change of every
    force's zone included). ``presencebot check`` fails on them; ``run`` only warns: the bot's
    presence should not wait for a roster fix, and alerts in a hole go to the supervisors."""
    if not config.roster.forces:
        return []
    line = locate(("roster",), key_lines(text)) if text is not None else None
    where = f"{source}:{line}" if line is not None else source
    return [f"{where}: roster: {problem}" for problem in Roster(config.roster).coverage_problems()]
