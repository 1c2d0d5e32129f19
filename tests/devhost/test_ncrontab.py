"""NCRONTAB schedules as the host's timer reads them: six fields, seconds first, every field must match."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devhost.ncrontab import Schedule, ScheduleError


def at(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */30 * * * *", at(2026, 12, 5, 10, 15, 0), at(2026, 12, 5, 10, 30, 0)),
        ("0 */30 * * * *", at(2026, 12, 5, 10, 30, 0), at(2026, 12, 5, 11, 0, 0)),  # strictly after
        ("*/10 * * * * *", at(2026, 12, 5, 10, 0, 5), at(2026, 12, 5, 10, 0, 10)),
        ("0 0 9 * * Mon-Fri", at(2026, 12, 4, 10, 0, 0), at(2026, 12, 7, 9, 0, 0)),  # Friday -> Monday
        ("0 0 0 13 * Fri", at(2026, 1, 1, 0, 0, 0), at(2026, 2, 13, 0, 0, 0)),  # the 13th AND a Friday
        ("0 0 0 31 * *", at(2026, 1, 31, 0, 0, 0), at(2026, 3, 31, 0, 0, 0)),  # no 31 February
        ("0 0 3 * Jan,Jul *", at(2026, 1, 31, 5, 0, 0), at(2026, 7, 1, 3, 0, 0)),
        ("5/20 0 0 * * *", at(2026, 1, 1, 0, 0, 25), at(2026, 1, 1, 0, 0, 45)),  # `a/n`: from a, every n
    ],
)
def test_the_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 */5 * * *", "expected 6 fields"),
        ("61 * * * * *", "second 61 is outside 0-59"),
        ("0 0 0 * Foo *", "month 'Foo' is not a number"),
        ("0 0 10-2 * * *", "hour range '10-2' runs backwards"),
        ("*/0 * * * * *", "second step '0' must be a positive number"),
        ("0 0 0 30 2 *", "never fires"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(expression)
