"""CoinGecko -> Binance mapping rules and the override file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tick_assets.sources.binance.universe import (
    Overrides,
    OverridesError,
    load_overrides,
    map_universe,
)
from tick_assets.sources.coingecko.rankings import RANKING_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[1]


def _ranking(*coins: tuple[str, str, float, bool, bool]) -> pl.DataFrame:
    rows = [
        {
            "rank": i + 1,
            "id": cid,
            "symbol": sym,
            "name": cid,
            "market_cap": cap,
            "stablecoin": stable,
            "wrapped": wrapped,
        }  # fmt: skip
        for i, (cid, sym, cap, stable, wrapped) in enumerate(coins)
    ]
    return pl.DataFrame(rows, schema={k: RANKING_SCHEMA[k] for k in rows[0]})


def _info(*pairs: tuple[str, str, str]) -> dict:
    return {
        "symbols": [
            {
                "symbol": s,
                "status": status,
                "baseAsset": base,
                "quoteAsset": s.removeprefix(base),
                "isSpotTradingAllowed": True,
            }  # fmt: skip
            for s, base, status in pairs
        ]
    }


INFO = _info(
    ("BTCUSDT", "BTC", "TRADING"),
    ("USDCUSDT", "USDC", "TRADING"),
    ("WBTCUSDT", "WBTC", "TRADING"),
    ("XMRUSDT", "XMR", "BREAK"),
    ("BTTCUSDT", "BTTC", "TRADING"),
    ("NEIROUSDT", "NEIRO", "TRADING"),
    ("ETHBTC", "ETH", "TRADING"),
)


def test_rules_and_reasons():
    ranking = _ranking(
        ("bitcoin", "btc", 1000.0, False, False),
        ("ethereum", "eth", 400.0, False, False),  # only ETHBTC: no USDT pair
        ("usd-coin", "usdc", 50.0, True, False),
        ("wrapped-bitcoin", "wbtc", 14.0, False, False),  # known wrapped symbol, no flag
        ("monero", "xmr", 3.0, False, False),
        ("neiro-3", "neiro", 1.2, False, False),
        ("first-neiro-on-ethereum", "neiro", 1.5, False, False),  # listed lower, larger cap
        ("bittorrent", "btt", 1.0, False, False),
    )
    overrides = Overrides(base={"bittorrent": "BTTC"})
    mapped, unmapped = map_universe(ranking, INFO, overrides)
    assert dict(zip(mapped["id"], mapped["binance_symbol"], strict=True)) == {
        "bitcoin": "BTCUSDT",
        "first-neiro-on-ethereum": "NEIROUSDT",
        "bittorrent": "BTTCUSDT",
    }
    assert mapped.filter(pl.col("id") == "bittorrent")["override"][0]
    reasons = dict(zip(unmapped["id"], unmapped["reason"], strict=True))
    assert reasons == {
        "ethereum": "no_pair",
        "usd-coin": "stablecoin",
        "wrapped-bitcoin": "wrapped",
        "monero": "not_trading",
        "neiro-3": "duplicate_symbol",
    }
    detail = unmapped.filter(pl.col("id") == "neiro-3")["detail"][0]
    assert "first-neiro-on-ethereum" in detail


def test_exclude_and_include_overrides():
    ranking = _ranking(
        ("bitcoin", "btc", 1000.0, False, False), ("usd-coin", "usdc", 50.0, True, False)
    )
    overrides = Overrides(exclude={"bitcoin": "test"}, include={"usd-coin": "test"})
    mapped, unmapped = map_universe(ranking, INFO, overrides)
    assert mapped["binance_symbol"].to_list() == ["USDCUSDT"]
    assert unmapped["reason"].to_list() == ["excluded"] and "test" in unmapped["detail"][0]


def test_the_shipped_override_file_loads():
    overrides = load_overrides(REPO_ROOT / "config" / "crypto" / "binance_overrides.toml")
    assert overrides.base["bittorrent"] == "BTTC" and overrides.base["sats-ordinals"] == "1000SATS"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[base]\nbittorrent = 'bttc'\n", "upper-case"),
        ("[bases]\n", "unknown table"),
        ("[exclude]\nBitcoin = 'x'\n", "not a CoinGecko id"),
        ("[exclude]\nbitcoin = 'x'\n[include]\nbitcoin = 'y'\n", "both excluded and included"),
        ("[base\n", "not valid TOML"),
    ],
)
def test_a_bad_override_file_names_the_problem(tmp_path, text, message):
    path = tmp_path / "overrides.toml"
    path.write_text(text)
    with pytest.raises(OverridesError, match=message) as err:
        load_overrides(path)
    assert str(path) in str(err.value)


def test_a_missing_override_file_says_what_to_do(tmp_path):
    with pytest.raises(OverridesError, match="does not exist"):
        load_overrides(tmp_path / "nope.toml")
