"""NSE trading calendar: session times, trading holidays and the monthly expiry rule.

Holidays ship as package data (``data/nse_holidays.csv``, the NSE equity lists for
``DATA_YEARS``). A user override file (env ``TICK_ASSETS_HOLIDAYS_FILE``) adds holidays
declared late or removes one (``action=remove``); a year the override lists any holiday for
counts as covered. Asking about a date in a year with no holiday data raises CalendarError
rather than guessing that every weekday trades. Pure Python: the Dagster layer builds its
partitions from ``trading_day_exclusions`` and ``WEEKEND_EXCLUSION_CRONS``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
PRE_OPEN = time(9, 0)
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)

#: First and last year of the shipped holiday list (inclusive).
DATA_YEARS = (2024, 2026)
HOLIDAYS_FILE_ENV = "TICK_ASSETS_HOLIDAYS_FILE"
#: Cron strings for Dagster's DailyPartitionsDefinition(exclusions=...): Saturdays, Sundays.
WEEKEND_EXCLUSION_CRONS = ("0 0 * * 6", "0 0 * * 0")

_SHIPPED = "nse_holidays.csv"
_ACTIONS = ("add", "remove")
_EXAMPLE_ROW = "2026-01-15,Municipal elections,add"


class CalendarError(ValueError):
    """A date outside the holiday data, or a malformed holiday file."""


@dataclass(frozen=True)
class _Calendar:
    holidays: frozenset[date]
    years: frozenset[int]


# --- holiday data ---------------------------------------------------------------------------


def _parse_rows(text: str, source: str, allow_action: bool) -> list[tuple[int, date, str]]:
    """Return (line, date, action) per data row; errors name the file, line and fix."""
    reader = csv.reader(text.splitlines())
    rows: list[tuple[int, date, str]] = []
    header: list[str] | None = None
    allowed = ["date", "description", "action"] if allow_action else ["date", "description"]
    for cells in reader:
        line = reader.line_num
        if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in cells]
        if header is None:
            header = [c.lower() for c in cells]
            if header[:2] != ["date", "description"] or not set(header) <= set(allowed):
                raise CalendarError(
                    f"{source}:{line}: header is {','.join(cells)!r}; the first line must be "
                    f"{','.join(allowed)!r} (the action column is optional)"
                )
            continue
        if len(cells) > len(header):
            raise CalendarError(
                f"{source}:{line}: {len(cells)} fields but the header has {len(header)}; "
                f"quote descriptions that contain commas, e.g. {_EXAMPLE_ROW}"
            )
        record = dict(zip(header, cells, strict=False))
        raw = record.get("date", "")
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise CalendarError(
                f"{source}:{line}: date {raw!r} is not YYYY-MM-DD; write it like {_EXAMPLE_ROW}"
            ) from None
        action = (record.get("action") or "add").lower()
        if action not in _ACTIONS:
            raise CalendarError(
                f"{source}:{line}: action {record.get('action')!r} is not 'add' or 'remove'; "
                "leave it empty for add"
            )
        rows.append((line, day, action))
    return rows


@lru_cache(maxsize=1)
def _shipped() -> frozenset[date]:
    text = files("tick_assets").joinpath("data", _SHIPPED).read_text(encoding="utf-8")
    rows = _parse_rows(text, f"tick_assets/data/{_SHIPPED}", allow_action=False)
    return frozenset(day for _, day, _ in rows)


@lru_cache(maxsize=16)
def _build(override: str | None, _mtime_ns: int, _size: int) -> _Calendar:
    holidays = set(_shipped())
    years = set(range(DATA_YEARS[0], DATA_YEARS[1] + 1))
    if override is None:
        return _Calendar(frozenset(holidays), frozenset(years))
    try:
        text = Path(override).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CalendarError(
            f"holiday override file {override} cannot be read ({exc.strerror}); "
            f"fix the path in {HOLIDAYS_FILE_ENV} or unset it"
        ) from None
    rows = _parse_rows(text, override, allow_action=True)
    for _line, day, action in rows:
        if action == "add":
            holidays.add(day)
            years.add(day.year)
    for line, day, action in rows:
        if action == "remove":
            if day not in holidays:
                raise CalendarError(
                    f"{override}:{line}: remove {day.isoformat()} but it is not a holiday; "
                    "delete the row or correct the date"
                )
            holidays.discard(day)
    return _Calendar(frozenset(holidays), frozenset(years))


def _calendar(override_path: Path | None = None) -> _Calendar:
    raw = override_path if override_path is not None else os.environ.get(HOLIDAYS_FILE_ENV)
    if not raw:
        return _build(None, 0, 0)
    path = Path(raw).expanduser().resolve()
    try:
        st = path.stat()
    except OSError as exc:
        raise CalendarError(
            f"holiday override file {path} does not exist or cannot be read ({exc.strerror}); "
            f"fix the path in {HOLIDAYS_FILE_ENV} or unset it"
        ) from None
    return _build(str(path), st.st_mtime_ns, st.st_size)


def _check(cal: _Calendar, d: date) -> None:
    if d.year not in cal.years:
        have = ", ".join(str(y) for y in sorted(cal.years))
        raise CalendarError(
            f"no NSE holiday data for {d.isoformat()} (year {d.year}; holiday data covers "
            f"{have}); add that year's holidays in an override file named by "
            f"{HOLIDAYS_FILE_ENV} (CSV: date,description[,action])"
        )


def _check_range(cal: _Calendar, start: date, end: date) -> None:
    for year in range(start.year, end.year + 1):
        _check(cal, start if year == start.year else date(year, 1, 1))


def nse_holidays(override_path: Path | None = None) -> frozenset[date]:
    """All NSE holidays (weekend ones included): the shipped list plus the user override.

    ``override_path`` defaults to env TICK_ASSETS_HOLIDAYS_FILE when unset.
    """
    return _calendar(override_path).holidays


def covered_years() -> tuple[int, ...]:
    """Years with holiday data (shipped years plus any year the override file adds to)."""
    return tuple(sorted(_calendar().years))


# --- trading days ---------------------------------------------------------------------------


def is_trading_day(d: date) -> bool:
    """A weekday that is not an NSE holiday. Raises CalendarError outside the holiday data."""
    cal = _calendar()
    _check(cal, d)
    return d.weekday() < 5 and d not in cal.holidays


def trading_days(start: date, end: date) -> list[date]:
    """Trading days from start to end, both inclusive (empty when start > end)."""
    cal = _calendar()
    if start > end:
        return []
    _check_range(cal, start, end)
    out = []
    d = start
    while d <= end:
        if d.weekday() < 5 and d not in cal.holidays:
            out.append(d)
        d += timedelta(days=1)
    return out


def previous_trading_day(d: date) -> date:
    """The last trading day strictly before d."""
    d -= timedelta(days=1)
    while not is_trading_day(d):
        d -= timedelta(days=1)
    return d


def next_trading_day(d: date) -> date:
    """The first trading day strictly after d."""
    d += timedelta(days=1)
    while not is_trading_day(d):
        d += timedelta(days=1)
    return d


def trading_day_exclusions(start: date, end: date) -> list[datetime]:
    """Weekday holidays in [start, end] as naive midnight datetimes.

    Dagster's DailyPartitionsDefinition(exclusions=...) reads naive datetimes in the
    partition timezone (Asia/Kolkata); weekends go in as WEEKEND_EXCLUSION_CRONS.
    """
    cal = _calendar()
    _check_range(cal, start, end)
    return [
        datetime(h.year, h.month, h.day)
        for h in sorted(cal.holidays)
        if start <= h <= end and h.weekday() < 5
    ]


# --- expiries -------------------------------------------------------------------------------


def last_weekday_expiry(year: int, month: int, weekday: int = 1) -> date:
    """Last ``weekday`` (Mon=0; default Tuesday) of the month, moved back to the previous
    trading day when it is a holiday.

    NSE monthly F&O expiry is the last Tuesday for contracts expiring from 1 Sep 2025 (last
    Thursday, weekday=3, before). Real code reads expiries from the instrument dump; this rule
    is for the simulator and for tests.
    """
    if not 1 <= month <= 12:
        raise ValueError(f"month={month} must be 1..12")
    if not 0 <= weekday <= 4:
        raise ValueError(f"weekday={weekday} must be 0 (Monday) .. 4 (Friday)")
    first_next = date(year + month // 12, month % 12 + 1, 1)
    last = first_next - timedelta(days=1)
    d = last - timedelta(days=(last.weekday() - weekday) % 7)
    return d if is_trading_day(d) else previous_trading_day(d)


# --- session times --------------------------------------------------------------------------


def _ist_utc(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=IST).astimezone(UTC)


def session_bounds_utc(d: date) -> tuple[datetime, datetime]:
    """Normal session 09:15-15:30 IST of day d as tz-aware UTC (d is not checked)."""
    return _ist_utc(d, SESSION_OPEN), _ist_utc(d, SESSION_CLOSE)


def pre_open_utc(d: date) -> datetime:
    """Start of the 09:00 IST pre-open call auction of day d, tz-aware UTC."""
    return _ist_utc(d, PRE_OPEN)


def ist_to_utc(dt: datetime) -> datetime:
    """Convert to UTC; a naive datetime is read as IST wall time (as kiteconnect returns)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=IST)
    return dt.astimezone(UTC)


def utc_to_ist(dt: datetime) -> datetime:
    """Convert to IST; a naive datetime is read as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(IST)
