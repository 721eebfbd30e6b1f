"""One small exception hierarchy for everything presencebot raises on purpose.

Library errors (sqlite3, tomllib, pydantic, protocol libraries) are caught at the boundary and
re-raised as one of these, so callers handle a handful of types rather than every library's own.
"""


class PresencebotError(Exception):
    """Base class of every error presencebot raises deliberately."""


class ConfigError(PresencebotError):
    """The configuration cannot be used. ``problems`` lists each one with its location."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PluginError(PresencebotError):
    """An adapter or rule entry point is missing or cannot be loaded."""


class StoreError(PresencebotError):
    """The alert store failed or holds data this version cannot read."""


class Fenced(PresencebotError):
    """A write refused because this worker no longer holds the unit it wrote for (fleet mode):
    the worker that holds it now writes instead. Never retried."""


class AlertNotFound(StoreError):
    """No alert has the given id."""


class AdapterError(PresencebotError):
    """An adapter failed in a way the runtime may recover from by restarting it."""


class FatalAdapterError(AdapterError):
    """An adapter failed in a way restarting cannot fix (bad credentials, a refused intent).

    The runtime stops that adapter for good and reports the message, instead of retrying forever.
    """


class CorpusError(PresencebotError):
    """An evaluation corpus line is not in the expected format."""
