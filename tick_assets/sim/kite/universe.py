"""The simulated instrument universe of one trading day, as Kite's instruments dump lists it.

NIFTY 50 and the rest of the NIFTY 500 equities (shipped in `sim/data/nifty500.csv`), the
NIFTY 50 and NIFTY BANK indices, index and stock futures for the current and next two monthly
expiries (last Tuesday), NIFTY/BANKNIFTY options around the money for the current expiry, and
a few currency futures on CDS (segment 3) and BCD (segment 6) so every price divisor is used.

instrument_token = exchange_token << 8 | segment. Equity tokens come from the data file; a
derivative's exchange_token packs (underlying, expiry month, type, strike), so the same
tradingsymbol keeps its token on every day it is listed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib.resources import files

import numpy as np
import polars as pl

from tick_assets.sim import rng
from tick_assets.sim.kite import sessions
from tick_assets.sim.kite.paths import RowParams, instrument_price, log_close
from tick_assets.sources.kite.instruments import INSTRUMENT_COLUMNS, INSTRUMENT_SCHEMA

SEG_NSE, SEG_NFO, SEG_CDS, SEG_BCD, SEG_INDICES = 1, 2, 3, 6, 9
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class IndexSpec:
    tradingsymbol: str
    exchange_token: int
    fno_name: str  # underlying name in F&O tradingsymbols
    base: float
    sigma: float
    lot: int
    strike_step: int
    iv: float


INDICES = (
    IndexSpec("NIFTY 50", 1001, "NIFTY", 25900.0, 0.009, 65, 50, 0.12),
    IndexSpec("NIFTY BANK", 1016, "BANKNIFTY", 58500.0, 0.010, 30, 100, 0.14),
)
#: (pair, spot level) for currency futures on CDS and, for the first two, BCD.
CURRENCIES = (("USDINR", 88.70), ("EURINR", 103.10), ("GBPINR", 117.20), ("JPYINR", 57.80))
STRIKES_EACH_SIDE = 10
FUTURE_MONTHS = 3


@dataclass(frozen=True)
class Universe:
    """One day's instruments (the dump) plus what the market model needs per row."""

    day: date
    seed: int
    instruments: pl.DataFrame  # exactly INSTRUMENT_COLUMNS
    params: RowParams
    tokens: np.ndarray  # uint32, aligned with rows
    weight: np.ndarray  # float64 share of ticks each instrument gets
    prev_close: np.ndarray  # float64, also the dump's last_price

    def __len__(self) -> int:
        return len(self.tokens)

    def rows_of(self, tokens: np.ndarray) -> np.ndarray:
        """Row of each token in this universe, -1 where the token is not listed."""
        tokens = np.asarray(tokens, dtype=np.int64)
        order = np.argsort(self.tokens)
        sorted_tokens = self.tokens[order].astype(np.int64)
        pos = np.clip(np.searchsorted(sorted_tokens, tokens), 0, len(order) - 1)
        return np.where(sorted_tokens[pos] == tokens, order[pos], -1)

    @property
    def is_index(self) -> np.ndarray:
        return (self.tokens & 0xFF) == SEG_INDICES


@lru_cache(maxsize=1)
def equities() -> tuple[dict[str, str], ...]:
    """The shipped NIFTY 500 list: exchange_token, tradingsymbol, name, close, index, fno."""
    text = files("tick_assets.sim").joinpath("data", "nifty500.csv").read_text(encoding="utf-8")
    return tuple(csv.DictReader(text.splitlines()))


def _nice_lot(price: float) -> int:
    """A round lot size worth about Rs 15 lakh (NSE's minimum F&O contract value)."""
    raw = 1_500_000.0 / price
    scale = 10.0 ** np.floor(np.log10(raw))
    choices = np.array([1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10]) * scale
    return max(1, int(round(choices[np.argmin(np.abs(choices - raw))])))


def _yymmm(year: int, month: int) -> str:
    return f"{year % 100:02d}{MONTHS[month - 1]}"


def _fno_token(underlying: int, year: int, month: int, kind: int, strike_index: int = 0) -> int:
    """exchange_token for NFO: underlying(8b) | month(6b) | kind(2b: FUT, CE, PE) | strike(8b)."""
    return underlying << 16 | ((year * 12 + month) % 64) << 10 | kind << 8 | (strike_index % 256)


_MODEL_DEFAULTS: dict[str, float | int] = {
    "lot": 1, "vol_lots": 0.0, "oi_lots": 0.0, "expiry": 0, "carry": 0.0, "strike": 0.0,
    "opt_sign": 0, "iv": 0.0, "weight": 1.0,
}  # fmt: skip
_DUMP_DEFAULTS: dict[str, object] = {"expiry": None, "strike": 0.0, "lot_size": 1}


class _Rows:
    """Accumulates dump rows and their model parameters column by column."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {c: [] for c in INSTRUMENT_COLUMNS}
        self.model: dict[str, list] = {
            c: [] for c in ("series", "base_log", "sigma", "model_tick", *_MODEL_DEFAULTS)
        }

    def add(self, dump: dict, **model: float | int) -> None:
        """One instrument: its dump columns and (series, base_log, sigma, model_tick, ...)."""
        dump = {**_DUMP_DEFAULTS, "exchange_token": dump["instrument_token"] >> 8, **dump}
        model = {**_MODEL_DEFAULTS, **model}
        for c in INSTRUMENT_COLUMNS:
            self.cols[c].append(dump.get(c))
        for c in self.model:
            self.model[c].append(model[c])


def _hash01(*parts: int) -> float:
    return float(rng.uniform(rng.key(*parts)))


def build_universe(day: date, seed: int = 7) -> Universe:
    """The instrument universe listed on `day` (deterministic in day and seed)."""
    return _build(day, seed)


@dataclass(frozen=True)
class _Underlying:
    name: str  # as in F&O tradingsymbols
    series: int
    base: float
    sigma: float
    lot: int
    is_index: bool


@lru_cache(maxsize=8)
def _build(day: date, seed: int) -> Universe:
    rows = _Rows()
    prev = sessions.previous_session_day(day)
    months = sessions.next_months(day, FUTURE_MONTHS, sessions.monthly_expiry)
    underlyings = _add_indices(rows) + _add_equities(rows, seed)
    _add_futures(rows, underlyings, months)
    _add_options(rows, seed, prev, months[0])
    _add_currencies(rows, sessions.next_months(day, FUTURE_MONTHS, sessions.currency_expiry))
    return _finish(rows, day, prev, seed)


def _add_indices(rows: _Rows) -> list[_Underlying]:
    out = []
    for spec in INDICES:
        token = spec.exchange_token << 8 | SEG_INDICES
        rows.add(
            dict(instrument_token=token, tradingsymbol=spec.tradingsymbol, name=spec.tradingsymbol,
                 tick_size=0.0, lot_size=0, instrument_type="EQ", segment="INDICES",
                 exchange="NSE"),
            series=token, base_log=np.log(spec.base), sigma=spec.sigma, model_tick=0.05,
            weight=4.0,
        )  # fmt: skip
        out.append(_Underlying(spec.fno_name, token, spec.base, spec.sigma, spec.lot, True))
    return out


def _add_equities(rows: _Rows, seed: int) -> list[_Underlying]:
    """All NIFTY 500 equities; returns the F&O ones as underlyings."""
    out = []
    for eq in equities():
        token = int(eq["exchange_token"]) << 8 | SEG_NSE
        base = float(eq["close"])
        nifty50 = eq["index"] == "NIFTY50"
        sigma = 0.012 + 0.012 * _hash01(seed, 101, token)
        turnover = (6e9 if nifty50 else 8e8) * np.exp(0.8 * (_hash01(seed, 102, token) - 0.5))
        tick = 0.01 if base < 250 else 0.05
        rows.add(
            dict(instrument_token=token, tradingsymbol=eq["tradingsymbol"], name=eq["name"],
                 tick_size=tick, instrument_type="EQ", segment="NSE", exchange="NSE"),
            series=token, base_log=np.log(base), sigma=sigma, model_tick=tick,
            vol_lots=min(turnover / base, 3e8), weight=3.0 if nifty50 else 1.0,
        )  # fmt: skip
        if eq["fno"] == "1":
            out.append(_Underlying(eq["tradingsymbol"], token, base, sigma, _nice_lot(base), False))
    return out


def _add_futures(rows: _Rows, underlyings: list[_Underlying], months: list) -> None:
    for ul_id, ul in enumerate(underlyings, start=1):
        for i, (year, month, expiry) in enumerate(months):
            et = _fno_token(ul_id, year, month, 0)
            near = (1.0, 0.15, 0.03)[i]
            tick = 0.1 if ul.is_index else 0.05
            oi = 200_000.0 if ul.is_index else min(10_000.0, 1.5e9 / ul.lot)
            rows.add(
                dict(instrument_token=et << 8 | SEG_NFO,
                     tradingsymbol=f"{ul.name}{_yymmm(year, month)}FUT", name=ul.name,
                     expiry=expiry, tick_size=tick, lot_size=ul.lot, instrument_type="FUT",
                     segment="NFO-FUT", exchange="NFO"),
                series=ul.series, base_log=np.log(ul.base), sigma=ul.sigma, model_tick=tick,
                lot=ul.lot, vol_lots=(150_000.0 if ul.is_index else 4_000.0) * near,
                oi_lots=oi * near, expiry=expiry.toordinal(), carry=0.065,
                weight=(3.0 if ul.is_index else 1.0) * max(near, 0.2),
            )  # fmt: skip


def _add_options(rows: _Rows, seed: int, prev: date, current: tuple[int, int, date]) -> None:
    """NIFTY and BANKNIFTY calls and puts around yesterday's close, current expiry."""
    year, month, expiry = current
    for ul_id, spec in enumerate(INDICES, start=1):
        series = spec.exchange_token << 8 | SEG_INDICES
        spot = _spot(seed, series, spec.base, spec.sigma, prev)
        atm = round(spot / spec.strike_step) * spec.strike_step
        for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1):
            strike = atm + k * spec.strike_step
            for kind, suffix, sign in ((1, "CE", 1), (2, "PE", -1)):
                et = _fno_token(ul_id, year, month, kind, strike // spec.strike_step)
                rows.add(
                    dict(instrument_token=et << 8 | SEG_NFO,
                         tradingsymbol=f"{spec.fno_name}{_yymmm(year, month)}{strike}{suffix}",
                         name=spec.fno_name, expiry=expiry, strike=float(strike), tick_size=0.05,
                         lot_size=spec.lot, instrument_type=suffix, segment="NFO-OPT",
                         exchange="NFO"),
                    series=series, base_log=np.log(spec.base), sigma=spec.sigma, model_tick=0.05,
                    lot=spec.lot, vol_lots=300_000.0 * np.exp(-0.15 * abs(k)),
                    oi_lots=120_000.0 * np.exp(-0.1 * abs(k)), expiry=expiry.toordinal(),
                    strike=float(strike), opt_sign=sign, iv=spec.iv,
                    weight=1.5 * np.exp(-0.1 * abs(k)),
                )  # fmt: skip


def _add_currencies(rows: _Rows, months: list) -> None:
    """Currency futures on NSE CDS (segment 3) and BSE BCD (segment 6)."""
    for seg, exchange, pairs in ((SEG_CDS, "CDS", CURRENCIES), (SEG_BCD, "BCD", CURRENCIES[:2])):
        for pair_id, (pair, spot) in enumerate(pairs, start=1):
            series = 0x7F00_0000 + pair_id  # outside the token space: one walk per pair
            for i, (year, month, expiry) in enumerate(months):
                et = pair_id << 10 | ((year * 12 + month) % 64)
                rows.add(
                    dict(instrument_token=et << 8 | seg,
                         tradingsymbol=f"{pair}{_yymmm(year, month)}FUT", name=pair,
                         expiry=expiry, tick_size=0.0025, instrument_type="FUT",
                         segment=f"{exchange}-FUT", exchange=exchange),
                    series=series, base_log=np.log(spot), sigma=0.003, model_tick=0.0025,
                    vol_lots=(300_000.0, 20_000.0, 2_000.0)[i],
                    oi_lots=(900_000.0, 80_000.0, 10_000.0)[i], expiry=expiry.toordinal(),
                    carry=0.02, weight=0.4,
                )  # fmt: skip


def _spot(seed: int, series: int, base: float, sigma: float, day: date) -> float:
    one = RowParams(
        series=np.array([series], dtype=np.uint64), token=np.array([series], dtype=np.uint64),
        base_log=np.array([np.log(base)]), sigma=np.array([sigma]), tick=np.array([0.05]),
        lot=np.array([1]), vol_lots=np.zeros(1), oi_lots=np.zeros(1),
        expiry=np.zeros(1, dtype=np.int64), carry=np.zeros(1), strike=np.zeros(1),
        opt_sign=np.zeros(1, dtype=np.int8), iv=np.zeros(1),
    )  # fmt: skip
    return float(np.exp(log_close(seed, one, day.toordinal())[0]))


def _finish(rows: _Rows, day: date, prev: date, seed: int) -> Universe:
    m = rows.model
    tokens = np.array(rows.cols["instrument_token"], dtype=np.uint32)
    params = RowParams(
        series=np.array(m["series"], dtype=np.uint64),
        token=tokens.astype(np.uint64),
        base_log=np.array(m["base_log"], dtype=np.float64),
        sigma=np.array(m["sigma"], dtype=np.float64),
        tick=np.array(m["model_tick"], dtype=np.float64),
        lot=np.array(m["lot"], dtype=np.int64),
        vol_lots=np.array(m["vol_lots"], dtype=np.float64),
        oi_lots=np.array(m["oi_lots"], dtype=np.float64),
        expiry=np.array(m["expiry"], dtype=np.int64),
        carry=np.array(m["carry"], dtype=np.float64),
        strike=np.array(m["strike"], dtype=np.float64),
        opt_sign=np.array(m["opt_sign"], dtype=np.int8),
        iv=np.array(m["iv"], dtype=np.float64),
    )
    if len(np.unique(tokens)) != len(tokens):
        raise RuntimeError(f"simulated universe for {day} has duplicate instrument tokens")
    prev_close = instrument_price(
        params, log_close(seed, params, prev.toordinal()), prev.toordinal()
    )
    cols = rows.cols
    cols["last_price"] = [float(x) for x in np.round(prev_close, 4)]
    frame = pl.DataFrame(cols, schema=INSTRUMENT_SCHEMA)
    return Universe(day, seed, frame, params, tokens, np.array(m["weight"]), prev_close)
