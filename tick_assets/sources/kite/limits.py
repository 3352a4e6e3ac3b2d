"""Kite Connect limits as constants, so clients and the simulator enforce the same numbers.

Sources are in shared/reference/kite.md (§2): DOC-WS for the websocket limits, the Kite forum
staff answers for the REST rate limits and the historical span per interval.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

# --- websocket ------------------------------------------------------------------------------
MAX_INSTRUMENTS_PER_CONNECTION = 3000
MAX_CONNECTIONS_PER_API_KEY = 3
#: Text of the error message Kite sends (as {"type": "error", "data": ...}) past the limit.
SUBSCRIBE_LIMIT_ERROR = (
    f"Can't subscribe to more than {MAX_INSTRUMENTS_PER_CONNECTION} instruments."
)
#: Kite sends a 1-byte heartbeat about every second on an otherwise idle connection.
HEARTBEAT_INTERVAL_S = 1.0
#: Other official clients (gokiteconnect, kiteconnectjs) give up on a silent socket after 5 s.
READ_TIMEOUT_S = 5.0

# --- REST rate limits (requests per second, per api_key) -------------------------------------
HISTORICAL_REQUESTS_PER_SECOND = 3
QUOTE_REQUESTS_PER_SECOND = 1
ORDER_REQUESTS_PER_SECOND = 10
OTHER_REQUESTS_PER_SECOND = 10
QUOTE_MAX_INSTRUMENTS = 500
OHLC_LTP_MAX_INSTRUMENTS = 1000

# --- historical candles ---------------------------------------------------------------------
#: Largest span, in days, one /instruments/historical request may cover, per interval.
HISTORICAL_MAX_DAYS: dict[str, int] = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
HISTORICAL_INTERVALS = tuple(HISTORICAL_MAX_DAYS)
#: Candle length in minutes per intraday interval (day candles are one per session).
INTERVAL_MINUTES: dict[str, int] = {
    "minute": 1,
    "3minute": 3,
    "5minute": 5,
    "10minute": 10,
    "15minute": 15,
    "30minute": 30,
    "60minute": 60,
}

# --- sessions -------------------------------------------------------------------------------
#: Access tokens expire at 06:00 IST the next day (regulatory); Kite flushes them ~07:00-07:30.
ACCESS_TOKEN_EXPIRY_IST = time(6, 0)
#: A request_token is single use and valid "a couple of minutes".
REQUEST_TOKEN_TTL_S = 300.0


def historical_span_error(interval: str, start: datetime, end: datetime) -> str | None:
    """Why Kite would refuse this historical request's span, or None if it is allowed."""
    if interval not in HISTORICAL_MAX_DAYS:
        return f"invalid interval {interval!r}; use one of {', '.join(HISTORICAL_INTERVALS)}"
    if end < start:
        return "from date is after to date"
    if end - start > timedelta(days=HISTORICAL_MAX_DAYS[interval]):
        return f"interval exceeds max limit: {HISTORICAL_MAX_DAYS[interval]} days"
    return None


def historical_chunks(
    interval: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Split [start, end] into consecutive request windows that each respect the span limit."""
    if interval not in HISTORICAL_MAX_DAYS:
        raise ValueError(f"interval {interval!r} is not one of {', '.join(HISTORICAL_INTERVALS)}")
    if end < start:
        raise ValueError(f"start {start} is after end {end}; swap them")
    step = timedelta(days=HISTORICAL_MAX_DAYS[interval])
    chunks = []
    lo = start
    while True:
        hi = min(lo + step, end)
        chunks.append((lo, hi))
        if hi >= end:
            return chunks
        lo = hi + timedelta(seconds=1)
