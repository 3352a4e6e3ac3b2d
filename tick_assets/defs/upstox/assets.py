"""upstox/candles: Upstox v3 historical candles per (trading day, timeframe), into the lake.

Every partition fetches every listed symbol ([candles.upstox].symbols) for its timeframe.
A range backfills in one run (BackfillPolicy.single_run): the engine asks only for what the
lake lacks, a month (1-15 minute candles), a quarter (longer intraday) or a decade (days) per
request, newest-first IST candles sorted into UTC day partitions
``lake/upstox/candles/timeframe=<tf>/date=<day>/``. Requests are paced by one limiter honouring
50/s, 500/min and 2000/30 min at once, so the 2000 requests of a 30-minute window are all
used and none is refused. See tick_assets/defs/candles.py for the partitioning.
"""

from datetime import date

import dagster as dg

from tick_assets.candles.errors import CandleError
from tick_assets.candles.fetch import RetryPolicy
from tick_assets.candles.symbols import symbols_for
from tick_assets.config import SettingsError
from tick_assets.defs.candles import candle_partitions, run_candles, sim_day_for
from tick_assets.defs.resources import SettingsResource
from tick_assets.defs.upstox.resources import UpstoxResource
from tick_assets.sources.upstox.history import (
    UpstoxHistory,
    download_instruments,
    limiter_for_token,
)
from tick_assets.sources.upstox.instruments import UpstoxInstrumentsError, parse_instruments


@dg.asset(
    key_prefix=["upstox"],
    name="candles",
    group_name="upstox",
    partitions_def=candle_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    code_version="1",
    description=(
        "Upstox v3 historical candles of the configured symbols, one partition per trading "
        "day and timeframe (lake/upstox/candles/timeframe=TF/date=DAY/), UTC, sorted, "
        "deduplicated, with a manifest; incremental (holes refetched, venue-missing candles "
        "recorded, never invented)."
    ),
)
def candles(
    context: dg.AssetExecutionContext, upstox: UpstoxResource, settings: SettingsResource
) -> dg.MaterializeResult:
    loaded = settings.load()
    config = loaded.candles
    try:
        symbols = symbols_for(loaded, config.upstox.symbols)
    except SettingsError as exc:
        raise dg.Failure(description=str(exc)) from None

    def source(days: list[date]) -> UpstoxHistory:
        endpoints = upstox.endpoints(sim_day_for(days) if upstox.mode == "sim" else None)
        try:
            token = upstox.access_token()
            raw = download_instruments(endpoints["upstox_assets"])
            instruments = parse_instruments(raw)
        except (SettingsError, UpstoxInstrumentsError, CandleError) as exc:
            raise dg.Failure(description=f"upstox/candles: {exc}") from None
        return UpstoxHistory(
            endpoints["upstox_rest"],
            token,
            instruments,
            limiter=limiter_for_token(token),
            policy=RetryPolicy(attempts=config.retries, timeout_s=config.timeout_seconds),
            token_hint=upstox.access_token_env,
        )

    return run_candles(context, source, settings.home, config, symbols, config.upstox.workers)
