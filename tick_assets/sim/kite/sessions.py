"""Trading days and expiries for the simulator, from `tick_assets.calendars`.

The shipped holiday list covers a few years only; for a date outside it the simulator falls
back to "every weekday trades" (tests and backfills may ask for old candles) instead of failing
the way the platform's own calendar does on purpose.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tick_assets import calendars
from tick_assets.calendars import CalendarError


def is_session_day(d: date) -> bool:
    try:
        return calendars.is_trading_day(d)
    except CalendarError:
        return d.weekday() < 5


def previous_session_day(d: date) -> date:
    d -= timedelta(days=1)
    while not is_session_day(d):
        d -= timedelta(days=1)
    return d


def session_days(start: date, end: date) -> list[date]:
    """Trading days in [start, end], inclusive."""
    out = []
    d = start
    while d <= end:
        if is_session_day(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def session_open_epoch(d: date) -> float:
    """09:15 IST of day d as UTC epoch seconds."""
    return calendars.session_bounds_utc(d)[0].timestamp()


def default_day(now: datetime | None = None) -> date:
    """Today in IST if it is a trading day, else the last trading day before it."""
    today = (now or datetime.now(UTC)).astimezone(calendars.IST).date()
    return today if is_session_day(today) else previous_session_day(today)


TUESDAY, THURSDAY = 1, 3
TUESDAY_EXPIRY_FROM = (2025, 9)  # (year, month) of the first Tuesday monthly expiry


def monthly_expiry(year: int, month: int) -> date:
    """NSE monthly F&O expiry, moved back over holidays: the last Thursday until August 2025,
    the last Tuesday for contracts expiring from 1 September 2025 (NSE circular 103/2025)."""
    weekday = TUESDAY if (year, month) >= TUESDAY_EXPIRY_FROM else THURSDAY
    try:
        return calendars.last_weekday_expiry(year, month, weekday=weekday)
    except CalendarError:  # no holiday data for that year: the plain weekday rule
        first_next = date(year + month // 12, month % 12 + 1, 1)
        last = first_next - timedelta(days=1)
        return last - timedelta(days=(last.weekday() - weekday) % 7)


def currency_expiry(year: int, month: int) -> date:
    """NSE/BSE currency futures: two trading days before the month's last trading day."""
    first_next = date(year + month // 12, month % 12 + 1, 1)
    last = previous_session_day(first_next)
    return previous_session_day(previous_session_day(last))


def next_months(day: date, count: int, expiry_of) -> list[tuple[int, int, date]]:
    """(year, month, expiry) of the `count` monthly contracts still trading on `day`."""
    out: list[tuple[int, int, date]] = []
    year, month = day.year, day.month
    while len(out) < count:
        expiry = expiry_of(year, month)
        if expiry >= day:
            out.append((year, month, expiry))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out
