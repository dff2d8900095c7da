"""Cron parsing and next-fire times, daylight saving time included (taskmill.cron is pure)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from taskmill.cron import Cron, local_time
from taskmill.errors import ScheduleError


def at(tz: str, year: int, month: int, day: int, *hms: int, fold: int = 0) -> float:
    """The instant of a wall-clock time in `tz` (fold=1: the second of a repeated time)."""
    hour, minute, second = (*hms, 0, 0, 0)[:3]
    wall = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz), fold=fold)
    return wall.timestamp()


def fires(expression: str, tz: str, after: float, count: int) -> list[str]:
    """The next `count` ticks after `after`, as local ISO times with their UTC offsets."""
    cron, out, tick = Cron(expression, tz), [], after
    for _ in range(count):
        found = cron.next_after(tick)
        assert found is not None
        out.append(local_time(found, tz).isoformat())
        tick = found
    return out


# -- parsing ---------------------------------------------------------------------------------


def test_fields_values_ranges_steps_lists_and_names() -> None:
    cron = Cron("*/15 9-17/4 1,15 jan-mar mon-fri")
    assert cron.seconds == {0}
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == {9, 13, 17}
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert Cron("5/20 * * * *").minutes == {5, 25, 45}
    assert Cron("* * * * 7").weekdays == Cron("* * * * sun").weekdays == {0}


def test_six_fields_put_seconds_first() -> None:
    cron = Cron("*/20 30 2 * * *")
    assert cron.seconds == {0, 20, 40}
    assert cron.minutes == {30}
    assert cron.hours == {2}


@pytest.mark.parametrize(
    ("shorthand", "expression"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_shorthands(shorthand: str, expression: str) -> None:
    after = at("UTC", 2024, 5, 17, 10, 20)
    assert fires(shorthand, "UTC", after, 3) == fires(expression, "UTC", after, 3)


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "* * * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
     "* * * * 8", "*/0 * * * *", "5-1 * * * *", "x * * * *", "@often", "1.5 * * * *"],
)  # fmt: skip
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError):
        Cron(expression)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        Cron("* * * * *", "Mars/Olympus")


# -- next fire, no clock change --------------------------------------------------------------


def test_next_is_strictly_after() -> None:
    noon = at("UTC", 2024, 5, 17, 12, 0)
    assert fires("0 12 * * *", "UTC", noon, 2) == [
        "2024-05-18T12:00:00+00:00",
        "2024-05-19T12:00:00+00:00",
    ]
    assert fires("0 12 * * *", "UTC", noon - 0.5, 1) == ["2024-05-17T12:00:00+00:00"]


def test_seconds_field() -> None:
    after = at("UTC", 2024, 5, 17, 23, 59, 50)
    assert fires("*/5 * * * * *", "UTC", after, 3) == [
        "2024-05-17T23:59:55+00:00",
        "2024-05-18T00:00:00+00:00",
        "2024-05-18T00:00:05+00:00",
    ]
    assert fires("* * * * * *", "UTC", after + 0.25, 1) == ["2024-05-17T23:59:51+00:00"]


def test_every_fifteen_minutes_in_paris() -> None:
    after = at("Europe/Paris", 2024, 5, 17, 10, 7)
    assert fires("*/15 * * * *", "Europe/Paris", after, 4) == [
        "2024-05-17T10:15:00+02:00",
        "2024-05-17T10:30:00+02:00",
        "2024-05-17T10:45:00+02:00",
        "2024-05-17T11:00:00+02:00",
    ]


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    # The 13th, or any Friday (Vixie cron): 2024-09-13 is a Friday.
    after = at("UTC", 2024, 9, 1)
    assert fires("0 0 13 * fri", "UTC", after, 4) == [
        "2024-09-06T00:00:00+00:00",
        "2024-09-13T00:00:00+00:00",
        "2024-09-20T00:00:00+00:00",
        "2024-09-27T00:00:00+00:00",
    ]
    # With `*` in one day field, the other alone decides.
    assert fires("0 0 * * fri", "UTC", after, 1) == ["2024-09-06T00:00:00+00:00"]


def test_rare_and_impossible_dates() -> None:
    assert fires("0 0 29 2 *", "UTC", at("UTC", 2024, 3, 1), 2) == [
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]
    assert Cron("0 0 31 2 *").next_after(at("UTC", 2024, 1, 1)) is None
    assert Cron("0 0 31 4,6 *").next_after(at("UTC", 2024, 1, 1)) is None


def test_ticks_between_two_instants() -> None:
    start = at("UTC", 2024, 5, 17, 10, 0)
    cron = Cron("* * * * * *")
    assert cron.ticks(start, start + 10, limit=100) == [start + i for i in range(1, 11)]
    assert cron.ticks(start, start + 10, limit=3) == [start + 8, start + 9, start + 10]
    assert cron.ticks(start, start + 0.5, limit=100) == []


# -- daylight saving time ------------------------------------------------------------------------
# Europe/Paris: 2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET.
# America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.


def test_paris_spring_a_skipped_daily_time_fires_once_after_the_jump() -> None:
    after = at("Europe/Paris", 2024, 3, 30, 12, 0)
    assert fires("30 2 * * *", "Europe/Paris", after, 3) == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    # With seconds: the same.
    assert fires("0 30 2 * * *", "Europe/Paris", after, 1) == ["2024-03-31T03:00:00+02:00"]


def test_paris_spring_several_skipped_times_fire_once_together() -> None:
    after = at("Europe/Paris", 2024, 3, 31, 1, 50)
    assert fires("*/20 2-3 * * *", "Europe/Paris", after, 3) == [
        "2024-03-31T03:00:00+02:00",  # 02:00, 02:20, 02:40 did not exist: one tick for them
        "2024-03-31T03:20:00+02:00",
        "2024-03-31T03:40:00+02:00",
    ]


def test_paris_spring_an_hour_wildcard_schedule_follows_elapsed_time() -> None:
    after = at("Europe/Paris", 2024, 3, 31, 1, 30)
    assert fires("*/30 * * * *", "Europe/Paris", after, 3) == [
        "2024-03-31T03:00:00+02:00",  # 30 minutes after 01:30 CET
        "2024-03-31T03:30:00+02:00",
        "2024-03-31T04:00:00+02:00",
    ]
    # Hourly at :07: no tick for the 02:07 that did not exist (a fixed-hour schedule has one).
    assert fires("7 * * * *", "Europe/Paris", after, 2) == [
        "2024-03-31T03:07:00+02:00",
        "2024-03-31T04:07:00+02:00",
    ]
    assert fires("7 1-3 * * *", "Europe/Paris", after, 2) == [
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:07:00+02:00",
    ]
    after = at("Europe/Paris", 2024, 3, 31, 1, 59, 30)
    assert fires("*/20 * * * * *", "Europe/Paris", after, 3) == [
        "2024-03-31T01:59:40+01:00",
        "2024-03-31T03:00:00+02:00",  # 20 seconds later
        "2024-03-31T03:00:20+02:00",
    ]


def test_paris_autumn_a_repeated_daily_time_fires_once() -> None:
    after = at("Europe/Paris", 2024, 10, 26, 12, 0)
    assert fires("30 2 * * *", "Europe/Paris", after, 2) == [
        "2024-10-27T02:30:00+02:00",  # the first 02:30 only
        "2024-10-28T02:30:00+01:00",
    ]


def test_paris_autumn_hourly_fires_in_both_occurrences_of_the_hour() -> None:
    after = at("Europe/Paris", 2024, 10, 27, 0, 30)
    assert fires("0 * * * *", "Europe/Paris", after, 4) == [
        "2024-10-27T01:00:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",  # an hour later: the hour came again
        "2024-10-27T03:00:00+01:00",
    ]


def test_new_york_spring() -> None:
    after = at("America/New_York", 2024, 3, 10, 0, 0)
    assert fires("15 1-3 * * *", "America/New_York", after, 3) == [
        "2024-03-10T01:15:00-05:00",
        "2024-03-10T03:00:00-04:00",  # 02:15 did not exist
        "2024-03-10T03:15:00-04:00",
    ]
    assert fires("30 2 * * *", "America/New_York", after, 2) == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
    ]


def test_new_york_autumn() -> None:
    after = at("America/New_York", 2024, 11, 2, 12, 0)
    assert fires("30 1 * * *", "America/New_York", after, 2) == [
        "2024-11-03T01:30:00-04:00",  # once, in EDT
        "2024-11-04T01:30:00-05:00",
    ]
    after = at("America/New_York", 2024, 11, 3, 0, 15)
    assert fires("*/30 * * * *", "America/New_York", after, 6) == [
        "2024-11-03T00:30:00-04:00",
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:00:00-05:00",
        "2024-11-03T01:30:00-05:00",
        "2024-11-03T02:00:00-05:00",
    ]


def test_new_york_autumn_from_inside_the_repeated_hour() -> None:
    second_pass = at("America/New_York", 2024, 11, 3, 1, 10, fold=1)  # 01:10 EST
    assert fires("30 1 * * *", "America/New_York", second_pass, 1) == [
        "2024-11-04T01:30:00-05:00"  # the 01:30 of today fired already, in EDT
    ]
    assert fires("*/30 * * * *", "America/New_York", second_pass, 1) == [
        "2024-11-03T01:30:00-05:00"
    ]
    first_pass = at("America/New_York", 2024, 11, 3, 1, 40)  # 01:40 EDT
    assert fires("*/30 * * * *", "America/New_York", first_pass, 1) == [
        "2024-11-03T01:00:00-05:00"  # twenty minutes later
    ]


@pytest.mark.parametrize(
    ("expression", "tz", "words"),
    [
        ("² * * * *", "UTC", "invalid minute"),  # a digit to isdigit(), not to int()
        ("*/٣ * * * *", "UTC", "invalid step"),
        ("* * * * *", "Etc", "unknown time zone"),  # a directory of the zone database
        ("* * * * *", "x" * 300, "unknown time zone"),  # a file name too long
    ],
)
def test_odd_expressions_and_zones_are_schedule_errors(
    expression: str, tz: str, words: str
) -> None:
    with pytest.raises(ScheduleError, match=words):
        Cron(expression, tz)


def test_an_expression_that_never_matches_is_refused_by_check_fires() -> None:
    with pytest.raises(ScheduleError, match="'0 0 30 2 \\*' never fires"):
        Cron("0 0 30 2 *").check_fires(0.0)
    Cron("0 0 29 2 1").check_fires(0.0)  # 29 February, or any Monday of February
