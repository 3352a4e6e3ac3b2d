"""Partitions of the Binance assets: the dynamic set of symbols, and symbol x UTC month.

``binance_symbols`` is kept in step with the daily universe by the universe sensor: a new
symbol is added; a symbol that leaves the top N stays (its history stays addressable) and
simply stops getting new runs. Months are UTC calendar months; the current month is a
partition too (end_offset=1), filled from daily archive files and the REST tail.
"""

import dagster as dg

from tick_assets.defs.partitions import CRYPTO_DAYS_START

SYMBOLS_PARTITIONS_NAME = "binance_symbols"

binance_symbols = dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS_NAME)

klines_months = dg.MonthlyPartitionsDefinition(
    start_date=CRYPTO_DAYS_START, timezone="UTC", end_offset=1
)

klines_partitions = dg.MultiPartitionsDefinition(
    {"month": klines_months, "symbol": binance_symbols}
)
