"""``[networks.settings]`` for a Discord bot application.

The token is ``SecretStr`` and belongs in ``PRESENCEBOT_NETWORKS__<NAME>__SETTINGS__TOKEN``, never
in the file. The REST and gateway addresses are settings so that tests (and an agency running a
Discord-compatible server) can point the bot elsewhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

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
    shard_id: int | None = Field(
        default=None,
        ge=0,
        description="This entry's shard, with shard_count: Discord requires sharding above 2,500 "
        "guilds. Write one [[networks]] entry per shard (same token), so that a fleet runs each "
        "shard as its own unit.",
    )
    shard_count: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _shard(self) -> DiscordSettings:
        if (self.shard_id is None) != (self.shard_count is None):
            raise ValueError("shard_id and shard_count go together (or neither, for one shard)")
        if self.shard_id is not None and self.shard_count is not None and self.shard_id >= self.shard_count:
            raise ValueError(f"shard_id must be below shard_count ({self.shard_count})")
        return self
