"""NCRONTAB schedules, as the Functions host's timer trigger reads them (six fields, seconds first).

`{second} {minute} {hour} {day} {month} {day-of-week}`, each field `*`, a value, a range `a-b`, a
step `*/n`, `a-b/n` or `a/n`, or a comma-separated list of those; months and days of the week also
by their English three-letter names. As in NCrontab (the library the host uses), a time matches
when EVERY field matches: a day-of-month and a day-of-week together mean both, not either as in
Unix cron. Times are UTC (the host's default without WEBSITE_TIME_ZONE).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
DAYS = {name.lower(): (number + 1) % 7 for number, name in enumerate(calendar.day_abbr)}  # Sun = 0
# (name, lowest, highest, names) per field, in the order the expression gives them.
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 6, DAYS),
)
SEARCH_YEARS = 8  # "0 0 0 29 2 Mon" recurs within this; a schedule with no match at all is refused


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # Sunday = 0

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != len(FIELDS):
            raise ScheduleError(
                f"schedule {expression!r}: expected 6 fields (second minute hour day month day-of-week), "
                f"got {len(parts)}"
            )
        values = [_field(part, *spec, expression) for part, spec in zip(parts, FIELDS, strict=True)]
        schedule = cls(expression, *values)
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # refuses a schedule that never fires
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after `moment` (whole seconds, UTC) that the schedule fires."""
        start = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = start.date()
        for _ in range(366 * SEARCH_YEARS):
            if day.month in self.months and day.day in self.days and (day.weekday() + 1) % 7 in self.weekdays:
                floor = (start.hour, start.minute, start.second) if day == start.date() else (0, 0, 0)
                found = self._first_time(floor)
                if found is not None:
                    return datetime(day.year, day.month, day.day, *found, tzinfo=UTC)
            day += timedelta(days=1)
        raise ScheduleError(f"schedule {self.expression!r} never fires")

    def _first_time(self, floor: tuple[int, int, int]) -> tuple[int, int, int] | None:
        """The day's first firing at or after `floor` (hour, minute, second), if any."""
        for hour in sorted(h for h in self.hours if h >= floor[0]):
            for minute in sorted(self.minutes):
                for second in sorted(self.seconds):
                    if (hour, minute, second) >= floor:
                        return hour, minute, second
        return None


def _field(
    text: str, name: str, low: int, high: int, names: dict[str, int], expression: str
) -> frozenset[int]:
    def value(token: str) -> int:
        number = names.get(token.lower()) if names else None
        if number is None:
            if not token.isdigit():
                raise ScheduleError(f"schedule {expression!r}: {name} {token!r} is not a number")
            number = int(token)
        if not low <= number <= high:
            raise ScheduleError(f"schedule {expression!r}: {name} {number} is outside {low}-{high}")
        return number

    chosen: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = _step(step_text, name, expression) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first, last = value(first_text), value(last_text)
        else:
            first = value(span)
            last = high if step_text else first  # `a/n`: from a to the field's end, every n
        if first > last:
            raise ScheduleError(f"schedule {expression!r}: {name} range {span!r} runs backwards")
        chosen.update(range(first, last + 1, step))
    return frozenset(chosen)


def _step(text: str, name: str, expression: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise ScheduleError(f"schedule {expression!r}: {name} step {text!r} must be a positive number")
    return int(text)
