"""Room commands anyone can use: ``!police``, ``!help`` and ``!report``.

They exist so that nobody has to guess what the bot is: it says who runs it and why, points a
child to help, and takes a private report. Replies come from the catalogue in the room language.
"""

from __future__ import annotations

from dataclasses import dataclass

from presencebot import catalogue
from presencebot.config import Config
from presencebot.rule import RoomSettingsView

COMMANDS = frozenset({"police", "help", "report", "ack"})


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: str


def parse(text: str) -> Command | None:
    """``"!Report he asked for my address"`` -> ``Command("report", "he asked for my address")``."""
    stripped = text.strip()
    if not stripped.startswith("!"):
        return None
    head, _, args = stripped[1:].partition(" ")
    name = head.casefold()
    if name not in COMMANDS:
        return None
    return Command(name, args.strip())


def police_reply(config: Config, settings: RoomSettingsView) -> str:
    return catalogue.text(
        settings.language,
        "police.reply",
        agency=config.agency.name,
        info_url=config.agency.info_url,
    )


def help_reply(config: Config, settings: RoomSettingsView) -> list[str]:
    """The intro, one line per safety resource of the room's region, and the emergency number."""
    lines = [catalogue.text(settings.language, "help.intro")]
    for resource in config.help.get(settings.region, []):  # type: ignore[call-overload]
        parts = [resource.display_name(settings.language)]
        parts += [p for p in (resource.phone, resource.note, resource.url) if p]
        lines.append(" — ".join(parts))
    lines.append(emergency_line(settings))
    return lines


def emergency_number(settings: RoomSettingsView) -> str:
    return catalogue.EMERGENCY.get(settings.region, "999")


def emergency_line(settings: RoomSettingsView) -> str:
    return catalogue.text(settings.language, "help.emergency", emergency=emergency_number(settings))
