"""The dispatcher: every alert reaches whoever is on duty, at least once, and climbs until
someone acknowledges it.

Follow one alert: :meth:`Dispatcher.route` decides, when the alert is raised, which targets get
the first notice (the force on duty per the roster, or every ``officers`` target) and when the
first escalation is due; the store writes the alert, those outbox rows and the trace in one
transaction. :meth:`Dispatcher.tick` then, repeatedly: delivers every due outbox row through its
sink (a failure is retried with exponential backoff and full jitter, honouring ``Retry-After``;
after ``max_attempts`` — or at once if retrying cannot help — the row is a dead letter and the
supervisors are told), and runs every due escalation step. Every decision is appended to the
alert's trace ("why notified / why not").

Time comes from ``clock`` (and ``tick(now)``), so tests drive escalation with a fast clock and
never sleep. A crash loses nothing: undelivered rows are still pending on restart, and a row
delivered just before the crash may be delivered again with the same id (receivers deduplicate).

Several dispatchers may share one store (every worker of a fleet runs one): a row is *claimed*
(:func:`~presencebot.store.delivery.claim_due`) by one dispatcher before it is sent, for
``[delivery] claim_seconds`` (longer than any sink's timeout); a dispatcher that dies
mid-delivery leaves a claim that expires, and another sends the row. Escalation runs only where
``escalating`` says so (in a fleet, on the holder of the escalation lease), and each step is
written only if the alert is still at the step it was read at, so even two tickers could not run
one step twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from presencebot import metrics
from presencebot.alerts import AlertState
from presencebot.config import Config, NotifyConfig
from presencebot.errors import AlertNotFound, StoreError
from presencebot.events import utcnow
from presencebot.roster import Roster
from presencebot.sinks import Delivery, DeliveryFailed, Sink
from presencebot.store import delivery as outbox
from presencebot.store.delivery import NewNotice, OutboxRow
from presencebot.store.sql import SQLStore

log = structlog.get_logger("presencebot.dispatch")

MAX_SLEEP = 5.0
"""The dispatcher looks at the outbox at least this often, whatever it was told."""
BATCH = 200


@dataclass(frozen=True, slots=True)
class Routing:
    """Where a new alert goes first, and when its first escalation is due."""

    force: str | None
    notices: tuple[NewNotice, ...]
    trace: tuple[str, ...]
    escalate_at: datetime | None


class Dispatcher:
    def __init__(
        self,
        config: Config,
        store: SQLStore,
        sinks: Mapping[str, Sink],
        *,
        roster: Roster | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        worker: str = "local",
    ) -> None:
        self.config = config
        self.store = store
        self.sinks = dict(sinks)
        self.roster = roster
        self.clock = clock
        self._targets: dict[str, NotifyConfig] = {n.name: n for n in config.notify}
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(config.delivery.concurrency)
        self.worker = worker
        """Whose claims this dispatcher's are (the fleet worker id; ``local`` alone)."""
        self.escalating = True
        """Whether this dispatcher runs escalation steps (a fleet moves it with a lease)."""
        self._in_flight: set[str] = set()
        self._hold = timedelta(seconds=config.delivery.claim_seconds)
        self.delivered = 0
        self.dead = 0

    # --- routing -------------------------------------------------------------------------------
    def _notices(self, names: Iterable[str], kind: str, step: int) -> tuple[NewNotice, ...]:
        return tuple(
            NewNotice(name, self._targets[name].sink, kind, step) for name in names if name in self._targets
        )

    def _by_role(self, role: str) -> list[str]:
        return [n.name for n in self.config.notify if n.role == role]

    def route(self, now: datetime | None = None) -> Routing:
        """The first notice of a new alert: the force on duty, or every officers' target."""
        now = now or self.clock()
        first_step = self.config.escalation.steps[0] if self.config.escalation.steps else None
        escalate_at = now + timedelta(minutes=first_step.after_minutes) if first_step else None
        if self.roster is None:
            names = self._by_role("officers")
            trace = (f"no roster: notify every officers' target ({', '.join(names) or 'none configured'})",)
            return Routing(None, self._notices(names, "alert", 0), trace, escalate_at)
        on_duty = self.roster.on_duty(now)
        if not on_duty:
            names = self._by_role("supervisors") or self._by_role("officers")
            trace = (
                f"roster: nobody on duty at {now:%Y-%m-%d %H:%M} UTC; notify {', '.join(names) or 'nobody'}",
            )
            return Routing(None, self._notices(names, "alert", 0), trace, escalate_at)
        force = on_duty[0]
        trace = (
            f"roster: {force.name} on duty at {now:%Y-%m-%d %H:%M} UTC; notify {', '.join(force.sinks)}",
        )
        return Routing(force.name, self._notices(force.sinks, "alert", 0), trace, escalate_at)

    def _supervisors(self, force: str | None) -> list[str]:
        if self.roster is not None and force is not None:
            found = next((f for f in self.roster.forces if f.name == force), None)
            if found is not None and found.supervisors:
                return list(found.supervisors)
        return self._by_role("supervisors")

    # --- the loop ------------------------------------------------------------------------------
    def kick(self) -> None:
        """Something new is in the outbox: look now rather than at the next wake-up."""
        self._wake.set()

    async def run(self) -> None:
        # Claims this worker left when it last stopped abruptly: it is gone, so nobody need wait.
        with contextlib.suppress(StoreError):
            await self.store.transaction(lambda conn: outbox.release_claims(conn, self.worker))
        try:
            await self._loop()
        finally:
            await self._release_in_flight()

    async def _release_in_flight(self) -> None:
        """Cancelled mid-delivery (a clean stop): hand back the rows not yet sent, so that the
        next start or another worker sends them at once rather than after the claim expires."""
        ids, self._in_flight = set(self._in_flight), set()
        if ids:
            with contextlib.suppress(StoreError):
                await asyncio.shield(
                    self.store.transaction(lambda conn: outbox.release_claims(conn, self.worker, ids))
                )

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                wakeup = await self.store.read(outbox.next_wakeup)
            except StoreError as exc:
                log.error("dispatch.store_failed", error=str(exc))
                wakeup = None
            delay = MAX_SLEEP
            if wakeup is not None:
                delay = min(MAX_SLEEP, max(0.0, (wakeup - self.clock()).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def flush(self, deadline: float) -> None:
        """At a clean shutdown: deliver what is due now, for at most ``deadline`` seconds; what is
        left stays pending for the next start (nothing is lost either way)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        with contextlib.suppress(TimeoutError, StoreError):
            while loop.time() < end:
                remaining = end - loop.time()
                if await asyncio.wait_for(self._deliveries_only(), remaining) == 0:
                    return

    async def _deliveries_only(self) -> int:
        try:
            return await self._deliver_due(self.clock())
        finally:
            await self._release_in_flight()

    async def _deliver_due(self, now: datetime) -> int:
        """Claim and deliver due rows, a few at a time (as many as may be in flight at once, so a
        claim is never held for rows waiting their turn), up to ``BATCH`` per pass."""
        size = self.config.delivery.concurrency
        done = 0
        while done < BATCH:
            rows = await self.store.transaction(
                lambda conn: outbox.claim_due(conn, now, size, worker=self.worker, hold=self._hold)
            )
            self._in_flight.update(row.id for row in rows)
            await asyncio.gather(*(self._deliver(row, now) for row in rows))
            self._in_flight.difference_update(row.id for row in rows)
            done += len(rows)
            if len(rows) < size:
                break
        return done

    async def tick(self, now: datetime | None = None) -> int:
        """One pass: every due delivery, then every due escalation. Returns how many were done."""
        now = now or self.clock()
        delivered = await self._deliver_due(now)
        if not self.escalating:
            return delivered
        escalations = await self.store.read(lambda conn: outbox.due_escalations(conn, now, BATCH))
        for alert_id, step, force in escalations:
            await self._escalate(alert_id, step, force, now)
        return delivered + len(escalations)

    # --- delivering ----------------------------------------------------------------------------
    async def _deliver(self, row: OutboxRow, now: datetime) -> None:
        attempt = row.attempts + 1
        sink = self.sinks.get(row.target)
        async with self._limit:
            try:
                alert = await self.store.get(row.alert_id)  # type: ignore[arg-type]
            except AlertNotFound:
                await self._dead(row, attempt, "the alert is gone", now, notify=False)
                return
            if sink is None:
                await self._dead(row, attempt, f"no notification target named {row.target!r}", now)
                return
            try:
                await sink.deliver(
                    Delivery(id=row.id, alert=alert, attempt=attempt, target=row.target, kind=row.kind)
                )
            except DeliveryFailed as failure:
                await self._failed(row, attempt, failure, now)
                return
            except Exception as exc:  # a sink bug must not stop the dispatcher; retry like a failure
                log.exception("dispatch.sink_error", target=row.target)
                await self._failed(row, attempt, DeliveryFailed(f"sink error: {exc!r}"), now)
                return
        delivered_at = self.clock()

        def done(conn: sqlite3.Connection) -> None:
            outbox.mark_delivered(conn, row.id, attempt, delivered_at)
            outbox.add_trace(
                conn,
                row.alert_id,
                [f"{row.kind} notice delivered to {row.target} (attempt {attempt})"],
                delivered_at,
            )

        await self.store.transaction(done)
        self.delivered += 1
        if row.kind == "alert":  # escalations and dead-letter notices are late by design
            latency = (delivered_at - alert.created_at).total_seconds()
            metrics.DELIVERY_SECONDS.labels(row.sink).observe(max(0.0, latency))
        log.info(
            "dispatch.delivered", alert_id=row.alert_id, target=row.target, attempt=attempt, kind=row.kind
        )

    def _backoff(self, attempt: int) -> float:
        policy = self.config.delivery
        ceiling = min(policy.backoff_cap_seconds, policy.backoff_base_seconds * 2.0 ** min(attempt - 1, 30))
        return self._rng.uniform(0, ceiling)

    async def _failed(self, row: OutboxRow, attempt: int, failure: DeliveryFailed, now: datetime) -> None:
        reason = str(failure)
        if failure.disable:
            await self._disable(row, attempt, reason, now)
            return
        if failure.permanent or attempt >= self.config.delivery.max_attempts:
            why = "retrying cannot help" if failure.permanent else f"{attempt} attempts"
            await self._dead(row, attempt, f"{reason} ({why})", now)
            return
        wait = max(failure.retry_after or 0.0, self._backoff(attempt))
        at = now + timedelta(seconds=wait)

        def retry(conn: sqlite3.Connection) -> None:
            outbox.mark_retry(conn, row.id, attempt, at, reason)
            outbox.add_trace(
                conn,
                row.alert_id,
                [
                    f"{row.kind} notice to {row.target}: attempt {attempt} failed ({reason});"
                    f" retry in {wait:.1f} s"
                ],
                now,
            )

        await self.store.transaction(retry)
        log.warning(
            "dispatch.retry",
            alert_id=row.alert_id,
            target=row.target,
            attempt=attempt,
            error=reason,
            retry_in=round(wait, 2),
        )

    async def _dead(
        self, row: OutboxRow, attempt: int, reason: str, now: datetime, *, notify: bool = True
    ) -> None:
        """A dead letter: recorded, logged, and — unless it was itself a notice about a failure
        — the supervisors are told, so an undelivered alert never goes unnoticed."""
        tell = notify and row.kind not in ("dead_letter", "disabled")
        supervisors = [s for s in self._supervisors(None) if s != row.target] if tell else []

        def bury(conn: sqlite3.Connection) -> None:
            outbox.mark_dead(conn, row.id, attempt, reason)
            lines = [f"{row.kind} notice to {row.target} is a dead letter: {reason}"]
            if supervisors:
                outbox.insert_notices(
                    conn, row.alert_id, self._notices(supervisors, "dead_letter", row.step), now
                )
                lines.append(f"supervisors told of the dead letter: {', '.join(supervisors)}")
            outbox.add_trace(conn, row.alert_id, lines, now)

        await self.store.transaction(bury)
        self.dead += 1
        log.error(
            "dispatch.dead_letter", alert_id=row.alert_id, target=row.target, attempts=attempt, error=reason
        )
        if supervisors:
            self.kick()

    async def _disable(self, row: OutboxRow, attempt: int, reason: str, now: datetime) -> None:
        supervisors = [s for s in self._supervisors(None) if s != row.target]

        def gone(conn: sqlite3.Connection) -> None:
            outbox.disable_target(conn, row.target, reason, now)
            outbox.mark_dead(conn, row.id, attempt, f"endpoint gone: {reason}")
            lines = [f"{row.target} said it is gone ({reason}): disabled until re-enabled"]
            if supervisors:
                outbox.insert_notices(
                    conn, row.alert_id, self._notices(supervisors, "disabled", row.step), now
                )
                lines.append(f"supervisors told: {', '.join(supervisors)}")
            outbox.add_trace(conn, row.alert_id, lines, now)

        await self.store.transaction(gone)
        self.dead += 1
        log.error("dispatch.target_disabled", target=row.target, reason=reason)
        self.kick()

    # --- escalating ----------------------------------------------------------------------------
    async def _escalate(self, alert_id: str, done: int, force: str | None, now: datetime) -> None:
        """Run escalation step ``done`` (0-based over the repeated cycle of configured steps)."""
        policy = self.config.escalation
        steps = policy.steps
        total = len(steps) * (1 + policy.repeat)
        if not steps or done >= total:
            await self.store.transaction(
                lambda conn: outbox.set_escalation(conn, alert_id, done, None, force)
            )
            return
        step = steps[done % len(steps)]
        lines: list[str] = []
        names: list[str] = []
        new_force = force
        if step.notify == "supervisors":
            names = self._supervisors(force)
            lines.append(
                f"escalation {done + 1}: unacknowledged; notify supervisors"
                f" ({', '.join(names) or 'none configured'})"
            )
        elif step.notify == "on_duty":
            duty = self.roster.on_duty(now) if self.roster is not None else []
            names = list(duty[0].sinks) if duty else self._by_role("officers")
            lines.append(
                f"escalation {done + 1}: unacknowledged; remind on-duty targets ({', '.join(names)})"
            )
        else:
            current = (
                next((f for f in self.roster.forces if f.name == force), None)
                if self.roster and force
                else None
            )
            nxt = self.roster.next_on_duty(now, current) if self.roster is not None else None
            if nxt is None:
                names = self._supervisors(force)
                lines.append(
                    f"escalation {done + 1}: no next force in the roster;"
                    f" notify supervisors ({', '.join(names)})"
                )
            else:
                new_force = nxt.name
                names = list(nxt.sinks)
                lines.append(
                    f"escalation {done + 1}: unacknowledged; hand over to {nxt.name} ({', '.join(names)})"
                )
        following = done + 1
        if following < total:
            after = steps[following % len(steps)].after_minutes
            next_at: datetime | None = now + timedelta(minutes=after)
        else:
            next_at = None
            lines.append("escalation steps exhausted: the alert stays open until acknowledged")
        notices = self._notices(names, "escalation", following)

        def write(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT state, escalation_step FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
            if found is not None and int(found[1]) != done:
                return False  # another dispatcher ran this step already (two escalation tickers)
            if found is None or found[0] != str(AlertState.OPEN):
                outbox.set_escalation(conn, alert_id, done, None, force)
                return False  # acknowledged meanwhile: nothing to escalate
            outbox.insert_notices(conn, alert_id, notices, now)
            outbox.set_escalation(conn, alert_id, following, next_at, new_force)
            outbox.add_trace(conn, alert_id, lines, now)
            return True

        if not await self.store.transaction(write):
            return
        log.warning("dispatch.escalated", alert_id=alert_id, step=following, targets=names)
        self.kick()


def delivery_summary(rows: Sequence[OutboxRow]) -> dict[str, int]:
    summary: dict[str, int] = {}
    for row in rows:
        summary[row.state] = summary.get(row.state, 0) + 1
    return summary
