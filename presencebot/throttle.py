"""Outgoing flood control: a token bucket per connection, fair per target, with a fast lane.

Chat servers disconnect (or silently slow) a client that writes too fast, and a bot that floods
gets banned by the room operators it is meant to reassure. So every line an adapter writes goes
through an :class:`Outbox`: lines wait in a queue per target (channel or person), targets take
turns, and one token bucket for the whole connection decides when the next line may go. Lines to
*priority* targets (officer channels, where alerts go) are always written before any other.

Nothing here ever blocks the event loop (no ``time.sleep``), and nothing is dropped silently: a
line that cannot be written — queue full, or waiting longer than ``max_wait`` — is handed to the
``on_undelivered`` callback so the adapter can report it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens per second.

    ``take()`` returns how long to wait before a token is available (0 when one was taken now), so
    the caller sleeps on the event loop rather than inside the bucket.
    """

    def __init__(self, burst: float, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("a token bucket needs burst >= 1 and rate > 0")
        self.burst = float(burst)
        self.rate = float(rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> float:
        """Take one token if there is one (returns 0.0); else the seconds until there will be."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens


@dataclass(slots=True)
class Pending:
    """One line waiting to be written."""

    target: str
    line: str
    queued_at: float
    priority: bool = False
    sent: asyncio.Future[None] | None = field(default=None, repr=False)


Writer = Callable[[Pending], Awaitable[None]]
"""Writes one line to the connection; raises :class:`Undeliverable` for a line that can never
be written, any other exception if the connection is gone (the line is kept for the next)."""
Undelivered = Callable[[Pending, str], None]
"""Called with a line that will never be written, and why."""


class OutboxFull(Exception):
    """A target's queue is at its limit; the line was reported as undelivered."""


class Outbox:
    """Queues per target, taking turns, behind one token bucket; priority targets first.

    ``put`` never blocks: flood control is the outbox's job, not the caller's. Call :meth:`pause`
    when the connection drops (lines stay queued for the next connection) and :meth:`resume` with
    a new writer once it is back.
    """

    def __init__(
        self,
        *,
        burst: float,
        rate: float,
        max_queue: int = 500,
        max_wait: float = 300.0,
        on_undelivered: Undelivered,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = TokenBucket(burst, rate, clock=clock)
        self.max_queue = max_queue
        self.max_wait = max_wait
        self._clock = clock
        self._on_undelivered = on_undelivered
        self._queues: OrderedDict[str, deque[Pending]] = OrderedDict()
        self._priority: deque[Pending] = deque()
        self._ready = asyncio.Event()
        self._writer: Writer | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    # --- filling -----------------------------------------------------------------------------
    def put(self, target: str, line: str, *, priority: bool = False) -> asyncio.Future[None]:
        """Queue ``line`` for ``target``; the returned future resolves once it is written.

        Raises :class:`OutboxFull` (after reporting the line) if the target's queue is full.
        """
        pending = Pending(target, line, self._clock(), priority, asyncio.get_running_loop().create_future())
        queue = self._priority if priority else self._queues.setdefault(target.casefold(), deque())
        if len(queue) >= self.max_queue:
            self._give_up(pending, f"more than {self.max_queue} lines queued for {target}")
            raise OutboxFull(target)
        queue.append(pending)
        self._ready.set()
        return pending.sent  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._priority) + sum(len(q) for q in self._queues.values())

    # --- draining ----------------------------------------------------------------------------
    def resume(self, writer: Writer) -> None:
        """Start writing queued lines through ``writer`` (a new connection)."""
        self._writer = writer
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="outbox")

    async def pause(self) -> None:
        """Stop writing (the connection is gone); queued lines wait for the next ``resume``."""
        self._writer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def close(self, reason: str) -> None:
        """Report every line still queued as undelivered (the adapter is shutting down)."""
        for queue in (self._priority, *self._queues.values()):
            while queue:
                self._give_up(queue.popleft(), reason)
        self._queues.clear()

    def _next(self) -> Pending | None:
        if self._priority:
            return self._priority.popleft()
        while self._queues:
            key, queue = next(iter(self._queues.items()))
            if not queue:
                del self._queues[key]
                continue
            pending = queue.popleft()
            self._queues.move_to_end(key)  # round robin: the next target goes next
            return pending
        return None

    def _expire(self) -> None:
        """Report lines that waited longer than ``max_wait``: better late news than a stale line."""
        limit = self._clock() - self.max_wait
        for queue in (self._priority, *self._queues.values()):
            while queue and queue[0].queued_at < limit:
                self._give_up(queue.popleft(), f"not sent within {self.max_wait:g} s")

    async def _drain(self) -> None:
        while True:
            self._expire()
            pending = self._next()
            if pending is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            wait = self.bucket.take()
            while wait > 0:
                await asyncio.sleep(wait)
                wait = self.bucket.take()
            writer = self._writer
            if writer is None:  # paused while waiting for a token: put it back in front
                self._unget(pending)
                return
            try:
                await writer(pending)
            except Undeliverable as exc:  # this line can never be written (too long, bad bytes)
                self._give_up(pending, exc.reason)
                continue
            except Exception:
                # The connection failed under us: keep the line for the next connection. The
                # adapter notices the failure itself and calls pause()/resume().
                self._unget(pending)
                self._writer = None
                return
            self.written += 1
            if pending.sent is not None and not pending.sent.done():
                pending.sent.set_result(None)

    def _unget(self, pending: Pending) -> None:
        if pending.priority:
            self._priority.appendleft(pending)
        else:
            queue = self._queues.setdefault(pending.target.casefold(), deque())
            queue.appendleft(pending)
            self._queues.move_to_end(pending.target.casefold(), last=False)
        self._ready.set()

    def _give_up(self, pending: Pending, reason: str) -> None:
        self._on_undelivered(pending, reason)
        if pending.sent is not None and not pending.sent.done():
            pending.sent.set_exception(Undeliverable(pending.target, reason))
            pending.sent.exception()  # mark retrieved: nobody is obliged to await it


class Undeliverable(Exception):
    """Set on a line's future when it will never be written."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"not delivered to {target}: {reason}")
        self.target = target
        self.reason = reason
