"""The simulated Binance spot market: pairs, listings, delistings and 1-minute klines.

Klines are random-access and deterministic (tick_assets.sim.rng): the close path of a pair in
one month is a Brownian bridge between monthly levels, so any month (or any 1000-minute REST
window) comes out the same alone or in bulk, and months join without a jump (a month's first
open is the previous month's last close). Every value is an integer number of 1e-8 units, so
the archive CSVs and the REST JSON print exactly the same fixed 8-decimal strings Binance
prints. Exchange-wide maintenance windows leave the same minutes missing in every pair (as in
the real archive), a pair has no candles before its listing or after its delisting, and
generating a whole month for one pair takes a few milliseconds (numpy, no Python loop).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from tick_assets.sim import rng
from tick_assets.sim.coingecko.coins import COINS, Coin

MINUTE_MS = 60_000
E8 = 100_000_000
US_FROM = datetime(2025, 1, 1, tzinfo=UTC)  # spot archive timestamps are µs from this instant
US_FROM_MS = int(US_FROM.timestamp() * 1000)
EPOCH_MONTH = (2017, 1)  # month index 0 of the monthly level walk
ANCHOR_MONTH = (2025, 1)  # a pair's catalogue price is its level in this month
MONTH_SIGMA = 0.16
MAINTENANCE_PROBABILITY = 0.35
_SALT_MAINT = 0x6D61696E74
_SALT_PATH, _SALT_HL, _SALT_VOL, _SALT_TRADES, _SALT_TAKER = 1, 2, 3, 4, 5
_PATH_CACHE = 256


def month_index(year: int, month: int) -> int:
    return (year - EPOCH_MONTH[0]) * 12 + (month - EPOCH_MONTH[1])


def month_start(mi: int) -> datetime:
    year, month = divmod(mi + EPOCH_MONTH[1] - 1, 12)
    return datetime(EPOCH_MONTH[0] + year, month + 1, 1, tzinfo=UTC)


def month_start_ms(mi: int) -> int:
    return int(month_start(mi).timestamp() * 1000)


def minutes_in_month(mi: int) -> int:
    return (month_start_ms(mi + 1) - month_start_ms(mi)) // MINUTE_MS


def month_of_ms(ms: int) -> int:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return month_index(when.year, when.month)


@dataclass(frozen=True)
class Pair:
    """One spot pair: symbol, assets, listing window and price model parameters."""

    symbol: str
    base: str
    quote: str
    price: float  # level in ANCHOR_MONTH
    listed_at: datetime
    delisted_at: datetime | None
    sigma: float  # per-minute log volatility
    usd_per_minute: float  # typical quote volume per minute (USD)
    tick_e8: int
    step_e8: int
    key: int
    coin: Coin | None = None

    def status(self, now: datetime) -> str:
        if now < self.listed_at:
            return "PRE_TRADING"
        if self.delisted_at is not None and now >= self.delisted_at:
            return "BREAK"
        return "TRADING"


def _symbol_key(seed: int, symbol: str) -> int:
    raw = int.from_bytes(symbol.encode()[:8].ljust(8, b"\0"), "little")
    return int(
        rng.key(
            seed, raw, len(symbol), int.from_bytes(symbol.encode()[8:16].ljust(8, b"\0"), "little")
        )
    )


def _steps(price: float) -> tuple[int, int]:
    exponent = math.floor(math.log10(price))
    tick = 10 ** max(0, exponent + 8 - 6)
    qty_decimals = min(max(exponent + 1, 0), 8)
    return tick, 10 ** (8 - qty_decimals)


def _listing_time(seed: int, day: date, symbol: str) -> datetime:
    hour = (6, 8, 10, 12)[int(rng.uniform(rng.key(_symbol_key(seed, symbol), 77)) * 4)]
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def build_pairs(seed: int) -> dict[str, Pair]:
    """Every simulated spot pair: the catalogue's USDT pairs plus a few other quotes."""
    pairs: dict[str, Pair] = {}

    def add(symbol: str, base: str, quote: str, price: float, coin: Coin | None, listed: date,
            delisted: datetime | None, cap: float) -> None:  # fmt: skip
        key = _symbol_key(seed, symbol)
        tick, step = _steps(price)
        sigma = 0.0006 + 0.0010 * float(rng.uniform(rng.key(key, 1)))
        pairs[symbol] = Pair(
            symbol=symbol,
            base=base,
            quote=quote,
            price=price,
            listed_at=_listing_time(seed, listed, symbol),
            delisted_at=delisted,
            sigma=sigma,
            usd_per_minute=max(cap * 0.0008 / 1440.0, 2_000.0),
            tick_e8=tick,
            step_e8=step,
            key=key,
            coin=coin,
        )

    for coin in COINS:
        if coin.binance_base:
            add(f"{coin.binance_base}USDT", coin.binance_base, "USDT", coin.price, coin,
                coin.listed, coin.delisted, coin.market_cap)  # fmt: skip
    by_base = {c.binance_base: c for c in COINS if c.binance_base}
    btc = by_base["BTC"]
    for base in ("ETH", "BNB", "SOL", "XRP", "DOGE", "LINK", "ADA"):
        coin = by_base[base]
        add(
            f"{base}BTC",
            base,
            "BTC",
            coin.price / btc.price,
            None,
            coin.listed,
            None,
            coin.market_cap / 5,
        )
    for base in ("BTC", "ETH", "SOL", "BNB"):
        coin = by_base[base]
        add(
            f"{base}FDUSD",
            base,
            "FDUSD",
            coin.price,
            None,
            date(2023, 8, 1),
            None,
            coin.market_cap / 3,
        )
        add(
            f"{base}USDC",
            base,
            "USDC",
            coin.price,
            None,
            date(2023, 3, 13),
            None,
            coin.market_cap / 4,
        )
    # BitTorrent before its 2022 redenomination: the old pair, delisted; BTTC trades now.
    add(
        "BTTUSDT",
        "BTT",
        "USDT",
        0.003,
        None,
        date(2019, 1, 28),
        datetime(2022, 2, 14, tzinfo=UTC),
        5e8,
    )
    return pairs


def maintenance(seed: int, mi: int) -> tuple[int, int] | None:
    """The exchange-wide maintenance window of month ``mi`` as (first minute, minutes), if any."""
    k = rng.key(seed, _SALT_MAINT, mi)
    if float(rng.uniform(k)) >= MAINTENANCE_PROBABILITY:
        return None
    n = minutes_in_month(mi)
    length = 5 + int(float(rng.uniform(rng.key(k, 2))) * 116)
    start = int(float(rng.uniform(rng.key(k, 1))) * (n - length))
    return start, length


class KlineModel:
    """Klines of every pair, computed on demand with a small cache of monthly close paths."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.pairs = build_pairs(seed)
        self._paths: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._overrides: dict[str, datetime] = {}

    # --- listing state ------------------------------------------------------------------

    def pair(self, symbol: str) -> Pair | None:
        pair = self.pairs.get(symbol)
        if pair is not None and symbol in self._overrides:
            pair = replace(pair, delisted_at=self._overrides[symbol])
        return pair

    def delist(self, symbol: str, at: datetime) -> None:
        if symbol not in self.pairs:
            raise KeyError(symbol)
        with self._lock:
            self._overrides[symbol] = at

    def relist_all(self) -> None:
        with self._lock:
            self._overrides.clear()

    # --- price path -----------------------------------------------------------------------

    def _levels(self, pair: Pair, mi: int) -> tuple[float, float]:
        """Log price at the start of month mi and of month mi+1."""
        anchor = month_index(*ANCHOR_MONTH)
        lo, hi = min(mi, anchor), max(mi + 1, anchor)
        idx = np.arange(lo, hi + 1)
        steps = rng.normal(rng.key(pair.key, 0, idx)) * MONTH_SIGMA
        walk = np.cumsum(steps) - steps[0]  # walk[i] = level(idx[i]) - level(lo)
        offset = walk[anchor - lo]
        base = math.log(pair.price)
        return base + walk[mi - lo] - offset, base + walk[mi + 1 - lo] - offset

    def close_path(self, pair: Pair, mi: int) -> np.ndarray:
        """Log close of every minute of month mi (Brownian bridge between monthly levels)."""
        cache_key = (pair.symbol, mi)
        with self._lock:
            path = self._paths.get(cache_key)
            if path is not None:
                self._paths.move_to_end(cache_key)
                return path
        n = minutes_in_month(mi)
        start, end = self._levels(pair, mi)
        steps = rng.unit_steps(rng.key(pair.key, _SALT_PATH, mi, np.arange(n))) * pair.sigma
        walk = np.cumsum(steps)
        t = np.arange(1, n + 1) / n
        path = start + (end - start) * t + walk - t * walk[-1]
        with self._lock:
            self._paths[cache_key] = path
            while len(self._paths) > _PATH_CACHE:
                self._paths.popitem(last=False)
        return path

    # --- klines ----------------------------------------------------------------------------

    def month_klines(
        self, symbol: str, mi: int, lo: int = 0, hi: int | None = None
    ) -> dict[str, np.ndarray]:
        """Klines of minutes [lo, hi) of month mi that exist, as int64 arrays (prices in 1e-8).

        Keys: open_ms, open, high, low, close, volume, close_ms, quote_volume, trades,
        taker_base, taker_quote.
        """
        pair = self.pair(symbol)
        if pair is None:
            raise KeyError(symbol)
        n = minutes_in_month(mi)
        hi = n if hi is None else min(hi, n)
        lo = max(lo, 0)
        if hi <= lo:
            return _empty()
        path = self.close_path(pair, mi)
        start_level = self._levels(pair, mi)[0]
        minutes = np.arange(lo, hi)
        t0 = month_start_ms(mi)
        open_ms = t0 + minutes * MINUTE_MS
        keep = open_ms >= int(pair.listed_at.timestamp() * 1000)
        if pair.delisted_at is not None:
            keep &= open_ms < int(pair.delisted_at.timestamp() * 1000)
        window = maintenance(self.seed, mi)
        if window is not None:
            keep &= ~((minutes >= window[0]) & (minutes < window[0] + window[1]))
        if not keep.any():
            return _empty()
        minutes, open_ms = minutes[keep], open_ms[keep]

        close_log = path[minutes]
        prev = np.where(minutes > 0, path[np.maximum(minutes - 1, 0)], start_level)
        close = _to_ticks(np.exp(close_log), pair.tick_e8)
        open_ = _to_ticks(np.exp(prev), pair.tick_e8)
        k = rng.key(pair.key, mi, minutes)
        wick = np.abs(rng.unit_steps(rng.key(k, _SALT_HL))) * pair.sigma * 0.6
        wick2 = np.abs(rng.unit_steps(rng.key(k, _SALT_HL + 10))) * pair.sigma * 0.6
        top = np.maximum(open_, close)
        bottom = np.minimum(open_, close)
        high = np.maximum(_to_ticks(top / E8 * np.exp(wick), pair.tick_e8), top)
        low = np.minimum(_to_ticks(bottom / E8 * np.exp(-wick2), pair.tick_e8), bottom)
        low = np.maximum(low, pair.tick_e8)
        mid = (open_ + close + high + low) / (4.0 * E8)
        usd = pair.usd_per_minute * np.exp(rng.normal(rng.key(k, _SALT_VOL)) * 0.7 - 0.245)
        volume = (
            np.maximum(np.round(usd / mid * E8 / pair.step_e8), 1).astype(np.int64) * pair.step_e8
        )
        taker_share = 0.3 + 0.4 * rng.uniform(rng.key(k, _SALT_TAKER))
        taker_base = (np.floor(volume / pair.step_e8 * taker_share).astype(np.int64)) * pair.step_e8
        quote = np.round(volume / E8 * mid * E8).astype(np.int64)
        taker_quote = np.round(taker_base / E8 * mid * E8).astype(np.int64)
        avg_trade = 120.0 * np.exp(rng.normal(rng.key(k, _SALT_TRADES)) * 0.5)
        trades = np.maximum(np.round(volume / E8 * mid / avg_trade), 1).astype(np.int64)
        return {
            "open_ms": open_ms.astype(np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "close_ms": (open_ms + MINUTE_MS - 1).astype(np.int64),
            "quote_volume": quote,
            "trades": trades,
            "taker_base": taker_base,
            "taker_quote": taker_quote,
        }

    def klines_between(self, symbol: str, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Klines with open time in [start_ms, end_ms), across month boundaries."""
        parts = []
        mi = month_of_ms(start_ms)
        while month_start_ms(mi) < end_ms:
            t0 = month_start_ms(mi)
            lo = max(0, -(-(start_ms - t0) // MINUTE_MS))
            hi = min(minutes_in_month(mi), -(-(end_ms - t0) // MINUTE_MS))
            if hi > lo:
                parts.append(self.month_klines(symbol, mi, lo, hi))
            mi += 1
        if not parts:
            return _empty()
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _to_ticks(price: np.ndarray, tick_e8: int) -> np.ndarray:
    return np.maximum(np.round(price * E8 / tick_e8), 1).astype(np.int64) * tick_e8


def _empty() -> dict[str, np.ndarray]:
    names = ("open_ms", "open", "high", "low", "close", "volume", "close_ms", "quote_volume",
             "trades", "taker_base", "taker_quote")  # fmt: skip
    return {name: np.zeros(0, dtype=np.int64) for name in names}


# --- text forms -------------------------------------------------------------------------------

_DECIMAL_FIELDS = ("open", "high", "low", "close", "volume")
_DECIMAL_TAIL = ("quote_volume",)
_TAKER = ("taker_base", "taker_quote")


def _fixed8(name: str) -> pl.Expr:
    col = pl.col(name)
    return pl.concat_str(
        [(col // E8).cast(pl.String), pl.lit("."), (col % E8).cast(pl.String).str.zfill(8)]
    )


def kline_text_columns(k: dict[str, np.ndarray], time_unit: str) -> pl.DataFrame:
    """The 12 fields of each kline as Binance prints them, as strings (time unit "ms"/"us").

    ``time_unit`` "archive" prints µs for candles opening on or after 2025-01-01 and ms before,
    as the spot bulk archive does.
    """
    frame = pl.DataFrame(k)
    if time_unit == "us":
        scale_open = pl.col("open_ms") * 1000
        scale_close = pl.col("open_ms") * 1000 + (MINUTE_MS * 1000 - 1)
    elif time_unit == "archive":
        after = pl.col("open_ms") >= US_FROM_MS
        scale_open = pl.when(after).then(pl.col("open_ms") * 1000).otherwise(pl.col("open_ms"))
        scale_close = (
            pl.when(after)
            .then(pl.col("open_ms") * 1000 + (MINUTE_MS * 1000 - 1))
            .otherwise(pl.col("close_ms"))
        )
    else:
        scale_open, scale_close = pl.col("open_ms"), pl.col("close_ms")
    return frame.select(
        scale_open.cast(pl.String).alias("open_time"),
        *[_fixed8(n) for n in _DECIMAL_FIELDS],
        scale_close.cast(pl.String).alias("close_time"),
        _fixed8("quote_volume"),
        pl.col("trades").cast(pl.String),
        *[_fixed8(n) for n in _TAKER],
        pl.lit("0").alias("ignore"),
    )


def klines_csv(k: dict[str, np.ndarray]) -> bytes:
    """Spot archive CSV (no header), timestamps per the archive's ms/µs rule."""
    if len(k["open_ms"]) == 0:
        return b""
    return (
        kline_text_columns(k, "archive")
        .write_csv(include_header=False, quote_style="never")
        .encode()
    )


def klines_json(k: dict[str, np.ndarray], time_unit: str = "ms") -> str:
    """REST /api/v3/klines body: times and trade counts as numbers, the rest as strings."""
    if len(k["open_ms"]) == 0:
        return "[]"
    text = kline_text_columns(k, time_unit)
    numeric = ("open_time", "close_time", "trades")
    fields = [
        pl.col(c) if c in numeric else pl.concat_str([pl.lit('"'), pl.col(c), pl.lit('"')])
        for c in text.columns
    ]
    rows = text.select(
        pl.concat_str([pl.lit("["), pl.concat_str(fields, separator=","), pl.lit("]")]).alias("r")
    )["r"]
    return "[" + rows.str.join(",")[0] + "]"


def day_bounds_ms(day: date) -> tuple[int, int]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return int(start.timestamp() * 1000), int((start + timedelta(days=1)).timestamp() * 1000)
