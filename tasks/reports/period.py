"""Report periods: ISO weeks, Monday 00:00 UTC to the next Monday (end excluded)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # excluded

    @property
    def label(self) -> str:
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def previous(self) -> Period:
        return Period(self.start - WEEK, self.start)

    def __str__(self) -> str:
        last_day = (self.end - timedelta(days=1)).date()
        return f"{self.label} ({self.start.date().isoformat()} to {last_day.isoformat()})"


def week_of(day: date) -> Period:
    """The ISO week holding `day`."""
    monday = day - timedelta(days=day.weekday())
    start = datetime.combine(monday, time(0), tzinfo=UTC)
    return Period(start, start + WEEK)


def last_full_week(now: datetime) -> Period:
    """The last ISO week that ended at or before `now` (on a Monday morning: the week that just ended)."""
    return week_of(now.astimezone(UTC).date()).previous


def week_ending(period_end: date | datetime | str | None, now: datetime) -> Period:
    """The week a run reports on: the week holding `period_end` (a day of it, e.g. its Sunday), or the last
    full week. A week that has not ended yet is refused: its figures would still change."""
    if period_end is None or period_end == "":
        return last_full_week(now)
    if isinstance(period_end, str):
        try:
            period_end = date.fromisoformat(period_end.strip())
        except ValueError:
            raise ValueError(f"period_end {period_end[:40]!r} is not a date such as 2026-11-29") from None
    day = period_end.astimezone(UTC).date() if isinstance(period_end, datetime) else period_end
    period = week_of(day)
    if period.end > now:
        raise ValueError(f"week {period.label} has not ended yet (it ends {period.end.isoformat()})")
    return period


def weeks_back(period: Period, count: int) -> list[Period]:
    """`count` weeks ending with `period`, oldest first."""
    return [Period(period.start - WEEK * n, period.end - WEEK * n) for n in range(count - 1, -1, -1)]
