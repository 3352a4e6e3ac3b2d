"""The simulated market: deterministic, internally consistent, and consistent with its candles."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from tick_assets.sim.kite import sessions
from tick_assets.sim.kite.candles import candles
from tick_assets.sim.kite.market import LiveMarket
from tick_assets.sim.kite.paths import SECONDS
from tick_assets.sim.kite.universe import build_universe
from tick_assets.sources.kite.codec import decode_frames, encode_frames

DAY = date(2026, 11, 20)


@pytest.fixture(scope="module")
def market() -> LiveMarket:
    return LiveMarket(build_universe(DAY), rate=20_000, speed=400)


def _row(m: LiveMarket, token: int) -> int:
    return int(m.universe.rows_of(np.array([token]))[0])


def _walk(m: LiveMarket, token: int, seconds: np.ndarray) -> dict:
    rows = np.full(len(seconds), _row(m, token))
    return m.state(rows, seconds, np.arange(len(seconds), dtype=np.uint64))


def test_same_seed_same_stream_other_seed_other_prices(market):
    twin = LiveMarket(build_universe(DAY), rate=20_000, speed=400)
    for batch in (0, 17, 900):
        rows_a, a = market.batch_ticks(batch)
        rows_b, b = twin.batch_ticks(batch)
        assert len(rows_a) == 400
        np.testing.assert_array_equal(rows_a, rows_b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    other = LiveMarket(build_universe(DAY, seed=8), rate=20_000, speed=400)
    rows = np.arange(len(market.universe))
    seconds = np.full(len(rows), 5000)
    jitter = np.zeros(len(rows), dtype=np.uint64)
    mine = market.state(rows, seconds, jitter)["last_price"]
    theirs = other.state(rows, seconds, jitter)["last_price"]
    assert (mine != theirs).mean() > 0.9


def test_ticks_are_a_consistent_day(market):
    seconds = np.arange(0, SECONDS, 7)
    tokens = (408065, 256265, 262915)  # INFY, NIFTY 50, USDINR CDS future
    rows = np.repeat([_row(market, t) for t in tokens], len(seconds))
    both = market.state(rows, np.tile(seconds, len(tokens)), np.arange(len(rows), dtype=np.uint64))
    for i, token in enumerate(tokens):
        s = {k: v[i * len(seconds) : (i + 1) * len(seconds)] for k, v in both.items()}
        price, high, low = s["last_price"], s["high"], s["low"]
        assert (low <= price).all() and (price <= high).all()
        assert (np.diff(high) >= 0).all() and (np.diff(low) <= 0).all()
        assert (np.diff(s["volume_traded"]) >= 0).all()
        assert (np.diff(s["exchange_timestamp"].astype(np.int64)) == 7).all()
        tick = float(market.universe.params.tick[_row(market, token)])
        assert np.allclose(np.round(price / tick) * tick, price)
    infy = {k: v[: len(seconds)] for k, v in both.items()}
    assert infy["volume_traded"][-1] > 100_000
    assert (infy["bid_price_1"] <= infy["last_price"]).all()
    assert (infy["ask_price_1"] >= infy["last_price"]).all()
    assert (infy["bid_price_1"] > infy["bid_price_5"]).all()
    first_ts = datetime.fromtimestamp(int(infy["exchange_timestamp"][0].astype(np.int64)))
    assert first_ts.timestamp() == sessions.session_open_epoch(DAY)


def test_minute_candles_are_the_ohlcv_of_the_ticks(market):
    token, minute = 738561, 123  # RELIANCE, 11:18 IST
    s = _walk(market, token, np.arange(minute * 60 - 1, minute * 60 + 60))
    row = _row(market, token)
    p = market.universe.params.take(np.array([row]))
    bars = candles(7, p, "minute", datetime(2026, 11, 20, 11, 18), datetime(2026, 11, 20, 11, 18),
                   DAY, SECONDS, with_oi=False)  # fmt: skip
    assert len(bars) == 1
    ts, o, h, low, c, v = bars[0]
    assert ts == "2026-11-20T11:18:00+0530"
    prices = s["last_price"][1:]
    assert (o, h, low, c) == (prices[0], prices.max(), prices.min(), prices[-1])
    assert v == s["volume_traded"][-1] - s["volume_traded"][0]


def test_previous_close_is_yesterdays_last_price():
    today = LiveMarket(build_universe(DAY), rate=1)
    yesterday = LiveMarket(build_universe(sessions.previous_session_day(DAY)), rate=1)
    rows = np.arange(len(today.universe))
    # rows line up for instruments listed on both days (equities and indices come first)
    eq = rows[:502]
    closing = yesterday.state(eq, np.full(len(eq), SECONDS - 1), np.zeros(len(eq), np.uint64))
    opening = today.snapshot(eq, today.open_epoch - 600)  # the LVC before the open
    np.testing.assert_array_equal(opening["close"], closing["last_price"])
    np.testing.assert_array_equal(opening["last_price"], closing["last_price"])
    assert (opening["volume_traded"] == 0).all()


def test_batches_cover_the_session_then_stop(market):
    assert market.batch_at(market.open_epoch) == 0
    assert len(market.events(-1)[0]) == 0
    assert len(market.events(market.last_batch + 1)[0]) == 0
    rows, seconds, _ = market.events(market.last_batch)
    assert len(rows) and (seconds < SECONDS).all() and (np.diff(seconds) >= 0).all()


def test_ticks_encode_to_kite_frames_that_decode_back(market):
    rows, cols = market.batch_ticks(300)
    modes = np.array(["ltp", "quote", "full"], dtype=object)[np.arange(len(rows)) % 3]
    frames = encode_frames({**cols, "mode": modes})
    result = decode_frames(frames)
    assert not result.rejected and result.ticks.num_rows == len(rows)
    decoded = result.ticks.to_pydict()
    np.testing.assert_allclose(decoded["last_price"], cols["last_price"])
    assert decoded["instrument_token"] == cols["instrument_token"].tolist()
