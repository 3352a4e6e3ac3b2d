"""Partition definitions shared by every source: NSE trading days and crypto UTC days.

Trading days are IST calendar days minus weekends and NSE holidays (tick_assets.calendars),
so a holiday never shows up as a missing partition. They end where the holiday data ends:
a year without holiday data has no partitions rather than partitions that guess.
"""

from datetime import date

import dagster as dg

from tick_assets.calendars import (
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
        end_offset=0,
        exclusions=[
            *WEEKEND_EXCLUSION_CRONS,
            *trading_day_exclusions(TRADING_DAYS_START, date(last_year, 12, 31)),
        ],
    )


nse_trading_days = build_nse_trading_days()

crypto_utc_days = dg.DailyPartitionsDefinition(start_date=CRYPTO_DAYS_START, timezone="UTC")
