"""The crypto day: at 00:15 UTC, yesterday's ranking and the universe mapped from it.

The schedule is off until switched on in the UI (or with default_status in a deployment).
The universe sensor (defs/binance/sensors.py) then adds new symbols and refreshes klines.
"""

import dagster as dg

from tick_assets.defs.partitions import crypto_utc_days

crypto_universe_job = dg.define_asset_job(
    "crypto_universe",
    selection=dg.AssetSelection.assets(["coingecko", "rankings"], ["binance", "universe"]),
    partitions_def=crypto_utc_days,
    description="coingecko/rankings then binance/universe for one UTC day.",
)

crypto_universe_daily = dg.build_schedule_from_partitioned_job(
    crypto_universe_job,
    hour_of_day=0,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
