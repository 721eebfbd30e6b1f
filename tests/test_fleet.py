"""Fleet mode end to end: three real ``presencebot run`` processes sharing six IRC connection
units (30 channels on a real ngircd) through leases in the real PostgreSQL.

A watcher client sits in every channel and counts badges; the workers share one PostgreSQL store
(alerts and outbox, beside the lease table) and deliver to a local webhook receiver. What is
checked is what the issue asks: every channel joined and announced exactly once; a SIGKILLed
worker's channels announced again by the others within the lease TTL, and every alert raised
around the handover stored once and delivered once; a worker paused past its TTL (SIGSTOP)
neither posts nor alerts with its stale epoch when it wakes (SIGCONT).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import asyncpg
import pytest

from tests.pgsupport import PG_URL, connect_or_skip
from tests.support import free_port, require
from tests.webhooks import SECRET, Receiver
from tests.webhooks import receivers as webhook_receivers

if TYPE_CHECKING:
    from tests.ircservers import NgircdServer, RawClientFactory, RawIrcClient

pytest_plugins = ["tests.ircservers"]
pytestmark = pytest.mark.slow

UNITS = 6
PER_UNIT = 5
TTL = 3.0
BADGE_HEAD = re.compile(r"^:(PP\d)\S*!\S+ PRIVMSG (#c\d+) :.*POLICE PRESENCE")
LEASE_HELD = re.compile(r'presencebot_lease_state\{unit="([^"]+)",state="held"\} 1')


def channels(unit: int) -> list[str]:
    return [f"#c{unit * PER_UNIT + i}" for i in range(PER_UNIT)]


@pytest.fixture
async def fleet_db() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the leases, dropped afterwards."""
    admin = await connect_or_skip()
    name = f"fleet_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = PG_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receivers("officers") as made:
        yield made["officers"]


def write_config(path: Path, port: int, dsn: str, hook: str) -> None:
    parts = [
        f'[store]\nurl = "{dsn}"\n',
        f'[fleet]\nenabled = true\ndatabase_url = "{dsn}"\nlease_ttl_seconds = {TTL}\n',
        "[delivery]\nbackoff_base_seconds = 0.2\nbackoff_cap_seconds = 0.5\nmax_attempts = 100\n"
        "claim_seconds = 3\n",
        f'[[notify]]\nname = "officers"\nsink = "webhook"\nrole = "officers"\n'
        f'[notify.settings]\nurl = "{hook}"\nsecrets = ["{SECRET}"]\ntimeout_seconds = 2\n',
        # No grouping: a second alert about the same room would be merged into the first, which
        # would hide exactly the duplicate these tests look for.
        "[grouping]\nwindow_minutes = 0\n",
        '[room_defaults]\naudience = "minors"\n',
        '[logging]\nlevel = "info"\nformat = "json"\n',
        '[ops]\nenabled = true\nhost = "127.0.0.1"\n',
    ]
    for unit in range(UNITS):
        rooms = "".join(f'[[networks.rooms]]\nid = "{c}"\n' for c in channels(unit))
        parts.append(
            f'[[networks]]\nname = "irc{unit}"\nadapter = "irc"\n'
            f'[networks.settings]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nnick = "PP{unit}"\n'
            "flood_burst = 100\nflood_rate = 100.0\nreconnect_base_seconds = 0.2\nreconnect_cap_seconds = 1.0\n"
            + rooms
        )
    path.write_text("\n".join(parts))


class Worker:
    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.log = log
        self.ops_port = free_port()
        env = {
            **os.environ,
            "PRESENCEBOT_FLEET__WORKER_ID": name,
            "PRESENCEBOT_OPS__PORT": str(self.ops_port),
        }
        script = Path(sys.executable).with_name("presencebot")
        self.proc = subprocess.Popen(
            [str(script), "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            env=env,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            with_suppress = self.proc.send_signal
            with_suppress(signal.SIGCONT)
            with_suppress(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.stop()


async def owners(dsn: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT unit, owner FROM fleet_units WHERE expires_at > clock_timestamp()")
    finally:
        await conn.close()
    return {r["unit"]: r["owner"] for r in rows}


def units_of(held: dict[str, str | None], worker: str) -> list[int]:
    """The IRC units (by number) ``worker`` holds in ``held`` (unit -> owner)."""
    return sorted(
        int(u.removeprefix("net:irc")) for u, owner in held.items() if owner == worker and u[:4] == "net:"
    )


@dataclass
class Scene:
    """ngircd with a watcher in all 30 channels, two people (lily, mark), and the workers' config."""

    watcher: RawIrcClient
    lily: RawIrcClient
    mark: RawIrcClient
    everything: list[str]
    config: Path

    def worker(self, name: str) -> Worker:
        return Worker(name, self.config, self.config.with_name(f"{name}.log"))


@pytest.fixture
async def scene(
    request: pytest.FixtureRequest,
    fleet_db: str,
    raw_client_factory: RawClientFactory,
    receiver: Receiver,
    tmp_path: Path,
) -> Scene:
    require(shutil.which("ngircd") is not None, "ngircd not installed (Debian package ngircd)")
    server: NgircdServer = request.getfixturevalue("ngircd")
    clients = [
        await raw_client_factory(server.host, server.port, nick) for nick in ("watcher", "lily", "mark")
    ]
    everything = [c for unit in range(UNITS) for c in channels(unit)]
    for channel in everything:
        await clients[0].join(channel)
    config = tmp_path / "fleet.toml"
    write_config(config, server.port, fleet_db, receiver.url)
    return Scene(*clients, everything=everything, config=config)


def stale_posts(lines: list[str], nicks: set[str]) -> list[str]:
    """Lines from ``nicks`` posted into a channel they had not joined within ``lines``."""
    joined: set[tuple[str, str]] = set()
    found = []
    for line in lines:
        if not line.startswith(":"):
            continue
        source, _, rest = line[1:].partition(" ")
        nick = source.split("!", 1)[0]
        command, _, args = rest.partition(" ")
        channel = args.split(" ", 1)[0].lstrip(":")
        if command == "JOIN":
            joined.add((nick, channel))
        elif command == "PART":
            joined.discard((nick, channel))
        elif command == "QUIT":
            joined = {(n, c) for n, c in joined if n != nick}
        elif command == "PRIVMSG" and nick in nicks and (nick, channel) not in joined:
            found.append(line)
    return found


def replies(watcher: RawIrcClient, room: str) -> int:
    """Answers to ``!police`` seen in ``room``."""
    return sum(f" PRIVMSG {room} :I am a police presence bot" in line for line in watcher.lines)


def badges(watcher: RawIrcClient) -> Counter[str]:
    """Badge head lines seen per channel."""
    seen: Counter[str] = Counter()
    for line in watcher.lines:
        match = BADGE_HEAD.match(line)
        if match:
            seen[match.group(2)] += 1
    return seen


async def until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        await asyncio.sleep(0.1)


async def alerts(dsn: str) -> list[tuple[str, str, str]]:
    """(id, room, target) of every alert in the shared store, oldest first."""
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('alerts')") is None:
            return []
        rows = await conn.fetch("SELECT id, room, target_nick FROM alerts ORDER BY rowid")
    finally:
        await conn.close()
    return [(r["id"], r["room"], r["target_nick"]) for r in rows]


async def until_stored(dsn: str, count: int, timeout: float, what: str) -> list[tuple[str, str, str]]:
    deadline = time.monotonic() + timeout
    while len(found := await alerts(dsn)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what} ({found})")
        await asyncio.sleep(0.1)
    return found


async def ask_where(lily: RawIrcClient, mark: RawIrcClient, room: str) -> None:
    """A child states her age in ``room`` and is asked where she lives."""
    await lily.join(room)
    await mark.join(room)
    lily.privmsg(room, "hiii im 12")
    await asyncio.sleep(0.3)
    mark.privmsg(room, "lily where do u live")


async def test_three_workers_share_thirty_channels_and_take_over_from_a_dead_one(
    scene: Scene, fleet_db: str, receiver: Receiver, workers: list[Worker]
) -> None:
    watcher, lily, mark, everything = scene.watcher, scene.lily, scene.mark, scene.everything
    workers += [scene.worker(f"w{n}") for n in range(3)]

    # Every channel joined and announced exactly once, by three different workers.
    await until(lambda: len(badges(watcher)) == len(everything), 30, "every channel announced")
    await asyncio.sleep(1.0)
    assert set(badges(watcher).values()) == {1}
    held = await owners(fleet_db)
    assert {u for u in held if u.startswith("net:")} == {f"net:irc{u}" for u in range(UNITS)}
    assert len(set(held.values())) == 3
    # `presencebot fleet status` shows the three workers and what each runs.
    status = subprocess.run(
        [
            str(Path(sys.executable).with_name("presencebot")),
            "fleet",
            "status",
            "--config",
            str(scene.config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert all(f"w{n}" in status.stdout for n in range(3)) and "net:irc0" in status.stdout
    # Each worker's /metrics says which units it holds, and /healthz answers for those only.
    async with aiohttp.ClientSession() as session:
        for worker in workers:
            base = f"http://127.0.0.1:{worker.ops_port}"
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
            mine = {u for u, owner in held.items() if owner == worker.name}
            assert set(LEASE_HELD.findall(text)) == mine, (worker.name, mine)
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
                report = await response.json()
            runs = {f"net:{n}" for n, network in report["networks"].items() if network["lease"] == "held"}
            assert runs == {u for u in mine if u.startswith("net:")}
            assert all(
                room["ok"]
                for n in runs
                for room in report["networks"][n.removeprefix("net:")]["rooms"].values()
            )

    # The victim and a survivor: two workers that run networks (the third may hold only the
    # escalation singleton, as the fair share is ceil(7 units / 3 workers) = 3).
    network_owners = sorted({owner for u, owner in held.items() if u.startswith("net:") and owner})
    victim, survivor = network_owners[0], network_owners[1]
    lost, kept = units_of(held, victim), units_of(held, survivor)
    # The officers' endpoint is down: alerts queue up in the shared outbox, retried by every worker.
    receiver.down = True
    await ask_where(lily, mark, channels(lost[0])[1])  # raised by the worker about to die
    await until_stored(fleet_db, 1, 10, "the doomed worker's alert stored")
    await until(lambda: receiver.refused >= 1, 10, "a delivery attempted")

    # SIGKILL one worker: its channels are rejoined and announced by the others within the TTL.
    dying = next(w for w in workers if w.name == victim)
    dying.proc.kill()
    dying.proc.wait(5)
    killed = time.monotonic()
    await ask_where(lily, mark, channels(kept[0])[1])  # raised during the handover, elsewhere
    moved = [c for unit in lost for c in channels(unit)]
    await until(
        lambda: all(badges(watcher)[c] == 2 for c in moved),
        TTL + 15,
        "the dead worker's channels re-announced",
    )
    took = time.monotonic() - killed
    # Expired leases are claimed at once (not at the next renewal): the TTL plus connect-and-join.
    assert took < TTL + 1.5, took
    counts = badges(watcher)
    assert all(counts[c] == 1 for c in everything if c not in moved)  # nobody else re-announced
    held = await owners(fleet_db)
    assert victim not in held.values()

    # An alert in a moved channel is raised once, by the new owner.
    await ask_where(lily, mark, channels(lost[0])[2])
    stored = await until_stored(fleet_db, 3, 10, "the three alerts stored")
    rooms = [room for _, room, _ in stored]
    assert sorted(rooms) == sorted([channels(lost[0])[1], channels(kept[0])[1], channels(lost[0])[2]])

    # The endpoint comes back: every alert reaches it exactly once, whoever raised it.
    receiver.down = False
    await until(lambda: len(receiver.alerts) == 3, 15, "every alert delivered")
    await asyncio.sleep(2.0)
    assert await alerts(fleet_db) == stored  # nothing lost, nothing raised twice
    assert receiver.alerts == Counter({alert_id: 1 for alert_id, _, _ in stored})


async def test_a_paused_worker_does_not_post_or_alert_with_its_stale_epoch(
    scene: Scene, fleet_db: str, receiver: Receiver, workers: list[Worker]
) -> None:
    watcher, lily, mark, everything = scene.watcher, scene.lily, scene.mark, scene.everything
    workers += [scene.worker(f"p{n}") for n in range(2)]
    await until(lambda: len(badges(watcher)) == len(everything), 30, "every channel announced")
    held = await owners(fleet_db)
    paused = workers[0]
    stale = units_of(held, "p0")
    assert stale
    room = channels(stale[0])[0]
    await lily.join(room)
    await mark.join(room)

    os.kill(paused.proc.pid, signal.SIGSTOP)  # a long pause: the socket stays open, silent
    moved = [c for unit in stale for c in channels(unit)]
    await until(
        lambda: all(badges(watcher)[c] == 2 for c in moved),
        TTL + 20,
        "the paused worker's channels taken over",
    )
    # While the paused worker still sits in the room with its old nick, a request is made: the
    # new owner alerts; the paused one reads it too when it wakes, and must not alert again.
    lily.privmsg(room, "hiii im 12")
    await asyncio.sleep(0.3)
    mark.privmsg(room, "lily where do u live")
    (alert,) = await until_stored(fleet_db, 1, 10, "the new owner's alert")
    # And a command the bot answers: the new owner does; the paused one must not, once woken.
    lily.privmsg(room, "!police")
    await until(lambda: replies(watcher, room) == 1, 10, "the new owner's answer to !police")
    before = len(watcher.lines)
    os.kill(paused.proc.pid, signal.SIGCONT)
    # Woken, p0 finds its leases gone; being alive again, it may soon be handed its fair share
    # back (new epochs) and then connects afresh, joins and announces, legitimately. What must
    # never appear is a line from a connection that was in the room *before* the wake: one
    # posting in a channel without having (re)joined it since.
    await asyncio.sleep(TTL * 2)
    assert await alerts(fleet_db) == [alert]  # no second alert from the stale worker
    stale_nicks = {f"PP{u}" for u in stale}
    assert stale_posts(watcher.lines[before:], stale_nicks) == []
    assert replies(watcher, room) == 1
    log = paused.log.read_text(errors="replace")
    assert "fleet.unit_lost" in log
    await until(lambda: len(receiver.alerts) == 1, 10, "the alert delivered")
    assert receiver.alerts == Counter({alert[0]: 1})
