"""Messages per second through the rule pipeline, next to a single-regex baseline, on one core.

    .venv/bin/python bench/pipeline.py [--messages 200000]

The stream is mostly ordinary chat with about 1% whereabouts requests after an age statement,
spread over 50 rooms. It prints figures; it asserts nothing (goals live in the issues).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from datetime import UTC, datetime

from presencebot.events import Author, Message, RoomRef
from presencebot.ids import AccountId, RoomId
from presencebot.pipeline import Pipeline
from presencebot.rooms import RoomContext
from presencebot.rule import RoomSettingsView
from presencebot.rules.minor_whereabouts import RULE

ORDINARY = [
    "anyone up for minecraft later",
    "lol same",
    "my mum made pancakes",
    "what level are you",
    "did u see the match",
    "brb dinner",
    "that song is so good",
    "who wants to play roblox",
    "i got a new skin",
    "homework is so boring",
    "haha",
    "gg",
    "the server is lagging again",
]
REQUESTS = ["{nick} where do u live", "{nick} what school do u go to", "{nick} wanna meet up saturday"]


def stream(n: int, rooms: int, seed: int = 7) -> list[Message]:
    rng = random.Random(seed)
    refs = [RoomRef("bench", RoomId(f"#room{i}")) for i in range(rooms)]
    out = []
    start = time.time()
    for i in range(n):
        ref = rng.choice(refs)
        nick = f"user{rng.randrange(40)}"
        roll = rng.random()
        if roll < 0.005:
            text = f"im {rng.randrange(9, 16)}"
        elif roll < 0.015:
            text = rng.choice(REQUESTS).format(nick=f"user{rng.randrange(40)}")
        else:
            text = rng.choice(ORDINARY)
        out.append(Message(ref, Author(nick, AccountId(nick)), text, at=_at(start + i * 0.01)))
    return out


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def run_pipeline(messages: list[Message]) -> tuple[float, int]:
    pipeline = Pipeline([RULE])
    rooms: dict[RoomRef, RoomContext] = {}
    settings = RoomSettingsView(rules=(RULE.id,))
    flags = 0
    started = time.process_time()
    for m in messages:
        room = rooms.get(m.room)
        if room is None:
            room = rooms[m.room] = RoomContext(m.room, settings)
        flags += len(await pipeline.process(m, room))
    return time.process_time() - started, flags


def run_baseline(messages: list[Message]) -> tuple[float, int]:
    pattern = re.compile(r"where do u live|what school|meet up")
    started = time.process_time()
    hits = sum(1 for m in messages if pattern.search(m.text.casefold()))
    return time.process_time() - started, hits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rooms", type=int, default=50)
    args = parser.parse_args()
    messages = stream(args.messages, args.rooms)
    base_s, hits = run_baseline(messages)
    pipe_s, flags = asyncio.run(run_pipeline(messages))
    n = len(messages)
    print(f"messages: {n}, rooms: {args.rooms}")
    print(f"baseline (one regex):  {n / base_s:>12,.0f} msg/s  {base_s / n * 1e6:7.2f} us/msg  ({hits} hits)")
    print(
        f"pipeline (all rules):  {n / pipe_s:>12,.0f} msg/s  {pipe_s / n * 1e6:7.2f} us/msg  ({flags} flags)"
    )
    print(f"pipeline / baseline CPU per message: {pipe_s / base_s:.1f}x")


if __name__ == "__main__":
    main()
