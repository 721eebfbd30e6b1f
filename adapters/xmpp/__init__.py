"""XMPP: group chats (XEP-0045) on real XMPP servers, through slixmpp.

:mod:`.settings` (the account and its options) and :mod:`.adapter` (the connection loop, rooms,
invitations, the avatar badge, and the mapping of stanzas to presencebot events).
"""

from .adapter import XmppAdapter
from .settings import XmppSettings

__all__ = ["XmppAdapter", "XmppSettings"]
