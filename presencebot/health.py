"""Health: is the bot present, badge shown, in every room it should be in — and if not, why.

What counts as healthy, room by room:

* ``active`` with the badge announced at least once: healthy (the bot is doing its job);
* ``kicked``, ``banned``, ``dismissed``: healthy — *out by the room's choice*. The bot is overt
  and goes only where it is welcome; a room operator saying no is the policy working, not a
  fault, and paging someone at night for it would teach them to ignore this endpoint;
* ``wanted`` (not joined yet, or the network is down), ``failed`` (the join was refused, or the
  badge could not be shown so the bot left), ``left`` (out without anyone asking): unhealthy.

A network that stopped on a fatal error (bad credentials, say) is unhealthy even with no rooms.
Overall ``ok`` is every network and every room healthy. While starting, rooms are still ``wanted``:
``/healthz`` answers 503 until every room is joined, so it is a readiness check; that the endpoint
answers at all is the liveness check.

In a fleet, a worker answers for the networks whose lease it holds (``"lease": "held"``); the
others are run by other workers and reported as ``"lease": "not_held"``, healthy and without
rooms — each room is some worker's, and ``presencebot fleet status`` says whose.

Reasons: a kick, ban or ``!police leave`` is remembered by the store with its reason, which is
read here so that it survives a restart; the reason kept on the room record (``RoomRecord.reason``)
is preferred when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from presencebot.errors import StoreError
from presencebot.runtime import NetworkSlot, RoomRecord, RoomState

if TYPE_CHECKING:
    from presencebot.runtime import Runtime

log = structlog.get_logger("presencebot.health")

RoomKey = tuple[str, str]
"""(network, room id), as the store keeps room decisions."""
Remembered = Mapping[RoomKey, tuple[str, str]]
"""(network, room id) -> (state, reason) as the store remembers them (``kicked``, ``banned``...)."""

OUT_BY_CHOICE = frozenset({RoomState.KICKED, RoomState.BANNED, RoomState.DISMISSED})
"""States a room put the bot in: reported, but healthy (see the module docstring)."""
WITH_REASON = OUT_BY_CHOICE | {RoomState.FAILED, RoomState.LEFT}


def _text(value: str) -> str:
    """A room id or reason from a lenient decoder may hold a lone surrogate, which JSON encoders
    refuse: make it printable rather than fail the health check over it."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _reason(record: RoomRecord, remembered: Remembered) -> str:
    """Why the room is out: the reason kept in memory, else the store's if it is about the room's
    state now. None for a room wanted or active (a room kicked, then invited back, must not show
    the old kick)."""
    if record.state not in WITH_REASON:
        return ""
    # getattr: RoomRecord.reason is proposed with this module; until it lands, only the store's
    # reasons (kicks, bans, dismissals) are known.
    kept = getattr(record, "reason", "")
    if isinstance(kept, str) and kept:
        return kept
    state, reason = remembered.get((record.ref.network, str(record.ref.id)), ("", ""))
    return reason if state == record.state.value else ""


def _why(slot: NetworkSlot, record: RoomRecord, reason: str) -> tuple[bool, str]:
    """Whether this room is healthy, and a sentence an operator can act on."""
    state = record.state
    because = f": {reason}" if reason else ""
    if state is RoomState.ACTIVE:
        if record.announcements >= 1:
            return True, f"joined; badge announced {record.announcements} time(s)"
        return False, "joined but the badge was never announced"
    if state in OUT_BY_CHOICE:
        return True, f"out by the room's choice ({state.value}){because}"
    if state is RoomState.FAILED:
        return False, f"failed: could not join or could not show the badge{because}"
    if state is RoomState.LEFT:
        return False, f"left the room without being asked{because}"
    if not slot.connected:
        fatal = f" (adapter stopped: {slot.fatal})" if slot.fatal else ""
        return False, f"network not connected{fatal}"
    return False, "joining: no answer to the join yet"


def _room(slot: NetworkSlot, record: RoomRecord, remembered: Remembered) -> dict[str, Any]:
    reason = _reason(record, remembered)
    ok, why = _why(slot, record, reason)
    return {
        "ok": ok,
        "state": record.state.value,
        "announcements": record.announcements,
        "reason": _text(reason) or None,
        "why": _text(why),
    }


def _network(slot: NetworkSlot, remembered: Remembered) -> dict[str, Any]:
    rooms = {_text(str(rid)): _room(slot, record, remembered) for rid, record in slot.rooms.items()}
    return {
        "ok": slot.fatal is None and all(room["ok"] for room in rooms.values()),
        "connected": slot.connected,
        "adapter": slot.adapter_cls.__name__,
        "fatal": slot.fatal,
        "restarts": slot.restarts,
        "rooms": rooms,
    }


def health(runtime: Runtime, remembered: Remembered | None = None) -> tuple[bool, dict[str, Any]]:
    """Overall ok, and the report: per network, then per room (see the module docstring).

    ``remembered`` is what the store keeps about rooms (:func:`check` reads it); without it, only
    reasons kept in memory are reported.
    """
    remembered = remembered or {}
    fleet = runtime.fleet
    networks: dict[str, dict[str, Any]] = {}
    for name, slot in runtime.networks.items():
        if fleet is None:
            networks[name] = _network(slot, remembered)
        elif fleet.fence(name) is None:
            networks[name] = {"ok": True, "lease": "not_held", "rooms": {}}
        else:
            networks[name] = {**_network(slot, remembered), "lease": "held"}
    ok = all(network["ok"] for network in networks.values())
    return ok, {"ok": ok, "networks": networks}


async def remembered_reasons(runtime: Runtime) -> dict[RoomKey, tuple[str, str]]:
    """The store's reasons for kicks, bans and dismissals; none if it cannot be read (health
    must still answer when the store does not — the rooms' states are in memory)."""
    try:
        rows = await runtime.store.room_states()
    except StoreError as exc:
        log.warning("health.room_states_unreadable", error=str(exc))
        return {}
    return {(row.network, row.room): (row.state, row.reason) for row in rows}


async def check(runtime: Runtime) -> tuple[bool, dict[str, Any]]:
    """:func:`health` with the store's remembered reasons: what ``/healthz`` serves."""
    return health(runtime, await remembered_reasons(runtime))
