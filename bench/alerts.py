"""Alerts per second through the store, the outbox and a signed webhook, and the latency from flag
to delivered webhook at a steady rate.

    .venv/bin/python bench/alerts.py [--alerts 2000] [--rate 100] [--seconds 10] [--concurrency 8]
                                     [--dir DIR] [--profile]

The bot side runs in this process the way the runtime runs it: a real ``SQLiteStore`` (WAL,
``synchronous=FULL``) in a temporary directory, a ``Config`` with one webhook ``[[notify]]`` target,
``build_sinks`` and a ``Dispatcher`` whose ``run()`` loop is a task, woken by ``kick()``. An alert
is raised as ``Runtime._store`` raises it: ``route()``, ``store.add(...)``, ``kick()``; the flag
time (``time.time()``) is taken just before ``store.add``.

The webhook receiver is aiohttp on a loopback port in a child process, so its CPU does not count
against the bot. It verifies every signature with ``presencebot.sinks.webhook.verify``, records
(webhook-id, alert id, arrival time) and, before answering, looks the webhook-id up in the SQLite
file through its own read-only connection: a row found there was committed (and, with
``synchronous=FULL``, synced) before the delivery reached the receiver.

Two runs, each on a fresh store after a short warm-up that is not counted: (1) ``--alerts`` alerts
raised back to back by one producer: alerts/s stored and delivered; (2) an open-loop producer at
``--rate`` alerts/s for ``--seconds``: latency percentiles from flag to arrival at the receiver,
against the goal (p99 <= 50 ms). Each run then checks that every alert arrived exactly once, with a
good signature, after its row was in the file, and (reopening the file) that every outbox row is
delivered. Logging is silenced, as in ``bench/rules.py``. ``--profile`` prints the top costs of
this process (the event loop's thread; the SQLite thread is not profiled) during the paced run.
It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import json
import logging
import math
import multiprocessing
import pstats
import secrets
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from presencebot.alerts import Alert, EvidenceItem, new_alert_id
from presencebot.config import Config
from presencebot.dispatch import Dispatcher
from presencebot.events import Author, RoomRef, utcnow
from presencebot.ids import AccountId, EventId, RoomId
from presencebot.rule import Severity
from presencebot.sinks import Sink
from presencebot.sinks.factory import build_sinks
from presencebot.sinks.webhook import verify
from presencebot.store import delivery as outbox
from presencebot.store.sqlite import SQLiteStore

GOAL_P99_MS = 50.0
WARMUP = 20
EVIDENCE_ITEMS = 5
"""The flagged message and four earlier ones: a typical evidence window."""
WEBHOOK_TIMEOUT_S = 5.0
RECEIVER_START_TIMEOUT_S = 30.0
RECEIVER_REPLY_TIMEOUT_S = 30.0
RECEIVER_STOP_TIMEOUT_S = 5.0
DELIVERY_TIMEOUT_S = 120.0
"""The longest a run waits for its last delivery after its last alert was raised."""
PROFILE_LINES = 25

Record = tuple[str, str, float, str | None]
"""What the receiver saw: webhook-id, alert id, arrival (``time.time()``), the row's state in the
file when it arrived (``None``: no such row)."""


# --- the receiver (child process) ----------------------------------------------------------------


@dataclass
class _ReceiverState:
    secret: str
    records: list[Record] = field(default_factory=list)
    bad_signatures: int = 0
    db: sqlite3.Connection | None = None

    def open_db(self, path: str | None) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if path is not None:
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    def row_state(self, webhook_id: str) -> str | None:
        if self.db is None:
            return None
        row = self.db.execute("SELECT state FROM outbox WHERE id = ?", (webhook_id,)).fetchone()
        return None if row is None else str(row[0])


async def _serve(conn: Connection[Any, Any], secret: str) -> None:
    from aiohttp import web

    state = _ReceiverState(secret)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        if not verify(state.secret, request.headers, body):
            state.bad_signatures += 1
            return web.Response(status=401)
        webhook_id = request.headers["webhook-id"]
        alert_id = str(json.loads(body)["data"]["id"])
        state.records.append((webhook_id, alert_id, arrived, state.row_state(webhook_id)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()

    def command() -> None:
        try:
            what, arg = conn.recv()
        except EOFError:  # the parent is gone
            stop.set()
            return
        try:
            if what == "db":
                state.open_db(arg)
                conn.send(("ok", None))
            elif what == "collect":
                conn.send(("records", (state.records, state.bad_signatures)))
                state.records, state.bad_signatures = [], 0
            else:
                stop.set()
        except Exception as exc:  # tell the parent rather than leave it waiting
            conn.send(("error", f"{what}: {type(exc).__name__}: {exc}"))

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), command)
    conn.send(("ready", port))
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        state.open_db(None)
        await runner.cleanup()


def _receiver_main(conn: Connection[Any, Any], secret: str) -> None:
    _quiet()
    asyncio.run(_serve(conn, secret))


class Receiver:
    """The parent's handle on the receiver process; every exchange has a timeout."""

    def __init__(self, secret: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_receiver_main, args=(child_end, secret), daemon=True)
        self._process.start()
        child_end.close()
        try:
            port = self._ask(None, RECEIVER_START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{port}/hook"
        self.pid = self._process.pid

    def _ask(self, message: tuple[str, Any] | None, timeout: float) -> Any:
        if message is not None:
            self._conn.send(message)
        if not self._conn.poll(timeout):
            raise TimeoutError(f"the receiver did not answer {message and message[0]!r} in {timeout:g} s")
        kind, value = self._conn.recv()
        if kind == "error":
            raise RuntimeError(f"the receiver failed: {value}")
        return value

    async def use_db(self, path: Path | None) -> None:
        """Look every webhook-id up in this SQLite file (``None``: close it)."""
        arg = None if path is None else str(path)
        await asyncio.to_thread(self._ask, ("db", arg), RECEIVER_REPLY_TIMEOUT_S)

    async def collect(self) -> tuple[list[Record], int]:
        """Everything received since the last collect, and how many signatures were bad."""
        records, bad = await asyncio.to_thread(self._ask, ("collect", None), RECEIVER_REPLY_TIMEOUT_S)
        return list(records), int(bad)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("stop", None))
        self._process.join(RECEIVER_STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(RECEIVER_STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


# --- the bot side --------------------------------------------------------------------------------


def make_alert(n: int) -> Alert:
    """A location request against a child, with a small evidence window, raised now."""
    at = utcnow()
    room = RoomRef("bench", RoomId("#kids"))
    child = Author(f"lily{n % 97}", AccountId(f"lily{n % 97}"))
    asker = Author(f"mark{n % 89}", AccountId(f"mark{n % 89}"))
    said = ["hi all", "hey lily", "im 12", "cool", "where do u live"]
    evidence = tuple(
        EvidenceItem(
            EventId(f"e{n}-{i}"),
            None,
            asker if i % 2 else child,
            at - timedelta(seconds=5 * (EVIDENCE_ITEMS - 1 - i)),
            said[i % len(said)],
            i == EVIDENCE_ITEMS - 1,
        )
        for i in range(EVIDENCE_ITEMS)
    )
    return Alert(
        id=new_alert_id(),
        created_at=at,
        room=room,
        rule_id="minor_whereabouts",
        rule_version="1.0",
        category="location",
        severity=Severity.HIGH,
        target=child,
        requester=asker,
        explanation=f"{child.nick} stated age 12; {asker.nick} asked where they live",
        evidence=evidence,
    )


@dataclass
class Run:
    """One measured run: when each alert was flagged and stored, and what the receiver saw."""

    flagged: dict[str, float] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    bad_signatures: int = 0
    file_rows: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """Outbox row id -> (alert id, state, attempts) of this run's alerts, read by reopening the
    file after the run."""


class Bot:
    """Store + dispatcher + webhook sink, set up as the runtime sets them up."""

    def __init__(self, path: Path, url: str, secret: str, concurrency: int) -> None:
        self.path = path
        self.config = Config.model_validate(
            {
                "notify": [
                    {
                        "name": "officers",
                        "sink": "webhook",
                        "settings": {"url": url, "secrets": [secret], "timeout_seconds": WEBHOOK_TIMEOUT_S},
                    }
                ],
                "delivery": {"concurrency": concurrency},
            }
        )
        self.store = SQLiteStore(path)
        self.sinks: dict[str, Sink] = {}
        self.dispatcher: Dispatcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bot:
        await self.store.open()

        async def say(network: str, room: str, line: str) -> None:
            raise ConnectionError("no rooms in this benchmark")

        self.sinks = build_sinks(self.config, say)
        self.dispatcher = Dispatcher(self.config, self.store, self.sinks, roster=None)
        self._task = asyncio.create_task(self.dispatcher.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for sink in self.sinks.values():
            await sink.close()
        await self.store.close()

    @property
    def delivered(self) -> int:
        return 0 if self.dispatcher is None else self.dispatcher.delivered

    async def raise_alert(self, n: int, run: Run | None) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        alert = make_alert(n)
        routing = dispatcher.route()
        flagged = time.time()
        await self.store.add(
            alert, routing.notices, trace=routing.trace, escalate_at=routing.escalate_at, force=routing.force
        )
        stored = time.time()
        dispatcher.kick()
        if run is not None:
            run.flagged[alert.id] = flagged
            run.stored[alert.id] = stored

    async def wait_delivered(self, count: int) -> None:
        """Until ``count`` notices are delivered, or ``TimeoutError`` after ``DELIVERY_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                while self.delivered < count:  # noqa: ASYNC110 - a plain counter, no event to wait on
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise TimeoutError(
                f"{self.delivered} of {count} notices delivered after {DELIVERY_TIMEOUT_S:g} s"
            ) from None


def _read_file(path: Path, run: Run) -> None:
    """Reopen the store's file (after the store closed it) and look at what is durably there."""
    conn = sqlite3.connect(path)
    try:
        run.file_rows = {
            r.id: (r.alert_id, r.state, r.attempts) for r in outbox.rows(conn) if r.alert_id in run.flagged
        }
    finally:
        conn.close()


async def measure(
    receiver: Receiver,
    path: Path,
    secret: str,
    concurrency: int,
    produce: Callable[[Bot, Run], Awaitable[None]],
    expected: int,
) -> Run:
    """A fresh store, a warm-up (uncounted), then ``produce``; waits for every delivery."""
    run = Run()
    async with Bot(path, receiver.url, secret, concurrency) as bot:
        await receiver.use_db(path)  # now that the store has made the file
        for i in range(WARMUP):
            await bot.raise_alert(-1 - i, None)
        await bot.wait_delivered(WARMUP)
        await receiver.collect()  # the warm-up's
        await produce(bot, run)
        await bot.wait_delivered(WARMUP + expected)
        run.records, run.bad_signatures = await receiver.collect()
    await receiver.use_db(None)
    _read_file(path, run)
    return run


async def produce_back_to_back(bot: Bot, run: Run, count: int) -> None:
    for i in range(count):
        await bot.raise_alert(i, run)


async def produce_paced(bot: Bot, run: Run, rate: float, count: int) -> None:
    """Open loop: alert ``i`` is raised at ``start + i / rate`` whatever became of the others."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.lag.append(loop.time() - due)
        tasks.append(asyncio.create_task(bot.raise_alert(i, run)))
    await asyncio.gather(*tasks)


# --- figures -------------------------------------------------------------------------------------


@dataclass
class Checks:
    expected: int
    exactly_once: int
    """Alerts whose notice reached the receiver exactly once."""
    missing: int
    duplicates: int
    """Arrivals beyond the first for a webhook-id."""
    bad_signatures: int
    in_file_first: int
    """Arrivals whose outbox row the receiver found (pending) in the SQLite file."""
    after_add: int
    """Arrivals later than the return of the ``store.add`` that stored them."""
    ids_match: int
    """Arrivals whose webhook-id is their alert's outbox row in the file."""
    delivered_in_file: int
    """This run's outbox rows that are ``delivered`` after one attempt, reopening the file."""
    latencies: list[float]
    """Seconds from flag to first arrival, one per delivered alert."""


def check(run: Run) -> Checks:
    by_webhook = Counter(r[0] for r in run.records)
    by_alert = Counter(r[1] for r in run.records)
    first: dict[str, float] = {}
    for _, alert_id, arrived, _ in sorted(run.records, key=lambda r: r[2]):
        first.setdefault(alert_id, arrived)
    return Checks(
        expected=len(run.flagged),
        exactly_once=sum(by_alert[a] == 1 for a in run.flagged),
        missing=sum(a not in by_alert for a in run.flagged),
        duplicates=sum(n - 1 for n in by_webhook.values()),
        bad_signatures=run.bad_signatures,
        in_file_first=sum(r[3] == outbox.PENDING for r in run.records),
        after_add=sum(r[1] in run.stored and r[2] >= run.stored[r[1]] for r in run.records),
        ids_match=sum(run.file_rows.get(r[0], ("",))[0] == r[1] for r in run.records),
        delivered_in_file=sum(s == outbox.DELIVERED and n == 1 for _, s, n in run.file_rows.values()),
        latencies=sorted(first[a] - run.flagged[a] for a in first if a in run.flagged),
    )


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank on an already sorted list."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _spread(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return (
        f"p50 {_ms(percentile(ordered, 50))}, p99 {_ms(percentile(ordered, 99))}, "
        f"max {_ms(percentile(ordered, 100))} ms"
    )


def _store_times(run: Run) -> list[float]:
    return [run.stored[a] - run.flagged[a] for a in run.flagged]


def _filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or '?'."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = str(path).startswith(point.rstrip("/") + "/") or str(path) == point
                if inside and len(point) > len(best):
                    best, kind = point, parts[2]
    except OSError:
        pass
    return kind


SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def print_checks(names: list[str], checks: list[Checks]) -> bool:
    rows: list[tuple[str, Callable[[Checks], str]]] = [
        ("delivered exactly once", lambda c: f"{c.exactly_once:,}/{c.expected:,}"),
        ("missing", lambda c: f"{c.missing:,}"),
        ("duplicate webhook-ids", lambda c: f"{c.duplicates:,}"),
        ("bad signatures", lambda c: f"{c.bad_signatures:,}"),
        ("row in the file on arrival", lambda c: f"{c.in_file_first:,}/{len(c.latencies):,}"),
        ("arrival after store.add", lambda c: f"{c.after_add:,}/{len(c.latencies):,}"),
        ("webhook-id = outbox row id", lambda c: f"{c.ids_match:,}/{len(c.latencies):,}"),
        ("outbox rows delivered, 1 try", lambda c: f"{c.delivered_in_file:,}/{c.expected:,}"),
    ]
    print(f"\n{'checks':<32}" + "".join(f"{n:>16}" for n in names))
    for label, show in rows:
        print(f"{label:<32}" + "".join(f"{show(c):>16}" for c in checks))
    ok = all(
        c.exactly_once == c.expected
        and c.duplicates == 0
        and c.bad_signatures == 0
        and c.in_file_first == c.after_add == c.ids_match == c.expected
        and c.delivered_in_file == c.expected
        for c in checks
    )
    print("all checks:", "ok" if ok else "FAILED")
    return ok


def print_profile(profile: cProfile.Profile) -> None:
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).strip_dirs().sort_stats(key)
        stats.print_stats(PROFILE_LINES)
        text = out.getvalue()
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        print(f"\nprofile of this process during the paced run, by {key} (top {PROFILE_LINES})")
        print(body.rstrip())


# --- main ----------------------------------------------------------------------------------------


def _quiet() -> None:
    """One log line per delivery would be most of the output; keep the figures readable."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


async def bench(args: argparse.Namespace, receiver: Receiver, secret: str, workdir: Path) -> None:
    paced_count = max(1, round(args.rate * args.seconds))
    probe = SQLiteStore(workdir / "probe.db")
    await probe.open()
    try:
        journal, sync = await probe.read(
            lambda c: (
                c.execute("PRAGMA journal_mode").fetchone()[0],
                c.execute("PRAGMA synchronous").fetchone()[0],
            )
        )
    finally:
        await probe.close()
    print(
        f"store: SQLiteStore in {workdir} ({_filesystem(workdir)}), journal_mode {journal}, "
        f"synchronous {SYNCHRONOUS.get(int(sync), sync)}; receiver: pid {receiver.pid} on {receiver.url}; "
        f"delivery.concurrency {args.concurrency}; {WARMUP} warm-up alerts per run, not counted"
    )

    async def back_to_back(bot: Bot, run: Run) -> None:
        await produce_back_to_back(bot, run, args.alerts)

    async def paced(bot: Bot, run: Run) -> None:
        await produce_paced(bot, run, args.rate, paced_count)

    burst = await measure(receiver, workdir / "burst.db", secret, args.concurrency, back_to_back, args.alerts)
    burst_checks = check(burst)
    began = min(burst.flagged.values())
    last_stored = max(burst.stored.values())
    last_arrival = max((r[2] for r in burst.records), default=math.nan)
    n = args.alerts
    print(f"\n(1) back to back: {n:,} alerts, one producer awaiting each store.add")
    print(f"{'':<40}{'alerts/s':>12}{'ms/alert':>10}")
    for label, span in (
        ("stored    (first flag -> last add)", last_stored - began),
        ("delivered (first flag -> last arrival)", last_arrival - began),
    ):
        print(f"{label:<40}{n / span:>12,.0f}{span / n * 1e3:>10.3f}")
    print(f"store.add per alert: {_spread(_store_times(burst))}")
    print(f"flag -> delivered, backlog included: {_spread(burst_checks.latencies)}")

    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    try:
        steady = await measure(receiver, workdir / "paced.db", secret, args.concurrency, paced, paced_count)
    finally:
        if profile is not None:
            profile.disable()
    steady_checks = check(steady)
    lat = steady_checks.latencies
    p99 = percentile(lat, 99)
    verdict = "ok" if p99 * 1e3 <= GOAL_P99_MS else "MISSED"
    print(
        f"\n(2) paced: {args.rate:g} alerts/s for {args.seconds:g} s = {paced_count:,} alerts, open loop "
        f"(producer late by at most {_ms(max(steady.lag, default=0.0))} ms)"
    )
    heading = f"{'flag -> delivered, ms':<26}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    print(f"{heading}  goal p99 <= {GOAL_P99_MS:g} ms")
    print(f"{'':<26}" + "".join(f"{_ms(percentile(lat, p)):>9}" for p in (50, 90, 99, 100)) + f"  {verdict}")
    print(f"store.add per alert: {_spread(_store_times(steady))}")

    print_checks(["back to back", "paced"], [burst_checks, steady_checks])
    if profile is not None:
        print_profile(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--alerts", type=int, default=2000, help="alerts raised back to back")
    parser.add_argument("--rate", type=float, default=100.0, help="alerts per second in the paced run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    parser.add_argument("--concurrency", type=int, default=8, help="delivery.concurrency")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary store goes")
    parser.add_argument("--profile", action="store_true", help="cProfile this process in the paced run")
    args = parser.parse_args()
    if args.alerts < 1 or args.rate <= 0 or args.seconds <= 0 or not 1 <= args.concurrency <= 256:
        parser.error("--alerts, --rate and --seconds must be positive; --concurrency 1..256")
    _quiet()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with tempfile.TemporaryDirectory(prefix="presencebot-bench-", dir=args.dir) as tmp:
        receiver = Receiver(secret)
        try:
            asyncio.run(bench(args, receiver, secret, Path(tmp)))
        finally:
            receiver.stop()


if __name__ == "__main__":
    main()
