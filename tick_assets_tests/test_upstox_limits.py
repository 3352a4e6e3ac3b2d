"""Upstox v3 limits and request planning: the fewest requests the spans allow."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tick_assets.calendars import trading_days
from tick_assets.candles import plan
from tick_assets.candles.timeframes import TimeframeError, parse_timeframe
from tick_assets.sources.kite.historical import kite_interval
from tick_assets.sources.upstox import limits
from tick_assets.sources.upstox.history import unit_interval


def test_add_months_clips_to_month_end():
    assert limits.add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert limits.add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert limits.add_months(date(2025, 12, 15), 1) == date(2026, 1, 15)
    assert limits.add_months(date(2025, 1, 15), -120) == date(2015, 1, 15)


@pytest.mark.parametrize(
    ("unit", "interval", "months"),
    [("minutes", 1, 1), ("minutes", 15, 1), ("minutes", 16, 3), ("minutes", 300, 3),
     ("hours", 1, 3), ("hours", 5, 3), ("days", 1, 120), ("weeks", 1, None), ("months", 1, None)],
)  # fmt: skip
def test_span_per_unit_and_interval(unit, interval, months):
    assert limits.span_months(unit, interval) == months


def test_range_errors():
    assert limits.range_error("minutes", 1, date(2025, 2, 1), date(2025, 1, 1)).startswith(
        "UDAPI1015"
    )
    assert limits.range_error("minutes", 1, date(2024, 12, 1), date(2025, 1, 1)) is None
    assert limits.range_error("minutes", 1, date(2024, 11, 30), date(2025, 1, 1)).startswith(
        "UDAPI1148"
    )
    assert limits.range_error("weeks", 1, date(2000, 1, 1), date(2025, 1, 1)) is None
    assert limits.check_unit_interval("hours", 6).startswith("UDAPI1147")
    assert limits.check_unit_interval("seconds", 1).startswith("UDAPI1146")


def test_latest_to_never_exceeds_what_the_server_accepts():
    for start in (date(2025, 1, 1) + timedelta(days=k) for k in range(400)):
        for unit, interval in (("minutes", 1), ("minutes", 30), ("hours", 1), ("days", 1)):
            last = limits.latest_to(unit, interval, start)
            assert limits.range_error(unit, interval, start, last) is None
            # and is at most 3 days short of the longest span the server would take
            longest = last
            while limits.range_error(unit, interval, start, longest + timedelta(days=1)) is None:
                longest += timedelta(days=1)
            assert (longest - last).days <= 3


def test_timeframe_mapping():
    assert unit_interval(parse_timeframe("5minute")) == ("minutes", 5)
    assert unit_interval(parse_timeframe("60minute")) == ("minutes", 60)
    assert unit_interval(parse_timeframe("1hour")) == ("hours", 1)
    assert unit_interval(parse_timeframe("day")) == ("days", 1)
    assert kite_interval(parse_timeframe("1minute")) == "minute"
    assert kite_interval(parse_timeframe("1hour")) == "60minute"
    with pytest.raises(TimeframeError, match="Kite has no 2minute"):
        kite_interval(parse_timeframe("2minute"))
    with pytest.raises(TimeframeError, match="write it as"):
        parse_timeframe("5m")


def test_a_year_of_one_minute_candles_is_twelve_upstox_requests_per_symbol():
    days = trading_days(date(2025, 1, 1), date(2025, 12, 31))
    tf = parse_timeframe("1minute")
    spans = plan.windows(days, lambda d: limits.latest_to(*unit_interval(tf), d))
    assert len(spans) == 12
    for lo, hi in spans:
        assert limits.range_error("minutes", 1, lo, hi) is None
    needs = {"INFY": set(days), "TCS": set(days)}
    reqs = plan.requests_for(needs, {"INFY": "k1", "TCS": "k2"}, spans)
    assert len(reqs) == 24
    covered = {d for r in reqs if r.symbol == "INFY" for d in days if r.first <= d <= r.last}
    assert covered == set(days)
    # 30-minute candles span a quarter: 4 requests; day candles a decade: 1
    quarter = plan.windows(days, lambda d: limits.latest_to("minutes", 30, d))
    assert len(quarter) == 4
    assert len(plan.windows(days, lambda d: limits.latest_to("days", 1, d))) == 1


def test_a_year_of_kite_minute_candles_is_seven_requests():
    days = trading_days(date(2025, 1, 1), date(2025, 12, 31))
    spans = plan.windows(days, lambda d: d + timedelta(days=59))
    assert len(spans) == 7  # 365 days / 60 per request
    assert all((hi - lo).days < 60 for lo, hi in spans)


def test_plan_asks_only_for_needed_days_and_clips_per_symbol():
    days = trading_days(date(2025, 3, 3), date(2025, 3, 28))
    spans = plan.windows(days, lambda d: limits.latest_to("minutes", 5, d))
    needs = {"A": {days[3], days[10]}, "B": set(), "C": {days[-1]}}
    reqs = plan.requests_for(needs, {"A": "a", "B": "b", "C": "c"}, plan.windows(
        sorted(needs["A"] | needs["C"]), lambda d: limits.latest_to("minutes", 5, d)
    ))  # fmt: skip
    assert len(spans) == 1
    assert [(r.symbol, r.first, r.last) for r in reqs] == [
        ("A", days[3], days[10]),
        ("C", days[-1], days[-1]),
    ]
