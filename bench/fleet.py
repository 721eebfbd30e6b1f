"""Fleet mode figures: takeover time, throughput through 3 workers vs 1, memory per room.

    .venv/bin/python bench/fleet.py [--only takeover,throughput,memory] [--runs 5] [--ttl 5]
        [--messages 30000] [--rooms 5000] [--per-unit 250]

Everything is real: ``presencebot run`` worker processes in fleet mode, one ngircd (limits lifted,
``MaxJoins = 0``, flood penalty off) on a free port, and a fresh database on the PostgreSQL named
by ``PRESENCEBOT_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``; the database
is created for the run and dropped after it) holding the leases and the shared alert store.

* **takeover** — 3 workers share 6 IRC units of 5 channels; a raw-socket watcher in every channel
  counts badges. One worker that runs networks is SIGKILLed; the figure is the time from the kill
  until every one of its channels shows a second badge (joined and announced by another worker).
  It is bounded below by the lease TTL (``--ttl``): the dead worker's leases must expire first.
  Median of ``--runs`` runs, each on fresh workers.
* **throughput** — the same 30 channels, once with 1 worker, once with 3; 4 sender connections
  send ``--messages`` ordinary lines (plus a few ages and whereabouts requests, so the rule does
  real work) round-robin over the channels as fast as ngircd takes them. The figure is messages
  per second from the first line sent until the workers' ``presencebot_messages_total`` (scraped
  from each worker's ``/metrics``) reaches the count; median of ``--runs`` runs. For scale, the
  same traffic is first timed into one bare raw-socket client (ngircd's own relay rate here).
* **memory** — one worker holding ``--rooms`` channels (units of ``--per-unit``, Libera's
  ``CHANLIMIT``), every one joined and announced (``presencebot_rooms{state="active"}``); its
  resident set (VmRSS) against the same worker holding one channel; per room = the difference
  divided by the rooms.

It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from irc_throughput import HOST, Ngircd, free_port  # bench/ is the script's directory

PG = os.environ.get("PRESENCEBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PRESENCEBOT = Path(sys.executable).with_name("presencebot")
BADGE = re.compile(r"^:(PB\d+)\S* PRIVMSG (#\S+) :.*POLICE PRESENCE")
ORDINARY = [
    "anyone watching the match tonight",
    "lol same",
    "what level are you on",
    "brb dinner",
    "that boss fight is impossible",
    "did you see the new trailer",
    "my internet is so slow today",
    "gg everyone",
]


# --- the database ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new database on the server for one measurement (leases + alert store), dropped after."""
    admin = await asyncpg.connect(PG, timeout=5)
    name = f"bench_fleet_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def unit_owners(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT unit, owner FROM fleet_units WHERE owner IS NOT NULL AND expires_at > clock_timestamp()"
        )
    finally:
        await conn.close()
    return {row["unit"]: row["owner"] for row in rows}


# --- workers ---------------------------------------------------------------------------------------


def channel_names(units: int, per_unit: int) -> list[list[str]]:
    return [[f"#f{u}x{i}" for i in range(per_unit)] for u in range(units)]


def write_config(path: Path, *, port: int, dsn: str, rooms: list[list[str]], ttl: float) -> None:
    parts = [
        f'[store]\nurl = "{dsn}"\n',
        f'[fleet]\nenabled = true\ndatabase_url = "{dsn}"\nlease_ttl_seconds = {ttl}\n',
        '[ops]\nenabled = true\nhost = "127.0.0.1"\n',
        '[room_defaults]\naudience = "minors"\n',
        '[logging]\nlevel = "warning"\nformat = "json"\n',
    ]
    for unit, channels in enumerate(rooms):
        listed = "".join(f'[[networks.rooms]]\nid = "{c}"\n' for c in channels)
        parts.append(
            f'[[networks]]\nname = "irc{unit}"\nadapter = "irc"\n'
            f'[networks.settings]\nhost = "{HOST}"\nport = {port}\ntls = false\nnick = "PB{unit}"\n'
            "flood_burst = 100\nflood_rate = 100.0\n"
            "reconnect_base_seconds = 0.2\nreconnect_cap_seconds = 1.0\n" + listed
        )
    path.write_text("\n".join(parts))


@dataclass
class Worker:
    name: str
    config: Path
    directory: Path
    ops_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "PRESENCEBOT_FLEET__WORKER_ID": self.name,
            "PRESENCEBOT_OPS__PORT": str(self.ops_port),
        }
        with (self.directory / f"{self.name}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [str(PRESENCEBOT), "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 5) -> str:
        """The end of the worker's log, to explain a measurement that could not finish."""
        path = self.directory / f"{self.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


async def scrape(session: aiohttp.ClientSession, worker: Worker) -> dict[str, float]:
    """Sums per metric name (labels ignored) plus ``rooms_active``, from one worker's /metrics."""
    found: dict[str, float] = {}
    try:
        async with session.get(f"http://127.0.0.1:{worker.ops_port}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        found[name] = found.get(name, 0.0) + float(value)
        if name == "presencebot_rooms" and 'state="active"' in name_labels:
            found["rooms_active"] = found.get("rooms_active", 0.0) + float(value)
    return found


async def total(session: aiohttp.ClientSession, workers: list[Worker], name: str) -> float:
    figures = await asyncio.gather(*(scrape(session, w) for w in workers))
    return sum(f.get(name, 0.0) for f in figures)


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], within: float, what: str, workers: Sequence[Worker] = ()
) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {w.name}:\n{w.log_tail()}" for w in workers)
            raise RuntimeError(f"not within {within:g} s: {what}{tails}")
        await asyncio.sleep(0.05)


# --- raw IRC clients -------------------------------------------------------------------------------


class RawClient:
    """A plain IRC client on a socket: registers, joins (comma lists), reads every line."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.lines = 0
        self.badges: Counter[str] = Counter()
        self.count_badges = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._joined: set[str] = set()

    async def connect(self, port: int) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :bench")
        welcome = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(welcome))
        await asyncio.wait_for(welcome, 10)

    def send(self, line: str) -> None:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\r\n")

    async def drain(self) -> None:
        assert self._writer is not None
        await self._writer.drain()

    async def join(self, channels: list[str]) -> None:
        for start in range(0, len(channels), 20):
            self.send("JOIN " + ",".join(channels[start : start + 20]))
        await self.drain()
        wanted = set(channels)
        deadline = time.monotonic() + 60
        while not wanted <= self._joined:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.nick} could not join {len(wanted - self._joined)} channels")
            await asyncio.sleep(0.02)

    async def _read(self, welcome: asyncio.Future[None]) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            text = line.decode(errors="replace").rstrip("\r\n")
            self.lines += 1
            if text.startswith("PING"):
                self.send("PONG" + text[4:])
            elif " 001 " in text and not welcome.done():
                welcome.set_result(None)
            elif text.startswith(f":{self.nick}!") and " JOIN " in text:
                self._joined.add(text.rsplit(" ", 1)[1].lstrip(":"))
            elif self.count_badges and (match := BADGE.match(text)):
                self.badges[match.group(2)] += 1

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self.send("QUIT :done")
                await self.drain()
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# --- takeover --------------------------------------------------------------------------------------


async def takeover_once(server: Ngircd, directory: Path, ttl: float) -> float:
    rooms = channel_names(6, 5)
    everything = [c for unit in rooms for c in unit]
    watcher = RawClient("watcher")
    await watcher.connect(server.port)
    watcher.count_badges = True
    await watcher.join(everything)
    workers: list[Worker] = []
    async with fresh_database() as dsn:
        config = directory / "takeover.toml"
        write_config(config, port=server.port, dsn=dsn, rooms=rooms, ttl=ttl)
        try:
            for n in range(3):
                workers.append(Worker(f"w{n}", config, directory))
                workers[-1].start()

            async def all_announced() -> bool:
                return all(watcher.badges[c] >= 1 for c in everything)

            await wait_for(all_announced, 60, "every channel announced", workers)
            owners = await unit_owners(dsn)
            victim = sorted({o for u, o in owners.items() if u.startswith("net:")})[0]
            lost = [
                int(u.removeprefix("net:irc")) for u, o in owners.items() if o == victim and u[:4] == "net:"
            ]
            moved = [c for unit in lost for c in rooms[unit]]
            dying = next(w for w in workers if w.name == victim)
            dying.kill()
            killed = time.monotonic()

            async def moved_announced() -> bool:
                return all(watcher.badges[c] >= 2 for c in moved)

            await wait_for(moved_announced, ttl * 4 + 30, "the dead worker's channels announced again")
            return time.monotonic() - killed
        finally:
            for worker in workers:
                worker.stop()
            await watcher.close()


async def bench_takeover(server: Ngircd, directory: Path, runs: int, ttl: float) -> None:
    times = []
    for run in range(runs):
        took = await takeover_once(server, directory, ttl)
        times.append(took)
        print(f"  run {run + 1}: {took:.2f} s")
    median = statistics.median(times)
    print(
        f"takeover (lease TTL {ttl:g} s, {runs} runs): median {median:.2f} s, min {min(times):.2f} s,"
        f" max {max(times):.2f} s; median beyond the TTL {median - ttl:.2f} s"
    )


# --- throughput ------------------------------------------------------------------------------------


def traffic(count: int, channels: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        channel = channels[i % len(channels)]
        roll = rng.random()
        if roll < 0.01:
            text = "lily where do u live"
        elif roll < 0.02:
            text = "im 12"
        else:
            text = rng.choice(ORDINARY)
        lines.append(f"PRIVMSG {channel} :{text}")
    return lines


async def senders_in(port: int, channels: list[str], senders: int = 4) -> list[RawClient]:
    clients = [RawClient(f"sender{i}") for i in range(senders)]
    for client in clients:
        await client.connect(port)
        await client.join(channels)
    return clients


async def blast(clients: list[RawClient], lines: list[str]) -> None:
    for index, line in enumerate(lines):
        client = clients[index % len(clients)]
        client.send(line)
        if index % 200 == 199:
            await client.drain()
    for client in clients:
        await client.drain()


async def relay_rate(server: Ngircd, channels: list[str], lines: list[str]) -> float:
    """ngircd's own rate on this traffic into one bare client (the ceiling for any reader)."""
    reader = RawClient("counter")
    await reader.connect(server.port)
    await reader.join(channels)
    senders = await senders_in(server.port, channels)
    base = reader.lines
    start = time.monotonic()
    await blast(senders, lines)

    async def received() -> bool:
        return reader.lines - base >= len(lines)

    await wait_for(received, 300, "the bare client received everything")
    rate = len(lines) / (time.monotonic() - start)
    for client in [reader, *senders]:
        await client.close()
    return rate


async def throughput_with(
    server: Ngircd, directory: Path, workers_count: int, lines: list[str], ttl: float
) -> tuple[float, float]:
    rooms = channel_names(6, 5)
    everything = [c for unit in rooms for c in unit]
    workers: list[Worker] = []
    async with fresh_database() as dsn, aiohttp.ClientSession() as session:
        config = directory / f"throughput{workers_count}.toml"
        write_config(config, port=server.port, dsn=dsn, rooms=rooms, ttl=ttl)
        try:
            for n in range(workers_count):
                workers.append(Worker(f"t{n}", config, directory))
                workers[-1].start()

            async def active() -> bool:
                return await total(session, workers, "rooms_active") >= len(everything)

            await wait_for(active, 90, "every room active", workers)
            senders = await senders_in(server.port, everything)
            base = await total(session, workers, "presencebot_messages_total")
            cpu_before = sum(cpu_seconds(w) for w in workers)
            start = time.monotonic()
            await blast(senders, lines)

            async def processed() -> bool:
                return await total(session, workers, "presencebot_messages_total") - base >= len(lines)

            await wait_for(processed, 600, "every message processed")
            wall = time.monotonic() - start
            cpu = sum(cpu_seconds(w) for w in workers) - cpu_before
            for client in senders:
                await client.close()
            return len(lines) / wall, cpu / len(lines) * 1e6
        finally:
            for worker in workers:
                worker.stop()


def cpu_seconds(worker: Worker) -> float:
    assert worker.proc is not None
    fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_throughput(server: Ngircd, directory: Path, messages: int, ttl: float, runs: int) -> None:
    everything = [c for unit in channel_names(6, 5) for c in unit]
    lines = traffic(messages, everything, seed=7)
    ceiling = await relay_rate(server, everything, lines)
    print(f"ngircd relaying {messages} lines into one bare client: {ceiling:,.0f} msg/s")
    rates: dict[int, list[float]] = {1: [], 3: []}
    cpus: dict[int, list[float]] = {1: [], 3: []}
    for run in range(runs):
        for count in (1, 3):
            rate, cpu = await throughput_with(server, directory, count, lines, ttl)
            rates[count].append(rate)
            cpus[count].append(cpu)
        print(f"  run {run + 1}: 1 worker {rates[1][-1]:,.0f} msg/s, 3 workers {rates[3][-1]:,.0f} msg/s")
    one, three = statistics.median(rates[1]), statistics.median(rates[3])
    print(f"1 worker:  median {one:,.0f} msg/s ({statistics.median(cpus[1]):.0f} µs CPU per message)")
    print(
        f"3 workers: median {three:,.0f} msg/s"
        f" ({statistics.median(cpus[3]):.0f} µs CPU per message, all workers together)"
    )
    print(f"3 vs 1: {three / one:.2f}x on {os.cpu_count()} CPUs (ngircd and the senders share them)")


# --- memory ------------------------------------------------------------------------------------


async def resident_with(server: Ngircd, directory: Path, rooms: list[list[str]], ttl: float) -> float:
    count = sum(len(unit) for unit in rooms)
    async with fresh_database() as dsn, aiohttp.ClientSession() as session:
        config = directory / f"memory{count}.toml"
        write_config(config, port=server.port, dsn=dsn, rooms=rooms, ttl=ttl)
        worker = Worker("m0", config, directory)
        worker.start()
        try:

            async def active() -> bool:
                return await total(session, [worker], "rooms_active") >= count

            await wait_for(active, 600, f"{count} rooms active", [worker])
            await asyncio.sleep(2.0)  # settle: the last badges flushed, caches warm
            return worker.rss_mib()
        finally:
            worker.stop()


async def bench_memory(server: Ngircd, directory: Path, rooms: int, per_unit: int, ttl: float) -> None:
    units = -(-rooms // per_unit)
    big = [[f"#m{u}x{i}" for i in range(min(per_unit, rooms - u * per_unit))] for u in range(units)]
    small = [["#m0x0"]]
    base = await resident_with(server, directory, small, ttl)
    full = await resident_with(server, directory, big, ttl)
    per_room = (full - base) * 1024 / (rooms - 1)
    print(
        f"memory: one worker with 1 room {base:.1f} MiB, with {rooms} rooms in {units} units"
        f" {full:.1f} MiB: {per_room:.1f} KiB per room"
    )


# --- main ---------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    wanted = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        directory = Path(tmp)
        server = Ngircd(directory / "ngircd")
        (directory / "ngircd").mkdir()
        server.start()
        try:
            if "takeover" in wanted:
                await bench_takeover(server, directory, args.runs, args.ttl)
            if "throughput" in wanted:
                await bench_throughput(server, directory, args.messages, args.ttl, args.runs)
            if "memory" in wanted:
                await bench_memory(server, directory, args.rooms, args.per_unit, args.ttl)
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="takeover,throughput,memory")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=5.0, help="lease TTL (the default in config is 30)")
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rooms", type=int, default=5_000)
    parser.add_argument("--per-unit", type=int, default=250)
    asyncio.run(main(parser.parse_args()))
