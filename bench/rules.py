"""CPU cost of the ``minor_whereabouts`` rule on realistic chat, and its worst case on hostile lines.

    .venv/bin/python bench/rules.py [--messages 200000] [--seed 7]

A seeded synthetic stream (English and some French chat: gaming, school, music, sport, emojis,
URLs, typos; ~1% whereabouts requests, ~0.5% age statements) over 50 rooms of 40 users each, 20%
of them declared for minors, goes through (a) a single-regex baseline, (b) the full pipeline and
(c) the rule called directly, each on one core (``time.process_time``). Then single hostile
messages are timed through the pipeline, each in a child process so a pathological case cannot
hang the run. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.queues
import queue
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from presencebot.config import Audience
from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, RoomId
from presencebot.pipeline import Pipeline
from presencebot.rooms import RoomContext
from presencebot.rule import CheckResult, Finding, Flag, Observe, RoomSettingsView

ROOMS = 50
USERS_PER_ROOM = 40
MINORS_SHARE = 0.2
MEAN_GAP_SECONDS = 0.05
REQUEST_SHARE = 0.01
AGE_SHARE = 0.005
START = datetime(2024, 5, 4, 16, 0, tzinfo=UTC)
RULE_ID = "minor_whereabouts"
GOAL_MS = 5.0
WORST_RUNS = 20
WORST_CASE_TIMEOUT_S = 10.0
HOSTILE_CHARS = 64 * 1024

ORDINARY_EN = [
    "anyone up for minecraft later",
    "lol same",
    "my mum made pancakes 🥞",
    "what level are you",
    "did u see the match last nite",
    "brb dinner",
    "that song is soooo good 🔥🔥",
    "who wants to play roblox",
    "i got a new skin!!",
    "homework is so boring 😴",
    "haha",
    "gg",
    "gg {nick}",
    "the server is lagging again",
    "check this out https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "new map looks sick https://imgur.com/a/Xk3fP2q",
    "where is the boss in level 4",
    "what time does the stream start",
    "meet me in the lobby",
    "{nick} ur so good at this",
    "lmaooo 😂😂😂",
    "teh teacher gave us sooo much homwork",
    "who won the football yesterday",
    "arsenal lost again smh",
    "i scored 2 goals at practice today ⚽",
    "is anyone else getting error 403",
    "my little brother broke my controller 😭",
    "taylor swift tickets sold out in like 5 min",
    "listening to billie eilish rn 🎧",
    "does anyone know how to beat the ender dragon",
    "can u send the link again {nick}",
    "omg yes",
    "nope",
    "idk tbh",
    "wait what",
    "afk 5 min",
    "back",
    "who's on fortnite tonight",
    "my wifi is trash today",
    "we have a maths test tomorrow 😬",
    "science project is due friday",
    "basketball tryouts went ok i think",
    "i hate mondays",
    "the new update broke everything lol",
    "type !help for commands",
    "{nick} did u finish the quest",
    "i'm building a castle in creative",
    "anyone watched the new spiderman",
    "swimming at 6am is pain 🏊",
    "my cat just walked on my keyboard jjjjjjjjj",
    "hahahahahha no way",
    "ok but pineapple on pizza is good 🍍🍕",
    "pls dont spam the chat",
    "i dropped my phone in the bath 💀",
    "it's raining again 🌧️",
    "can someone help me with fractions",
    "the wifi password is on the fridge lol",
    "nice one {nick} 👍",
    "who's the best youtuber",
    "gonna go play outside brb",
    "cant wait for the summer holidays ☀️",
    "ur cheating {nick} 😤",
]
ORDINARY_FR = [
    "salut tout le monde",
    "mdr",
    "qui joue à fortnite ce soir ?",
    "j'ai trop de devoirs 😩",
    "t'as vu le match hier ?",
    "le prof de maths est relou",
    "trop bien cette chanson 🎶",
    "je reviens, je mange",
    "quelqu'un a un code promo https://www.example.fr/promo",
    "ptdr {nick} t'es nul",
    "c'est quoi ton niveau",
    "jsp",
    "ouais grave",
    "bonne nuit 😴",
    "le serveur bug encore",
    "j'ai gagné 3 parties d'affilée 🏆",
    "on a contrôle de français demain",
    "psg a gagné !!! ⚽",
    "tkt c'est rien",
    "qq1 sait comment on craft une selle",
    "{nick} tu m'envoies le lien stp",
    "j'adore ce jeu",
    "il fait trop chaud aujourd'hui ☀️",
]
REQUESTS_EN = [
    "{nick} where do u live",
    "{nick} what school do u go to",
    "{nick} whats ur postcode",
    "@{nick} wanna meet up saturday",
    "{nick}: where u from",
    "which town r u in {nick}",
    "where do you live {nick}?",
    "{nick} what's your address",
    "{nick} u go to st marys?",
    "can we meet at the park after school {nick}",
    "{nick} whats ur street called",
    "where abouts do u live",
    "{nick} send me ur location",
]
REQUESTS_FR = [
    "{nick} t'habites où",
    "{nick} tu vas dans quel collège",
    "@{nick} on se voit samedi ?",
    "t'habites dans quelle ville {nick}",
    "{nick} c'est quoi ton adresse",
]
AGES_EN = ["im {age}", "i'm {age}", "im {age} lol", "year {year}", "i'm in year {year}", "im {age} btw"]
AGES_FR = ["j'ai {age} ans", "jai {age} ans", "je suis en 5ème"]
NAMES = [
    "lily", "max", "sam", "zoe", "leo", "mia", "noah", "emma", "jake", "ava", "ollie", "ruby",
    "finn", "isla", "theo", "chloe", "lucas", "ines", "hugo", "lea", "jade", "nathan", "manon",
    "enzo", "sofia", "alfie", "grace", "harry", "amira", "kai", "blaze", "shadow", "pixel",
    "creeper", "ninja", "dragon", "star", "frosty", "turbo", "sparkle",
]  # fmt: skip
BASELINE = re.compile(
    r"where (?:do|d) (?:u|you) live|what school|whats? ur postcode|meet ?up|where u from|which town"
    r"|address|ur location|ur street|t'?habites? (?:o[uù]|dans)|quel coll[eè]ge|ton adresse|on se voit"
)


@dataclass(slots=True)
class RoomPlan:
    ref: RoomRef
    settings: RoomSettingsView
    users: list[Author]
    french: float
    speakers: deque[Author]


def _plan_rooms(rng: random.Random) -> list[RoomPlan]:
    plans: list[RoomPlan] = []
    minors_every = round(1 / MINORS_SHARE)
    for i in range(ROOMS):
        nicks: set[str] = set()
        while len(nicks) < USERS_PER_ROOM:
            base = rng.choice(NAMES)
            suffix = rng.choice(
                ["", "", str(rng.randrange(1, 99)), "_", "xx", str(rng.randrange(2008, 2016))]
            )
            nicks.add(base + suffix)
        users = [Author(n, AccountId(f"{n}@{i}") if rng.random() < 0.7 else None) for n in sorted(nicks)]
        audience = Audience.MINORS if i % minors_every == 0 else Audience.GENERAL
        french = i % 6 == 5
        settings = RoomSettingsView(audience=audience, language="fr" if french else "en", rules=(RULE_ID,))
        ref = RoomRef("bench", RoomId(f"#room{i:02d}"))
        plans.append(RoomPlan(ref, settings, users, 0.7 if french else 0.1, deque(maxlen=8)))
    return plans


def stream(n: int, seed: int) -> tuple[list[Message], dict[RoomRef, RoomSettingsView], dict[str, int]]:
    """``n`` messages, the rooms' settings, and how many of each kind were generated."""
    rng = random.Random(seed)
    plans = _plan_rooms(rng)
    weights = [1 / (k + 1) ** 0.8 for k in range(USERS_PER_ROOM)]  # a few chatty users, many quiet
    kinds = {"ordinary": 0, "request": 0, "age": 0}
    out: list[Message] = []
    seconds = 0.0
    for _ in range(n):
        seconds += rng.expovariate(1 / MEAN_GAP_SECONDS)
        plan = rng.choice(plans)
        author = rng.choices(plan.users, weights)[0]
        others = [a for a in plan.speakers if a != author] or [u for u in plan.users if u != author]
        other = rng.choice(others)
        french = rng.random() < plan.french
        reply_to: Author | None = None
        roll = rng.random()
        if roll < AGE_SHARE:
            kinds["age"] += 1
            template = rng.choice(AGES_FR if french else AGES_EN)
            text = template.format(age=rng.randrange(9, 17), year=rng.randrange(5, 11))
        elif roll < AGE_SHARE + REQUEST_SHARE:
            kinds["request"] += 1
            template = rng.choice(REQUESTS_FR if french else REQUESTS_EN)
            if rng.random() < 0.1:  # a protocol reply: the nick is not in the text
                reply_to = other
                text = template.replace("@{nick}", "").replace("{nick}:", "").replace("{nick}", "")
                text = " ".join(text.split())
            else:
                text = template.format(nick=other.nick.lower() if rng.random() < 0.5 else other.nick)
        else:
            kinds["ordinary"] += 1
            text = rng.choice(ORDINARY_FR if french else ORDINARY_EN).format(nick=other.nick)
        plan.speakers.append(author)
        at = START + timedelta(seconds=seconds)
        out.append(Message(plan.ref, author, text, at=at, reply_to=reply_to))
    return out, {p.ref: p.settings for p in plans}, kinds


def _rooms(settings: dict[RoomRef, RoomSettingsView]) -> dict[RoomRef, RoomContext]:
    return {ref: RoomContext(ref, s) for ref, s in settings.items()}


def run_baseline(messages: list[Message]) -> tuple[float, int]:
    search = BASELINE.search
    started = time.process_time()
    hits = sum(1 for m in messages if search(m.text.casefold()))
    return time.process_time() - started, hits


async def _drive(pipeline: Pipeline, messages: list[Message], rooms: dict[RoomRef, RoomContext]) -> int:
    flags = 0
    for m in messages:
        flags += len(await pipeline.process(m, rooms[m.room]))
    return flags


def run_pipeline(
    messages: list[Message], settings: dict[RoomRef, RoomSettingsView]
) -> tuple[float, int, Pipeline]:
    from presencebot.rules.minor_whereabouts import RULE

    pipeline = Pipeline([RULE])
    rooms = _rooms(settings)

    async def timed() -> tuple[float, int]:
        started = time.process_time()
        flags = await _drive(pipeline, messages, rooms)
        return time.process_time() - started, flags

    seconds, flags = asyncio.run(timed())
    return seconds, flags, pipeline


def _findings(result: CheckResult) -> list[Finding]:
    if isinstance(result, Awaitable):
        raise TypeError("the rule became async; call it through the pipeline")
    return list(result or ())


def run_direct(messages: list[Message], settings: dict[RoomRef, RoomSettingsView]) -> tuple[float, int]:
    """The rule without the pipeline: add, check, apply observations (so ages are tracked)."""
    from presencebot.rules.minor_whereabouts import RULE

    rooms = _rooms(settings)
    check = RULE.check
    flags = 0
    started = time.process_time()
    for m in messages:
        room = rooms[m.room]
        room.add(m)
        for finding in _findings(check(m, room)):
            if isinstance(finding, Flag):
                flags += 1
            elif isinstance(finding, Observe):
                room.observe(finding, m)
    return time.process_time() - started, flags


def run_add_only(messages: list[Message], settings: dict[RoomRef, RoomSettingsView]) -> float:
    rooms = _rooms(settings)
    started = time.process_time()
    for m in messages:
        rooms[m.room].add(m)
    return time.process_time() - started


# --- worst case ----------------------------------------------------------------------------------


def _random_letters() -> str:
    rng = random.Random(1)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz     ") for _ in range(HOSTILE_CHARS))


def _repeat(unit: str) -> str:
    return (unit * (HOSTILE_CHARS // len(unit) + 1))[:HOSTILE_CHARS]


HOSTILE: dict[str, Callable[[], str]] = {
    "64 KiB random letters+spaces": _random_letters,
    "64 KiB 'where do u live ' x N": lambda: _repeat("where do u live "),
    "'a' + 10,000 combining marks": lambda: "a" + "\u0301" * 10_000,
    "64 KiB 'a.d.d.r.e.s.s ' x N": lambda: _repeat("a.d.d.r.e.s.s "),
    "64 KiB one emoji x N": lambda: "😀" * HOSTILE_CHARS,
    "64 KiB letters + zero-width sp": lambda: _repeat("a\u200b"),
}


async def _worst_runs(text: str, runs: int, out: multiprocessing.queues.Queue[float]) -> None:
    from presencebot.rules.minor_whereabouts import RULE

    ref = RoomRef("bench", RoomId("#worst"))
    lily, max_ = Author("lily", AccountId("lily")), Author("max", AccountId("max"))
    for i in range(runs):
        pipeline = Pipeline([RULE])
        room = RoomContext(ref, RoomSettingsView(rules=(RULE_ID,)))
        at = START + timedelta(hours=i)
        for who, said in ((lily, "hi"), (max_, "hey lily"), (lily, "im 12"), (max_, "cool")):
            at += timedelta(seconds=5)
            await pipeline.process(Message(ref, who, said, at=at), room)
        hostile = Message(ref, max_, text, at=at + timedelta(seconds=5))
        started = time.perf_counter()
        await pipeline.process(hostile, room)
        out.put(time.perf_counter() - started)


def _worst_worker(case: str, runs: int, out: multiprocessing.queues.Queue[float]) -> None:
    _quiet()
    asyncio.run(_worst_runs(HOSTILE[case](), runs, out))


def run_worst(case: str) -> tuple[list[float], bool]:
    """Per-run seconds for ``case``, and whether the child was stopped at the timeout."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.queues.Queue[float] = ctx.Queue()
    child = ctx.Process(target=_worst_worker, args=(case, WORST_RUNS, out), daemon=True)
    child.start()
    deadline = time.monotonic() + WORST_CASE_TIMEOUT_S
    times: list[float] = []
    while len(times) < WORST_RUNS:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            times.append(out.get(timeout=min(left, 0.5)))
        except queue.Empty:
            if not child.is_alive() and out.empty():
                break
    timed_out = len(times) < WORST_RUNS and child.is_alive()
    if child.is_alive():
        child.terminate()
    child.join()
    return times, timed_out


# --- output --------------------------------------------------------------------------------------


def _quiet() -> None:
    """Overruns and rule errors are counted in ``Pipeline.stats``; keep them off the terminal."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def _row(name: str, seconds: float, n: int, base: float, count: str) -> str:
    rate = n / seconds if seconds > 0 else float("inf")
    ratio = seconds / base if base > 0 else float("inf")
    return f"{name:<28}{rate:>12,.0f}{seconds / n * 1e6:>10.2f}{ratio:>10.1f}x  {count}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    _quiet()

    messages, settings, kinds = stream(args.messages, args.seed)
    n = len(messages)
    minors = sum(s.audience is Audience.MINORS for s in settings.values())
    span = (messages[-1].at - messages[0].at).total_seconds() if messages else 0.0
    print(
        f"messages {n:,} (seed {args.seed}) over {len(settings)} rooms x {USERS_PER_ROOM} users, "
        f"{minors} rooms for minors; {kinds['request']:,} requests, {kinds['age']:,} age statements; "
        f"{span:,.0f} s of chat"
    )
    base_s, hits = run_baseline(messages)
    pipe_s, flags, pipeline = run_pipeline(messages, settings)
    direct_s, direct_flags = run_direct(messages, settings)
    add_s = run_add_only(messages, settings)
    stats = pipeline.stats[RULE_ID]

    print(f"\n{'one core, process_time':<28}{'msg/s':>12}{'us/msg':>10}{'vs base':>11}  count")
    print(_row("(a) baseline: one regex", base_s, n, base_s, f"{hits:,} hits"))
    print(_row("(b) pipeline.process", pipe_s, n, base_s, f"{flags:,} flags"))
    print(_row("(c) RULE.check direct", direct_s, n, base_s, f"{direct_flags:,} flags"))
    print(_row("    of which room.add", add_s, n, base_s, ""))
    print(
        f"pipeline overhead over (c): {(pipe_s - direct_s) / n * 1e6:.2f} us/msg; "
        f"rule stats: calls {stats.calls:,}, errors {stats.errors}, overruns {stats.overruns}, "
        f"{stats.seconds / max(stats.calls, 1) * 1e6:.2f} us/call (perf_counter)"
    )

    print(
        "\nworst case, one message through the pipeline, room where lily said 'im 12' "
        f"(goal < {GOAL_MS:g} ms)"
    )
    print(f"{'input':<32}{'best ms':>10}{'worst ms':>10}{'runs':>6}  goal")
    for case in HOSTILE:
        times, timed_out = run_worst(case)
        if not times:
            print(f"{case:<32}{'-':>10}{'-':>10}{0:>6}  TIMEOUT (> {WORST_CASE_TIMEOUT_S:g} s)")
            continue
        best, worst = min(times) * 1e3, max(times) * 1e3
        verdict = "ok" if worst < GOAL_MS else "MISSED"
        if timed_out:
            verdict += f", stopped at {WORST_CASE_TIMEOUT_S:g} s"
        print(f"{case:<32}{best:>10.2f}{worst:>10.2f}{len(times):>6}  {verdict}")


if __name__ == "__main__":
    main()
