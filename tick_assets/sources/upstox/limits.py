"""Upstox API v3 historical-candle limits as constants, shared by the client and the simulator.

Source: shared/reference/upstox-binance-coingecko-alpaca-bitfinex.md §1 (the v3 "Get
Historical Candle Data" page, its rate-limiting page, and the error codes the generated
upstox-python SDK documents for HistoryV3Api):

- units and intervals: minutes 1..300, hours 1..5, days 1, weeks 1, months 1;
- largest span per request, ending at to_date: 1 month for 1..15 minutes, 1 quarter above
  15 minutes and for hours, 1 decade for days, unlimited for weeks and months; a longer span is
  refused with UDAPI1148, never truncated;
- history from January 2022 (minutes, hours) and January 2000 (days, weeks, months);
- 50 requests per second, 500 per minute, 2000 per 30 minutes, per user per API; past any of
  them HTTP 429 with UDAPI10005 and no Retry-After header.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import date, timedelta

BASE_URL = "https://api.upstox.com"
ASSETS_URL = "https://assets.upstox.com"
HISTORICAL_PATH = "/v3/historical-candle"
INTRADAY_PATH = "/v3/historical-candle/intraday"
INSTRUMENTS_PATH = "/market-quote/instruments/exchange/{exchange}.json.gz"
INSTRUMENT_EXCHANGES = ("NSE", "BSE", "MCX", "complete")

#: (max requests, seconds) windows that all apply at once.
RATE_WINDOWS: tuple[tuple[int, float], ...] = ((50, 1.0), (500, 60.0), (2000, 1800.0))

# Error codes (HTTP status in the comment).
RATE_LIMITED = "UDAPI10005"  # 429 "Too Many Request Sent"
INVALID_TOKEN = "UDAPI100050"  # 401 "Invalid token used to access API"
BAD_DATES = "UDAPI1015"  # 400 to_date must be >= from_date, dates yyyy-mm-dd
BAD_KEY_FORMAT = "UDAPI1021"  # 400 instrument key is of invalid format
NO_TO_DATE = "UDAPI1022"  # 400 to_date is required
BAD_UNIT = "UDAPI1146"  # 400 invalid unit
BAD_INTERVAL = "UDAPI1147"  # 400 invalid interval
BAD_RANGE = "UDAPI1148"  # 400 invalid date range (span too long or before history)
UNKNOWN_KEY = "UDAPI100011"  # 400 invalid instrument key


@dataclass(frozen=True)
class Unit:
    """One v3 unit: its intervals, the history it has, the span one request may cover."""

    name: str
    max_interval: int
    history_from: date
    #: months of span per request for intervals <= `short_upto`, and above it; None = no limit
    span_months_short: int | None
    span_months_long: int | None
    short_upto: int = 0


UNITS: dict[str, Unit] = {
    "minutes": Unit("minutes", 300, date(2022, 1, 1), 1, 3, short_upto=15),
    "hours": Unit("hours", 5, date(2022, 1, 1), 3, 3),
    "days": Unit("days", 1, date(2000, 1, 1), 120, 120),
    "weeks": Unit("weeks", 1, date(2000, 1, 1), None, None),
    "months": Unit("months", 1, date(2000, 1, 1), None, None),
}


def add_months(d: date, months: int) -> date:
    """``d`` moved by whole calendar months, the day clipped to the month's length."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(d.day, monthrange(year, month + 1)[1]))


def check_unit_interval(unit: str, interval: int) -> str | None:
    """Why Upstox refuses this unit/interval (error code and text), or None."""
    spec = UNITS.get(unit)
    if spec is None:
        return f"{BAD_UNIT}: invalid unit {unit!r}; use one of {', '.join(UNITS)}"
    if not 1 <= interval <= spec.max_interval:
        return (
            f"{BAD_INTERVAL}: invalid interval {interval} for unit {unit} (1..{spec.max_interval})"
        )
    return None


def span_months(unit: str, interval: int) -> int | None:
    """Months one request may span for this unit/interval; None = unlimited."""
    spec = UNITS[unit]
    return spec.span_months_short if interval <= spec.short_upto else spec.span_months_long


def earliest_from(unit: str, interval: int, to_date: date) -> date | None:
    """The earliest from_date Upstox accepts with this to_date (None = no span limit)."""
    months = span_months(unit, interval)
    return None if months is None else add_months(to_date, -months)


def latest_to(unit: str, interval: int, from_date: date) -> date | None:
    """The latest to_date a request starting at from_date may use, a day short of the limit.

    The exact boundary of "1 month" is not documented (month ends clip), so the client stays
    one day inside what ``earliest_from`` accepts.
    """
    months = span_months(unit, interval)
    if months is None:
        return None
    last = add_months(from_date, months)
    while add_months(last + timedelta(days=1), -months) <= from_date:
        last += timedelta(days=1)
    while add_months(last, -months) > from_date:
        last -= timedelta(days=1)
    return last - timedelta(days=1)


def range_error(unit: str, interval: int, from_date: date, to_date: date) -> str | None:
    """Why Upstox refuses this date range (error code and text), or None if it is allowed."""
    if to_date < from_date:
        return f"{BAD_DATES}: to_date must be greater than or equal to from_date"
    earliest = earliest_from(unit, interval, to_date)
    if earliest is not None and from_date < earliest:
        return f"{BAD_RANGE}: Invalid date range"
    return None
