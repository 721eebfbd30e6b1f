"""Follow-the-sun duty roster: which police force is watching at a given instant.

Forces in different countries take turns, each during duty windows written in its own wall-clock
time ("08:00-20:00 in Europe/London"), because that is how the forces plan their shifts. Alerts,
however, happen at instants, and the clocks of the four countries change on different dates: a
roster that is seamless in January can leave a one-hour hole in the weeks when London and New
York disagree about summer time. This module answers "who is on duty now" and finds those holes
exactly, so ``presencebot check`` can report them before an alert finds nobody.

Local-time semantics (one rule, used both by :meth:`Roster.on_duty` and by :meth:`Roster.gaps`):

* A window with ``days = ["mon"]``, ``start = "22:00"``, ``end = "06:00"`` has one *occurrence* per
  listed day, belonging to the day it starts on: Monday 22:00 to Tuesday 06:00 wall-clock time.
  An ``end`` earlier than ``start`` (``"00:00"`` included) crosses midnight; ``"24:00"`` ends at
  the next midnight, so ``00:00``-``24:00`` is the whole day.
* An instant is inside an occurrence when the force's wall clock at that instant reads a time in
  ``[start, end)`` of that occurrence. The clock reading ignores ``fold``, hence:

  - spring forward: a window starting (or ending) inside the skipped hour starts (ends) at the
    first valid instant after it, the moment the clock jumps; a window lying entirely inside the
    skipped hour does not happen that day;
  - fall back: every wall-clock time of the repeated hour occurs twice, and a window containing
    that time covers both occurrences (fold 0 and fold 1). So an occurrence may become two UTC
    intervals (``01:00``-``01:30`` on the London fall-back night is 00:00-00:30 UTC and
    01:00-01:30 UTC), and two windows that meet in wall-clock time (``22:00``-``01:30`` and
    ``01:30``-``09:00``) leave no hole, whatever the clocks do.

:meth:`Roster.gaps` applies that rule exactly: it splits time at each zone's UTC-offset changes,
where wall clock = UTC + a constant offset, and intersects each occurrence with each piece. No
sampling, so a hole of one minute is found as surely as a hole of one hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ABBR = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_NAME = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_ONE_DAY = timedelta(days=1)
_ONE_WEEK = timedelta(weeks=1)
_MIDNIGHT = time(0, 0)
# Zone keys that load but name the host's own zone, so a roster using them would mean different
# things on different machines.
_HOST_DEPENDENT_ZONES = frozenset({"localtime", "posixrules"})
# UTC offsets are sampled this far apart and each change is then located to the second. Real
# zones never change offset twice within a few hours; a shorter step only costs time.
_SCAN_STEP = timedelta(hours=3)
# How far ahead next_on_duty looks for a force's next start: a week, plus slack for DST and for
# windows that start on a later weekday.
_LOOKAHEAD = timedelta(days=9)
# coverage_problems prints at most this many lines, so a badly broken roster stays readable.
MAX_PROBLEM_LINES = 20

Interval = tuple[datetime, datetime]
# How a hole reads apart from its date: (UTC part, local part). Equal shapes may be summarised.
_Shape = tuple[str, str]
# A [[notify]] target's name; the same rule as NotifyConfig.name, so a typo fails at load time.
TargetName = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_clock(value: str, *, allow_24: bool) -> str:
    """Accept exactly ``HH:MM`` so that "7:00" or "07:00:30" is caught as a typo, not guessed at."""
    hours, sep, minutes = value.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"{value!r} is not a time of day written HH:MM")
    if value == "24:00" and allow_24:
        return value
    if int(hours) > 23 or int(minutes) > 59:
        limit = "00:00 to 24:00" if allow_24 else "00:00 to 23:59"
        raise ValueError(f"{value!r} is not a time of day from {limit}")
    return value


def _minutes(value: str) -> int:
    hours, _, minutes = value.partition(":")
    return int(hours) * 60 + int(minutes)


class DutyWindow(_Model):
    """Recurring local wall-clock hours during which a force is on duty."""

    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS),
        min_length=1,
        description="Weekdays on which the window starts (a window crossing midnight ends the next day).",
    )
    start: str = Field(description="Local start time, HH:MM from 00:00 to 23:59.")
    end: str = Field(
        description="Local end time, HH:MM; earlier than start crosses midnight; 24:00 ends at midnight."
    )

    @field_validator("start")
    @classmethod
    def _valid_start(cls, value: str) -> str:
        return _parse_clock(value, allow_24=False)

    @field_validator("end")
    @classmethod
    def _valid_end(cls, value: str) -> str:
        return _parse_clock(value, allow_24=True)

    @model_validator(mode="after")
    def _not_empty(self) -> DutyWindow:
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start}: a window cannot be empty, and a whole day "
                'is written start = "00:00", end = "24:00"'
            )
        return self

    @property
    def offset(self) -> timedelta:
        """Time from local midnight to the start of the window."""
        return timedelta(minutes=_minutes(self.start))

    @property
    def duration(self) -> timedelta:
        """Wall-clock length: the real length differs by the clock change on DST nights."""
        length = _minutes(self.end) - _minutes(self.start)
        return timedelta(minutes=length if length > 0 else length + 24 * 60)

    @property
    def weekdays(self) -> frozenset[int]:
        """The start days as ``date.weekday()`` numbers (Monday is 0)."""
        return frozenset(WEEKDAYS.index(day) for day in self.days)


class Force(_Model):
    """A police force taking part in the roster, with its own time zone and notification targets."""

    name: str = Field(pattern=NAME_PATTERN, description="Short id, e.g. 'uk'.")
    timezone: str = Field(description="IANA zone of the force's wall clock, e.g. 'Europe/London'.")
    windows: list[DutyWindow] = Field(min_length=1, description="When the force is on duty.")
    sinks: list[TargetName] = Field(
        min_length=1, description="Names of the [[notify]] targets that receive this force's alerts."
    )
    supervisors: list[TargetName] = Field(
        default_factory=list, description="Names of the [[notify]] targets used for escalation."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'Europe/London'"
            ) from None
        if value in _HOST_DEPENDENT_ZONES:
            raise ValueError(f"time zone {value!r} depends on the host: use an IANA name instead")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class RosterConfig(_Model):
    """The ``[roster]`` table: an empty list of forces means no roster is configured."""

    forces: list[Force] = Field(default_factory=list, description="In escalation (config) order.")

    @model_validator(mode="after")
    def _unique_names(self) -> RosterConfig:
        seen: set[str] = set()
        for force in self.forces:
            if force.name in seen:
                raise ValueError(f"force {force.name!r} is listed twice")
            seen.add(force.name)
        return self


@dataclass(frozen=True, slots=True)
class _Window:
    """A DutyWindow with its strings parsed once, for the inner loops."""

    weekdays: frozenset[int]
    offset: timedelta
    duration: timedelta

    def occurrence(self, day: date) -> tuple[datetime, datetime] | None:
        """The naive wall-clock span of the occurrence starting on ``day``, if the window runs then."""
        if day.weekday() not in self.weekdays:
            return None
        begin = datetime.combine(day, _MIDNIGHT) + self.offset
        return begin, begin + self.duration


@dataclass(frozen=True, slots=True)
class _Compiled:
    force: Force
    zone: ZoneInfo
    windows: tuple[_Window, ...]

    @classmethod
    def of(cls, force: Force) -> _Compiled:
        windows = tuple(_Window(w.weekdays, w.offset, w.duration) for w in force.windows)
        return cls(force, force.zone, windows)

    def covers(self, at: datetime) -> bool:
        """Whether the wall clock at ``at`` lies in an occurrence (of today's or yesterday's)."""
        local = at.astimezone(self.zone).replace(tzinfo=None)
        # No occurrence lasts more than 24 hours, so one starting two days ago has ended.
        for day in (local.date(), local.date() - _ONE_DAY):
            for window in self.windows:
                span = window.occurrence(day)
                if span is not None and span[0] <= local < span[1]:
                    return True
        return False

    def intervals(self, start: datetime, end: datetime) -> list[Interval]:
        """Merged UTC intervals within ``[start, end)`` when the force is on duty."""
        found: list[Interval] = []
        for seg_start, seg_end, offset in _offset_segments(self.zone, start, end):
            wall_start = (seg_start + offset).replace(tzinfo=None)
            wall_end = (seg_end + offset).replace(tzinfo=None)
            for day in _days(wall_start.date() - _ONE_DAY, wall_end.date()):
                for window in self.windows:
                    span = window.occurrence(day)
                    if span is None:
                        continue
                    # Within one segment, wall clock = UTC + offset: shift and clip.
                    lo = max((span[0] - offset).replace(tzinfo=UTC), seg_start)
                    hi = min((span[1] - offset).replace(tzinfo=UTC), seg_end)
                    if lo < hi:
                        found.append((lo, hi))
        return _merge(found)


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += _ONE_DAY


def _offset_at(zone: tzinfo, at: datetime) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset at a real instant
    return offset


def _offset_segments(
    zone: tzinfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """Split ``[start, end)`` where ``zone``'s UTC offset changes: ``(from, to, offset)`` pieces.

    ``zoneinfo`` does not expose its transitions, so the offset is sampled every ``_SCAN_STEP`` and
    each change is bisected to the second (tz transitions fall on whole seconds).
    """
    pieces: list[tuple[datetime, datetime, timedelta]] = []
    piece_start, offset = start, _offset_at(zone, start)
    cursor = start
    while cursor < end:
        step_end = min(cursor + _SCAN_STEP, end)
        if _offset_at(zone, step_end) != offset:
            change = _find_change(zone, cursor, step_end, offset)
            if change < end:
                pieces.append((piece_start, change, offset))
                piece_start, offset = change, _offset_at(zone, change)
        cursor = step_end
    pieces.append((piece_start, end, offset))
    return pieces


def _find_change(zone: tzinfo, lo: datetime, hi: datetime, offset: timedelta) -> datetime:
    """The first whole second in ``(lo, hi]`` at which the offset is no longer ``offset``."""
    low, high = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(zone, datetime.fromtimestamp(middle, UTC)) == offset:
            low = middle
        else:
            high = middle
    return max(datetime.fromtimestamp(high, UTC), lo)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _complement(covered: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
    holes: list[Interval] = []
    cursor = start
    for lo, hi in covered:
        if lo > cursor:
            holes.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < end:
        holes.append((cursor, end))
    return holes


def _utc(at: datetime, what: str) -> datetime:
    """Naive datetimes are refused: guessing their zone is how one-hour holes are made."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {at!r}")
    return at.astimezone(UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Roster:
    """Answers who is on duty, who is next, and where nobody is.

    ``clock`` supplies "now" for :meth:`coverage_problems`' default years; tests pass a fixed one.
    """

    def __init__(self, config: RosterConfig, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config
        self._forces = tuple(_Compiled.of(force) for force in config.forces)
        self._clock = clock

    @property
    def forces(self) -> list[Force]:
        return list(self.config.forces)

    def on_duty(self, at: datetime) -> list[Force]:
        """The forces whose duty window contains the instant ``at``, in config order.

        ``at`` is an instant (aware, any zone). A local time that does not exist (inside a
        skipped hour) is resolved by Python's own rules before this sees it: with ``fold=0`` it
        is read with the offset in force before the jump.
        """
        instant = _utc(at, "at")
        return [c.force for c in self._forces if c.covers(instant)]

    def next_on_duty(self, at: datetime, after: Force | None = None) -> Force | None:
        """The force to escalate to after ``after`` (or the first to alert when ``after`` is None).

        Candidates are the other forces (``after`` is matched by name), taken in config order
        starting just after ``after`` and wrapping round. The first candidate on duty at ``at``
        wins; if none is, the one whose duty starts soonest after ``at`` (ties: that same order).
        ``None`` when there is no other force, or none goes on duty within the next nine days.
        Calling it again with the answer as ``after`` walks every force on duty before anyone
        off duty.
        """
        instant = _utc(at, "at")
        candidates = self._rotation(after.name if after is not None else None)
        for candidate in candidates:
            if candidate.covers(instant):
                return candidate.force
        best: tuple[datetime, Force] | None = None
        for candidate in candidates:
            upcoming = candidate.intervals(instant, instant + _LOOKAHEAD)
            if upcoming and (best is None or upcoming[0][0] < best[0]):
                best = (upcoming[0][0], candidate.force)
        return best[1] if best is not None else None

    def _rotation(self, after: str | None) -> list[_Compiled]:
        names = [c.force.name for c in self._forces]
        first = names.index(after) + 1 if after in names else 0
        ordered = self._forces[first:] + self._forces[:first]
        return [c for c in ordered if c.force.name != after]

    def gaps(self, start: datetime, end: datetime) -> list[Interval]:
        """Merged UTC intervals within ``[start, end)`` during which nobody is on duty.

        Exact (see the module docstring), so no sampling step: ``on_duty(t)`` is empty exactly
        when ``t`` lies in one of the returned half-open intervals.
        """
        lo, hi = _utc(start, "start"), _utc(end, "end")
        if hi <= lo:
            return []
        covered = _merge(interval for c in self._forces for interval in c.intervals(lo, hi))
        return _complement(covered, lo, hi)

    def coverage_problems(self, year: int | None = None) -> list[str]:
        """Human-readable holes in the roster over whole UTC years, for ``presencebot check``.

        ``year=None`` checks this year and the next, so every DST change of every zone is seen
        once. An empty roster means "no roster" and has no problems. At most
        ``MAX_PROBLEM_LINES`` lines: holes repeating daily (for a week or more) or weekly are
        summarised, and the rest is counted in a final "… and N more" line.
        """
        if not self._forces:
            return []
        first = year if year is not None else self._clock().astimezone(UTC).year
        last = year if year is not None else first + 1
        holes = self.gaps(datetime(first, 1, 1, tzinfo=UTC), datetime(last + 1, 1, 1, tzinfo=UTC))
        zones: list[ZoneInfo] = []
        for compiled in self._forces:
            if compiled.zone not in zones:
                zones.append(compiled.zone)
        return _limit(_Describer(tuple(zones)).describe(holes))


def _limit(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_PROBLEM_LINES:
        return lines
    kept = MAX_PROBLEM_LINES - 1
    return [*lines[:kept], f"… and {len(lines) - kept} more uncovered periods"]


def _stamp(at: datetime, *, weekday: bool, dated: bool, zone_name: bool) -> str:
    parts = []
    if weekday:
        parts.append(_DAY_ABBR[at.weekday()])
    if dated:
        parts.append(at.date().isoformat())
    parts.append(f"{at:%H:%M}")
    if zone_name:
        parts.append(at.tzname() or "")
    return " ".join(parts)


def _span(lo: datetime, hi: datetime, *, weekday: bool, dated: bool, lead: bool = True) -> str:
    """``Sun 01:00–02:00``: the end shows its day only when it differs from the start's.

    Both ends carry the zone's abbreviation when the offset changes in between, since otherwise
    a hole in the repeated hour would read "01:00–01:00". ``lead=False`` omits the start's day.
    """
    abbreviate = lo.utcoffset() != hi.utcoffset()
    head = _stamp(lo, weekday=weekday and lead, dated=dated and lead, zone_name=abbreviate)
    if hi.date() == lo.date():
        return f"{head}–{_stamp(hi, weekday=False, dated=False, zone_name=abbreviate)}"
    if hi.date() == lo.date() + _ONE_DAY and hi.time() == _MIDNIGHT and not abbreviate:
        return f"{head}–24:00"
    tail = _stamp(hi, weekday=weekday, dated=dated, zone_name=abbreviate)
    return f"{head} – {tail}" if dated else f"{head}–{tail}"


@dataclass(frozen=True, slots=True)
class _Describer:
    """Turns holes into lines, folding daily and weekly repeats into one line each."""

    zones: tuple[ZoneInfo, ...]

    def local(self, hole: Interval, *, weekday: bool, dated: bool = False) -> str:
        """The hole in each force's zone; ``dated`` for one-off holes of a day or more, whose
        weekdays alone would be ambiguous."""
        parts = []
        for zone in self.zones:
            lo, hi = hole[0].astimezone(zone), hole[1].astimezone(zone)
            parts.append(f"{_span(lo, hi, weekday=weekday, dated=dated)} {zone.key}")
        return ", ".join(parts)

    def single(self, hole: Interval) -> str:
        utc = _span(hole[0], hole[1], weekday=False, dated=True)
        local = self.local(hole, weekday=True, dated=hole[1] - hole[0] >= _ONE_DAY)
        return f"nobody on duty {utc} UTC ({local})"

    def daily_shape(self, hole: Interval) -> _Shape:
        utc = _span(hole[0], hole[1], weekday=False, dated=False)
        return f"every day {utc} UTC", self.local(hole, weekday=False)

    def weekly_shape(self, hole: Interval) -> _Shape:
        utc = _span(hole[0], hole[1], weekday=True, dated=False, lead=False)
        return f"every {_DAY_NAME[hole[0].weekday()]} {utc} UTC", self.local(hole, weekday=True)

    def describe(self, holes: list[Interval]) -> list[str]:
        lines: list[tuple[datetime, str]] = []
        rest: list[Interval] = []
        for chain in _chains(holes, _ONE_DAY, self.daily_shape):
            if len(chain) >= 7:
                lines.append((chain[0][0], self.repeated(chain, self.daily_shape, "days")))
            else:
                rest.extend(chain)
        rest.sort()
        for chain in _chains(rest, _ONE_WEEK, self.weekly_shape):
            if len(chain) >= 2:
                lines.append((chain[0][0], self.repeated(chain, self.weekly_shape, "weeks")))
            else:
                lines.append((chain[0][0], self.single(chain[0])))
        return [line for _, line in sorted(lines)]

    def repeated(self, chain: list[Interval], shape: Callable[[Interval], _Shape], unit: str) -> str:
        utc, local = shape(chain[0])
        first, last = chain[0][0].date(), chain[-1][0].date()
        return f"nobody on duty {utc} from {first} to {last} ({len(chain)} {unit}; {local})"


def _chains(
    holes: list[Interval], period: timedelta, shape: Callable[[Interval], _Shape]
) -> list[list[Interval]]:
    """Group holes that repeat exactly ``period`` apart and read the same apart from the date."""
    chains: list[list[Interval]] = []
    open_chains: dict[tuple[datetime, _Shape], list[Interval]] = {}
    for hole in holes:
        key = shape(hole)
        chain = open_chains.pop((hole[0], key), None)
        if chain is None:
            chain = []
            chains.append(chain)
        chain.append(hole)
        open_chains[(hole[0] + period, key)] = chain
    return chains
