"""kite/candles: Kite historical candles per (trading day, timeframe), into the lake.

Every partition fetches every listed symbol ([candles.kite].symbols) for its timeframe with the
access token of [candles.kite].app, which kite/access_token keeps in the token store (an
expired or missing token fails the run with a message naming kite/access_token). Requests span
as many days as Kite allows per interval (60 for minute candles ... 2000 for day candles) and
are paced at 3 per second per api_key by one shared limiter. Symbols resolve to
instrument_tokens through Kite's current instrument dump (equities and indices keep their
tokens; expired derivatives cannot be resolved). Partitions are shared with upstox/candles
(tick_assets/defs/candles.py).

Reconciliation with minute bars from captured ticks (kite/bars_1m, issue 4) is built by
``tick_assets.defs.candles.build_bars_reconciliation_check``; it is not wired here because
kite/bars_1m does not exist yet.
"""

from datetime import date

import dagster as dg

from tick_assets.candles.fetch import RetryPolicy
from tick_assets.candles.symbols import symbols_for
from tick_assets.config import SettingsError
from tick_assets.defs.candles import candle_partitions, run_candles, sim_day_for
from tick_assets.defs.kite.assets import InstrumentsDownloadError, download_instruments_dump
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite.historical import KiteHistory, limiter_for_api_key
from tick_assets.sources.kite.instruments import InstrumentsError, parse_instruments
from tick_assets.store.tokens import TokenStoreError


@dg.asset(
    key_prefix=["kite"],
    name="candles",
    group_name="kite",
    partitions_def=candle_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    code_version="1",
    description=(
        "Kite historical candles of the configured symbols, one partition per trading day and "
        "timeframe (lake/kite/candles/timeframe=TF/date=DAY/), UTC, sorted, deduplicated, with "
        "a manifest; incremental. Needs a valid kite/access_token for [candles.kite].app."
    ),
)
def candles(
    context: dg.AssetExecutionContext, kite: KiteResource, settings: SettingsResource
) -> dg.MaterializeResult:
    loaded = settings.load()
    config = loaded.candles
    app = config.kite.app
    try:
        symbols = symbols_for(loaded, config.kite.symbols)
    except SettingsError as exc:
        raise dg.Failure(description=str(exc)) from None

    def source(days: list[date]) -> KiteHistory:
        day = sim_day_for(days) if kite.mode == "sim" else None
        try:
            client = kite.kite_connect(app, day=day)
            dump = download_instruments_dump(client.root, timeout=kite.timeout_seconds)
            instruments = parse_instruments(dump)
        except TokenStoreError as exc:
            raise dg.Failure(
                description=f"kite/candles needs the access token of app {app!r}: {exc}"
            ) from None
        except (SettingsError, InstrumentsDownloadError, InstrumentsError) as exc:
            raise dg.Failure(description=f"kite/candles: {exc}") from None
        return KiteHistory(
            client.root,
            client.api_key,
            client.access_token,
            instruments,
            app=app,
            limiter=limiter_for_api_key(client.api_key),
            policy=RetryPolicy(attempts=config.retries, timeout_s=config.timeout_seconds),
        )

    return run_candles(context, source, settings.home, config, symbols, config.kite.workers)
