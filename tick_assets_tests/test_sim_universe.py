"""The simulated instrument universe and the instruments-dump helpers it is served with."""

from __future__ import annotations

import gzip
import re
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tick_assets import calendars
from tick_assets.sim.kite import universe as universe_mod
from tick_assets.sim.kite.universe import build_universe, equities
from tick_assets.sources.kite.instruments import (
    INSTRUMENT_COLUMNS,
    InstrumentsError,
    parse_instruments,
    to_csv_bytes,
)
from tick_assets.sources.kite.limits import historical_chunks, historical_span_error

DAY = date(2026, 11, 20)  # a Friday. Tue 24 Nov 2026 is a holiday, so November expires Mon 23rd
SEGMENT_CODE = {"NSE": 1, "NFO-FUT": 2, "NFO-OPT": 2, "CDS-FUT": 3, "BCD-FUT": 6, "INDICES": 9}


@pytest.fixture(scope="module")
def dump() -> pl.DataFrame:
    return build_universe(DAY).instruments


def test_columns_are_kites_in_order(dump):
    assert tuple(dump.columns) == INSTRUMENT_COLUMNS


def test_nifty_500_equities_with_special_symbols(dump):
    eq = dump.filter(pl.col("segment") == "NSE")
    assert eq.height == 500
    assert eq["tradingsymbol"].n_unique() == 500
    assert sum(1 for e in equities() if e["index"] == "NIFTY50") == 50
    for symbol in ("M&M", "BAJAJ-AUTO", "J&KBANK", "M&MFIN", "NAM-INDIA", "RELIANCE", "INFY"):
        assert symbol in eq["tradingsymbol"].to_list(), symbol
    infy = eq.filter(pl.col("tradingsymbol") == "INFY").row(0, named=True)
    assert infy["instrument_token"] == 408065 and infy["exchange_token"] == 1594


def test_indices_rows(dump):
    idx = dump.filter(pl.col("segment") == "INDICES").sort("instrument_token")
    assert idx["instrument_token"].to_list() == [256265, 260105]
    assert idx["tradingsymbol"].to_list() == ["NIFTY 50", "NIFTY BANK"]
    assert set(idx["exchange"]) == {"NSE"}


def test_token_is_exchange_token_shifted_with_segment(dump):
    codes = dump["segment"].replace_strict(SEGMENT_CODE, return_dtype=pl.Int64)
    assert (dump["instrument_token"] == (dump["exchange_token"] * 256 + codes)).all()
    assert dump["instrument_token"].n_unique() == dump.height
    assert dump["instrument_token"].max() < 2**32


def test_futures_expire_on_the_last_tuesday_three_months(dump):
    fut = dump.filter(pl.col("segment") == "NFO-FUT")
    nifty = fut.filter(pl.col("name") == "NIFTY").sort("expiry")
    assert nifty["tradingsymbol"].to_list() == ["NIFTY26NOVFUT", "NIFTY26DECFUT", "NIFTY27JANFUT"]
    nov, dec, jan = nifty["expiry"].to_list()
    assert nov == date(2026, 11, 23) == calendars.last_weekday_expiry(2026, 11)  # holiday moved
    assert dec == calendars.last_weekday_expiry(2026, 12)
    assert jan.weekday() == 1 and (jan + timedelta(days=7)).month == 2
    assert fut.filter(pl.col("name") == "BANKNIFTY").height == 3
    stock = fut.filter(pl.col("name") == "RELIANCE")
    assert stock.height == 3 and (stock["lot_size"] > 1).all()
    assert all(re.fullmatch(r"[A-Z0-9&-]+\d\d[A-Z]{3}FUT", s) for s in fut["tradingsymbol"])


def test_options_around_the_money_for_the_current_expiry(dump):
    opt = dump.filter(pl.col("segment") == "NFO-OPT")
    assert set(opt["instrument_type"]) == {"CE", "PE"}
    assert set(opt["expiry"]) == {date(2026, 11, 23)}
    u = build_universe(DAY)
    for name, token, step in (("NIFTY", 256265, 50), ("BANKNIFTY", 260105, 100)):
        strikes = opt.filter(pl.col("name") == name)["strike"]
        spot = float(u.prev_close[int(u.rows_of(np.array([token]))[0])])
        assert (strikes % step == 0).all()
        assert strikes.min() < spot < strikes.max()
        assert (abs(strikes - spot) <= 10 * step + step).all()
    assert "NIFTY26NOV" in opt["tradingsymbol"][0]
    assert all(re.fullmatch(r"(NIFTY|BANKNIFTY)26NOV\d+(CE|PE)", s) for s in opt["tradingsymbol"])


def test_currency_futures_exercise_both_divisor_segments(dump):
    cds = dump.filter(pl.col("exchange") == "CDS")
    bcd = dump.filter(pl.col("exchange") == "BCD")
    assert cds.height >= 3 and bcd.height >= 3
    assert ((cds["instrument_token"] & 0xFF) == 3).all()
    assert ((bcd["instrument_token"] & 0xFF) == 6).all()
    assert (cds["tick_size"] == 0.0025).all()
    assert cds.filter(pl.col("tradingsymbol") == "USDINR26NOVFUT").height == 1


def test_contracts_roll_after_expiry():
    after = build_universe(date(2026, 11, 25)).instruments
    symbols = set(after["tradingsymbol"])
    assert "NIFTY26NOVFUT" not in symbols
    assert {"NIFTY26DECFUT", "NIFTY27JANFUT", "NIFTY27FEBFUT"} <= symbols


def test_expiry_moves_from_thursday_to_tuesday_in_september_2025():
    """Contracts expiring before 1 Sep 2025 used the last Thursday; from then, the last Tuesday."""

    def nifty_expiries(day: date) -> list[date]:
        dump = build_universe(day).instruments
        fut = dump.filter((pl.col("name") == "NIFTY") & (pl.col("instrument_type") == "FUT"))
        return sorted(fut["expiry"].to_list())

    aug, sep, oct_ = nifty_expiries(date(2025, 8, 1))
    assert (aug, sep, oct_) == (date(2025, 8, 28), date(2025, 9, 30), date(2025, 10, 28))
    assert [d.strftime("%a") for d in (aug, sep, oct_)] == ["Thu", "Tue", "Tue"]
    assert nifty_expiries(date(2025, 3, 3))[0] == date(2025, 3, 27)  # a Thursday


def test_same_symbol_keeps_its_token_across_days_and_seeds():
    a = build_universe(DAY, seed=7).instruments
    b = build_universe(date(2026, 11, 23), seed=99).instruments
    joined = a.join(b, on=["exchange", "tradingsymbol"], suffix="_b")
    assert joined.height > 1000
    assert (joined["instrument_token"] == joined["instrument_token_b"]).all()


def test_universe_is_deterministic_per_day_and_seed():
    first = universe_mod._build.__wrapped__(DAY, 7).instruments
    again = universe_mod._build.__wrapped__(DAY, 7).instruments
    other = universe_mod._build.__wrapped__(DAY, 8).instruments
    assert first.equals(again)
    assert not first["last_price"].equals(other["last_price"])


def test_dump_round_trips_through_gzip_csv(dump):
    raw = gzip.compress(to_csv_bytes(dump))
    for data in (raw, gzip.decompress(raw)):
        parsed = parse_instruments(data)
        assert parsed.schema["expiry"] == pl.Date and parsed.schema["instrument_token"] == pl.Int64
        assert parsed.equals(dump)


def test_parse_instruments_rejects_non_dumps():
    with pytest.raises(InstrumentsError, match="lacks columns"):
        parse_instruments(b"a,b\n1,2\n")
    with pytest.raises(InstrumentsError, match="gzip"):
        parse_instruments(gzip.compress(b"x" * 100)[:20])


def test_historical_span_rules():
    start = datetime(2026, 1, 1)
    assert historical_span_error("minute", start, start + timedelta(days=60)) is None
    assert historical_span_error("minute", start, start + timedelta(days=61)) == (
        "interval exceeds max limit: 60 days"
    )
    assert "invalid interval" in historical_span_error("2minute", start, start)
    chunks = historical_chunks("minute", start, start + timedelta(days=150))
    assert (
        len(chunks) == 3 and chunks[0][0] == start and chunks[-1][1] == start + timedelta(days=150)
    )
    assert all(historical_span_error("minute", a, b) is None for a, b in chunks)
