"""Cron expressions and their next fire time, in a time zone. Pure: no I/O, no clock.

An expression has five fields (minute hour day-of-month month day-of-week) or six, a
seconds field first. Each field is `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or
a list of those; months and weekdays take names (jan, mon), Sunday is 0 or 7. As in Vixie
cron, when both day fields are restricted a day matching either of them matches. The
shorthands are @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly.

Daylight saving time. A schedule fires once per matching wall-clock time, with one rule
for each kind of schedule:

- Fixed-hour schedules (the hour field is not written with `*`, e.g. `30 2 * * *`) follow
  the wall clock. A time skipped in spring (02:30 when clocks jump from 02:00 to 03:00)
  fires once, at the first instant after the jump; several skipped times fire once
  together. A time repeated in autumn fires once, at its first occurrence.
- Hour-wildcard schedules (`*` or `*/n` in the hour field, e.g. `*/15 * * * *`) follow
  elapsed time, like Vixie cron's wildcard jobs: a skipped hour has no ticks, and a
  repeated hour has ticks in both of its occurrences, which are different instants.

Ticks are whole seconds of UNIX time. A time zone's offsets change at most once a day (no
real zone does more), which lets a search step a day at a time.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskmill.errors import ScheduleError

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name: (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}  # mon=1 .. sun=0
#: (name, lowest, highest, names) of the six fields, seconds first.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {k.lower(): v for k, v in _MONTHS.items()}),
    ("day of week", 0, 7, {k.lower(): v for k, v in _DAYS.items()}),
)
_DAY = 86400
#: How far ahead a search looks before deciding the expression never matches (31 February):
#: 29 February on a given weekday can take 28 years.
_HORIZON_YEARS = 30
_EPOCH = datetime(1970, 1, 1)


def _parse_field(text: str, index: int) -> frozenset[int]:
    name, low, high, names = _FIELDS[index]
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.lower()
        if token in names:
            return names[token]
        if not (token.isascii() and token.isdigit()):  # not "²", which int() refuses
            raise ScheduleError(f"invalid {name} {token!r} in cron field {text!r}")
        value = int(token)
        if not low <= value <= high:
            raise ScheduleError(f"{name} {value} is out of range {low}-{high}")
        return value

    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ScheduleError(f"invalid step {step_text!r} in cron field {text!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first, last = number(start), number(end)
            if first > last:
                raise ScheduleError(f"invalid range {base!r} in cron field {text!r}")
        else:
            first = number(base)
            last = high if slash else first  # `5/15`: from 5 on, every 15
        values.update(range(first, last + 1, step))
    if index == 5 and 7 in values:  # Sunday is 0 and 7
        values = (values - {7}) | {0}
    return frozenset(values)


class Cron:
    """A parsed cron expression in a time zone (an IANA name such as "Europe/Paris")."""

    def __init__(self, expression: str, tz: str = "UTC") -> None:
        self.expression = expression
        self.tz = tz
        try:
            self.zone: tzinfo = UTC if tz == "UTC" else ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Etc", a directory
            raise ScheduleError(f"unknown time zone {tz!r:.100}") from None
        text = _SHORTHANDS.get(expression.strip().lower(), expression)
        fields = text.split()
        if len(fields) == 5:
            fields.insert(0, "0")
        if len(fields) != 6:
            raise ScheduleError(
                f"invalid cron expression {expression!r}: give 5 fields (minute hour day month "
                "weekday), 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly"
            )
        sets = [_parse_field(field, i) for i, field in enumerate(fields)]
        self.seconds, self.minutes, self.hours, self.days, self.months, self.weekdays = sets
        self._sorted = [sorted(values) for values in sets[:3]]
        self._any_day = fields[3] == "*"
        self._any_weekday = fields[5] == "*"
        #: See the module docstring: these follow elapsed time across DST changes.
        self.hour_wildcard = fields[2].startswith("*")

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, tz={self.tz!r})"

    # -- wall-clock matching ---------------------------------------------------------------

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self._any_day or self._any_weekday:  # `*` in one: the other decides
            return in_month and in_week
        return in_month or in_week

    def _next_time_of_day(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first matching time of day at or after the one given, or None."""
        seconds, minutes, hours = self._sorted
        for h in (x for x in hours if x >= hour):
            for m in (x for x in minutes if h > hour or x >= minute):
                for s in seconds:
                    if (h, m, s) >= (hour, minute, second):
                        return h, m, s
        return None

    def next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall-clock time at or after `start` (naive, whole seconds), or
        None if there is none within the search horizon."""
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        clock: tuple[int, int, int] | None = (start.hour, start.minute, start.second)
        limit = start.year + _HORIZON_YEARS
        while day.year <= limit:
            if day.month not in self.months:
                year, month = divmod(day.month, 12)  # the first day of the next month
                day, clock = day.replace(year=day.year + year, month=month + 1, day=1), None
                continue
            if self._day_matches(day):
                found = self._next_time_of_day(*(clock or (0, 0, 0)))
                if found is not None:
                    return day.replace(hour=found[0], minute=found[1], second=found[2])
            day, clock = day + timedelta(days=1), None
        return None

    # -- instants ----------------------------------------------------------------------------

    def _offset(self, instant: int) -> int:
        offset = datetime.fromtimestamp(instant, self.zone).utcoffset()
        assert offset is not None
        return int(offset.total_seconds())

    def _transition(self, start: int, end: int, offset: int) -> int | None:
        """The first instant in (start, end] whose UTC offset is not `offset`, or None."""
        probe = start
        while probe < end:
            low, probe = probe, min(probe + _DAY, end)
            if self._offset(probe) != offset:
                high = probe  # the change is in (low, high]: bisect to the second
                while high - low > 1:
                    middle = (low + high) // 2
                    low, high = (middle, high) if self._offset(middle) == offset else (low, middle)
                return high
        return None

    def next_after(self, after: float) -> float | None:
        """The first tick strictly after the instant `after` (UNIX seconds), or None if the
        expression never matches (say, 30 February)."""
        first = int(after // 1) + 1  # the earliest eligible tick
        # Start a day early, so that a clock change just before `after` is seen: it decides
        # which wall times the following stretch may still fire.
        instant = first - _DAY
        repeated_until: int | None = None  # wall times below this already fired
        while True:
            offset = self._offset(instant)
            floor = max(first, instant) + offset
            if repeated_until is not None:
                floor = max(floor, repeated_until)
            wall = self.next_wall(_EPOCH + timedelta(seconds=floor))
            if wall is None:
                return None
            tick = int((wall - _EPOCH).total_seconds()) - offset
            change = self._transition(instant, tick, offset)
            if change is None:
                return float(tick)
            # The offset changes at `change`, before the tick: nothing matched in the wall
            # times from `floor` to the change; go on from it with the new offset.
            new_offset, repeated_until = self._offset(change), None
            if new_offset > offset:  # spring: wall times [change+offset, change+new) skipped
                if not self.hour_wildcard and change >= first:
                    skipped = self.next_wall(_EPOCH + timedelta(seconds=change + offset))
                    gap_end = _EPOCH + timedelta(seconds=change + new_offset)
                    if skipped is not None and skipped < gap_end:
                        return float(change)
            elif not self.hour_wildcard:  # autumn: [change+new, change+offset) come again
                repeated_until = change + offset
            instant = change

    def check_fires(self, now: float) -> None:
        """Refuse an expression that never matches (30 February): stored, it would sit
        silent forever."""
        if self.next_after(now) is None:
            raise ScheduleError(
                f"cron expression {self.expression!r} never fires "
                f"(no tick within {_HORIZON_YEARS} years)"
            )

    def ticks(self, after: float, until: float, limit: int) -> list[float]:
        """The ticks in (after, until], oldest first, at most `limit` (the newest of them)."""
        found: list[float] = []
        tick = self.next_after(after)
        while tick is not None and tick <= until:
            found.append(tick)
            if len(found) > limit:
                del found[0]
            tick = self.next_after(tick)
        return found


def local_time(instant: float, tz: str) -> datetime:
    """An instant as an aware datetime in the zone `tz` (for display and tests)."""
    return datetime.fromtimestamp(instant, UTC if tz == "UTC" else ZoneInfo(tz))
