"""IRC throughput: the bot against a bare ``irc``-library client, on the same traffic through ngircd.

    .venv/bin/python bench/irc_throughput.py [--messages 20000] [--channels 50] [--senders 10]
        [--rate 1000] [--modes paced,full] [--seed 7] [--profile]

One ngircd (flood penalty off) on a free port. For each mode, two subjects, each its own process,
join the same R channels: the bot (a real ``Runtime`` with the IRC adapter, the
``minor_whereabouts`` rule and a counting rule, SQLite alert store, structlog at warning) and a
bare ``irc`` asyncio client whose only handler counts ``pubmsg``. Then a load generator (S
raw-socket senders, each in every channel) sends N lines round-robin over the channels, either
paced (``--rate`` lines/s in total) or as fast as the sockets take them. Chat text comes from
bench/rules.py's lists: mostly ordinary lines, the first line in each channel an age ("im 12"),
~1% whereabouts requests ("lily where do u live") and ~0.5% more ages, so the rule does real work;
20% of the channels are declared for children.

Each subject measures its own CPU (``getrusage``, user + system, all threads) and wall time from
the first line it receives to the N-th, and its peak RSS. Every process of the comparison runs
with ``MALLOC_TOP_PAD_=4194304`` (glibc heap trimming otherwise makes the paced figures swing).
Goal: the bot's CPU per message at most 1.3x the bare client's paced, at most 2x at full speed.
It prints figures; it asserts nothing. ``--profile`` also runs the bot under cProfile for the
measured window and prints its top costs (its figures then are not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
CHILD = HERE / "_irc_bench_child.py"
MALLOC_TOP_PAD = "4194304"
GOALS = {"paced": 1.3, "full": 2.0}
READY_TIMEOUT = 90.0
"""A subject or the load generator must be connected and in every channel within this."""
SUBJECT_GRACE = 60.0
"""After the last line is sent, how long a subject may take to finish before it is told to report."""
REPORT_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
NGIRCD_START_TIMEOUT = 10.0


def child_env() -> dict[str, str]:
    return {**os.environ, "MALLOC_TOP_PAD_": MALLOC_TOP_PAD}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# --- ngircd ---------------------------------------------------------------------------------------


class Ngircd:
    """``ngircd -n -f CONF`` on a free port, limits lifted, flood penalty off."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.conf = directory / "ngircd.conf"
        self.log = directory / "ngircd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        ssl = []
        dh = self.directory / "dhparams.pem"
        if shutil.which("certtool"):  # else ngircd makes DH parameters at every start (~1 s)
            with dh.open("wb") as out:
                subprocess.run(
                    ["certtool", "--get-dh-params", "--bits", "2048"],
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    check=False,
                    timeout=30,
                )
            if dh.stat().st_size:
                ssl.append(f"DHFile = {dh}")
        sections = {
            "Global": [
                "Name = bench.presencebot.test",
                "Info = presencebot IRC benchmark",
                "AdminInfo1 = presencebot bench",
                "AdminInfo2 = 127.0.0.1",
                "AdminEMail = root@localhost",
                f"Listen = {HOST}",
                f"Ports = {self.port}",
                'MotdPhrase = "presencebot benchmark"',
            ],
            "Limits": [
                "MaxConnectionsIP = 0",
                "MaxJoins = 0",
                "MaxNickLength = 30",
                "MaxPenaltyTime = 0",
                "PingTimeout = 600",
                "PongTimeout = 600",
            ],
            "Options": ["DNS = no", "Ident = no", "PAM = no"],
            "SSL": ssl,
        }
        return "".join(
            f"[{name}]\n" + "".join(f"\t{line}\n" for line in lines) + "\n"
            for name, lines in sections.items()
        )

    def start(self) -> None:
        self.conf.write_text(self._config())
        # As root ngircd drops to `nobody`, which must be able to read its files.
        self.directory.chmod(0o755)
        for path in self.directory.iterdir():
            path.chmod(0o644)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["ngircd", "-n", "-f", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
            )
        deadline = time.monotonic() + NGIRCD_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if f"Now listening on [{HOST}]:{self.port}" in self.log.read_text(errors="replace"):
                with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1.0):
                    return
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"ngircd did not start on port {self.port}:\n{tail}")

    def cpu_seconds(self) -> float | None:
        """utime + stime of the server so far (from /proc), or None."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- one mode -----------------------------------------------------------------------------------


@dataclass
class Child:
    role: str
    proc: asyncio.subprocess.Process
    stderr: Path
    ready: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    note: str = ""

    async def line(self, within: float) -> dict[str, Any] | None:
        """The next JSON line on stdout, or None (not ``within`` seconds, or the process ended)."""
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
        except TimeoutError:
            return None
        if not raw:
            return None
        try:
            parsed: dict[str, Any] = json.loads(raw)
        except json.JSONDecodeError:
            return {"event": "noise", "line": raw.decode(errors="replace")}
        return parsed

    async def expect(self, event: str, within: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            got = await self.line(left)
            if got is None:
                break
            if got.get("event") == event:
                return got
        return None

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            text = self.stderr.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stderr_lines(self) -> int:
        try:
            return len(self.stderr.read_text(errors="replace").splitlines())
        except OSError:
            return 0

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@dataclass
class ModeRun:
    mode: str
    subjects: dict[str, Child] = field(default_factory=dict)
    load: dict[str, Any] | None = None
    ngircd_cpu: float | None = None
    problems: list[str] = field(default_factory=list)
    profile: Path | None = None


async def spawn(role: str, args: argparse.Namespace, port: int, mode: str, work: Path, *extra: str) -> Child:
    stderr = work / f"{role}-{mode}.stderr"
    command = [
        sys.executable,
        str(CHILD),
        role,
        "--host",
        HOST,
        "--port",
        str(port),
        "--messages",
        str(args.messages),
        "--channels",
        str(args.channels),
        "--senders",
        str(args.senders),
        "--rate",
        str(args.rate),
        "--mode",
        mode,
        "--seed",
        str(args.seed),
        *extra,
    ]
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=child_env(),
            cwd=work,
        )
    return Child(role, proc, stderr)


async def run_mode(args: argparse.Namespace, server: Ngircd, mode: str, work: Path) -> ModeRun:
    run = ModeRun(mode)
    children: list[Child] = []
    try:
        # The bot first: its badge lines must not reach the bare client's counter.
        extra = ["--store", str(work / f"alerts-{mode}.db")]
        if args.profile:
            run.profile = work / f"bot-{mode}.pstats"
            extra += ["--profile", str(run.profile)]
        for role, more in (("bot", extra), ("bare", [])):
            child = await spawn(role, args, server.port, mode, work, *more)
            children.append(child)
            run.subjects[role] = child
            child.ready = await child.expect("ready", READY_TIMEOUT)
            if child.ready is None:
                run.problems.append(f"{role} not ready within {READY_TIMEOUT:g} s: {child.stderr_tail()}")
                return run
        ngircd_before = server.cpu_seconds()
        load = await spawn("load", args, server.port, mode, work)
        children.append(load)
        if await load.expect("ready", READY_TIMEOUT) is None:
            run.problems.append(f"load generator not ready: {load.stderr_tail()}")
            return run
        send_budget = (args.messages / args.rate if mode == "paced" else args.messages / 2000) * 3 + 60
        run.load = await load.expect("result", send_budget)
        if run.load is None:
            run.problems.append(f"load generator did not finish within {send_budget:.0f} s")
        for role, child in run.subjects.items():
            child.result = await child.expect("result", SUBJECT_GRACE)
            if child.result is None and child.proc.returncode is None:
                child.note = f"no result {SUBJECT_GRACE:g} s after the load ended: asked to report"
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGUSR1)
                child.result = await child.expect("result", REPORT_TIMEOUT)
            if child.result is None:
                run.problems.append(f"{role} reported nothing: {child.stderr_tail()}")
        ngircd_after = server.cpu_seconds()
        if ngircd_before is not None and ngircd_after is not None:
            run.ngircd_cpu = ngircd_after - ngircd_before
        return run
    finally:
        for child in reversed(children):
            await child.stop()


# --- output -------------------------------------------------------------------------------------


def per_message_us(result: dict[str, Any]) -> float | None:
    measured = result.get("measured", 0)
    return result["cpu_seconds"] / measured * 1e6 if measured else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(runs: list[ModeRun], args: argparse.Namespace) -> None:
    head = (
        f"{'mode':<7}{'subject':<9}{'received':>10}{'seconds':>9}{'msg/s':>9}"
        f"{'CPU us/msg':>12}{'peak RSS MiB':>14}{'bot/bare CPU':>14}  goal"
    )
    print("\n" + head)
    print("-" * len(head))
    for run in runs:
        costs: dict[str, float | None] = {}
        for role in ("bare", "bot"):
            child = run.subjects.get(role)
            result = child.result if child is not None else None
            if result is None:
                print(f"{run.mode:<7}{role:<9}{'no result':>10}")
                costs[role] = None
                continue
            us = costs[role] = per_message_us(result)
            seconds = result["seconds"]
            rate = result["measured"] / seconds if seconds > 0 else None
            received = f"{result['received']:,}" + ("" if result["complete"] else "*")
            ratio = verdict = ""
            if role == "bot":
                bare_us = costs.get("bare")
                goal = GOALS[run.mode]
                if us is not None and bare_us:
                    r = us / bare_us
                    ratio = f"{r:.2f}x"
                    verdict = f"{'met' if r <= goal else 'MISSED'} (<= {goal:g}x)"
                    if args.profile:
                        verdict += ", profiled: not comparable"
                else:
                    verdict = f"- (<= {goal:g}x)"
            print(
                f"{run.mode:<7}{role:<9}{received:>10}{seconds:>9.2f}{_fmt(rate, ',.0f'):>9}"
                f"{_fmt(us, '.1f'):>12}{result['peak_rss_kib'] / 1024:>14.1f}{ratio:>14}  {verdict}"
            )
    print("(* = not all N arrived; msg/s and CPU cover the first to the last line received)")


def print_details(runs: list[ModeRun]) -> None:
    for run in runs:
        print(f"\n{run.mode}:")
        if run.load is not None:
            load = run.load
            kinds = load["kinds"]
            print(
                f"  load: {load['sent']:,} lines written to the sockets in {load['seconds']:.2f} s "
                f"({load['sent'] / max(load['seconds'], 1e-9):,.0f}/s) by {len(load['senders'])} senders; "
                f"{kinds['request']:,} requests, {kinds['age']:,} ages, {kinds['ordinary']:,} ordinary; "
                f"generator CPU {load['cpu_seconds']:.2f} s"
            )
        if run.ngircd_cpu is not None:
            print(f"  ngircd CPU during the load: {run.ngircd_cpu:.2f} s")
        for role, child in run.subjects.items():
            ready = child.ready or {}
            line = (
                f"  {role}: ready in {ready.get('seconds', 0):.2f} s, "
                f"RSS at ready {ready.get('rss_kib', 0) / 1024:.1f} MiB"
            )
            result = child.result or {}
            if role == "bot" and "rules" in result:
                for rule_id, s in result["rules"].items():
                    calls = s["calls"] or 1
                    line += (
                        f"; {rule_id}: {s['calls']:,} calls, {s['flags']} flags, {s['errors']} errors, "
                        f"{s['seconds'] / calls * 1e6:.1f} us/call"
                    )
                line += (
                    f"; undelivered lines {result.get('undelivered')}; stderr lines {child.stderr_lines()}"
                )
            print(line)
            if child.note:
                print(f"    {child.note}")
        for problem in run.problems:
            print(f"  PROBLEM: {problem}")


def print_profile(runs: list[ModeRun], top: int = 25) -> None:
    for run in runs:
        if run.profile is None or not run.profile.exists():
            continue
        print(f"\nbot under cProfile, {run.mode}, measured window, top {top} by own time:")
        stats = pstats.Stats(str(run.profile), stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(top)
        print(f"... and top {top} by cumulative time (coroutines: per resumption):")
        stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="N lines sent per mode")
    parser.add_argument("--channels", type=int, default=50, help="R channels")
    parser.add_argument("--senders", type=int, default=10, help="S sender connections")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced: lines per second in total")
    parser.add_argument("--modes", default="paced,full", help="comma-separated: paced, full")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="profile the bot (figures not comparable)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in GOALS:
            parser.error(f"unknown mode {mode!r} (paced, full)")
    if args.messages < 2 or args.channels < 1 or args.senders < 2 or args.rate <= 0:
        parser.error("need --messages >= 2, --channels >= 1, --senders >= 2, --rate > 0")

    ngircd_version = subprocess.run(
        ["ngircd", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("-", 1)[0]
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(
        f"N={args.messages:,} lines per mode over R={args.channels} channels from S={args.senders} "
        f"senders; paced at {args.rate:,.0f} lines/s; modes {', '.join(modes)}; seed {args.seed}"
    )
    print(
        f"MALLOC_TOP_PAD_={MALLOC_TOP_PAD} for ngircd, bot, bare client and load generator; "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"Python {sys.version.split()[0]}, irc {version('irc')}, {ngircd_version.strip()}"
    )
    print(
        "bot: Runtime + IRC adapter (flood_burst 100, flood_rate 100 lines/s: ngircd's penalty is "
        "off), rules minor_whereabouts + a counting rule, SQLite store, structlog at warning "
        "(JSON to a file; one line per alert)"
    )

    work = Path(tempfile.mkdtemp(prefix="irc-throughput-"))
    server = Ngircd(work)
    runs: list[ModeRun] = []
    try:
        server.start()
        print(f"ngircd on {HOST}:{server.port} (pid {server.proc.pid if server.proc else '?'})")
        for mode in modes:
            print(f"running {mode} ...", flush=True)
            runs.append(asyncio.run(run_mode(args, server, mode, work)))
        print_table(runs, args)
        print_details(runs)
        if args.profile:
            print_profile(runs)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
