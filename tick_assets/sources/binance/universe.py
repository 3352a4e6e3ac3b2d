"""Map a CoinGecko ranking to Binance spot pairs: the tradable crypto universe of one day.

Walking the ranking by market cap (largest first), each coin becomes ``<BASE><QUOTE>`` (BASE
is the CoinGecko symbol upper-cased unless the override file says otherwise) if exchangeInfo
lists that pair with status TRADING and spot trading allowed. Left out, each with a reason:
stablecoins and wrapped or liquid-staking tokens (CoinGecko's categories that day, plus the
known lists below), coins the override file excludes, coins with no such pair or a pair that
is not trading (e.g. BREAK after a delisting), and a coin whose pair was already taken by a
coin with a larger market cap (CoinGecko symbols are not unique).

The override file (TOML, default config/crypto/binance_overrides.toml):

    [base]      # CoinGecko id = Binance base asset, where the tickers differ
    bittorrent = "BTTC"
    [exclude]   # CoinGecko id = reason; never mapped
    [include]   # CoinGecko id = reason; mapped even if flagged stablecoin/wrapped
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

# Fallbacks for when CoinGecko's categories miss a coin (symbols, lower-case).
# fmt: off
KNOWN_STABLECOINS = frozenset([
    "usdt", "usdc", "fdusd", "tusd", "dai", "usde", "usds", "pyusd", "usd1", "rlusd", "busd",
    "usdp", "eurc", "gusd", "frax", "lusd", "susd", "usdd", "usdj", "usdx", "ust", "aeur", "eurt",
    "xsgd",
])
KNOWN_WRAPPED = frozenset([
    "wbtc", "weth", "steth", "wsteth", "cbbtc", "weeth", "reth", "bnsol", "jitosol", "wbeth",
    "msol", "cbeth", "rseth", "ezeth", "solvbtc", "lbtc", "tbtc", "btcb", "wbnb", "wsol",
])
# fmt: on
_BASE_RE = re.compile(r"^[A-Z0-9]{1,16}$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9\-_.]{0,99}$")

MAPPED_SCHEMA = {
    "rank": pl.Int32,
    "id": pl.String,
    "symbol": pl.String,
    "name": pl.String,
    "market_cap": pl.Float64,
    "total_volume": pl.Float64,
    "binance_symbol": pl.String,
    "base_asset": pl.String,
    "quote_asset": pl.String,
    "override": pl.Boolean,
}
UNMAPPED_SCHEMA = {
    "rank": pl.Int32,
    "id": pl.String,
    "symbol": pl.String,
    "market_cap": pl.Float64,
    "reason": pl.String,  # one of REASONS
    "detail": pl.String,
}
REASONS = ("stablecoin", "wrapped", "excluded", "no_pair", "not_trading", "duplicate_symbol")


class OverridesError(ValueError):
    """The override file is unreadable or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Overrides:
    base: dict[str, str] = field(default_factory=dict)
    exclude: dict[str, str] = field(default_factory=dict)
    include: dict[str, str] = field(default_factory=dict)
    source: str = ""


def load_overrides(path: Path | str | None) -> Overrides:
    """Read and check the override file (None or a missing default: no overrides)."""
    if path is None:
        return Overrides()
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise OverridesError(
            f"Binance override file {path} does not exist; create it (see "
            "config/crypto/binance_overrides.toml) or fix [venues.binance].overrides_file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise OverridesError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    unknown = set(raw) - {"base", "exclude", "include"}
    if unknown:
        raise OverridesError(
            f"{path}: unknown table(s) {sorted(unknown)}; allowed: [base], [exclude], [include]"
        )
    tables: dict[str, dict[str, str]] = {}
    for table in ("base", "exclude", "include"):
        entries = raw.get(table, {})
        if not isinstance(entries, dict):
            raise OverridesError(f"{path}: [{table}] must be a table of id = value lines")
        for cid, value in entries.items():
            if not _ID_RE.match(cid):
                raise OverridesError(
                    f"{path} [{table}] {cid!r}: not a CoinGecko id (lower-case, e.g. bitcoin)"
                )
            if not isinstance(value, str) or not value:
                raise OverridesError(f"{path} [{table}] {cid}: the value must be a string")
            if table == "base" and not _BASE_RE.match(value):
                raise OverridesError(
                    f"{path} [base] {cid} = {value!r}: a Binance base asset is upper-case "
                    "letters and digits (e.g. BTTC, 1000SATS)"
                )
        tables[table] = dict(entries)
    both = set(tables["exclude"]) & set(tables["include"])
    if both:
        raise OverridesError(f"{path}: {sorted(both)} are both excluded and included; pick one")
    return Overrides(**tables, source=str(path))


def tradable_pairs(exchange_info: dict) -> dict[str, dict]:
    """exchangeInfo symbols by name."""
    return {s["symbol"]: s for s in exchange_info.get("symbols", []) if "symbol" in s}


def _classify(
    row: dict, pairs: dict[str, dict], overrides: Overrides, quote: str
) -> tuple[str, str, str]:
    """(pair, reason, detail) of one ranked coin; reason "" when the pair is usable."""
    cid, symbol = row["id"], row["symbol"]
    forced = cid in overrides.include
    if cid in overrides.exclude:
        return "", "excluded", f"override file: {overrides.exclude[cid]}"
    if not forced and (row.get("stablecoin") or symbol in KNOWN_STABLECOINS):
        return "", "stablecoin", "a stablecoin is not a crypto market to follow"
    if not forced and (row.get("wrapped") or symbol in KNOWN_WRAPPED):
        return "", "wrapped", "a wrapped or staked token duplicates its underlying"
    pair = f"{overrides.base.get(cid, symbol.upper())}{quote}"
    info = pairs.get(pair)
    if info is None:
        return pair, "no_pair", f"Binance lists no {pair}"
    if info.get("status") != "TRADING" or info.get("isSpotTradingAllowed") is False:
        return pair, "not_trading", f"{pair} status is {info.get('status')}"
    if info.get("quoteAsset") not in (None, quote):
        return pair, "no_pair", f"{pair} quotes {info.get('quoteAsset')}, not {quote}"
    return pair, "", ""


def map_universe(
    ranking: pl.DataFrame, exchange_info: dict, overrides: Overrides, quote: str = "USDT"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(mapped pairs in MAPPED_SCHEMA, unmapped coins in UNMAPPED_SCHEMA), both by rank."""
    pairs = tradable_pairs(exchange_info)
    ordered = ranking.sort(["market_cap", "rank"], descending=[True, False], nulls_last=True)
    taken: dict[str, tuple[str, float]] = {}
    mapped, unmapped = [], []
    for row in ordered.iter_rows(named=True):
        cid, cap = row["id"], row["market_cap"]
        pair, reason, detail = _classify(row, pairs, overrides, quote)
        if not reason and pair in taken:
            other, other_cap = taken[pair]
            reason = "duplicate_symbol"
            detail = f"{pair} goes to {other} (market cap {other_cap:,.0f} > {cap:,.0f})"
        if reason:
            unmapped.append({"rank": row["rank"], "id": cid, "symbol": row["symbol"],
                             "market_cap": cap, "reason": reason, "detail": detail})  # fmt: skip
            continue
        taken[pair] = (cid, cap)
        info = pairs[pair]
        mapped.append(
            {
                "rank": row["rank"],
                "id": cid,
                "symbol": row["symbol"],
                "name": row.get("name"),
                "market_cap": cap,
                "total_volume": row.get("total_volume"),
                "binance_symbol": pair,
                "base_asset": info.get("baseAsset", pair.removesuffix(quote)),
                "quote_asset": quote,
                "override": cid in overrides.base or cid in overrides.include,
            }
        )
    mapped_frame = pl.DataFrame(mapped, schema=MAPPED_SCHEMA).sort("rank")
    unmapped_frame = pl.DataFrame(unmapped, schema=UNMAPPED_SCHEMA).sort("rank")
    return mapped_frame, unmapped_frame
