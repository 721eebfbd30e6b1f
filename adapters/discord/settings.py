"""``[networks.settings]`` for a Discord bot application.

The token is ``SecretStr`` and belongs in ``PRESENCEBOT_NETWORKS__<NAME>__SETTINGS__TOKEN``, never
in the file. The REST and gateway addresses are settings so that tests (and an agency running a
Discord-compatible server) can point the bot elsewhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


class DiscordSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = Field(
        default=None, description="The bot token: set PRESENCEBOT_NETWORKS__<NAME>__SETTINGS__TOKEN."
    )
    api_base_url: str = Field(default=DISCORD_API, pattern=r"^https?://\S+$")
    gateway_url: str = Field(default=DISCORD_GATEWAY, pattern=r"^wss?://\S+$")
    guilds: list[int] = Field(
        default_factory=list, description="Guild (server) ids to watch; empty: every guild the bot is in."
    )
    channels: list[int] = Field(
        default_factory=list,
        description="Text channel ids to watch; empty: every text channel the bot can read.",
    )
    set_avatar: bool = Field(
        default=True, description="Give the bot account the badge as its avatar if it has none."
    )
    slash_command: bool = Field(default=True, description="Register the /police application command.")
