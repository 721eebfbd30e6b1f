"""The officers' web console: :mod:`.app` (routes, security) and :mod:`.queries` (scoped reads
and recorded actions)."""

from presencebot.console.app import create_app

__all__ = ["create_app"]
