"""The rule pipeline: one message in, flags out. The live bot and ``presencebot eval`` share it.

Each rule is isolated: one that raises, or overruns its time budget, is logged and counted and
the others still run. Async rules are cancelled at the budget; a synchronous rule cannot be
pre-empted without a thread per message, so it is timed, and an overrun is logged and counted
while its findings are kept (dropping a real flag would be worse than a slow rule).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import structlog

from presencebot import metrics
from presencebot.events import Message
from presencebot.rooms import RoomContext
from presencebot.rule import Finding, Flag, Observe, Rule, RuleResult

log = structlog.get_logger("presencebot.pipeline")


@dataclass(slots=True)
class RuleStats:
    """Per-rule counters, for logs now and metrics later."""

    calls: int = 0
    flags: int = 0
    errors: int = 0
    overruns: int = 0
    seconds: float = 0.0


class Pipeline:
    def __init__(self, rules: Sequence[Rule], *, time_budget: float = 0.05) -> None:
        self.rules = {r.id: r for r in rules}
        if len(self.rules) != len(rules):
            raise ValueError("two rules share one id")
        self.time_budget = time_budget
        self.stats = {r.id: RuleStats() for r in rules}

    async def process(self, message: Message, room: RoomContext) -> list[Flag]:
        """Remember ``message`` in ``room``, run the room's enabled rules, return their flags.

        Rules also see history messages, so that what was said before the bot joined (an age)
        still counts; only flags on history are dropped.
        """
        room.add(message)
        flags: list[Flag] = []
        observations: list[Observe] = []
        for rule_id in room.settings.rules:
            rule = self.rules.get(rule_id)
            if rule is None:
                continue
            for finding in await self._run(rule, message, room):
                if isinstance(finding, Flag):
                    flags.append(
                        replace(
                            finding,
                            rule_id=rule.id,
                            rule_version=rule.version,
                            message=message.id,
                            requester=finding.requester or message.author,
                        )
                    )
                elif isinstance(finding, Observe):
                    observations.append(finding)
        for observation in observations:
            room.observe(observation, message)
        # History (a replayed backlog) informs what we know, but was not said in our presence:
        # it is never flagged as if it were live.
        return [] if message.is_history else flags

    async def _run(self, rule: Rule, message: Message, room: RoomContext) -> list[Finding]:
        stats = self.stats[rule.id]
        stats.calls += 1
        started = time.perf_counter()
        try:
            result = rule.check(message, room)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.time_budget)
            findings = _materialise(result)
        except TimeoutError:
            stats.overruns += 1
            log.warning("rule.timeout", rule=rule.id, budget_ms=self.time_budget * 1000)
            return []
        except Exception:
            stats.errors += 1
            log.exception("rule.error", rule=rule.id, event_id=message.id)
            return []
        finally:
            elapsed = time.perf_counter() - started
            stats.seconds += elapsed
            metrics.RULE_SECONDS.labels(rule.id).observe(elapsed)
        if elapsed > self.time_budget:
            stats.overruns += 1
            log.warning(
                "rule.overrun",
                rule=rule.id,
                ms=round(elapsed * 1000, 2),
                budget_ms=self.time_budget * 1000,
            )
        stats.flags += sum(isinstance(f, Flag) for f in findings)
        return findings


def _materialise(result: RuleResult) -> list[Finding]:
    """Exhaust a rule's result here, so that a generator that raises half-way is isolated too."""
    if result is None:
        return []
    if not isinstance(result, Iterable):
        raise TypeError(f"a rule must return an iterable of findings, not {type(result).__name__}")
    findings = list(result)
    for finding in findings:
        if not isinstance(finding, Flag | Observe):
            raise TypeError(f"a rule yielded {type(finding).__name__}, not a Flag or Observe")
    return findings
