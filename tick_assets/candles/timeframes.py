"""Venue-neutral candle timeframes and the candles a trading day should hold in each.

A timeframe is named as the lake names it: ``1minute``, ``5minute``, ``60minute``, ``1hour``,
``day`` (``timeframe=5minute`` in ``lake/<venue>/candles/timeframe=5minute/date=DAY/``).
Intraday candles start at 09:15 IST and every ``minutes`` after it (the last one may be
shorter, as both Kite and Upstox cut it at 15:30); a day candle is stamped at 00:00 IST. The
expected grid is what lets the lake tell a candle the venue does not have from one we have not
fetched yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np

from tick_assets.calendars import IST, SESSION_CLOSE, SESSION_OPEN

SESSION_MINUTES = 375  # 09:15 .. 15:30
_NAME_RE = re.compile(r"^(?:(\d{1,3})(minute|hour)|day)$")


class TimeframeError(ValueError):
    """A timeframe name that is not understood or not offered by a venue."""


@dataclass(frozen=True, order=True)
class Timeframe:
    """``minutes`` per candle (0 for a day candle) and the lake's name for it."""

    minutes: int
    name: str

    @property
    def is_day(self) -> bool:
        return self.minutes == 0

    def candle_starts_ist(self, day: date) -> list[datetime]:
        """Every candle start (IST) a full session of ``day`` has in this timeframe."""
        if self.is_day:
            return [datetime.combine(day, time(0, 0), tzinfo=IST)]
        open_ = datetime.combine(day, SESSION_OPEN, tzinfo=IST)
        count = -(-SESSION_MINUTES // self.minutes)
        return [open_ + timedelta(minutes=k * self.minutes) for k in range(count)]

    def expected_utc(self, day: date) -> np.ndarray:
        """The candle starts of ``day`` as datetime64[s] UTC values (naive, UTC)."""
        if self.is_day:
            start = datetime.combine(day, time(0, 0), tzinfo=IST)
            return np.array([np.datetime64(int(start.timestamp()), "s")])
        first = int(datetime.combine(day, SESSION_OPEN, tzinfo=IST).timestamp())
        count = -(-SESSION_MINUTES // self.minutes)
        return (first + np.arange(count, dtype=np.int64) * self.minutes * 60).astype(
            "datetime64[s]"
        )

    def day_closed_at(self, day: date) -> datetime:
        """When the day's last candle is final (session close, IST)."""
        return datetime.combine(day, SESSION_CLOSE, tzinfo=IST)


def parse_timeframe(name: str) -> Timeframe:
    """``5minute`` -> Timeframe(5, '5minute'); ``1hour`` -> 60 minutes; ``day`` -> day."""
    match = _NAME_RE.match(name.strip()) if isinstance(name, str) else None
    if not match:
        raise TimeframeError(
            f"timeframe {name!r} is not understood; write it as <n>minute, <n>hour or day "
            "(e.g. 1minute, 5minute, 1hour, day)"
        )
    if name == "day":
        return Timeframe(0, "day")
    n, unit = int(match.group(1)), match.group(2)
    minutes = n * (60 if unit == "hour" else 1)
    if not 1 <= minutes <= SESSION_MINUTES:
        raise TimeframeError(f"timeframe {name!r}: a candle must be 1..{SESSION_MINUTES} minutes")
    return Timeframe(minutes, name)
