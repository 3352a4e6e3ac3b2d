"""Instrument lookup logic: universe files, point-in-time resolution, table names, shards."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook

from tick_assets.sim.kite.universe import build_universe
from tick_assets.sources.kite import lookup as lk
from tick_assets.sources.kite.instruments import INSTRUMENT_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIVERSES = REPO_ROOT / "config" / "universes"


def dump(day: date) -> pl.DataFrame:
    """The simulated Kite instruments dump of ``day`` (seed 42, as the platform's sim mode)."""
    return build_universe(day, 42).instruments


def example_universes() -> list[tuple[str, str, pl.DataFrame]]:
    return [
        ("indices", "indices", lk.read_universe(UNIVERSES / "indices.xlsx")),
        ("nifty500", "nifty500", lk.read_universe(UNIVERSES / "nifty500.csv")),
    ]


def universe(*rows: dict) -> pl.DataFrame:
    full = [
        {**dict.fromkeys(lk.UNIVERSE_SCHEMA), "source": f"test:{i}", **r}
        for i, r in enumerate(rows)
    ]
    return pl.DataFrame(full, schema=lk.UNIVERSE_SCHEMA)


def synthetic_dump(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in INSTRUMENT_SCHEMA}
    full = [
        {**base, "exchange_token": r["instrument_token"] >> 8, "last_price": 1.0, "strike": 0.0,
         "tick_size": 0.05, "lot_size": 1, "segment": r.get("exchange", "NSE"),
         "exchange": "NSE", "instrument_type": "EQ", **r}
        for r in rows
    ]  # fmt: skip
    return pl.DataFrame(full, schema=INSTRUMENT_SCHEMA)


def equities(n: int, start: int = 0) -> pl.DataFrame:
    return synthetic_dump(
        [
            {"instrument_token": (i + 1) << 8 | 1, "tradingsymbol": f"SYM{i:05d}"}
            for i in range(start, start + n)
        ]
    )


# ---------------------------------------------------------------- table names


@pytest.mark.parametrize(
    ("symbol", "table"),
    [
        ("M&M", "M_M"),
        ("BAJAJ-AUTO", "BAJAJ_AUTO"),
        ("NIFTY 50", "NIFTY_50"),
        ("3MINDIA", "_3MINDIA"),
        ("order", "ORDER_T"),
        ("  l&t--fh ", "L_T_FH"),
    ],
)
def test_safe_table_names(symbol, table):
    assert lk.safe_table_name(symbol) == table


@given(
    st.text(min_size=1, max_size=80).filter(lambda t: any(c.isascii() and c.isalnum() for c in t))
)
def test_derived_table_names_are_always_safe_identifiers(text):
    name = lk.safe_table_name(text)
    assert lk.TABLE_NAME_RE.match(name) and name.upper() not in lk._RESERVED


def test_a_symbol_without_letters_or_digits_cannot_name_a_table():
    with pytest.raises(lk.UniverseError, match="no letters or digits"):
        lk.safe_table_name("&&")


# ---------------------------------------------------------------- universe files


def test_example_universes_ship_as_csv_and_xlsx_with_the_same_rows():
    for name, groups in (("indices", {"indices", "futures", "nifty50"}),
                         ("nifty500", {"group1", "group2", "group3"})):  # fmt: skip
        from_csv = lk.read_universe(UNIVERSES / f"{name}.csv")
        from_xlsx = lk.read_universe(UNIVERSES / f"{name}.xlsx")
        assert from_csv.drop("source").equals(from_xlsx.drop("source"))
        assert set(from_csv["group"].to_list()) == groups
    indices = lk.read_universe(UNIVERSES / "indices.xlsx")
    assert indices.height == 54 and indices["source"][0].endswith("indices.xlsx[indices]:2")
    nifty500 = lk.read_universe(UNIVERSES / "nifty500.csv")
    assert nifty500.height == 450
    assert not set(indices["symbol"].to_list()) & set(nifty500["symbol"].to_list())


def test_universe_file_errors_name_the_file_and_the_fix(tmp_path):
    cases = {
        "noheader.csv": ("ticker,table\nINFY,INFY\n", "no 'symbol' column in the header"),
        "badtype.csv": ("symbol,type\nINFY,EQ\nNIFTY,FUTURE\n", "badtype.csv:3: type 'FUTURE' is not one of"),
        "badtable.csv": ("symbol,table\nM&M,M&M\n", "badtable.csv:2: table 'M&M' is not a safe identifier"),
        "empty.csv": ("# nothing yet\n", "empty"),
        "header_only.csv": ("symbol\n", "lists no symbols"),
        "fake.xlsx": ("symbol\nINFY\n", "not a readable .xlsx workbook"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(lk.UniverseError) as err:
            lk.read_universe(tmp_path / name)
        assert message in str(err.value) and name in str(err.value), str(err.value)
    with pytest.raises(lk.UniverseError, match="does not exist"):
        lk.read_universe(tmp_path / "missing.csv")
    assert "e.g. M_M" in str(pytest.raises(lk.UniverseError, lk.check_table_name, "M&M", "x").value)


def test_xlsx_sheets_are_groups_and_headers_are_case_insensitive(tmp_path):
    book = Workbook()
    book.active.title = "Index"
    book.active.append(["Symbol", "TYPE", "Table_Name"])
    book.active.append(["NIFTY 50", "index", "NIFTY"])
    second = book.create_sheet("Stocks")
    second.append(["TradingSymbol"])
    second.append(["M&M"])
    second.append([None])
    second.append(["#COMMENTED"])
    book.save(tmp_path / "u.xlsx")
    rows = lk.read_universe(tmp_path / "u.xlsx")
    assert rows.select("symbol", "type", "table", "group").rows() == [
        ("NIFTY 50", "INDEX", "NIFTY", "Index"),
        ("M&M", None, None, "Stocks"),
    ]


# ---------------------------------------------------------------- resolution


def test_example_universes_resolve_on_a_simulated_day():
    day = date(2025, 3, 13)
    instruments = dump(day)
    lookup = lk.build_lookup(example_universes(), instruments, day)
    assert lookup.columns == list(lk.LOOKUP_COLUMNS)
    assert lookup.height == 504 and lookup["resolved"].all()
    assert lk.unresolved(lookup) == [] and lk.duplicate_tables(lookup) == {}

    def row(table: str) -> dict:
        (r,) = lookup.filter(pl.col("table_name") == table).to_dicts()
        return r

    token_of = dict(instruments.select("tradingsymbol", "instrument_token").iter_rows())
    assert row("M_M")["instrument_token"] == token_of["M&M"] and row("M_M")["symbol"] == "M&M"
    assert row("BAJAJ_AUTO")["instrument_token"] == token_of["BAJAJ-AUTO"]
    assert row("NIFTY")["kind"] == "INDEX" and row("NIFTY")["instrument_token"] == 256265
    assert row("NIFTYFUT")["tradingsymbol"] == "NIFTY25MARFUT"
    assert row("BANKNIFTYFUT")["tradingsymbol"] == "BANKNIFTY25MARFUT"
    assert row("RELIANCE")["app"] == "nifty500" or row("RELIANCE")["app"] == "indices"
    assert lk.shard_counts(lookup) == {"indices-0": 54, "nifty500-0": 450}


@pytest.mark.parametrize(
    ("day", "contract", "expiry"),
    [
        (date(2025, 3, 27), "NIFTY25MARFUT", date(2025, 3, 27)),  # expiry day: still March
        (date(2025, 3, 28), "NIFTY25APRFUT", date(2025, 4, 24)),  # the day after: next month
        (date(2025, 8, 28), "NIFTY25AUGFUT", date(2025, 8, 28)),  # last Thursday expiry
        (date(2025, 8, 29), "NIFTY25SEPFUT", date(2025, 9, 30)),  # first Tuesday monthly
        (date(2025, 9, 30), "NIFTY25SEPFUT", date(2025, 9, 30)),
        (date(2025, 10, 1), "NIFTY25OCTFUT", date(2025, 10, 28)),
    ],
)
def test_index_future_is_the_nearest_expiry_on_or_after_the_day(day, contract, expiry):
    rows = universe(
        {"symbol": "NIFTY", "type": "FUT"},
        {"symbol": "BANKNIFTY"},  # no type: not an NSE symbol, so its current future
    )
    lookup = lk.build_lookup([("indices", "indices", rows)], dump(day), day)
    nifty, bank = lookup.sort("table_name", descending=True).to_dicts()
    assert (nifty["table_name"], nifty["tradingsymbol"], nifty["expiry"]) == (
        "NIFTYFUT", contract, expiry,
    )  # fmt: skip
    assert bank["table_name"] == "BANKNIFTYFUT" and bank["expiry"] == expiry
    assert bank["tradingsymbol"] == contract.replace("NIFTY", "BANKNIFTY", 1)


def test_future_expiry_comes_from_the_dump_not_a_weekday_rule():
    """A contract expiring on a Monday (a holiday moved it) is still the current one."""
    instruments = synthetic_dump(
        [
            {"instrument_token": 1 << 8 | 2, "tradingsymbol": "NIFTY26NOVFUT", "name": "NIFTY",
             "expiry": date(2026, 11, 23), "exchange": "NFO", "segment": "NFO-FUT",
             "instrument_type": "FUT"},
            {"instrument_token": 2 << 8 | 2, "tradingsymbol": "NIFTY26DECFUT", "name": "NIFTY",
             "expiry": date(2026, 12, 29), "exchange": "NFO", "segment": "NFO-FUT",
             "instrument_type": "FUT"},
        ]
    )  # fmt: skip
    rows = universe({"symbol": "NIFTY", "type": "FUT"})
    picked = lambda day: lk.build_lookup([("a", "u", rows)], instruments, day)["tradingsymbol"][0]  # noqa: E731
    assert picked(date(2026, 11, 20)) == "NIFTY26NOVFUT"
    assert picked(date(2026, 11, 23)) == "NIFTY26NOVFUT"
    assert picked(date(2026, 11, 24)) == "NIFTY26DECFUT"


def test_unresolved_symbols_stay_listed_with_the_reason():
    day = date(2025, 3, 13)
    rows = universe(
        {"symbol": "RELIANCE"},
        {"symbol": "OLDNAME"},  # renamed or delisted
        {"symbol": "NOSUCHINDEX", "type": "FUT"},
        {"symbol": "RELIANCE", "type": "INDEX"},
    )
    lookup = lk.build_lookup([("nifty500", "nifty500", rows)], dump(day), day)
    missing = {r["symbol"] + "/" + r["source"]: r["problem"] for r in lk.unresolved(lookup)}
    assert set(missing) == {"OLDNAME/test:1", "NOSUCHINDEX/test:2", "RELIANCE/test:3"}
    assert "renamed or delisted" in missing["OLDNAME/test:1"]
    assert (
        "no NFO future of 'NOSUCHINDEX' expiring on or after 2025-03-13"
        in missing["NOSUCHINDEX/test:2"]
    )
    bad = lookup.filter(~pl.col("resolved"))
    assert bad["instrument_token"].is_null().all() and bad["shard"].is_null().all()
    assert lookup.filter(pl.col("resolved"))["shard"].to_list() == ["nifty500-0"]


def test_duplicates_are_reported_and_distinct_instruments_never_collide():
    instruments = synthetic_dump(
        [
            {"instrument_token": 1 << 8 | 1, "tradingsymbol": "M&M"},
            {"instrument_token": 2 << 8 | 1, "tradingsymbol": "M-M"},
            {"instrument_token": 3 << 8 | 1, "tradingsymbol": "INFY"},
            {"instrument_token": 4 << 8 | 1, "tradingsymbol": "TCS"},
        ]
    )
    day = date(2026, 11, 20)
    one = universe({"symbol": "M-M"}, {"symbol": "M&M"}, {"symbol": "INFY"})
    two = universe({"symbol": "INFY"}, {"symbol": "TCS", "table": "M_M_2"})
    lookup = lk.build_lookup([("a", "one", one), ("b", "two", two)], instruments, day)
    names = dict(zip(lookup["symbol"], lookup["table_name"], strict=True))
    assert names["M&M"] == "M_M"  # '&' sorts before '-': M&M keeps the plain name
    assert names["M-M"] == "M_M_3"  # M_M_2 is taken by an explicit table
    dupes = lk.duplicate_tables(lookup)
    assert list(dupes) == ["INFY"]  # the same instrument in two apps' universes
    assert dupes["INFY"] == ["a: INFY (test:2)", "b: INFY (test:0)"]


# ---------------------------------------------------------------- shards


def test_shards_respect_kite_limits_and_report_overflow():
    instruments = equities(9001)
    day = date(2026, 11, 20)
    rows = universe(*({"symbol": s} for s in instruments["tradingsymbol"].to_list()[:9000]))
    full = lk.build_lookup([("big", "u", rows)], instruments, day)
    assert lk.shard_counts(full) == {"big-0": 3000, "big-1": 3000, "big-2": 3000}
    assert lk.shard_problems(full) == []

    over = universe(*({"symbol": s} for s in instruments["tradingsymbol"].to_list()))
    lookup = lk.build_lookup([("big", "u", over)], instruments, day)
    assert lookup["resolved"].all() and lookup["connection"].is_not_null().all()  # none dropped
    assert lk.shard_counts(lookup)["big-3"] == 1
    assert lk.shard_problems(lookup) == [
        "app 'big': needs 4 websocket connections (Kite allows 3 per api_key); move symbols "
        "to another app"
    ]
    crowded = full.with_columns(pl.lit(0, dtype=pl.Int64).alias("connection"))
    assert lk.shard_problems(crowded) == [
        "big-0: 9000 instruments on one connection (Kite allows 3000)"
    ]


def test_shards_are_stable_from_day_to_day():
    instruments = equities(7000)
    symbols = instruments["tradingsymbol"].to_list()
    day1, day2, day3 = date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)
    rows = universe(*({"symbol": s} for s in symbols[:6500]))
    first = lk.build_lookup([("app", "u", rows)], instruments, day1)
    assert lk.shard_counts(first) == {"app-0": 3000, "app-1": 3000, "app-2": 500}
    # unchanged universe, previous day's lookup given: the very same assignment
    second = lk.build_lookup([("app", "u", rows)], instruments, day2, previous=first)
    assert second.select("table_name", "shard").equals(first.select("table_name", "shard"))
    # 300 symbols leave from the start of the alphabet, 400 new ones arrive at its end
    changed = universe(*({"symbol": s} for s in symbols[300:6900]))
    third = lk.build_lookup([("app", "u", changed)], instruments, day3, previous=second)
    before = dict(second.select("table_name", "connection").iter_rows())
    kept = third.filter(pl.col("table_name").is_in(list(before)))
    assert all(before[t] == c for t, c in kept.select("table_name", "connection").iter_rows())
    new = third.filter(~pl.col("table_name").is_in(list(before)))
    assert new.height == 400
    # the 300 freed places on connection 0 are filled first, then connection 2
    assert new.group_by("connection").len().sort("connection").rows() == [(0, 300), (2, 100)]
    assert lk.shard_problems(third) == []
