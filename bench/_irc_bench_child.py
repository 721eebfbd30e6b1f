"""The processes of ``bench/irc_throughput.py``: the bot, the bare client and the load generator.

    python bench/_irc_bench_child.py {bot,bare,load} --host H --port P --messages N ...

Each writes JSON lines on stdout: ``{"event": "ready", ...}`` once connected and in every channel,
then ``{"event": "result", ...}``. A subject (bot, bare) measures its own CPU
(``getrusage(RUSAGE_SELF)``, user + system, every thread) and wall time from the first chat line
it receives to the N-th, and its peak RSS; ``SIGUSR1`` makes it report what it has so far
(``"complete": false``). Imports are per role, so the bare client's RSS holds the ``irc`` library
and nothing of presencebot.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import random
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BOT_NICK = "PolicePresence"
BARE_NICK = "BareCounter"
READY_TIMEOUT = 60.0
JOIN_CHUNK_BYTES = 400
FULL_SPEED_CHUNK = 64
"""At full speed each sender's lines go out in writes of up to this many lines."""
WRITE_HIGH_WATER = 256 * 1024


def channels(count: int) -> list[str]:
    return [f"#c{i}" for i in range(count)]


def minors_room(index: int) -> bool:
    return index % 5 == 0  # 20% of the rooms are declared for children, as in bench/rules.py


def french_room(index: int) -> bool:
    return index % 6 == 5


def join_lines(names: list[str]) -> Iterator[str]:
    """``JOIN #a,#b,...`` lines short enough for any server."""
    chunk: list[str] = []
    for name in names:
        if chunk and len(",".join([*chunk, name])) > JOIN_CHUNK_BYTES:
            yield "JOIN " + ",".join(chunk)
            chunk = []
        chunk.append(name)
    if chunk:
        yield "JOIN " + ",".join(chunk)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- the measurement window, shared by both subjects --------------------------------------------


class Window:
    """Counts chat lines; CPU and wall time run from the first line to the ``expected``-th."""

    def __init__(self, expected: int, profile: Path | None = None) -> None:
        self.expected = expected
        self.count = 0
        self.first_wall = self.last_wall = 0.0
        self.first_cpu = self.end_cpu = 0.0
        self.done = asyncio.Event()
        self.complete = False
        self.profile = profile
        self._profiler: cProfile.Profile | None = None

    def seen(self) -> None:
        self.count += 1
        now = time.perf_counter()
        self.last_wall = now
        if self.count == 1:
            self.first_wall = now
            self.first_cpu = cpu_seconds()
            if self.profile is not None:
                self._profiler = cProfile.Profile()
                self._profiler.enable()
        if self.count == self.expected:
            self._close(complete=True)

    def give_up(self) -> None:
        """SIGUSR1: the parent stopped waiting; report what arrived (CPU then includes idle time)."""
        if not self.done.is_set():
            self._close(complete=False)

    def _close(self, *, complete: bool) -> None:
        self.end_cpu = cpu_seconds()
        if self._profiler is not None:
            self._profiler.disable()
            assert self.profile is not None
            self._profiler.dump_stats(self.profile)
            self._profiler = None
        self.complete = complete
        self.done.set()

    def figures(self) -> dict[str, Any]:
        measured = max(self.count - 1, 0)  # the first line opens the window
        return {
            "received": self.count,
            "expected": self.expected,
            "complete": self.complete,
            "measured": measured,
            "seconds": self.last_wall - self.first_wall if self.count else 0.0,
            "cpu_seconds": self.end_cpu - self.first_cpu if self.count else 0.0,
            "peak_rss_kib": peak_rss_kib(),
        }


async def wait_done(window: Window) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, window.give_up)
    await window.done.wait()


# --- the bare client: the irc library's asyncio client, counting --------------------------------


async def run_bare(args: argparse.Namespace) -> None:
    import irc.client_aio
    import jaraco.stream.buffer

    loop = asyncio.get_running_loop()
    names = channels(args.channels)
    window = Window(args.messages)
    joined: set[str] = set()
    all_joined = asyncio.Event()
    started = time.perf_counter()

    reactor = irc.client_aio.AioReactor(loop=loop)
    conn = reactor.server()
    conn.buffer_class = jaraco.stream.buffer.LenientDecodingLineBuffer

    def on_pubmsg(connection: Any, event: Any) -> None:
        window.seen()

    def on_registered(connection: Any, event: Any) -> None:
        for line in join_lines(names):
            connection.send_raw(line)

    def on_join(connection: Any, event: Any) -> None:
        if event.source.nick == connection.get_nickname():
            joined.add(str(event.target))
            if len(joined) >= len(names):
                all_joined.set()

    reactor.add_global_handler("endofmotd", on_registered)
    reactor.add_global_handler("nomotd", on_registered)
    reactor.add_global_handler("join", on_join)
    await conn.connect(args.host, args.port, BARE_NICK)
    await asyncio.wait_for(all_joined.wait(), READY_TIMEOUT)
    for event, handler in (("endofmotd", on_registered), ("nomotd", on_registered), ("join", on_join)):
        reactor.remove_global_handler(event, handler)
    reactor.add_global_handler("pubmsg", on_pubmsg)
    emit("ready", seconds=time.perf_counter() - started, rss_kib=peak_rss_kib())
    await wait_done(window)
    emit("result", role="bare", **window.figures())
    conn.disconnect("bench done")


# --- the bot: a real Runtime with the IRC adapter and the whole rule pipeline ------------------


async def run_bot(args: argparse.Namespace) -> None:
    from presencebot import log, plugins
    from presencebot.config import Config
    from presencebot.events import Message
    from presencebot.rule import RoomView, rule
    from presencebot.runtime import RoomState, Runtime
    from presencebot.store.sqlite import SQLiteStore

    # Warnings and errors only (an alert is one warning line); chat lines are never logged.
    log.configure("warning", "json")
    names = channels(args.channels)
    window = Window(args.messages, Path(args.profile) if args.profile else None)
    started = time.perf_counter()

    @rule("bench_count", version="1", description="counts messages for the benchmark")
    def count(message: Message, room: RoomView) -> None:
        window.seen()

    config = Config.model_validate(
        {
            "networks": [
                {
                    "name": "bench",
                    "adapter": "irc",
                    "settings": {
                        "host": args.host,
                        "port": args.port,
                        "tls": False,
                        "nick": BOT_NICK,
                        # ngircd's flood penalty is off: let the badges (3 lines a channel) out fast.
                        "flood_burst": 100,
                        "flood_rate": 100,
                        "ping_interval": 600,
                        "ping_timeout": 1200,
                    },
                    "rooms": [
                        {
                            "id": name,
                            "audience": "minors" if minors_room(i) else "general",
                            "language": "fr" if french_room(i) else "en",
                        }
                        for i, name in enumerate(names)
                    ],
                }
            ],
            "room_defaults": {"rules": ["minor_whereabouts", "bench_count"]},
            "store": {"path": args.store},
            "logging": {"level": "warning"},
        }
    )
    # As presencebot.checks.resolve does for `presencebot run`: the adapter through its entry
    # point, its settings validated by its own model.
    cls = plugins.load_adapter("irc")
    settings = cls.Settings.model_validate(config.network("bench").settings)
    rules = [plugins.load_rule("minor_whereabouts"), count]
    runtime = Runtime(config, SQLiteStore(args.store), adapters={"bench": (cls, settings)}, rules=rules)
    running = asyncio.create_task(runtime.run())
    rooms = runtime.networks["bench"].rooms

    async def announced() -> None:
        while not all(r.state is RoomState.ACTIVE for r in rooms.values()):
            if running.done():
                raise RuntimeError(f"the runtime stopped before joining: {running.result()}")
            await asyncio.sleep(0.02)

    await asyncio.wait_for(announced(), READY_TIMEOUT)
    emit("ready", seconds=time.perf_counter() - started, rss_kib=peak_rss_kib())
    await wait_done(window)
    stats = {
        rule_id: {"calls": s.calls, "flags": s.flags, "errors": s.errors, "seconds": s.seconds}
        for rule_id, s in runtime.pipeline.stats.items()
    }
    adapter = runtime.networks["bench"].adapter
    undelivered = getattr(adapter, "undelivered", None)
    emit("result", role="bot", rules=stats, undelivered=undelivered, **window.figures())
    runtime.stop()
    try:
        await asyncio.wait_for(running, 10.0)
    except TimeoutError:
        print("the runtime did not stop within 10 s", file=sys.stderr)


# --- the load generator: S raw-socket senders -------------------------------------------------


class Sender:
    def __init__(self, nick: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.nick = nick
        self.reader = reader
        self.writer = writer
        self.discarded = 0

    @classmethod
    async def connect(cls, host: str, port: int, nick: str, names: list[str]) -> Sender:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"NICK {nick}\r\nUSER {nick[:10]} 0 * :bench sender\r\n".encode())
        sender = cls(nick, reader, writer)
        await sender._until({b"376", b"422"}, 1)
        for line in join_lines(names):
            writer.write(f"{line}\r\n".encode())
        await sender._until({b"366"}, len(names))  # end of NAMES: one per channel joined
        return sender

    async def _until(self, codes: set[bytes], times: int) -> None:
        seen = 0
        while seen < times:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError(f"{self.nick}: the server closed the connection")
            parts = line.split(b" ", 3)
            if parts[0] == b"PING":
                self.writer.write(b"PONG " + b" ".join(parts[1:]).rstrip() + b"\r\n")
            elif len(parts) > 1 and parts[1] in codes:
                seen += 1
            elif len(parts) > 1 and parts[1].startswith((b"4", b"5")):
                raise ConnectionError(f"{self.nick}: {line.decode(errors='replace').strip()}")

    async def discard(self) -> None:
        """Everyone else's lines reach every sender too: read and drop them."""
        while data := await self.reader.read(256 * 1024):
            self.discarded += len(data)


def sender_nicks(count: int) -> list[str]:
    from rules import NAMES

    nicks: list[str] = []
    for i in range(count):
        base = NAMES[i % len(NAMES)]
        nicks.append(base if i < len(NAMES) else f"{base}{i // len(NAMES)}")
    return nicks


def plan(args: argparse.Namespace, nicks: list[str]) -> tuple[list[tuple[int, bytes]], dict[str, int]]:
    """``(sender index, raw line)`` for each message, and how many of each kind.

    Channels in turn; speakers drawn with a few chatty people and many quiet ones; chat text from
    bench/rules.py's lists. The first line in each channel is someone's age ("im 12"); after
    that ~1% are whereabouts requests aimed at a recent speaker and ~0.5% more age statements, so
    the rule tracks ages and flags some requests, as it would on a real network.
    """
    from rules import (
        AGE_SHARE,
        AGES_EN,
        AGES_FR,
        ORDINARY_EN,
        ORDINARY_FR,
        REQUEST_SHARE,
        REQUESTS_EN,
        REQUESTS_FR,
    )

    rng = random.Random(args.seed)
    names = channels(args.channels)
    weights = [1 / (k + 1) ** 0.8 for k in range(len(nicks))]
    order = list(range(len(nicks)))
    recent: list[deque[int]] = [deque(maxlen=6) for _ in names]
    kinds = {"ordinary": 0, "request": 0, "age": 0}
    out: list[tuple[int, bytes]] = []
    for i in range(args.messages):
        room = i % len(names)
        author = rng.choices(order, weights)[0]
        others = [s for s in recent[room] if s != author] or [s for s in order if s != author] or [author]
        other = nicks[rng.choice(others)]
        french = rng.random() < (0.7 if french_room(room) else 0.1)
        roll = rng.random()
        if i < len(names) or roll < AGE_SHARE:
            kinds["age"] += 1
            text = rng.choice(AGES_FR if french else AGES_EN).format(
                age=rng.randrange(9, 17), year=rng.randrange(5, 11)
            )
        elif roll < AGE_SHARE + REQUEST_SHARE:
            kinds["request"] += 1
            text = rng.choice(REQUESTS_FR if french else REQUESTS_EN).format(
                nick=other.lower() if rng.random() < 0.5 else other
            )
        else:
            kinds["ordinary"] += 1
            text = rng.choice(ORDINARY_FR if french else ORDINARY_EN).format(nick=other)
        recent[room].append(author)
        out.append((author, f"PRIVMSG {names[room]} :{text}\r\n".encode()))
    return out, kinds


async def run_load(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    names = channels(args.channels)
    nicks = sender_nicks(args.senders)
    lines, kinds = plan(args, nicks)
    senders = await asyncio.wait_for(
        asyncio.gather(*(Sender.connect(args.host, args.port, n, names) for n in nicks)), READY_TIMEOUT
    )
    readers = [asyncio.create_task(s.discard()) for s in senders]
    emit("ready", senders=len(senders))
    await asyncio.sleep(0.5)  # let the subjects see the senders' JOINs before the first line
    cpu0, t0 = cpu_seconds(), loop.time()
    if args.mode == "paced":
        for i, (who, line) in enumerate(lines):
            delay = t0 + i / args.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            senders[who].writer.write(line)
    else:
        for s in senders:
            s.writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        for start in range(0, len(lines), FULL_SPEED_CHUNK):
            batches: dict[int, list[bytes]] = {}
            for who, line in lines[start : start + FULL_SPEED_CHUNK]:
                batches.setdefault(who, []).append(line)
            for who, batch in batches.items():
                writer = senders[who].writer
                writer.write(b"".join(batch))
                await writer.drain()  # waits only while more than WRITE_HIGH_WATER is buffered
            await asyncio.sleep(0)  # let the readers take what the server sends the senders
    for s in senders:  # until the kernel has taken every line
        s.writer.transport.set_write_buffer_limits(high=0)
        await s.writer.drain()
    seconds = loop.time() - t0
    emit(
        "result",
        role="load",
        sent=len(lines),
        seconds=seconds,
        cpu_seconds=cpu_seconds() - cpu0,
        kinds=kinds,
        senders=nicks,
    )
    # Stay connected (a sender that quits may lose lines the server has not read yet) until the
    # parent ends this process.
    await asyncio.gather(*readers, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["bot", "bare", "load"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--channels", type=int, required=True)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--mode", choices=["paced", "full"], default="paced")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", default="bench.db")
    parser.add_argument("--profile", default="", help="bot: write cProfile stats of the window here")
    args = parser.parse_args()
    runner = {"bot": run_bot, "bare": run_bare, "load": run_load}[args.role]
    asyncio.run(runner(args))


if __name__ == "__main__":
    main()
