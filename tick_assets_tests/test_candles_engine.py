"""The candle engine against the simulator: lake layout, incremental fetching, holes, missing
candles, bad responses, expired tokens, bad ranges, and pacing shared by workers."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest

from tick_assets.calendars import trading_days
from tick_assets.candles import lakeio
from tick_assets.candles.backfill import EngineOptions, backfill, check_range
from tick_assets.candles.errors import CandleAuthError, CandleRangeError
from tick_assets.candles.fetch import RetryPolicy
from tick_assets.candles.timeframes import parse_timeframe
from tick_assets.defs.kite.assets import download_instruments_dump
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token
from tick_assets.sim.upstox.accounts import SIM_UPSTOX_TOKENS
from tick_assets.sim.upstox.venue import UpstoxVenue
from tick_assets.sources.kite.historical import KiteHistory
from tick_assets.sources.kite.instruments import parse_instruments as parse_kite_instruments
from tick_assets.sources.upstox.history import UpstoxHistory, download_instruments, new_limiter
from tick_assets.sources.upstox.instruments import parse_instruments
from tick_assets.store import lake

SIM_DAY = date(2026, 11, 20)
TF5 = parse_timeframe("5minute")
TF1 = parse_timeframe("1minute")
DAYTF = parse_timeframe("day")
WEEK = trading_days(date(2026, 11, 9), date(2026, 11, 16))  # 10 Nov is Diwali
SYMBOLS = ["INFY", "TCS", "NIFTY 50", "NOPE"]


@pytest.fixture(scope="module")
def server():
    with SimServer(day=SIM_DAY, rate=100, speed=60) as srv:
        yield srv


@pytest.fixture(scope="module")
def upstox_instruments(server):
    return parse_instruments(download_instruments(server.endpoints["upstox_assets"]))


@pytest.fixture(scope="module")
def venue(server) -> UpstoxVenue:
    return next(v for v in server.venues if isinstance(v, UpstoxVenue))


def upstox(server, instruments, user="SIMUP1") -> UpstoxHistory:
    return UpstoxHistory(server.endpoints["upstox_rest"], SIM_UPSTOX_TOKENS[user], instruments)


def frame(home, venue_name, tf, day) -> pl.DataFrame:
    out = pl.from_arrow(lake.read_partition(home, venue_name, "candles", lakeio.partition(tf, day)))
    assert isinstance(out, pl.DataFrame)
    return out


def test_backfill_writes_the_lake_layout(server, upstox_instruments, tick_home):
    source = upstox(server, upstox_instruments)
    report = backfill(
        source, tick_home, SYMBOLS, {TF5: WEEK, DAYTF: WEEK}, EngineOptions(workers=3)
    )
    assert report.unknown.keys() == {"NOPE"} and "fix the symbol list" in report.unknown["NOPE"]
    assert report.requests_planned == 6  # 3 symbols x (one 5minute window + one day window)
    assert report.http["ok"] == 6 and report.http["http_429"] == 0
    for day in WEEK:
        path = tick_home / "lake/upstox/candles/timeframe=5minute" / f"date={day}"
        assert (path / "_manifest.json").is_file()
        manifest = lake.verify_partition(tick_home, "upstox", "candles", lakeio.partition(TF5, day))
        got = frame(tick_home, "upstox", TF5, day)
        assert got.schema["timestamp"] == pl.Datetime("ms", "UTC")
        assert got.height == 3 * 75 == manifest.rows
        assert got.equals(got.sort(["symbol", "timestamp"]))
        assert got.select(pl.struct("symbol", "timestamp").is_unique().all()).item()
        ist = got["timestamp"].dt.convert_time_zone("Asia/Kolkata")
        assert (ist.dt.date() == day).all()
        assert (
            ist.dt.strftime("%H:%M").min() == "09:15" and ist.dt.strftime("%H:%M").max() == "15:25"
        )
        assert (
            manifest.accounting["received"]
            == manifest.rows + manifest.accounting["dropped"]["duplicate"]
        )
        assert manifest.extra["status"] == {}  # only symbols that are not complete are listed
        assert manifest.extra["expected_per_symbol"] == 75
        state = lakeio.read_day(tick_home, "upstox", TF5, day)
        assert state.complete() == ["INFY", "NIFTY 50", "TCS"]
        assert got.filter(pl.col("symbol") == "INFY")["instrument"][0].startswith("NSE_EQ|INE")
    daily = frame(tick_home, "upstox", DAYTF, WEEK[0])
    assert daily.height == 3
    assert daily["timestamp"].to_list()[0] == datetime(2026, 11, 8, 18, 30, tzinfo=UTC)  # 00:00 IST
    # the day candle agrees with that day's 5-minute candles
    five = frame(tick_home, "upstox", TF5, WEEK[0]).filter(pl.col("symbol") == "TCS")
    day_tcs = daily.filter(pl.col("symbol") == "TCS").row(0, named=True)
    assert day_tcs["high"] == five["high"].max() and day_tcs["volume"] == five["volume"].sum()


def test_incremental_fetches_only_what_the_lake_lacks(server, upstox_instruments, tick_home):
    source = upstox(server, upstox_instruments)
    backfill(source, tick_home, ["INFY", "TCS"], {TF5: WEEK}, EngineOptions(workers=2))
    before = frame(tick_home, "upstox", TF5, WEEK[2])
    again = upstox(server, upstox_instruments)
    report = backfill(again, tick_home, ["INFY", "TCS"], {TF5: WEEK})
    assert report.requests_planned == 0 and again.http.stats.requests == 0
    assert len(report.held) == len(WEEK) and not report.days
    # a new symbol: only it is fetched, the others' rows stay as they were
    more = upstox(server, upstox_instruments)
    report = backfill(more, tick_home, ["INFY", "TCS", "ITC"], {TF5: WEEK})
    assert report.requests_planned == 1 and more.http.stats.requests == 1
    assert {r.refetched.get("ITC") for r in report.days.values()} == {"absent"}
    after = frame(tick_home, "upstox", TF5, WEEK[2])
    assert after.filter(pl.col("symbol") != "ITC").equals(before)
    assert after.filter(pl.col("symbol") == "ITC").height == 75


def test_interior_holes_are_found_and_refetched(server, upstox_instruments, tick_home):
    source = upstox(server, upstox_instruments)
    backfill(source, tick_home, ["INFY", "TCS"], {TF5: WEEK})
    part = lakeio.partition(TF5, WEEK[1])
    manifest = lake.read_manifest(tick_home, "upstox", "candles", part)
    full = frame(tick_home, "upstox", TF5, WEEK[1])
    ist = pl.col("timestamp").dt.convert_time_zone("Asia/Kolkata").dt.strftime("%H:%M")
    holed = full.filter(
        ~((pl.col("symbol") == "INFY") & ist.is_between(pl.lit("10:00"), pl.lit("10:30")))
    )
    assert full.height - holed.height == 7
    lake.write_partition(
        tick_home, "upstox", "candles", part, holed, {"received": holed.height},
        time_column="timestamp", extra=manifest.extra,
    )  # fmt: skip
    state = lakeio.read_day(tick_home, "upstox", TF5, WEEK[1])
    assert len(state.holes("INFY")) == 7 and len(state.holes("TCS")) == 0
    again = upstox(server, upstox_instruments)
    report = backfill(again, tick_home, ["INFY", "TCS"], {TF5: WEEK})
    assert again.http.stats.requests == 1  # INFY, that one day
    assert report.days[("5minute", WEEK[1].isoformat())].refetched == {"INFY": "hole"}
    assert frame(tick_home, "upstox", TF5, WEEK[1]).equals(full)


def test_candles_the_venue_lacks_are_recorded_missing_not_invented(
    server, upstox_instruments, venue, tick_home
):
    source = upstox(server, upstox_instruments)
    keys, _ = source.resolve(["ACC", "ABB"])
    day, halt_day = WEEK[2], WEEK[3]
    server.call(venue.halt, keys["ACC"], day, range(60, 90))  # 10:15-10:44 IST, no trade
    server.call(venue.halt, keys["ABB"], halt_day)  # suspended all day
    report = backfill(source, tick_home, ["ACC", "ABB"], {TF5: [day, halt_day], TF1: [day]})
    acc5 = frame(tick_home, "upstox", TF5, day).filter(pl.col("symbol") == "ACC")
    assert acc5.height == 75 - 6
    stamps = acc5["timestamp"].dt.convert_time_zone("Asia/Kolkata").dt.strftime("%H:%M").to_list()
    assert "10:15" not in stamps and "10:40" not in stamps and "10:45" in stamps
    manifest = lake.read_manifest(tick_home, "upstox", "candles", lakeio.partition(TF5, day))
    assert manifest.extra["status"]["ACC"] == "missing"
    assert manifest.extra["missing"]["ACC"] == [
        ["2026-11-12T04:45:00+00:00", "2026-11-12T05:10:00+00:00"]
    ]
    assert report.days[("5minute", day.isoformat())].missing == {"ACC": 6}
    assert report.days[("1minute", day.isoformat())].missing == {"ACC": 30}
    abb = lake.read_manifest(tick_home, "upstox", "candles", lakeio.partition(TF5, halt_day))
    assert abb.extra["status"]["ABB"] == "missing"
    assert frame(tick_home, "upstox", TF5, halt_day).filter(pl.col("symbol") == "ABB").height == 0
    # confirmed missing candles are not asked for again ...
    again = upstox(server, upstox_instruments)
    backfill(again, tick_home, ["ACC", "ABB"], {TF5: [day, halt_day], TF1: [day]})
    assert again.http.stats.requests == 0
    # ... unless asked to
    forced = upstox(server, upstox_instruments)
    backfill(forced, tick_home, ["ACC"], {TF5: [day]}, EngineOptions(refetch_missing=True))
    assert forced.http.stats.requests == 1


def test_bad_responses_name_url_and_symbol_and_others_go_on(
    server, upstox_instruments, venue, tick_home
):
    source = upstox(server, upstox_instruments)
    keys, _ = source.resolve(["TCS", "ITC", "INFY", "SBIN"])
    server.call(venue.fault, keys["TCS"], "malformed")
    server.call(venue.fault, keys["ITC"], "empty")
    server.call(venue.fault, keys["INFY"], "500", 2)  # retried, then fine
    report = backfill(source, tick_home, list(keys), {TF5: [WEEK[0]]}, EngineOptions(workers=4))
    failed = report.failed_symbols("5minute", WEEK[0].isoformat())
    assert set(failed) == {"TCS", "ITC"}
    assert "malformed candle response" in failed["TCS"] and "for TCS" in failed["TCS"]
    assert "/v3/historical-candle/NSE_EQ%7C" in failed["TCS"]
    assert "the response body is empty" in failed["ITC"] and "for ITC" in failed["ITC"]
    assert report.http["http_5xx"] == 2 and report.http["retries"] == 2
    got = frame(tick_home, "upstox", TF5, WEEK[0])
    assert set(got["symbol"].unique()) == {"INFY", "SBIN"}
    manifest = lake.read_manifest(tick_home, "upstox", "candles", lakeio.partition(TF5, WEEK[0]))
    assert manifest.extra["status"]["TCS"] == "failed"
    assert "malformed candle response" in manifest.extra["errors"]["TCS"]
    # the next run fetches just the failed ones
    again = upstox(server, upstox_instruments)
    report = backfill(again, tick_home, list(keys), {TF5: [WEEK[0]]})
    assert again.http.stats.requests == 2
    assert set(frame(tick_home, "upstox", TF5, WEEK[0])["symbol"].unique()) == set(keys)


def test_timeouts_are_retried(server, upstox_instruments, venue, tick_home):
    source = UpstoxHistory(
        server.endpoints["upstox_rest"], SIM_UPSTOX_TOKENS["SIMUP1"], upstox_instruments,
        policy=RetryPolicy(attempts=3, base_s=0.05, timeout_s=0.5),
    )  # fmt: skip
    keys, _ = source.resolve(["HDFCBANK"])
    server.call(venue.fault, keys["HDFCBANK"], "slow")
    report = backfill(source, tick_home, ["HDFCBANK"], {DAYTF: [WEEK[0]]})
    assert report.http["timeouts"] == 1 and report.http["retries"] == 1 and report.http["ok"] == 1
    assert report.days[("day", WEEK[0].isoformat())].complete == ["HDFCBANK"]
    # a venue that never answers in time: the symbol fails, naming the URL and the cause
    server.call(venue.fault, keys["HDFCBANK"], "slow", 3)
    report = backfill(source, tick_home, ["HDFCBANK"], {DAYTF: [WEEK[1]]})
    error = report.failed_symbols("day", WEEK[1].isoformat())["HDFCBANK"]
    assert "gave up after 3 attempts; last: timed out after 0.5 s" in error
    assert "/v3/historical-candle/NSE_EQ%7C" in error


def test_expired_upstox_token_is_a_clear_error(server, upstox_instruments, tick_home):
    token = SIM_UPSTOX_TOKENS["SIMUP3"]
    server.call(next(v for v in server.venues if isinstance(v, UpstoxVenue)).rest.expire, token)
    source = UpstoxHistory(server.endpoints["upstox_rest"], token, upstox_instruments)
    with pytest.raises(CandleAuthError, match=r"\$UPSTOX_ACCESS_TOKEN.*03:30 IST") as err:
        backfill(source, tick_home, ["INFY"], {TF5: [WEEK[0]]})
    assert token not in str(err.value)


def test_kite_backfill_sequential_matches_upstox_and_expired_token_names_the_asset(
    server, upstox_instruments, tick_home
):
    app = SIM_APPS["indices"]
    token = access_token(server.endpoints, app)
    dump = parse_kite_instruments(download_instruments_dump(server.endpoints["kite_rest"]))
    kite = KiteHistory(server.endpoints["kite_rest"], app.api_key, token, dump, app="indices")
    report = backfill(
        kite, tick_home, ["INFY", "NIFTY 50"], {TF1: WEEK[:2]}, EngineOptions(workers=1)
    )
    assert report.requests_planned == 2 and report.http["http_429"] == 0
    backfill(upstox(server, upstox_instruments), tick_home, ["INFY", "NIFTY 50"], {TF1: WEEK[:2]})
    k = frame(tick_home, "kite", TF1, WEEK[1]).drop("instrument")
    u = frame(tick_home, "upstox", TF1, WEEK[1]).drop("instrument")
    assert k.height == 2 * 375
    assert k.drop("oi").equals(u.drop("oi"))  # same market, same candles
    assert frame(tick_home, "kite", TF1, WEEK[1])["instrument"].unique().sort().to_list() == [
        "256265", "408065",
    ]  # fmt: skip
    server.expire_access_tokens(token)
    expired = KiteHistory(server.endpoints["kite_rest"], app.api_key, token, dump, app="indices")
    with pytest.raises(
        CandleAuthError, match=r"materialize kite/access_token \(partition indices\)"
    ):
        backfill(expired, tick_home, ["TCS"], {TF1: WEEK[:1]})


def test_bad_ranges_are_clear_errors(server, upstox_instruments, tick_home):
    source = upstox(server, upstox_instruments)
    with pytest.raises(CandleRangeError, match=r"reversed: 2025-03-17 is after 2025-03-13; swap"):
        check_range(date(2025, 3, 17), date(2025, 3, 13))
    with pytest.raises(CandleRangeError, match=r"5minute candles from 2022-01-01 only.*2021-12-31"):
        backfill(source, tick_home, ["INFY"], {TF5: [date(2021, 12, 31), date(2022, 1, 3)]})
    with pytest.raises(CandleRangeError, match=r"in the future"):
        backfill(source, tick_home, ["INFY"], {TF5: [date(2026, 11, 24)]},
                 now=datetime(2026, 11, 21, 6, tzinfo=UTC))  # fmt: skip
    assert source.http.stats.requests == 0
    # day candles go back to 2000: 2021 is fine for them
    report = backfill(source, tick_home, ["INFY"], {DAYTF: [date(2021, 12, 31)]})
    assert report.days[("day", "2021-12-31")].rows == 1


def test_workers_share_one_limiter_and_get_no_429(server, upstox_instruments, tick_home, capsys):
    """120 one-day requests with 8 workers: paced to 50/s (so > 2 s), none refused."""
    source = UpstoxHistory(
        server.endpoints["upstox_rest"], SIM_UPSTOX_TOKENS["SIMUP2"], upstox_instruments,
        limiter=new_limiter(),
    )  # fmt: skip
    symbols = upstox_instruments.filter(pl.col("segment") == "NSE_EQ")["trading_symbol"].to_list()
    days = WEEK[:1]
    started = time.monotonic()
    report = backfill(
        source, tick_home, symbols[:120], {DAYTF: days}, EngineOptions(workers=8, progress=True)
    )
    elapsed = time.monotonic() - started
    assert report.http["requests"] == report.http["ok"] == 120
    assert report.http["http_429"] == 0
    assert elapsed >= 2.0  # 50 at once, 50 after 1.05 s, 20 after 2.1 s
    assert report.limiter["acquired"] == 120 and report.limiter["waited_s"] > 0
    assert "upstox candles" in capsys.readouterr().err  # the progress bar
    got = frame(tick_home, "upstox", DAYTF, days[0])
    assert got.height == 120 and np.all(got["volume"].to_numpy() > 0)
