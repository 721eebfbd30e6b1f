"""presencebot: an overt police-presence bot for public chat rooms.

The package is the core (runtime, events, rules, alerts, store, config, CLI). Protocol adapters
live in :mod:`presencebot.adapters` and are loaded only through the ``presencebot.adapters``
entry-point group, so the core never depends on any one chat protocol.
"""

__version__ = "0.1.0"
