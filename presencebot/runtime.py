"""The runtime: supervises adapters, owns the join policy, and routes every message to the rules.

Read this module to follow one message: an adapter calls ``host.emit(Message)``; :meth:`Runtime.handle`
looks up the room, answers commands, runs the :class:`~presencebot.pipeline.Pipeline`, and turns
each flag into an alert that is stored (with its outbox rows) before anything else happens.

Overt by construction: the runtime is the only caller of ``adapter.join``, and every ``Joined``
event — first join, rejoin after a reconnect, join after an invite — is answered by announcing
the badge before any message from that room is looked at. If the badge cannot be shown, the bot
leaves the room rather than stay silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog
from pydantic import BaseModel

from presencebot import __version__, alerts, catalogue, commands, metrics
from presencebot import log as log_context
from presencebot.adapter import Adapter, Identity
from presencebot.backoff import ExponentialBackoff
from presencebot.badge import Badge
from presencebot.config import Config, InvitePolicy
from presencebot.dispatch import Dispatcher
from presencebot.errors import AlertNotFound, FatalAdapterError, Fenced, StoreError
from presencebot.events import (
    Banned,
    Connected,
    Disconnected,
    Event,
    Invited,
    Joined,
    JoinFailed,
    Kicked,
    Left,
    Message,
    RoomRef,
    storable,
)
from presencebot.fleet.fenced import FencedAdapter
from presencebot.ids import AlertId, RoomId
from presencebot.pipeline import Pipeline
from presencebot.rooms import RoomContext, effective_settings, new_context
from presencebot.roster import Roster
from presencebot.rule import Rule
from presencebot.sinks import Sink
from presencebot.sinks.factory import build_sinks
from presencebot.store import AlertStore, Fence
from presencebot.store.sql import SQLStore, has_lease_table

if TYPE_CHECKING:
    from presencebot.fleet.member import FleetMember

log = structlog.get_logger("presencebot.runtime")


class RoomState(StrEnum):
    WANTED = "wanted"
    """Configured or accepted by invite; joined whenever the network is connected."""
    ACTIVE = "active"
    """Joined and the badge announced: messages are watched."""
    KICKED = "kicked"
    BANNED = "banned"
    FAILED = "failed"
    LEFT = "left"
    DISMISSED = "dismissed"
    """A room operator asked the bot to leave (``!police leave``): back only on a new invite."""


# The decisions that outlive a restart (kept in the store), and what each means on start-up.
_REMEMBERED: dict[str, RoomState] = {
    "kicked": RoomState.KICKED,
    "banned": RoomState.BANNED,
    "dismissed": RoomState.DISMISSED,
    "invited": RoomState.WANTED,
}
_LEAVE_WORDS = frozenset({"leave", "part", "quit", "pars", "partir", "quitte"})


@dataclass(slots=True)
class RoomRecord:
    ref: RoomRef
    state: RoomState
    rejoin_on_kick: bool = False
    announcements: int = 0
    announce_every: float | None = None
    """Seconds between periodic re-announcements of the badge (``None``: only on join)."""
    announced_at: float = 0.0
    reason: str = ""
    """Why the room is out (kick, ban, refused join, badge not shown...), for /healthz."""


@dataclass(slots=True)
class NetworkSlot:
    """One configured network: its adapter class, settings, current instance and rooms."""

    name: str
    adapter_cls: type[Adapter]
    settings: BaseModel
    adapter: Adapter | None = None
    connected: bool = False
    rooms: dict[RoomId, RoomRecord] = field(default_factory=dict)
    restarts: int = 0
    fatal: str | None = None
    task: asyncio.Task[None] | None = None
    """Fleet mode: the supervising task, started and stopped as the network's lease comes and goes."""
    connections: int = 0


def invite_allowed(policy: InvitePolicy, event: Invited) -> str | None:
    """Why the inviter may bring the bot into the room, or ``None`` (declined).

    An allowed account, an allowed protocol address (glob, case-insensitive), or — when the policy
    says so — an operator of the very room the bot is invited to.
    """
    account = event.by.account
    if account is not None and account.casefold() in {a.casefold() for a in policy.allow}:
        return f"account {account} is allowed"
    if event.by_mask is not None:
        mask = event.by_mask.casefold()
        for pattern in policy.masks:
            if fnmatch.fnmatchcase(mask, pattern.casefold()):
                return f"address matches {pattern}"
    if policy.room_operators and event.by_operator:
        return "an operator of the room"
    return None


class _Host:
    """The AdapterHost handed to one adapter instance: events go to the runtime, tagged."""

    def __init__(self, runtime: Runtime, network: str) -> None:
        self._runtime = runtime
        self._network = network
        agency = runtime.config.agency
        self.identity = Identity(agency.name, agency.info_url, __version__)
        # Whether an adapter may run an event's handling in its socket callback rather than in a
        # task: only while nothing in that handling needs a task — fleet mode's database calls
        # and, from Python 3.12, ``wait_for`` (async rules) use ``asyncio.timeout``, which does.
        self.eager_ok = runtime.fleet is None and sys.version_info < (3, 12)

    async def emit(self, event: Event) -> None:
        await self._runtime.handle(self._network, event)


class Runtime:
    def __init__(
        self,
        config: Config,
        store: AlertStore,
        *,
        adapters: Mapping[str, tuple[type[Adapter], BaseModel]],
        rules: Sequence[Rule],
    ) -> None:
        """``adapters`` maps each enabled network name to its adapter class and validated
        settings (see :func:`presencebot.checks.resolve`)."""
        self.config = config
        self.store = store
        self.pipeline = Pipeline(rules, time_budget=config.rules.time_budget_ms / 1000)
        self.networks: dict[str, NetworkSlot] = {}
        for name, (cls, settings) in adapters.items():
            slot = NetworkSlot(name, cls, settings)
            for room in config.network(name).rooms:
                ref = RoomRef(name, RoomId(room.id))
                every = room.announce_every_minutes * 60 if room.announce_every_minutes else None
                slot.rooms[ref.id] = RoomRecord(
                    ref, RoomState.WANTED, room.rejoin_on_kick, announce_every=every
                )
            self.networks[name] = slot
        self.contexts: dict[RoomRef, RoomContext] = {}
        self._notify = [(n.name, n.sink) for n in config.notify]
        self.sinks: dict[str, Sink] = build_sinks(config, self.say)
        self.officer_rooms = {
            (n.settings.get("network"), n.settings.get("room")) for n in config.notify if n.sink == "room"
        }
        self.fleet: FleetMember | None = None
        if config.fleet.enabled:
            from presencebot.fleet import default_worker_id
            from presencebot.fleet.member import FleetMember

            self.fleet = FleetMember(config.fleet, config.fleet.worker_id or default_worker_id())
        self.dispatcher: Dispatcher | None = None
        if isinstance(store, SQLStore):
            roster = Roster(config.roster) if config.roster.forces else None
            worker = self.fleet.worker_id if self.fleet is not None else "local"
            self.dispatcher = Dispatcher(config, store, self.sinks, roster=roster, worker=worker)
            # In a fleet every worker delivers; only the holder of the escalation lease escalates.
            self.dispatcher.escalating = self.fleet is None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Alerts the store refused: kept in memory and retried, never dropped (see _keep_trying).
        self._unsaved: deque[alerts.Alert] = deque()
        self._unsaved_added = asyncio.Event()
        self._command_last: dict[tuple[RoomRef, str], float] = {}
        self._reannounce_tick = 30.0
        self._dispatching: asyncio.Task[None] | None = None
        self._fence_in_store = False
        """Fleet mode: the leases are in the store's database, so alert writes are fenced inside
        their own transaction (set once the fleet has created its tables)."""

    # --- lifecycle -------------------------------------------------------------------------
    async def run(self) -> int:
        """Run every adapter until all have finished or :meth:`stop` is called.

        Returns the process exit status: 0, or 1 if an adapter stopped on a fatal error.
        """
        # In a fleet the lease owner's id is the one to find in logs, metrics and `fleet status`.
        metrics.bind_worker(self.fleet.worker_id if self.fleet is not None else self.config.ops.worker_id)
        await self.store.open()
        await self._recall_room_states()
        retry = asyncio.create_task(self._keep_trying(), name="unsaved-alerts")
        reannounce = asyncio.create_task(self._reannounce(), name="reannounce")
        self.start_dispatcher()
        console = None
        if self.config.console.enabled and isinstance(self.store, SQLStore):
            from presencebot.console import create_app
            from presencebot.ops_server import OpsServer

            # Bound before serving: a port already in use is logged, and the bot keeps watching.
            app = create_app(self.config, self.store, say=self.say)
            console = OpsServer(app, self.config.console.host, self.config.console.port)
            await console.start()
        ops = None
        if self.config.ops.enabled:
            from presencebot.ops_server import OpsServer, ops_app

            ops = OpsServer(ops_app(self), self.config.ops.host, self.config.ops.port)
            await ops.start()
        try:
            if self.fleet is not None:
                # Networks start and stop as their leases come and go (FleetMember).
                await self.fleet.start(self)
                await self._check_fencing()
                await self._stopping.wait()
                await self.fleet.stop()
                return 1 if any(slot.fatal for slot in self.networks.values()) else 0
            self._tasks = [
                asyncio.create_task(self._supervise(slot), name=f"adapter:{slot.name}")
                for slot in self.networks.values()
            ]
            stop: asyncio.Task[object] = asyncio.create_task(self._stopping.wait())
            pending: set[asyncio.Task[object]] = set(self._tasks)
            while pending and not self._stopping.is_set():
                _, pending = await asyncio.wait(pending | {stop}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stop)
            stop.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            retry.cancel()
            reannounce.cancel()
            background = [retry, reannounce]
            if ops is not None:
                await ops.stop()
            if console is not None:
                await console.stop()
            for slot in self.networks.values():
                if slot.task is not None:
                    slot.task.cancel()
                    background.append(slot.task)
            dispatching = self._dispatching
            if dispatching is not None and self.dispatcher is not None:
                # Deliver what is due (e.g. alerts raised just before the end of a piped
                # transcript) for a few seconds; anything still in flight is abandoned: its row
                # is still pending and is sent again (same id) at the next start.
                await self.stop_dispatcher()
                await self.dispatcher.flush(self.config.delivery.shutdown_grace_seconds)
            await asyncio.gather(*background, return_exceptions=True)
            for sink in self.sinks.values():
                with contextlib.suppress(Exception):
                    await sink.close()
            await self._last_try()
            await self.store.close()
            log.info("runtime.stopped")
        return 1 if any(slot.fatal for slot in self.networks.values()) else 0

    def stop(self) -> None:
        """Ask for a clean shutdown (SIGINT/SIGTERM): adapters are closed, the store flushed."""
        self._stopping.set()

    # --- fleet mode: networks and escalation follow their leases -----------------------------
    async def start_network(self, name: str) -> None:
        slot = self.networks[name]
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(self._supervise(slot), name=f"adapter:{name}")

    async def stop_network(self, name: str) -> None:
        slot = self.networks[name]
        task, slot.task = slot.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def set_escalating(self, on: bool) -> None:
        """Fleet mode: this worker took (or lost) the escalation lease."""
        if self.dispatcher is not None:
            self.dispatcher.escalating = on
            if on:
                self.dispatcher.kick()

    def start_dispatcher(self) -> None:
        if self.dispatcher is not None and (self._dispatching is None or self._dispatching.done()):
            self._dispatching = asyncio.create_task(self.dispatcher.run(), name="dispatcher")

    async def stop_dispatcher(self) -> None:
        task, self._dispatching = self._dispatching, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _check_fencing(self) -> None:
        store = self.store
        try:
            self._fence_in_store = isinstance(store, SQLStore) and await store.read(has_lease_table)
        except StoreError as exc:
            log.warning("fleet.fence_check_failed", error=str(exc))
        if not self._fence_in_store:
            log.warning(
                "fleet.fence_outside_transaction",
                hint="put [store] url and [fleet] database_url on the same PostgreSQL database to"
                " fence each alert write inside its own transaction",
            )

    async def _recall_room_states(self) -> None:
        """Apply what room operators decided before a restart: a kick, a ban or ``!police leave``
        keeps the bot out of a configured room; an accepted invite brings it back in."""
        try:
            rows = await self.store.room_states()
        except StoreError as exc:
            log.error("room_states.unreadable", error=str(exc))
            return
        for row in rows:
            slot = self.networks.get(row.network)
            state = _REMEMBERED.get(row.state)
            if slot is None or state is None:
                continue
            record = slot.rooms.get(RoomId(row.room))
            if record is None:
                if state is not RoomState.WANTED:
                    continue
                record = slot.rooms[RoomId(row.room)] = RoomRecord(
                    RoomRef(row.network, RoomId(row.room)), state
                )
            record.state = state
            record.reason = row.reason
            log.info("room.state_recalled", network=row.network, room=row.room, state=row.state)

    async def _remember(self, ref: RoomRef, state: str, reason: str = "") -> None:
        try:
            await self.store.set_room_state(ref.network, str(ref.id), state, reason)
        except StoreError as exc:  # the decision still holds in memory for this run
            log.error("room_state.not_saved", error=str(exc), state=state)

    async def _reannounce(self) -> None:
        """Post the badge again in rooms configured with ``announce_every_minutes``."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._reannounce_tick)
            now = loop.time()
            for slot in self.networks.values():
                adapter = slot.adapter
                if adapter is None or not slot.connected:
                    continue
                for record in list(slot.rooms.values()):
                    every = record.announce_every
                    if record.state is not RoomState.ACTIVE or every is None:
                        continue
                    if now - record.announced_at < every:
                        continue
                    record.announced_at = now
                    try:
                        await adapter.announce(record.ref.id, self.badge_for(record.ref))
                    except Exception as exc:
                        log.warning("room.reannounce_failed", room=str(record.ref.id), error=repr(exc))
                        continue
                    record.announcements += 1
                    log.info("room.reannounced", room=str(record.ref.id), announcements=record.announcements)

    async def _supervise(self, slot: NetworkSlot) -> None:
        """Run ``slot``'s adapter; restart a fresh instance with backoff whenever it crashes."""
        sup = self.config.supervisor
        backoff = ExponentialBackoff(sup.restart_base_seconds, sup.restart_cap_seconds)
        with structlog.contextvars.bound_contextvars(network=slot.name, adapter=slot.adapter_cls.__name__):
            while not self._stopping.is_set():
                adapter = slot.adapter_cls(slot.name, slot.settings, _Host(self, slot.name))
                if self.fleet is not None:
                    adapter = FencedAdapter(adapter, functools.partial(self.fleet.allowed, slot.name))
                slot.adapter = adapter
                try:
                    await adapter.run()
                    log.info("adapter.finished")
                    return
                except FatalAdapterError as exc:
                    slot.fatal = str(exc)
                    log.error("adapter.fatal", error=str(exc))
                    return
                except Exception as exc:
                    delay = backoff.delay()
                    slot.restarts += 1
                    log.error(
                        "adapter.crashed",
                        error=repr(exc),
                        restart_in=round(delay, 3),
                        restarts=slot.restarts,
                        exc_info=True,
                    )
                finally:
                    with contextlib.suppress(Exception):
                        await adapter.close()
                    await self._mark_disconnected(slot)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _mark_disconnected(self, slot: NetworkSlot) -> None:
        slot.connected = False
        for record in slot.rooms.values():
            if record.state is RoomState.ACTIVE:
                record.state = RoomState.WANTED

    # --- events ----------------------------------------------------------------------------
    async def handle(self, network: str, event: Event) -> None:
        """The single entry point for everything every adapter reports."""
        slot = self.networks[network]
        if isinstance(event, Message):
            event = storable(event)
            metrics.MESSAGES.labels(network, slot.adapter_cls.__name__).inc()
            token = log_context.bind_message(event.room.id, event.id)
            try:
                await self._on_message(slot, event)
            finally:
                log_context.unbind_message(token)
        elif isinstance(event, Connected):
            if slot.connections:
                metrics.RECONNECTS.labels(network).inc()
            slot.connections += 1
            if event.resumed:
                slot.connected = True
                log.info("network.resumed")
            else:
                await self._on_connected(slot)
        elif isinstance(event, Disconnected):
            log.info("network.disconnected", reason=event.reason, resumable=event.resumable)
            if event.resumable:
                slot.connected = False  # the rooms stay joined: the session may be resumed
            else:
                await self._mark_disconnected(slot)
        else:
            with structlog.contextvars.bound_contextvars(room=str(event.room.id)):
                await self._on_room_event(slot, event)

    async def _on_connected(self, slot: NetworkSlot) -> None:
        slot.connected = True
        log.info("network.connected")
        for record in list(slot.rooms.values()):
            if record.state is RoomState.WANTED:
                await self._join(slot, record)

    async def _join(self, slot: NetworkSlot, record: RoomRecord) -> None:
        assert slot.adapter is not None
        log.info("room.joining", room=str(record.ref.id))
        await slot.adapter.join(record.ref.id)

    async def _on_room_event(
        self, slot: NetworkSlot, event: Joined | JoinFailed | Invited | Kicked | Banned | Left
    ) -> None:
        room_id = event.room.id
        record = slot.rooms.get(room_id)
        if isinstance(event, Joined):
            await self._on_joined(slot, event, record)
        elif isinstance(event, Invited):
            await self._on_invited(slot, event, record)
        elif record is None:
            log.debug("room.event_ignored", kind=type(event).__name__)
        elif isinstance(event, Kicked):
            log.warning("room.kicked", by=str(event.by) if event.by else None, reason=event.reason)
            record.state = RoomState.WANTED if record.rejoin_on_kick else RoomState.KICKED
            record.reason = f"by {event.by}: {event.reason}"
            if record.rejoin_on_kick and slot.connected:
                await self._join(slot, record)
            elif not record.rejoin_on_kick:
                await self._remember(record.ref, "kicked", f"by {event.by}: {event.reason}")
        elif isinstance(event, Banned):
            log.warning("room.banned", reason=event.reason)
            record.state = RoomState.BANNED
            record.reason = event.reason
            await self._remember(record.ref, "banned", event.reason)
        elif isinstance(event, JoinFailed):
            log.warning("room.join_failed", reason=event.reason)
            record.state = RoomState.FAILED
            record.reason = event.reason
        else:
            log.info("room.left", reason=event.reason)
            if record.state is RoomState.ACTIVE:
                record.state = RoomState.LEFT
                record.reason = event.reason

    async def _on_joined(self, slot: NetworkSlot, event: Joined, record: RoomRecord | None) -> None:
        adapter = slot.adapter
        assert adapter is not None
        if record is None or record.state not in (RoomState.WANTED, RoomState.ACTIVE):
            # Joined somewhere nobody configured or invited us (a forced join): do not stay.
            log.warning("room.unexpected_join")
            await adapter.leave(event.room.id, "presencebot only stays where it was invited")
            return
        badge = self.badge_for(event.room)
        try:
            await adapter.announce(event.room.id, badge)
        except Exception as exc:
            log.error("room.announce_failed", error=repr(exc))
            with contextlib.suppress(Exception):
                await adapter.leave(event.room.id, "could not show the police badge")
            record.state = RoomState.FAILED
            record.reason = f"could not show the badge: {exc!r}"
            return
        record.state = RoomState.ACTIVE
        record.reason = ""
        record.announcements += 1
        record.announced_at = asyncio.get_running_loop().time()
        log.info("room.announced", announcements=record.announcements)

    async def _on_invited(self, slot: NetworkSlot, event: Invited, record: RoomRecord | None) -> None:
        """Consent: go only where the room's owners want the bot (see :func:`invite_allowed`)."""
        policy = self.config.network(slot.name).invites
        why = invite_allowed(policy, event)
        if why is None:
            log.warning("room.invite_declined", inviter=str(event.by), mask=event.by_mask)
            if slot.adapter is not None:
                settings = effective_settings(self.config, slot.name, event.room.id)
                reason = catalogue.text(
                    settings.language,
                    "invite.declined",
                    agency=self.config.agency.name,
                    info_url=self.config.agency.info_url,
                )
                try:
                    await slot.adapter.decline_invite(event, reason)
                except Exception as exc:
                    log.warning("room.decline_failed", error=repr(exc))
            return
        if record is None:
            record = slot.rooms[event.room.id] = RoomRecord(event.room, RoomState.WANTED)
        elif record.state is RoomState.ACTIVE:
            return
        log.info("room.invite_accepted", inviter=str(event.by), because=why)
        record.state = RoomState.WANTED
        await self._remember(record.ref, "invited", f"by {event.by} ({why})")
        if slot.connected:
            await self._join(slot, record)

    def badge_for(self, room: RoomRef) -> Badge:
        settings = effective_settings(self.config, room.network, room.id)
        return Badge.build(
            agency=self.config.agency.name,
            info_url=self.config.agency.info_url,
            language=settings.language,
        )

    # --- messages --------------------------------------------------------------------------
    async def _on_message(self, slot: NetworkSlot, message: Message) -> None:
        adapter = slot.adapter
        assert adapter is not None
        record = slot.rooms.get(message.room.id)
        if not message.is_direct and (record is None or record.state is not RoomState.ACTIVE):
            # Never watch a room where the badge has not been shown.
            log.debug("message.ignored_unannounced_room")
            return
        command = commands.parse(message.text)
        if command is not None and not message.is_history:
            await self._on_command(adapter, message, command)
            return
        if message.is_direct:
            return
        context = self.context(message.room)
        for flag in await self.pipeline.process(message, context):
            await self._raise(adapter, alerts.from_flag(flag, message, context.recent, self.config.evidence))

    def context(self, room: RoomRef) -> RoomContext:
        context = self.contexts.get(room)
        if context is None:
            context = self.contexts[room] = new_context(self.config, room)
        return context

    def _cooling_down(self, message: Message, command: commands.Command) -> bool:
        """``!police``/``!help`` are answered once per cooldown per room (or per person in private),
        so that a prankster cannot make the bot flood a room — and get it banned for flooding."""
        if command.name == "report":
            return False
        key = (message.room, command.name)
        now = asyncio.get_running_loop().time()
        last = self._command_last.get(key)
        if last is not None and now - last < self.config.commands.cooldown_seconds:
            return True
        self._command_last[key] = now
        return False

    async def _on_command(self, adapter: Adapter, message: Message, command: commands.Command) -> None:
        settings = effective_settings(self.config, message.room.network, message.room.id)
        if command.name == "ack":
            await self._on_ack(adapter, message, command.args)
            return
        if command.name == "police" and command.args.casefold() in _LEAVE_WORDS and not message.is_direct:
            await self._on_leave_request(adapter, message, settings.language)
            return
        if self._cooling_down(message, command):
            log.info("command.cooldown", command=command.name)
            return
        log.info("command", command=command.name, direct=message.is_direct)
        if command.name == "police":
            await adapter.send(message.room.id, commands.police_reply(self.config, settings))
        elif command.name == "help":
            for line in commands.help_reply(self.config, settings):
                await adapter.send(message.room.id, line)
        elif not command.args:
            await adapter.send(message.room.id, catalogue.text(settings.language, "report.usage"))
        else:
            emergency = commands.emergency_number(settings)
            alert = alerts.from_report(message)
            stored = await self._raise(adapter, alert)
            if not message.is_direct:
                await adapter.send(message.room.id, catalogue.text(settings.language, "report.private_only"))
            key = "report.thanks" if stored else "report.delayed"
            await adapter.send(
                message.room.id,
                catalogue.text(settings.language, key, alert_id=alert.id, emergency=emergency),
            )

    async def _on_ack(self, adapter: Adapter, message: Message, args: str) -> None:
        """``!ack <id>`` in an officers' room: acknowledged, escalation stops. Elsewhere: silence
        (an alert id is not something to confirm or deny in a public room)."""
        if (message.room.network, message.room.id) not in self.officer_rooms or message.is_direct:
            return
        alert_id = AlertId(args.split()[0]) if args.split() else None
        if alert_id is None:
            await adapter.send(message.room.id, "usage: !ack <alert id>")
            return
        by = f"{message.author} in {message.room}"
        try:
            acked = await self.store.acknowledge(alert_id, by)
        except AlertNotFound:
            await adapter.send(message.room.id, f"no alert {alert_id}")
            return
        except StoreError as exc:
            log.error("alert.ack_failed", alert_id=alert_id, error=str(exc))
            await adapter.send(
                message.room.id, f"could not record the acknowledgement of {alert_id}: try again"
            )
            return
        log.warning("alert.acknowledged", alert_id=alert_id, by=by)
        await adapter.send(message.room.id, f"alert {alert_id} acknowledged by {acked.acknowledged_by}")

    async def _on_leave_request(self, adapter: Adapter, message: Message, language: str) -> None:
        """``!police leave``: a room operator's word is enough; anyone else is told who can."""
        if not message.by_operator:
            if not self._cooling_down(message, commands.Command("leave", "")):
                await adapter.send(message.room.id, catalogue.text(language, "leave.not_operator"))
            return
        slot = self.networks[message.room.network]
        record = slot.rooms.get(message.room.id)
        log.warning("room.dismissed", by=str(message.author))
        if record is not None:
            record.state = RoomState.DISMISSED
            record.reason = f"!police leave by {message.author}"
        await self._remember(message.room, "dismissed", f"!police leave by {message.author}")
        goodbye = catalogue.text(
            language, "leave.goodbye", agency=self.config.agency.name, info_url=self.config.agency.info_url
        )
        await adapter.leave(message.room.id, goodbye)

    async def _raise(self, adapter: Adapter, alert: alerts.Alert) -> bool:
        """Store the alert (and its outbox rows) durably, then show it where the adapter can.

        Returns False if the store refused it: the alert is then kept in memory and retried in
        the background (``_keep_trying``) rather than dropped, and the adapter carries on.
        """
        metrics.ALERTS.labels(alert.rule_id, alert.category).inc()
        try:
            stored = await self._store(alert)
            if stored is None:
                return True  # grouped into an open alert
        except Fenced as exc:
            # Another worker holds this network now: it sees the same room and raises its own.
            log.warning("fleet.alert_fenced", alert_id=alert.id, network=alert.room.network, why=str(exc))
            return False
        except StoreError as exc:
            log.error(
                "alert.store_failed",
                error=str(exc),
                alert_id=alert.id,
                rule=alert.rule_id,
                category=alert.category,
                target=str(alert.target),
                unsaved=len(self._unsaved) + 1,
            )
            self._unsaved.append(alert)
            self._unsaved_added.set()
            return False
        log.warning(
            "alert.raised",
            alert_id=stored.id,
            rule=stored.rule_id,
            category=stored.category,
            severity=str(stored.severity),
            target=str(stored.target),
            requester=str(stored.requester) if stored.requester else None,
        )
        await adapter.show_alert(alert.room.id, stored)
        return True

    async def _store(self, alert: alerts.Alert, *, fenced: bool = True) -> alerts.Alert | None:
        """Store a new alert with its first notices and trace (routed by the dispatcher), or add
        it to the open alert it repeats (``None``). Raises ``StoreError``, or ``Fenced`` in a
        fleet when this worker no longer holds the alert's network.

        An alert the store refused (it was down) is retried later without the fence: it was
        raised while this worker was in the room, and by the time the store is back the lease
        may well have moved to a worker that never saw those messages — dropping it would lose
        it. (A paused worker's late alerts never get here: the store was up, the fence said no.)
        """
        fence = await self._fence(alert.room.network) if fenced else None
        if await self._grouped(alert, fence):
            return None
        if self.dispatcher is None:
            return await self.store.add(alert, self._notify, fence=fence)
        routing = self.dispatcher.route()
        stored = await self.store.add(
            alert,
            routing.notices,
            trace=routing.trace,
            escalate_at=routing.escalate_at,
            force=routing.force,
            fence=fence,
        )
        self.dispatcher.kick()
        return stored

    async def _fence(self, network: str) -> Fence | None:
        """Fleet mode: what guards an alert write for ``network``. With the leases in the store's
        own database, the lease is checked and locked inside the write's transaction (a
        :class:`Fence`); otherwise it is checked here, just before the write. Raises ``Fenced``
        when this worker does not hold the network."""
        if self.fleet is None:
            return None
        fence = self.fleet.fence(network)
        if fence is None:
            raise Fenced(f"this worker does not hold {network}")
        if self._fence_in_store:
            return fence
        if not await self.fleet.allowed(network):
            raise Fenced(f"the lease on {network} was lost")
        return None

    async def _grouped(self, alert: alerts.Alert, fence: Fence | None = None) -> bool:
        """The same request again (same requester, target, room, category, within the window):
        add the evidence to the open alert instead of paging officers again."""
        window = self.config.grouping.window_minutes
        store = self.store
        if window <= 0 or not isinstance(store, SQLStore) or alert.category == "report":
            return False
        since = alert.created_at - timedelta(minutes=window)
        existing = await store.find_group(alert, since)
        if existing is None:
            return False
        await store.extend(
            existing,
            alert.evidence,
            [f"grouped: the same request again at {alert.created_at:%H:%M:%S} UTC ({alert.explanation})"],
            fence=fence,
        )
        log.warning("alert.grouped", alert_id=existing, category=alert.category, target=str(alert.target))
        return True

    async def say(self, network: str, room: str, line: str) -> None:
        """Speak in a room the bot is in (the officers' room sink); ``ConnectionError`` if not."""
        slot = self.networks.get(network)
        if slot is None or slot.adapter is None or not slot.connected:
            raise ConnectionError(f"network {network} is not connected")
        record = slot.rooms.get(RoomId(room))
        if record is None or record.state is not RoomState.ACTIVE:
            raise ConnectionError(f"the bot is not in {room} on {network}")
        await slot.adapter.send(RoomId(room), line)

    async def _keep_trying(self) -> None:
        """Retry unsaved alerts, oldest first, with backoff, until the store takes them."""
        backoff = ExponentialBackoff(0.5, 30.0)
        while True:
            await self._unsaved_added.wait()
            while self._unsaved:
                alert = self._unsaved[0]
                try:
                    await self._store(alert, fenced=False)
                except StoreError:
                    await asyncio.sleep(backoff.delay())
                    continue
                self._unsaved.popleft()
                backoff.reset()
                log.warning(
                    "alert.stored_late", alert_id=alert.id, rule=alert.rule_id, category=alert.category
                )
            self._unsaved_added.clear()

    async def _last_try(self) -> None:
        """At shutdown: one more attempt for each unsaved alert; what still fails is written to
        the log in full (it is flagged evidence, which may be persisted) so an operator can
        re-enter it, rather than vanish with the process."""
        while self._unsaved:
            alert = self._unsaved.popleft()
            try:
                await self._store(alert, fenced=False)
                log.warning("alert.stored_late", alert_id=alert.id)
            except StoreError as exc:
                log.critical("alert.unsaved_at_shutdown", error=str(exc), alert=alert.to_json())
