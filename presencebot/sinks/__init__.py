"""Sinks: the last step of a notification, from the outbox to an officer's screen.

The dispatcher owns everything that spans attempts (the retry schedule, backoff, dead letters,
disabling a target); a sink makes exactly one attempt and says how it went. It returns when the
other end has accepted the notification and raises :class:`DeliveryFailed` otherwise, with enough
detail for the dispatcher to choose between "again later", "never again for this alert" and "never
again for this target".

Delivery is at least once: a sink may be handed the same :class:`Delivery` again after it in fact
succeeded (a crash between the send and the outbox update). Every sink therefore passes
:attr:`Delivery.id` on as an idempotency key the receiver can deduplicate on (``webhook-id``, the
mail's ``Message-ID``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from presencebot.alerts import Alert
from presencebot.errors import PresencebotError

__all__ = ["Delivery", "DeliveryFailed", "Sink"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to deliver one outbox row."""

    id: str
    """The notification (outbox row) id: the idempotency key, the same on every retry."""
    alert: Alert
    attempt: int
    """1 for the first try."""
    target: str
    """The ``[[notify]]`` entry name."""
    kind: str = "alert"
    """``alert`` (the first notice), ``escalation``, ``dead_letter`` (a notice to supervisors that
    another target could not be reached) or ``disabled`` (a target said it is gone)."""


class DeliveryFailed(PresencebotError):
    """Not delivered this time.

    By default the failure is transient and the dispatcher retries, after ``retry_after`` seconds
    when the receiver asked for a delay. ``permanent`` means retrying this notification cannot help
    (the receiver rejected it: bad credentials, no such endpoint), so it goes to the dead letters at
    once. ``disable`` means the endpoint said it is gone for good (HTTP 410): stop using this target
    and tell the supervisors; it implies ``permanent``.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        disable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = None if retry_after is None else max(0.0, retry_after)
        self.permanent = permanent or disable
        self.disable = disable

    def __repr__(self) -> str:
        return (
            f"DeliveryFailed({self.reason!r}, retry_after={self.retry_after!r}, "
            f"permanent={self.permanent!r}, disable={self.disable!r})"
        )


class Sink(Protocol):
    """Delivers notifications to one configured target (one ``[[notify]]`` entry)."""

    async def deliver(self, delivery: Delivery) -> None:
        """Return once the receiver accepted the notification; raise :class:`DeliveryFailed`."""
        ...

    async def close(self) -> None:
        """Release connections; the sink is not used afterwards."""
        ...
