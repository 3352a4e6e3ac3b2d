"""Partition definitions shared by every source: NSE trading days and crypto UTC days.

Trading days are IST calendar days minus weekends and NSE holidays (tick_assets.calendars),
so a holiday never shows up as a missing partition. They end where the holiday data ends:
a year without holiday data has no partitions rather than partitions that guess.

Today's trading day is a partition from 00:00 IST on (``end_offset=1``): the morning assets
(kite/instruments is "today's dump", the lookup, the capture) run on the day itself, not
after it has ended. Dagster bug dagster-io/dagster#33551: with exclusions and end_offset=1,
on an excluded day (a weekend or holiday) Dagster already lists the NEXT trading day's key
(on Saturday, Monday's). So schedules never take "the last partition": they name today's IST
date explicitly (``today_ist``) and skip when it is not a trading day, and the assets refuse a
day that is still in the future (``future_days``).
"""

from datetime import date, datetime

import dagster as dg

from tick_assets.calendars import (
    IST,
    WEEKEND_EXCLUSION_CRONS,
    covered_years,
    trading_day_exclusions,
)

TRADING_DAYS_START = date(2024, 1, 1)
CRYPTO_DAYS_START = "2024-01-01"


def build_nse_trading_days() -> dg.DailyPartitionsDefinition:
    """Daily IST partitions without weekends and NSE holidays, up to the last covered year.

    Built at code-load time, so a holiday added to the override file
    (TICK_ASSETS_HOLIDAYS_FILE) takes effect on the next reload of the code location.
    """
    last_year = max(covered_years())
    return dg.DailyPartitionsDefinition(
        start_date=TRADING_DAYS_START.isoformat(),
        end_date=date(last_year + 1, 1, 1).isoformat(),
        timezone="Asia/Kolkata",
        end_offset=1,  # today's partition exists on the day itself (see the module doc)
        exclusions=[
            *WEEKEND_EXCLUSION_CRONS,
            *trading_day_exclusions(TRADING_DAYS_START, date(last_year, 12, 31)),
        ],
    )


nse_trading_days = build_nse_trading_days()


def today_ist(now: datetime | None = None) -> date:
    """Today's date in IST (the trading-day partition a morning run is for)."""
    return (now or datetime.now(IST)).astimezone(IST).date()


def future_days(days: list[str], now: datetime | None = None) -> list[str]:
    """The partition keys after today in IST (listed early by Dagster; see the module doc)."""
    today = today_ist(now)
    return [day for day in days if date.fromisoformat(day) > today]


crypto_utc_days = dg.DailyPartitionsDefinition(start_date=CRYPTO_DAYS_START, timezone="UTC")
