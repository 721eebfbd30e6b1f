"""Distinct types for the identifiers that are all strings on the wire.

A nick is not an account and a channel name is not a message id; giving each its own
``NewType`` lets mypy catch the day someone passes a nick where a stable account is meant.
"""

from typing import NewType

RoomId = NewType("RoomId", str)
"""A room as its protocol names it: ``#kids``, ``kids@conference.example``, a Discord channel id."""

AccountId = NewType("AccountId", str)
"""A stable identity for a person: SASL/NickServ account, bare JID, Discord user id."""

EventId = NewType("EventId", str)
"""presencebot's own id for one event, unique per process run; used in logs and as evidence id."""

AlertId = NewType("AlertId", str)
"""The id officers type to acknowledge an alert (short, lower-case hex)."""
