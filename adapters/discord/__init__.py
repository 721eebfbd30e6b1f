"""Discord: guild text channels through discord.py (a bot application).

:mod:`.settings` (token, endpoints, which guilds and channels) and :mod:`.adapter` (the client,
rooms as watched channels, the embed badge, the /police command, message mapping).
"""

from .adapter import DiscordAdapter
from .settings import DiscordSettings

__all__ = ["DiscordAdapter", "DiscordSettings"]
