"""Fleet mode end to end: three real ``presencebot run`` processes sharing six IRC connection
units (30 channels on a real ngircd) through leases in the real PostgreSQL.

A watcher client sits in every channel and counts badges; the shared alert store is one SQLite
file (every worker on this machine). What is checked is what the issue asks: every channel
joined and announced exactly once; a SIGKILLed worker's channels announced again by the others
within the lease TTL; a worker paused past its TTL (SIGSTOP) neither posts nor alerts with its
stale epoch when it wakes (SIGCONT).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from tests.support import require

if TYPE_CHECKING:
    from tests.ircservers import NgircdServer, RawClientFactory, RawIrcClient

pytest_plugins = ["tests.ircservers"]
pytestmark = pytest.mark.slow

UNITS = 6
PER_UNIT = 5
TTL = 3.0
BADGE_HEAD = re.compile(r"^:(PP\d)\S*!\S+ PRIVMSG (#c\d+) :.*POLICE PRESENCE")
ADMIN_DSN = os.environ.get("PRESENCEBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def channels(unit: int) -> list[str]:
    return [f"#c{unit * PER_UNIT + i}" for i in range(PER_UNIT)]


@pytest.fixture
async def fleet_db() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the leases, dropped afterwards."""
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require(False, f"PostgreSQL not reachable at {ADMIN_DSN}: {exc}")
        raise
    name = f"fleet_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = ADMIN_DSN.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def write_config(path: Path, port: int, dsn: str, store: Path) -> None:
    parts = [
        f'[store]\npath = "{store}"\n',
        f'[fleet]\nenabled = true\ndatabase_url = "{dsn}"\nlease_ttl_seconds = {TTL}\n',
        '[room_defaults]\naudience = "minors"\n',
        '[logging]\nlevel = "info"\nformat = "json"\n',
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
        env = {**os.environ, "PRESENCEBOT_FLEET__WORKER_ID": name}
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


def alerts(store: Path) -> list[tuple[str, str]]:
    if not store.exists():
        return []
    with sqlite3.connect(store) as db:
        return [(r[0], r[1]) for r in db.execute("SELECT room, target_nick FROM alerts")]


async def test_three_workers_share_thirty_channels_and_take_over_from_a_dead_one(
    request: pytest.FixtureRequest,
    fleet_db: str,
    raw_client_factory: RawClientFactory,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    require(shutil.which("ngircd") is not None, "ngircd not installed (Debian package ngircd)")
    server: NgircdServer = request.getfixturevalue("ngircd")
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    lily = await raw_client_factory(server.host, server.port, "lily")
    mark = await raw_client_factory(server.host, server.port, "mark")
    everything = [c for unit in range(UNITS) for c in channels(unit)]
    for channel in everything:
        await watcher.join(channel)
    config, store = tmp_path / "fleet.toml", tmp_path / "alerts.db"
    write_config(config, server.port, fleet_db, store)
    for n in range(3):
        workers.append(Worker(f"w{n}", config, tmp_path / f"w{n}.log"))

    # Every channel joined and announced exactly once, by three different workers.
    await until(lambda: len(badges(watcher)) == len(everything), 30, "every channel announced")
    await asyncio.sleep(1.0)
    assert set(badges(watcher).values()) == {1}
    held = await owners(fleet_db)
    assert {u for u in held if u.startswith("net:")} == {f"net:irc{u}" for u in range(UNITS)}
    assert len(set(held.values())) == 3
    # `presencebot fleet status` shows the three workers and what each runs.
    status = subprocess.run(
        [str(Path(sys.executable).with_name("presencebot")), "fleet", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert all(f"w{n}" in status.stdout for n in range(3)) and "net:irc0" in status.stdout

    # SIGKILL one worker: its channels are rejoined and announced by the others within the TTL.
    victim = workers[0]
    lost = sorted(
        int(u.removeprefix("net:irc")) for u, owner in held.items() if owner == "w0" and u.startswith("net:")
    )
    assert lost, "w0 held no network"
    victim.proc.kill()
    victim.proc.wait(5)
    killed = time.monotonic()
    moved = [c for unit in lost for c in channels(unit)]
    await until(
        lambda: all(badges(watcher)[c] == 2 for c in moved),
        TTL + 15,
        "the dead worker's channels re-announced",
    )
    took = time.monotonic() - killed
    assert took < TTL + 10, took
    counts = badges(watcher)
    assert all(counts[c] == 1 for c in everything if c not in moved)  # nobody else re-announced
    held = await owners(fleet_db)
    assert "w0" not in held.values()

    # An alert in a moved channel is raised once, by the new owner.
    room = moved[0]
    await lily.join(room)
    await mark.join(room)
    lily.privmsg(room, "hiii im 12")
    await asyncio.sleep(0.3)
    mark.privmsg(room, "lily where do u live")
    await until(lambda: len(alerts(store)) == 1, 10, "the alert stored")
    await asyncio.sleep(1.0)
    assert alerts(store) == [(room, "lily")]


async def test_a_paused_worker_does_not_post_or_alert_with_its_stale_epoch(
    request: pytest.FixtureRequest,
    fleet_db: str,
    raw_client_factory: RawClientFactory,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    require(shutil.which("ngircd") is not None, "ngircd not installed (Debian package ngircd)")
    server: NgircdServer = request.getfixturevalue("ngircd")
    watcher = await raw_client_factory(server.host, server.port, "watcher")
    lily = await raw_client_factory(server.host, server.port, "lily")
    mark = await raw_client_factory(server.host, server.port, "mark")
    everything = [c for unit in range(UNITS) for c in channels(unit)]
    for channel in everything:
        await watcher.join(channel)
    config, store = tmp_path / "fleet.toml", tmp_path / "alerts.db"
    write_config(config, server.port, fleet_db, store)
    for n in range(2):
        workers.append(Worker(f"p{n}", config, tmp_path / f"p{n}.log"))
    await until(lambda: len(badges(watcher)) == len(everything), 30, "every channel announced")
    held = await owners(fleet_db)
    paused = workers[0]
    stale = sorted(
        int(u.removeprefix("net:irc")) for u, owner in held.items() if owner == "p0" and u.startswith("net:")
    )
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
    await until(lambda: len(alerts(store)) == 1, 10, "the new owner's alert")
    before = len(watcher.lines)
    os.kill(paused.proc.pid, signal.SIGCONT)
    await asyncio.sleep(TTL)
    assert len(alerts(store)) == 1  # no second alert from the stale worker
    stale_nicks = {f"PP{u}" for u in stale}
    after = watcher.lines[before:]
    spoke = [line for line in after if " PRIVMSG " in line and line[1:].split("!", 1)[0] in stale_nicks]
    assert spoke == [], spoke  # the woken worker said nothing with its old lease
    log = (tmp_path / "p0.log").read_text(errors="replace")
    assert "fleet.unit_lost" in log
