"""Follow-the-sun roster: validation, local-time windows across DST, exact gaps, and the check report.

2026 transitions used below (UTC instants): New York and Toronto spring forward on 8 March at 07:00
and fall back on 1 November at 06:00; London on 29 March and 25 October at 01:00; Sydney falls
back on 5 April (4 April 16:00 UTC) and springs forward on 4 October (3 October 16:00 UTC).
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from presencebot.roster import MAX_PROBLEM_LINES, WEEKDAYS, DutyWindow, Force, Roster, RosterConfig

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
MICRO = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(start: str, end: str, days: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"start": start, "end": end}
    if days is not None:
        spec["days"] = days
    return spec


def force(name: str, zone: str, *windows: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "timezone": zone, "windows": list(windows), "sinks": [f"{name}-duty"]}


def roster(*forces: dict[str, Any], now: datetime | None = None) -> Roster:
    config = RosterConfig.model_validate({"forces": list(forces)})
    return Roster(config, clock=lambda: now or utc(2026, 6, 1))


def names(forces: list[Force]) -> list[str]:
    return [f.name for f in forces]


def tight_roster(toronto_end: str = "01:00") -> Roster:
    """Seamless in January and July: Toronto hands over to London at 06:00 UTC in winter and 05:00
    UTC in summer. In the weeks when Toronto is already on summer time and London is not, Toronto
    stops at 05:00 UTC and London starts at 06:00: a one-hour hole. Sydney's boundaries are padded
    so that none of its clock changes opens a hole."""
    return roster(
        force("uk", "Europe/London", window("06:00", "12:00")),
        force("us", "America/New_York", window("07:00", "13:00")),
        force("au", "Australia/Sydney", window("03:00", "11:00")),
        force("ca", "America/Toronto", window("19:00", toronto_end)),
    )


EXAMPLE_TOML = """
[[roster.forces]]
name = "au"
timezone = "Australia/Sydney"
sinks = ["au-duty"]
supervisors = ["au-inspector"]
[[roster.forces.windows]]
start = "07:00"
end = "18:00"

[[roster.forces]]
name = "uk"
timezone = "Europe/London"
sinks = ["uk-duty"]
supervisors = ["uk-inspector"]
[[roster.forces.windows]]
start = "06:00"
end = "13:00"

[[roster.forces]]
name = "us"
timezone = "America/New_York"
sinks = ["us-duty"]
[[roster.forces.windows]]
start = "07:00"
end = "13:00"

[[roster.forces]]
name = "ca"
timezone = "America/Toronto"
sinks = ["ca-duty"]
[[roster.forces.windows]]
start = "12:00"
end = "18:00"
"""


def example_roster(now: datetime | None = None) -> Roster:
    config = RosterConfig.model_validate(tomllib.loads(EXAMPLE_TOML)["roster"])
    return Roster(config, clock=lambda: now or utc(2026, 6, 1))


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("7:00", "09:00", "'7:00' is not a time of day written HH:MM"),
        ("07:00:00", "09:00", "is not a time of day written HH:MM"),
        ("24:00", "09:00", "'24:00' is not a time of day from 00:00 to 23:59"),
        ("07:60", "09:00", "from 00:00 to 23:59"),
        ("07:00", "24:01", "'24:01' is not a time of day from 00:00 to 24:00"),
        ("08:00", "08:00", "start and end are both 08:00"),
        ("00:00", "00:00", "a whole day is written"),
        ("00:00", "24:00", None),
        ("22:00", "06:00", None),
    ],
)
def test_window_times_are_validated(start: str, end: str, message: str | None) -> None:
    if message is None:
        DutyWindow(start=start, end=end)
        return
    with pytest.raises(ValidationError, match=message):
        DutyWindow(start=start, end=end)


def test_window_defaults_and_lengths() -> None:
    overnight = DutyWindow(start="22:00", end="06:00")
    assert overnight.days == list(WEEKDAYS)
    assert overnight.weekdays == frozenset(range(7))
    assert overnight.offset == timedelta(hours=22)
    assert overnight.duration == timedelta(hours=8)
    assert DutyWindow(start="00:00", end="24:00").duration == timedelta(hours=24)
    assert DutyWindow(start="18:00", end="00:00").duration == timedelta(hours=6)
    assert DutyWindow(start="01:00", end="00:59", days=["sun"]).weekdays == frozenset({6})
    with pytest.raises(ValidationError, match="days"):
        DutyWindow(start="01:00", end="02:00", days=[])
    with pytest.raises(ValidationError):
        DutyWindow.model_validate({"start": "01:00", "end": "02:00", "days": ["monday"]})


@pytest.mark.parametrize(
    "zone", ["Europe/Londn", "europe/london", "", "America", "../etc/passwd", "localtime"]
)
def test_unknown_zone_is_named_in_the_error(zone: str) -> None:
    with pytest.raises(ValidationError) as info:
        Force.model_validate(force("uk", zone, window("08:00", "20:00")))
    assert repr(zone) in str(info.value)


def test_force_and_roster_shape() -> None:
    good = force("uk", "Europe/London", window("08:00", "20:00"))
    assert Force.model_validate(good).zone == LONDON
    for bad in (
        {**good, "windows": []},
        {**good, "sinks": []},
        {**good, "sinks": ["Bad Name"]},
        {**good, "supervisors": [""]},
        {**good, "name": "UK"},
        {**good, "colour": "blue"},
    ):
        with pytest.raises(ValidationError):
            Force.model_validate(bad)
    with pytest.raises(ValidationError, match="force 'uk' is listed twice"):
        RosterConfig.model_validate({"forces": [good, good]})
    assert RosterConfig().forces == []


# --- on_duty -----------------------------------------------------------------------------------


def test_window_edges_follow_the_local_clock() -> None:
    uk = roster(force("uk", "Europe/London", window("08:00", "20:00")))
    # January: London is on GMT.
    assert uk.on_duty(utc(2026, 1, 15, 8) - MICRO) == []
    assert names(uk.on_duty(utc(2026, 1, 15, 8))) == ["uk"]
    assert names(uk.on_duty(utc(2026, 1, 15, 20) - MICRO)) == ["uk"]
    assert uk.on_duty(utc(2026, 1, 15, 20)) == []
    # July: BST, so the same window is an hour earlier in UTC; any aware zone may be asked.
    assert uk.on_duty(utc(2026, 7, 15, 7) - MICRO) == []
    assert names(uk.on_duty(datetime(2026, 7, 15, 3, tzinfo=NEW_YORK))) == ["uk"]
    assert uk.on_duty(utc(2026, 7, 15, 19)) == []
    with pytest.raises(ValueError, match="aware"):
        uk.on_duty(datetime(2026, 7, 15, 12))


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    nights = roster(force("n", "Etc/UTC", window("22:00", "06:00", days=["fri"])))
    friday = utc(2026, 1, 16)
    assert names(nights.on_duty(friday + timedelta(hours=22))) == ["n"]
    assert names(nights.on_duty(friday + timedelta(hours=30) - MICRO)) == ["n"]  # Saturday 05:59
    assert nights.on_duty(friday + timedelta(hours=30)) == []
    assert nights.on_duty(friday + timedelta(hours=5)) == []  # Thursday's night is not worked
    assert nights.on_duty(friday - timedelta(hours=1)) == []
    assert nights.gaps(friday, friday + timedelta(days=2)) == [
        (friday, friday + timedelta(hours=22)),
        (friday + timedelta(hours=30), friday + timedelta(days=2)),
    ]


def test_round_the_clock_force_has_no_gap_through_any_clock_change() -> None:
    for zone in ("Europe/London", "America/New_York", "America/Toronto", "Australia/Sydney"):
        always = roster(force("x", zone, window("00:00", "24:00")))
        assert always.gaps(utc(2026, 1, 1), utc(2028, 1, 1)) == [], zone
        assert always.coverage_problems() == []
        for instant in (utc(2026, 3, 8, 7), utc(2026, 3, 29, 1), utc(2026, 10, 3, 16), utc(2026, 11, 1, 6)):
            assert names(always.on_duty(instant)) == ["x"]
            assert names(always.on_duty(instant - MICRO)) == ["x"]


def test_window_starting_in_the_skipped_hour_starts_when_the_clock_jumps() -> None:
    # London, 29 March 2026: 01:00 GMT (01:00 UTC) becomes 02:00 BST; 01:00-02:00 never happens.
    early = roster(force("uk", "Europe/London", window("01:30", "03:00", days=["sun"])))
    day = utc(2026, 3, 29)
    assert early.on_duty(utc(2026, 3, 29, 1) - MICRO) == []
    assert names(early.on_duty(utc(2026, 3, 29, 1))) == ["uk"]
    assert names(early.on_duty(utc(2026, 3, 29, 2) - MICRO)) == ["uk"]  # 02:59:59 BST
    assert early.on_duty(utc(2026, 3, 29, 2)) == []
    assert early.gaps(day, day + timedelta(days=1)) == [
        (day, utc(2026, 3, 29, 1)),
        (utc(2026, 3, 29, 2), day + timedelta(days=1)),
    ]
    # A window lying wholly inside the skipped hour does not happen that day.
    lost = roster(force("uk", "Europe/London", window("01:15", "01:45", days=["sun"])))
    assert lost.gaps(day, day + timedelta(days=1)) == [(day, day + timedelta(days=1))]
    # New York, 8 March 2026: 02:00 EST (07:00 UTC) becomes 03:00 EDT.
    ny = roster(force("us", "America/New_York", window("02:30", "04:00")))
    assert ny.on_duty(utc(2026, 3, 8, 7) - MICRO) == []
    assert names(ny.on_duty(utc(2026, 3, 8, 7))) == ["us"]
    assert ny.on_duty(utc(2026, 3, 8, 8)) == []


def test_an_instant_given_as_a_nonexistent_local_time_uses_the_offset_before_the_jump() -> None:
    uk = roster(force("uk", "Europe/London", window("02:00", "03:00")))
    # 01:30 on 29 March does not exist in London; fold=0 reads it as GMT, i.e. 01:30 UTC = 02:30 BST.
    assert names(uk.on_duty(datetime(2026, 3, 29, 1, 30, tzinfo=LONDON))) == ["uk"]
    assert uk.on_duty(datetime(2026, 3, 29, 1, 30, fold=1, tzinfo=LONDON)) == []  # 00:30 UTC


def test_repeated_hour_is_covered_at_both_occurrences() -> None:
    # London, 25 October 2026: 02:00 BST (01:00 UTC) becomes 01:00 GMT; 01:00-02:00 happens twice.
    half = roster(force("uk", "Europe/London", window("01:00", "01:30", days=["sun"])))
    for fold in (0, 1):
        assert names(half.on_duty(datetime(2026, 10, 25, 1, 15, fold=fold, tzinfo=LONDON))) == ["uk"]
        assert half.on_duty(datetime(2026, 10, 25, 1, 45, fold=fold, tzinfo=LONDON)) == []
    assert half.gaps(utc(2026, 10, 24, 23), utc(2026, 10, 25, 2)) == [
        (utc(2026, 10, 24, 23), utc(2026, 10, 25, 0)),
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1)),
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2)),
    ]


def test_windows_meeting_in_the_repeated_hour_overlap_rather_than_leave_a_hole() -> None:
    pair = roster(
        force("late", "Europe/London", window("22:00", "01:30")),
        force("early", "Europe/London", window("01:30", "22:00")),
    )
    assert pair.gaps(utc(2026, 1, 1), utc(2027, 1, 1)) == []
    # 00:45 UTC is 01:45 BST, 01:15 UTC is 01:15 GMT: each belongs to the window holding its clock time.
    assert names(pair.on_duty(utc(2026, 10, 25, 0, 15))) == ["late"]
    assert names(pair.on_duty(utc(2026, 10, 25, 0, 45))) == ["early"]
    assert names(pair.on_duty(utc(2026, 10, 25, 1, 15))) == ["late"]
    assert names(pair.on_duty(utc(2026, 10, 25, 1, 45))) == ["early"]


def test_sydney_clock_changes() -> None:
    # 5 April 2026: 03:00 AEDT (16:00 UTC on the 4th) becomes 02:00 AEST, so 02:00-03:00 repeats.
    night = roster(force("au", "Australia/Sydney", window("02:15", "02:45", days=["sun"])))
    assert night.gaps(utc(2026, 4, 4, 15), utc(2026, 4, 4, 17)) == [
        (utc(2026, 4, 4, 15), utc(2026, 4, 4, 15, 15)),
        (utc(2026, 4, 4, 15, 45), utc(2026, 4, 4, 16, 15)),
        (utc(2026, 4, 4, 16, 45), utc(2026, 4, 4, 17)),
    ]
    # 4 October 2026: 02:00 AEST (16:00 UTC on the 3rd) becomes 03:00 AEDT: the window is skipped.
    assert night.gaps(utc(2026, 10, 3, 12), utc(2026, 10, 3, 20)) == [
        (utc(2026, 10, 3, 12), utc(2026, 10, 3, 20))
    ]


# --- gaps and the check report ------------------------------------------------------------------


def daily(first: datetime, count: int) -> list[tuple[datetime, datetime]]:
    return [(first + timedelta(days=n), first + timedelta(days=n, hours=1)) for n in range(count)]


def test_northern_mismatch_weeks_open_exactly_one_hour_a_day() -> None:
    holes = tight_roster().gaps(utc(2026, 1, 1), utc(2027, 1, 1))
    # 9-28 March (Toronto on EDT, London still on GMT) and 25 October-1 November (London back on
    # GMT, Toronto not yet); nothing in Sydney's change weeks (29 March-5 April, 4-25 October).
    assert holes == daily(utc(2026, 3, 9, 5), 20) + daily(utc(2026, 10, 25, 5), 8)
    late = tight_roster()
    assert late.on_duty(utc(2026, 3, 9, 5)) == []
    assert names(late.on_duty(utc(2026, 3, 9, 5) - MICRO)) == ["ca"]
    assert names(late.on_duty(utc(2026, 3, 9, 6))) == ["uk"]
    assert names(late.on_duty(utc(2026, 1, 9, 5))) == ["ca"]
    assert names(late.on_duty(utc(2026, 7, 9, 5))) == ["uk"]


def test_coverage_problems_report_the_hole_in_utc_and_local_time() -> None:
    assert tight_roster().coverage_problems(2026) == [
        "nobody on duty every day 05:00–06:00 UTC from 2026-03-09 to 2026-03-28 (20 days; "
        "05:00–06:00 Europe/London, 01:00–02:00 America/New_York, 16:00–17:00 Australia/Sydney, "
        "01:00–02:00 America/Toronto)",
        "nobody on duty every day 05:00–06:00 UTC from 2026-10-25 to 2026-10-31 (7 days; "
        "05:00–06:00 Europe/London, 01:00–02:00 America/New_York, 16:00–17:00 Australia/Sydney, "
        "01:00–02:00 America/Toronto)",
        # Toronto's clocks go back at the end of this hole, hence the abbreviations.
        "nobody on duty 2026-11-01 05:00–06:00 UTC (Sun 05:00–06:00 Europe/London, "
        "Sun 01:00 EDT–01:00 EST America/New_York, Sun 16:00–17:00 Australia/Sydney, "
        "Sun 01:00 EDT–01:00 EST America/Toronto)",
    ]


def test_coverage_problems_default_to_this_year_and_the_next() -> None:
    lines = tight_roster().coverage_problems()
    assert len(lines) == 6
    # 2027: North America changes on 14 March and 7 November, London on 28 March and 31 October.
    assert lines[3].startswith(
        "nobody on duty every day 05:00–06:00 UTC from 2027-03-15 to 2027-03-27 (13 days;"
    )
    assert lines[5].startswith("nobody on duty 2027-11-07 05:00–06:00 UTC")


def test_an_hour_of_padding_closes_the_hole() -> None:
    padded = tight_roster(toronto_end="02:00")
    assert padded.coverage_problems() == []
    assert padded.coverage_problems(2030) == []


def test_example_roster_has_no_gaps_in_any_year() -> None:
    example = example_roster()
    assert names(example.forces) == ["au", "uk", "us", "ca"]
    assert example.forces[1].supervisors == ["uk-inspector"]
    for year in range(2026, 2036):
        assert example.coverage_problems(year) == [], year


def test_weekly_holes_are_summarised_and_break_at_clock_changes() -> None:
    no_sundays = roster(force("x", "Etc/UTC", window("00:00", "24:00", days=list(WEEKDAYS[:6]))))
    assert no_sundays.coverage_problems(2026) == [
        "nobody on duty every Sunday 00:00–24:00 UTC from 2026-01-04 to 2026-12-27 "
        "(52 weeks; Sun 00:00–24:00 Etc/UTC)"
    ]
    london = roster(force("x", "Europe/London", window("00:00", "24:00", days=list(WEEKDAYS[:6]))))
    lines = london.coverage_problems(2026)
    assert len(lines) == 5
    # The Sunday of the spring change lasts 23 hours and is not a weekly repeat of anything.
    assert lines[1] == "nobody on duty 2026-03-29 00:00–23:00 UTC (Sun 00:00 GMT–Mon 00:00 BST Europe/London)"
    assert lines[2] == (
        "nobody on duty every Saturday 23:00–Sun 23:00 UTC from 2026-04-04 to 2026-10-17 "
        "(29 weeks; Sun 00:00–24:00 Europe/London)"
    )


def test_long_reports_are_cut_with_a_count() -> None:
    # Monday is worked in half-hour slices with half-hour holes between: 24 weekly holes.
    mondays = [window(f"{h:02d}:00", f"{h:02d}:30", days=["mon"]) for h in range(24)]
    rest = window("00:00", "24:00", days=list(WEEKDAYS[1:]))
    lines = roster(force("x", "Etc/UTC", *mondays, rest)).coverage_problems(2026)
    assert len(lines) == MAX_PROBLEM_LINES
    assert lines[0].startswith("nobody on duty every Monday 00:30–01:00 UTC from 2026-01-05 to 2026-12-28")
    assert lines[-1] == "… and 5 more uncovered periods"


def test_one_off_long_holes_carry_dates() -> None:
    week_off = roster(force("x", "Europe/London", window("00:00", "24:00", days=["mon"])))
    lines = week_off.coverage_problems(2026)
    assert lines[0] == (
        "nobody on duty 2026-01-01 00:00 – 2026-01-05 00:00 UTC "
        "(Thu 2026-01-01 00:00 – Mon 2026-01-05 00:00 Europe/London)"
    )


def test_gaps_edge_cases() -> None:
    nobody = roster()
    assert nobody.gaps(utc(2026, 1, 1), utc(2026, 1, 2)) == [(utc(2026, 1, 1), utc(2026, 1, 2))]
    assert nobody.coverage_problems() == []  # an empty roster means "no roster", not "a hole"
    assert nobody.on_duty(utc(2026, 1, 1)) == []
    assert nobody.gaps(utc(2026, 1, 2), utc(2026, 1, 1)) == []
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        nobody.gaps(datetime(2026, 1, 1), utc(2026, 1, 2))
    # Bounds in any zone; results in UTC.
    start = datetime(2026, 1, 1, tzinfo=SYDNEY)
    assert nobody.gaps(start, start + timedelta(hours=1)) == [(utc(2025, 12, 31, 13), utc(2025, 12, 31, 14))]


# --- next_on_duty ------------------------------------------------------------------------------


def test_next_on_duty_prefers_forces_on_duty_then_the_soonest_start() -> None:
    example = example_roster()
    au, uk, us, ca = example.forces
    # 15 January, 09:00 UTC: only London (06:00-13:00 GMT) is on duty; New York starts at 12:00
    # UTC, Toronto at 17:00, Sydney at 20:00.
    assert names(example.on_duty(utc(2026, 1, 15, 9))) == ["uk"]
    assert example.next_on_duty(utc(2026, 1, 15, 9), uk) == us
    assert example.next_on_duty(utc(2026, 1, 15, 9)) == uk
    # 12:30 UTC: London and New York overlap. Candidates rotate in config order after `after`.
    assert names(example.on_duty(utc(2026, 1, 15, 12, 30))) == ["uk", "us"]
    assert example.next_on_duty(utc(2026, 1, 15, 12, 30), uk) == us
    assert example.next_on_duty(utc(2026, 1, 15, 12, 30), us) == uk
    # 14:00 UTC: New York alone; after it, Toronto starts (17:00) before Sydney (20:00) and London.
    assert example.next_on_duty(utc(2026, 1, 15, 14), us) == ca
    assert example.next_on_duty(utc(2026, 1, 15, 21, 30), ca) == au


def test_next_on_duty_without_anyone_else() -> None:
    lone = roster(force("uk", "Europe/London", window("08:00", "09:00", days=["mon"])))
    (uk,) = lone.forces
    assert lone.next_on_duty(utc(2026, 1, 15, 12), uk) is None
    # Thursday noon: the next Monday 08:00 GMT is the soonest (and only) start.
    assert lone.next_on_duty(utc(2026, 1, 15, 12)) == uk
    assert roster().next_on_duty(utc(2026, 1, 15, 12)) is None


# --- on_duty and gaps agree ---------------------------------------------------------------------

ZONES = [
    "Europe/London",
    "America/New_York",
    "America/Toronto",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Etc/UTC",
]
TRANSITIONS = [
    utc(2026, 3, 8, 7),
    utc(2026, 3, 29, 1),
    utc(2026, 4, 4, 15),
    utc(2026, 4, 4, 16),
    utc(2026, 10, 3, 16),
    utc(2026, 10, 25, 1),
    utc(2026, 11, 1, 6),
    utc(2026, 7, 1),
]

clock_times = st.integers(0, 24 * 4 - 1).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}")
windows = st.builds(
    lambda start, end, days: window(start, end, sorted(days, key=WEEKDAYS.index)),
    clock_times,
    st.one_of(clock_times, st.just("24:00")),
    st.sets(st.sampled_from(WEEKDAYS), min_size=1),
).filter(lambda w: w["start"] != w["end"])
forces = st.builds(
    lambda n, zone, ws: force(f"f{n}", zone, *ws),
    st.integers(0, 99),
    st.sampled_from(ZONES),
    st.lists(windows, min_size=1, max_size=3),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(forces, min_size=1, max_size=3, unique_by=lambda f: f["name"]),
    st.sampled_from(TRANSITIONS),
    st.integers(-2 * 86_400, 2 * 86_400),
)
def test_on_duty_is_empty_exactly_inside_a_gap(
    specs: list[dict[str, Any]], base: datetime, seconds: int
) -> None:
    subject = roster(*specs)
    at = base + timedelta(seconds=seconds)
    lo, hi = at - timedelta(days=1), at + timedelta(days=1)
    holes = subject.gaps(lo, hi)
    assert (subject.on_duty(at) == []) == any(a <= at < b for a, b in holes)
    for a, b in holes:
        assert a < b
        assert subject.on_duty(a) == []
        assert subject.on_duty(b - MICRO) == []
        if a > lo:
            assert subject.on_duty(a - MICRO) != []
        if b < hi:
            assert subject.on_duty(b) != []
