"""Building the configured sinks: one per ``[[notify]]`` entry, by its ``sink`` kind."""

from __future__ import annotations

from pydantic import BaseModel

from presencebot.config import Config, NotifyConfig
from presencebot.sinks import Sink
from presencebot.sinks.email import EmailSettings, EmailSink
from presencebot.sinks.room import RoomSink, RoomSinkSettings, Say
from presencebot.sinks.webhook import WebhookSettings, WebhookSink

SETTINGS: dict[str, type[BaseModel]] = {
    "room": RoomSinkSettings,
    "webhook": WebhookSettings,
    "email": EmailSettings,
}


def settings_of(target: NotifyConfig) -> BaseModel:
    """The target's settings, validated by its sink's model (``presencebot check`` uses this)."""
    return SETTINGS[target.sink].model_validate(target.settings)


def build_sinks(config: Config, say: Say) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    for target in config.notify:
        settings = settings_of(target)
        if isinstance(settings, RoomSinkSettings):
            sinks[target.name] = RoomSink(settings, say)
        elif isinstance(settings, WebhookSettings):
            sinks[target.name] = WebhookSink(settings)
        elif isinstance(settings, EmailSettings):
            sinks[target.name] = EmailSink(settings)
    return sinks
