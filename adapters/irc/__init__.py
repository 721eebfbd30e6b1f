"""IRC: channels on real IRC networks, through the ``irc`` library's asyncio client.

Modules, from the wire up: :mod:`.lines` (safe, correctly split outgoing lines), :mod:`.caps`
(CAP and SASL), :mod:`.state` (channels, operators, accounts), :mod:`.settings` and
:mod:`.adapter` (the connection loop and the mapping to presencebot events).
"""

from .adapter import IrcAdapter
from .settings import IrcSettings

__all__ = ["IrcAdapter", "IrcSettings"]
