"""Prometheus metrics without a client library: a tiny registry and the text exposition format 0.0.4.

Why not ``prometheus_client``: the bot needs counters, gauges and fixed-bucket histograms rendered
as text, which is a page of code; one dependency less in a process that holds evidence.

Why no locks: every update happens on the bot's one event loop, and neither an update nor
:meth:`Registry.render` awaits, so a scrape never sees half an update. Do not update metrics from
another thread (the store's database thread never does).

Live state (rooms, the outbox) is not counted as it changes but read at scrape time by *collect
callbacks* (:meth:`Registry.add_collector`, or the ``extra`` of :meth:`Registry.scrape`), so a
gauge can never drift from the state it describes.

Room ids and nicks are never label values: they are personal data in a children's room, and one
series per room would grow without bound. Labels are config names, rule ids and states.
"""

from __future__ import annotations

import bisect
import inspect
import math
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import ClassVar, Generic, TypeVar

import structlog

from presencebot import __version__

log = structlog.get_logger("presencebot.metrics")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Collector = Callable[[], Awaitable[None] | None]
"""Run just before rendering, to fill gauges (or mirrored counters) from live state."""

LabelValues = tuple[str, ...]


# --- the text format -----------------------------------------------------------------------------
def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed are the three characters the format escapes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed only (a quote is literal there)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus parses it: ``+Inf``, ``-Inf``, ``NaN``, else a float literal."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _labels_text(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs) + "}"


def _sample(name: str, pairs: Sequence[tuple[str, str]], value: float) -> str:
    return f"{name}{_labels_text(pairs)} {format_value(value)}"


# --- children: one labelled series each ----------------------------------------------------------
class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Counters only go up; a negative amount is a bug in the caller."""
        if amount < 0:
            raise ValueError("a counter cannot decrease")
        self.value += amount

    def set_total(self, total: float) -> None:
        """Mirror a monotonic count kept elsewhere (``RuleStats``, ``Dispatcher.delivered``) at
        scrape time, rather than counting the same thing twice."""
        self.value = float(total)


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class HistogramChild:
    """Per-bucket counts (made cumulative when rendered), the sum and the count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one value; NaN is dropped (it would poison ``_sum`` for good)."""
        if math.isnan(value):
            return
        # ``le`` means less than or equal: the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> Iterator[tuple[float, int]]:
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            yield bound, running


Child = TypeVar("Child", CounterChild, GaugeChild, HistogramChild)


# --- metrics: a name, a help text and the children by label values -------------------------------
class _Metric(Generic[Child]):
    kind: ClassVar[str]
    reserved: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label in self.reserved:
                raise ValueError(f"invalid label name {label!r} for {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"repeated label name in {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._children: dict[LabelValues, Child] = {}

    def _new_child(self) -> Child:
        raise NotImplementedError

    def _key(self, values: Sequence[str], named: dict[str, str]) -> LabelValues:
        if values and named:
            raise TypeError("label values either by position or by name, not both")
        if named:
            if set(named) != set(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, not {tuple(named)}")
            values = [named[label] for label in self.labelnames]
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes {len(self.labelnames)} label values, not {len(values)}")
        return tuple(str(v) for v in values)

    def labels(self, *values: str, **named: str) -> Child:
        """The series for these label values, created (at zero) on first use."""
        key = self._key(values, named)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _unlabelled(self) -> Child:
        if self.labelnames:
            raise TypeError(f"{self.name} has labels {self.labelnames}: use .labels(...)")
        return self.labels()

    def remove(self, *values: str) -> None:
        self._children.pop(self._key(values, {}), None)

    def clear(self) -> None:
        """Drop every series: a collector refilling from live state starts here, so that a room
        or a rule that is gone does not linger with its last value."""
        self._children.clear()

    def series(self) -> Iterator[tuple[LabelValues, Child]]:
        """Children in label order, so that the output is stable from one scrape to the next."""
        for key in sorted(self._children):
            yield key, self._children[key]

    def _pairs(self, key: LabelValues) -> list[tuple[str, str]]:
        return list(zip(self.labelnames, key, strict=True))

    def _samples(self) -> Iterator[str]:
        raise NotImplementedError

    def exposition(self) -> Iterator[str]:
        yield f"# HELP {self.name} {escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self._samples()


class Counter(_Metric[CounterChild]):
    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def _samples(self) -> Iterator[str]:
        for key, child in self.series():
            yield _sample(self.name, self._pairs(key), child.value)


class Gauge(_Metric[GaugeChild]):
    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._unlabelled().set(value)

    def _samples(self) -> Iterator[str]:
        for key, child in self.series():
            yield _sample(self.name, self._pairs(key), child.value)


class Histogram(_Metric[HistogramChild]):
    kind = "histogram"
    reserved = frozenset({"le"})

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help, labelnames)
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing and not empty")
        self.buckets = bounds

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.buckets)

    def observe(self, value: float) -> None:
        self._unlabelled().observe(value)

    def _samples(self) -> Iterator[str]:
        for key, child in self.series():
            pairs = self._pairs(key)
            for bound, running in child.cumulative():
                yield _sample(f"{self.name}_bucket", [*pairs, ("le", format_value(bound))], running)
            yield _sample(f"{self.name}_sum", pairs, child.sum)
            yield _sample(f"{self.name}_count", pairs, child.count)


Metric = Counter | Gauge | Histogram
M = TypeVar("M", Counter, Gauge, Histogram)


# --- the registry --------------------------------------------------------------------------------
class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._collectors: list[Collector] = []

    def register(self, metric: M) -> M:
        """Add a metric; a second one with the same name is a bug (two series would clash)."""
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets=buckets))

    def add_collector(self, collect: Collector) -> Callable[[], None]:
        """Run ``collect`` before every render; returns the function that removes it again."""
        self._collectors.append(collect)

        def remove() -> None:
            if collect in self._collectors:
                self._collectors.remove(collect)

        return remove

    async def collect(self, *extra: Collector) -> None:
        """Run the registered collectors, then ``extra``. One that fails is logged and skipped:
        a broken gauge must not cost the operator every other metric."""
        for collect in (*self._collectors, *extra):
            try:
                result = collect()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.warning("metrics.collector_failed", collector=repr(collect), exc_info=True)

    def render(self) -> str:
        """Every metric in the text exposition format 0.0.4, in registration order."""
        lines = [line for metric in self._metrics.values() for line in metric.exposition()]
        return "\n".join(lines) + "\n"

    async def scrape(self, *extra: Collector) -> str:
        await self.collect(*extra)
        return self.render()


# --- presencebot's metrics -----------------------------------------------------------------------
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds from an alert being raised to its first notice delivered: webhooks in milliseconds,
e-mail in seconds, a retried delivery in tens of seconds; past a minute is an incident anyway."""
RULE_BUCKETS = (
    *(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3),
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
"""Seconds per rule per message: a regular expression takes microseconds; the default budget is
50 ms, so the buckets above it show how far an overrunning rule goes."""

REGISTRY = Registry()

MESSAGES = REGISTRY.counter(
    "presencebot_messages_total",
    "Messages the adapters reported (live, history and direct), per network and adapter class.",
    ("network", "adapter"),
)
FLAGS = REGISTRY.counter(
    "presencebot_flags_total",
    "Flags the rules raised, history included (mirrored from the pipeline's RuleStats).",
    ("rule",),
)
RULE_ERRORS = REGISTRY.counter(
    "presencebot_rule_errors_total", "Rule calls that raised (mirrored from RuleStats).", ("rule",)
)
RULE_OVERRUNS = REGISTRY.counter(
    "presencebot_rule_overruns_total",
    "Rule calls over the time budget (mirrored from RuleStats).",
    ("rule",),
)
RULE_SECONDS = REGISTRY.histogram(
    "presencebot_rule_seconds", "Time one rule took on one message.", ("rule",), buckets=RULE_BUCKETS
)
ALERTS = REGISTRY.counter(
    "presencebot_alerts_total",
    "Alerts raised (from flags and !report), grouped and not-yet-stored ones included.",
    ("rule", "category"),
)
OUTBOX_DEPTH = REGISTRY.gauge(
    "presencebot_outbox_depth", "Outbox notifications by state, counted at scrape time.", ("state",)
)
STORE_UP = REGISTRY.gauge("presencebot_store_up", "1 if the last scrape could read the store's outbox.")
DELIVERY_SECONDS = REGISTRY.histogram(
    "presencebot_delivery_seconds",
    "From an alert being raised to its first notice delivered, per sink type (retries included).",
    ("sink",),
    buckets=DELIVERY_BUCKETS,
)
NOTIFICATIONS = REGISTRY.counter(
    "presencebot_notifications_total",
    "Notices delivered or given up as dead letters (mirrored from the dispatcher).",
    ("outcome",),
)
RECONNECTS = REGISTRY.counter(
    "presencebot_reconnects_total",
    "Connections to a network after its first one (a resumed session included).",
    ("network",),
)
ADAPTER_RESTARTS = REGISTRY.counter(
    "presencebot_adapter_restarts_total", "Adapter crashes restarted by the supervisor.", ("network",)
)
CONNECTED = REGISTRY.gauge(
    "presencebot_network_connected", "1 if the network is connected now.", ("network",)
)
ROOMS = REGISTRY.gauge(
    "presencebot_rooms", "Rooms per network by state (active: joined and badge shown).", ("network", "state")
)
LEASE_STATE = REGISTRY.gauge(
    "presencebot_lease_state",
    "1 for the current lease state of each unit of work (fleet mode), absent otherwise.",
    ("unit", "state"),
)
WORKER = REGISTRY.gauge(
    "presencebot_worker_info",
    "Always 1: the worker id that this process's log lines carry, and its version.",
    ("worker", "version"),
)


def set_lease_state(unit: str, state: str, gauge: Gauge = LEASE_STATE) -> None:
    """One series per unit at 1 (its state now): the previous state's series is removed, so that
    ``sum by (state)`` counts units and a unit is never in two states at once."""
    for key, _ in list(gauge.series()):
        if key[0] == unit:
            gauge.remove(*key)
    gauge.labels(unit, state).set(1)


def default_worker_id() -> str:
    """``host:pid``: unique among running workers, and findable on the host it names."""
    return f"{socket.gethostname()}:{os.getpid()}"


def bind_worker(worker_id: str | None = None) -> str:
    """Put ``worker`` on every log line of the current task and the tasks it creates from now on,
    and expose it as ``presencebot_worker_info``, so that logs and metrics of one worker join up.

    Call it first thing in :meth:`Runtime.run`: structlog's contextvars are copied into tasks when
    they are created, so the adapters, the dispatcher and the servers started there all inherit it.
    Returns the id bound.
    """
    worker = worker_id or default_worker_id()
    structlog.contextvars.bind_contextvars(worker=worker)
    WORKER.clear()
    WORKER.labels(worker, __version__).set(1)
    return worker
