"""Reconciliation of minute bars built from the simulator's ticks with its vendor candles.

The simulator's Kite ticks and candles come from one market model, so bars from a tick every
second equal the vendor's 1-minute candles exactly; a tampered tick makes its symbol the worst
offender; sparse ticks stay inside the vendor's candle ranges. The Dagster check is exercised
against a stand-in kite/bars_1m asset (the real one is issue 4's).
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import numpy as np
import polars as pl
import pytest

from tick_assets.candles import reconcile
from tick_assets.candles.backfill import EngineOptions, backfill
from tick_assets.candles.timeframes import parse_timeframe
from tick_assets.defs.candles import build_bars_reconciliation_check
from tick_assets.defs.kite.assets import download_instruments_dump
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.kite.market import LiveMarket
from tick_assets.sim.kite.universe import build_universe
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token
from tick_assets.sources.kite.historical import KiteHistory
from tick_assets.sources.kite.instruments import parse_instruments
from tick_assets.store import lake

SIM_DAY = date(2026, 11, 20)
DAY = date(2026, 11, 19)
SYMBOLS = ["INFY", "RELIANCE", "TCS"]


@pytest.fixture(scope="module")
def server():
    with SimServer(day=SIM_DAY, rate=100, speed=60) as srv:
        yield srv


@pytest.fixture(scope="module")
def market(server) -> LiveMarket:
    return LiveMarket(build_universe(DAY, server.kite.universe.seed), rate=2000, speed=375)


def _ticks(market: LiveMarket, symbols, seconds: np.ndarray) -> pl.DataFrame:
    names = market.universe.instruments["tradingsymbol"].to_list()
    rows = np.repeat([names.index(s) for s in symbols], len(seconds))
    secs = np.tile(seconds, len(symbols))
    cols = market.state(rows, secs, np.arange(len(rows), dtype=np.uint64))
    return pl.DataFrame(
        {
            "instrument_token": cols["instrument_token"].astype(np.int64),
            "last_price": cols["last_price"],
            "volume_traded": cols["volume_traded"],
            "exchange_timestamp": cols["exchange_timestamp"].astype("datetime64[ms]"),
        }
    ).with_columns(pl.col("exchange_timestamp").dt.replace_time_zone("UTC"))


@pytest.fixture(scope="module")
def dense_ticks(market) -> pl.DataFrame:
    """A tick every second of the session for each symbol."""
    return _ticks(market, SYMBOLS, np.arange(22_500))


@pytest.fixture
def vendor_candles(server, tick_home):
    """kite/candles 1minute for DAY in this test's lake, fetched through the engine."""
    app = SIM_APPS["nifty500"]
    token = access_token(server.endpoints, app)
    dump = parse_instruments(download_instruments_dump(server.endpoints["kite_rest"]))
    source = KiteHistory(server.endpoints["kite_rest"], app.api_key, token, dump, app="nifty500")
    backfill(source, tick_home, SYMBOLS, {parse_timeframe("1minute"): [DAY]}, EngineOptions(1))
    return tick_home


def test_bars_from_every_second_equal_the_vendor_candles(dense_ticks, vendor_candles):
    bars = reconcile.bars_from_ticks(dense_ticks)
    assert bars.height == 3 * 375 and bars["ticks"].unique().to_list() == [60]
    result = reconcile.reconcile_day(vendor_candles, "kite", DAY.isoformat(), bars)
    assert result.passed, result.summary()
    per = result.per_symbol
    assert per["minutes_both"].to_list() == [375] * 3
    for col in ("max_open_drift", "max_high_drift", "max_low_drift", "max_close_drift",
                "max_volume_drift"):  # fmt: skip
        assert per[col].max() == 0.0, col
    assert set(per["symbol"]) == set(SYMBOLS)


def test_a_drifting_symbol_is_named_worst(dense_ticks, vendor_candles):
    token_tcs = 2953217
    bumped = dense_ticks.with_row_index().with_columns(
        pl.when((pl.col("instrument_token") == token_tcs) & (pl.col("index") % 600 == 30))
        .then(pl.col("last_price") * 1.01)
        .otherwise(pl.col("last_price"))
        .alias("last_price")
    )
    missing_minute = bumped.filter(
        ~((pl.col("instrument_token") == 408065) & (pl.col("index").is_between(60, 119)))
    )
    bars = reconcile.bars_from_ticks(missing_minute.drop("index"))
    result = reconcile.reconcile_day(vendor_candles, "kite", DAY.isoformat(), bars)
    assert not result.passed
    worst = result.worst[0]
    assert worst["symbol"] == "TCS" and worst["drifting_minutes"] == 38  # every 10th minute
    assert worst["max_high_drift"] == pytest.approx(0.01, rel=0.05)
    infy = next(w for w in result.worst if w["symbol"] == "INFY")
    assert infy["only_candles"] == 1  # the minute with no ticks is reported as coverage
    assert "TCS" in result.summary()


def test_sparse_realistic_ticks_stay_inside_vendor_ranges(market, vendor_candles):
    seconds = np.sort(np.random.default_rng(1).choice(22_500, 3_000, replace=False))
    bars = reconcile.bars_from_ticks(_ticks(market, SYMBOLS, seconds))
    candles = reconcile.vendor_minute_candles(vendor_candles, "kite", DAY.isoformat())
    joined = bars.join(
        candles.select("instrument", "timestamp", "high", "low"), on=["instrument", "timestamp"]
    )
    assert joined.height == bars.height  # every bar has its vendor candle
    assert (joined["high"] <= joined["high_right"]).all()
    assert (joined["low"] >= joined["low_right"]).all()


def test_reconciliation_asset_check_in_dagster(dense_ticks, vendor_candles):
    home = str(vendor_candles)

    @dg.asset(key=["kite", "bars_1m"], partitions_def=nse_trading_days)
    def bars_1m(context) -> None:
        """Stand-in for issue 4's asset: bars of the simulator's ticks, one TCS tick tampered."""
        ticks = dense_ticks.with_columns(
            pl.when((pl.col("instrument_token") == 2953217) & (pl.col("exchange_timestamp").dt.second() == 7))
            .then(pl.col("last_price") * 0.98)
            .otherwise(pl.col("last_price"))
            .alias("last_price")
        )  # fmt: skip
        bars = reconcile.bars_from_ticks(ticks).drop("ticks")
        lake.write_partition(home, "kite", "bars_1m", {"date": context.partition_key}, bars,
                             {"received": bars.height}, time_column="timestamp")  # fmt: skip

    check = build_bars_reconciliation_check(bars_1m, home=lambda: home)
    result = dg.materialize([bars_1m, check], partition_key=DAY.isoformat())
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "TCS" in evaluation.description
    worst = evaluation.metadata[f"worst {DAY}"].value
    assert worst[0]["symbol"] == "TCS" and worst[0]["max_low_drift"] == pytest.approx(
        0.02, rel=0.05
    )

    no_candles = dg.materialize([bars_1m, check], partition_key="2026-11-18")
    (warn,) = no_candles.get_asset_check_evaluations()
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert "materialize kite/candles partition 2026-11-18|1minute" in warn.description
