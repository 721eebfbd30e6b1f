"""Outgoing flood control: the token bucket's arithmetic and the outbox's order and reporting."""

from __future__ import annotations

import asyncio

import pytest

from presencebot.throttle import Outbox, OutboxFull, Pending, TokenBucket, Undeliverable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 2.0, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token per 0.5 s
    clock.now += 0.5
    assert bucket.take() == 0.0
    clock.now += 100  # idle time never banks more than the burst
    assert bucket.tokens == pytest.approx(3.0)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(1, 0)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.undelivered: list[tuple[str, str]] = []

    async def write(self, pending: Pending) -> None:
        self.lines.append(pending.line)

    def gave_up(self, pending: Pending, reason: str) -> None:
        self.undelivered.append((pending.line, reason))


async def test_targets_take_turns_and_priority_goes_first() -> None:
    rec = Recorder()
    box = Outbox(burst=100, rate=100, on_undelivered=rec.gave_up)
    for i in range(3):
        box.put("#a", f"a{i}")
    for i in range(2):
        box.put("#b", f"b{i}")
    box.put("#officers", "ALERT", priority=True)
    done = box.put("#b", "b2")
    box.resume(rec.write)
    await asyncio.wait_for(done, 2)
    await asyncio.sleep(0.01)
    assert rec.lines[0] == "ALERT"
    assert rec.lines[1:] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    await box.pause()


async def test_rate_is_kept_without_blocking_the_loop() -> None:
    rec = Recorder()
    box = Outbox(burst=2, rate=50, on_undelivered=rec.gave_up)
    futures = [box.put("#a", f"l{i}") for i in range(6)]
    box.resume(rec.write)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    t = asyncio.create_task(ticker())
    await asyncio.wait_for(asyncio.gather(*futures), 2)
    t.cancel()
    assert rec.lines == [f"l{i}" for i in range(6)]
    assert ticks > 5  # the loop kept running while lines waited for tokens
    await box.pause()


async def test_full_queue_and_stale_lines_are_reported_not_dropped() -> None:
    rec = Recorder()
    clock = Clock()
    box = Outbox(burst=1, rate=1, max_queue=2, max_wait=10, on_undelivered=rec.gave_up, clock=clock)
    box.put("#a", "one")
    box.put("#a", "two")
    with pytest.raises(OutboxFull):
        box.put("#a", "three")
    assert rec.undelivered == [("three", "more than 2 lines queued for #a")]
    clock.now += 11  # the connection was down for longer than max_wait
    stale = box.put("#b", "fresh")
    box.resume(rec.write)
    await asyncio.wait_for(stale, 2)
    assert rec.lines == ["fresh"]
    assert [line for line, _ in rec.undelivered] == ["three", "one", "two"]
    assert "not sent within 10 s" in rec.undelivered[1][1]
    await box.pause()


async def test_lines_wait_for_the_next_connection_and_close_reports_the_rest() -> None:
    rec = Recorder()
    box = Outbox(burst=10, rate=10, on_undelivered=rec.gave_up)

    async def broken(pending: Pending) -> None:
        raise ConnectionResetError

    first = box.put("#a", "survives a reconnect")
    box.resume(broken)
    await asyncio.sleep(0.02)
    assert not first.done()
    box.resume(rec.write)
    await asyncio.wait_for(first, 2)
    assert rec.lines == ["survives a reconnect"]
    await box.pause()
    lost = box.put("#a", "never sent")
    box.close("the adapter stopped")
    assert rec.undelivered == [("never sent", "the adapter stopped")]
    with pytest.raises(Undeliverable, match="the adapter stopped"):
        await lost


async def test_a_line_the_writer_rejects_is_reported_and_the_rest_go_on() -> None:
    rec = Recorder()
    box = Outbox(burst=10, rate=10, on_undelivered=rec.gave_up)

    async def picky(pending: Pending) -> None:
        if pending.line == "bad":
            raise Undeliverable(pending.target, "too long")
        rec.lines.append(pending.line)

    box.put("#a", "bad")
    ok = box.put("#a", "good")
    box.resume(picky)
    await asyncio.wait_for(ok, 2)
    assert rec.lines == ["good"]
    assert rec.undelivered == [("bad", "too long")]
    await box.pause()
