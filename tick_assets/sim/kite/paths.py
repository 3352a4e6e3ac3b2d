"""Seeded, random-access price/volume/OI paths for one trading day of any set of instruments.

The market is defined top-down so any piece can be computed alone and always agrees with the
rest:
  daily log-close   x_d = log(base) + sigma * sum_k phi^k eps_{d-k}   (a truncated AR(1))
  minute anchors    a Brownian bridge from the day's open to its close (375 minutes)
  seconds           a bridge between consecutive minute anchors (60 points per minute)
  volume            a U-shaped minute profile of the day's total, split over seconds
Futures and options share their underlying's `series` key, so they move with it: a future is
the underlying times a carry factor, an option is intrinsic value plus a smooth time value.
Every random number comes from `tick_assets.sim.rng` keyed by (seed, stream, key, day, ...),
so one instrument's candles equal what the websocket streamed for it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from tick_assets.sim import rng

MINUTES = 375  # 09:15 .. 15:30
SECONDS = MINUTES * 60
PHI = 0.99
WINDOW = 300
_WEIGHTS = PHI ** np.arange(WINDOW, dtype=np.float64)

(_DAILY, _GAP, _MINUTE, _SECOND, _VOLDAY, _VOLMIN, _VOLSEC, _OI) = range(1, 9)


@dataclass(frozen=True)
class RowParams:
    """Per-instrument parameters (arrays aligned by row) that drive the paths."""

    series: np.ndarray  # uint64: price randomness key (derivatives share the underlying's)
    token: np.ndarray  # uint64: volume/OI randomness key
    base_log: np.ndarray  # float64: log of the underlying's long-run price level
    sigma: np.ndarray  # float64: the underlying's daily volatility
    tick: np.ndarray  # float64: price grid
    lot: np.ndarray  # int64: lot size (volume and OI are multiples of it)
    vol_lots: np.ndarray  # float64: typical lots traded per day (0 = no volume, e.g. indices)
    oi_lots: np.ndarray  # float64: typical open interest in lots (0 = not a derivative)
    expiry: np.ndarray  # int64: expiry date ordinal (0 = does not expire)
    carry: np.ndarray  # float64: annual carry of a future over its underlying (0 otherwise)
    strike: np.ndarray  # float64: option strike (0 otherwise)
    opt_sign: np.ndarray  # int8: +1 call, -1 put, 0 not an option
    iv: np.ndarray  # float64: option implied volatility (annual)

    def take(self, rows: np.ndarray) -> RowParams:
        return RowParams(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.series)


def log_close(seed: int, p: RowParams, ordinal: int | np.ndarray) -> np.ndarray:
    """The underlying's daily closing log-price for each row on day `ordinal` (per row or one)."""
    ords = np.broadcast_to(np.asarray(ordinal, dtype=np.int64), (len(p),))
    days = ords[:, None] - np.arange(WINDOW, dtype=np.int64)[None, :]
    eps = rng.normal(rng.key(seed, _DAILY, p.series[:, None], days))
    mixed = np.cumsum(eps * _WEIGHTS, axis=1)[:, -1]
    return p.base_log + p.sigma * mixed


def _col(a: np.ndarray, ndim: int) -> np.ndarray:
    return a.reshape(a.shape + (1,) * (ndim - 1))


def instrument_price(
    p: RowParams, log_underlying: np.ndarray, ordinal: int | np.ndarray
) -> np.ndarray:
    """Price of each row (on its tick grid) given the underlying's log-price; rows first.

    `ordinal` (the day, for time to expiry) is one for all rows or one per row.
    """
    nd = log_underlying.ndim
    spot = np.exp(log_underlying)
    ords = np.broadcast_to(np.asarray(ordinal, dtype=np.int64), (len(p),))
    days_left = np.where(p.expiry > 0, np.maximum(p.expiry - ords, 0) + 0.3, 0.0)
    spot = spot * _col(np.exp(p.carry * days_left / 365.0), nd)
    is_opt = p.opt_sign != 0
    if is_opt.any():
        strike, sign = _col(p.strike, nd), _col(p.opt_sign.astype(np.float64), nd)
        vol_t = _col(np.maximum(p.iv * np.sqrt(days_left / 365.0), 1e-4), nd)
        moneyness = np.log(spot / np.where(strike > 0, strike, 1.0)) / vol_t
        intrinsic = np.maximum(sign * (spot - strike), 0.0)
        premium = intrinsic + 0.4 * spot * vol_t * np.exp(-0.5 * moneyness**2)
        spot = np.where(_col(is_opt, nd), premium, spot)
    tick = _col(p.tick, nd)
    # the last round drops float noise (1636.0500000000002) so prices print and compare cleanly
    return np.round(np.maximum(np.round(spot / tick) * tick, tick), 4)


class DayPaths:
    """The minute-level skeleton of one day per row; second paths on demand.

    `ordinal` / `prev_ordinal` are the day and the previous trading day, one for all rows or
    one per row (so one instrument's many days can be computed as rows of one array).
    """

    def __init__(
        self,
        seed: int,
        p: RowParams,
        ordinal: int | np.ndarray,
        prev_ordinal: int | np.ndarray,
    ) -> None:
        n = len(p)
        self.seed, self.p = seed, p
        self.ordinal = np.broadcast_to(np.asarray(ordinal, dtype=np.int64), (n,))
        prev = np.broadcast_to(np.asarray(prev_ordinal, dtype=np.int64), (n,))
        o1 = self.ordinal[:, None]
        prev_close_log = log_close(seed, p, prev)
        self.close_log = log_close(seed, p, self.ordinal)
        self.prev_close = instrument_price(p, prev_close_log, prev)
        gap = rng.normal(rng.key(seed, _GAP, p.series, self.ordinal))
        open_log = prev_close_log + 0.3 * p.sigma * gap

        m = np.arange(1, MINUTES + 1, dtype=np.int64)
        w = np.cumsum(rng.normal(rng.key(seed, _MINUTE, p.series[:, None], o1, m)), axis=1)
        frac = np.concatenate([[0.0], m / MINUTES])
        bridge = np.concatenate([np.zeros((n, 1)), w - frac[1:] * w[:, -1:]], axis=1)
        sig_min = (p.sigma / np.sqrt(MINUTES))[:, None]
        anchors = open_log[:, None] + frac * (self.close_log - open_log)[:, None]
        self.anchors = anchors + sig_min * bridge
        self.anchors[:, 0] = open_log
        self.anchors[:, -1] = self.close_log
        self.open = instrument_price(p, open_log, self.ordinal)

        # volume: lots per minute with a U-shaped intraday profile
        mins = np.arange(MINUTES, dtype=np.int64)
        day_noise = rng.normal(rng.key(seed, _VOLDAY, p.token, self.ordinal))
        total = np.floor(p.vol_lots * np.exp(0.3 * day_noise - 0.045))
        profile = 1.0 + 2.0 * ((mins - MINUTES / 2) / (MINUTES / 2)) ** 2
        noise = rng.uniform(rng.key(seed, _VOLMIN, p.token[:, None], o1, mins))
        cw = np.cumsum(profile * (0.3 + noise), axis=1)
        self.cum_lots = np.floor(total[:, None] * cw / cw[:, -1:]).astype(np.int64)  # (n, 375)
        lots_in_minute = np.diff(self.cum_lots, axis=1, prepend=0)
        mid = 0.5 * (self.anchors[:, :-1] + self.anchors[:, 1:])
        typical = instrument_price(p, mid, self.ordinal)
        self.cum_turnover = np.cumsum(lots_in_minute * p.lot[:, None] * typical, axis=1)

        # open interest: a slow minute-level walk around the typical level, in whole lots
        steps = rng.normal(rng.key(seed, _OI, p.token[:, None], o1, mins))
        oi = p.oi_lots[:, None] * np.exp(0.1 * np.cumsum(steps, axis=1) / np.sqrt(MINUTES))
        self.oi = np.round(oi).astype(np.int64) * p.lot[:, None]
        self.oi_high = np.maximum.accumulate(self.oi, axis=1)
        self.oi_low = np.minimum.accumulate(self.oi, axis=1)

    def _second_uniforms(self, stream: int, key: np.ndarray, minutes: np.ndarray) -> np.ndarray:
        """64 uniforms per (row, minute) from 8 hashes: shape (rows, len(minutes), 64)."""
        blocks = np.arange(8, dtype=np.int64)
        k = rng.key(
            self.seed,
            stream,
            key[:, None, None],
            self.ordinal[:, None, None],
            minutes[None, :, None],
            blocks,
        )
        u = rng.byte_uniforms(k)  # (n, M, 8, 8)
        return u.reshape(u.shape[:2] + (64,))

    def second_log_prices(self, minutes: np.ndarray) -> np.ndarray:
        """Underlying log-prices at each second of the given minutes: (rows, len(minutes), 60).

        Minute m bridges anchor m (second 0) to anchor m+1 (second 60, i.e. the next minute's
        first second); the last minute ends on the day's close at its second 59.
        """
        minutes = np.asarray(minutes, dtype=np.int64)
        p = self.p
        u = self._second_uniforms(_SECOND, p.series, minutes)[:, :, :60]
        v = np.cumsum((u - 0.5) * np.sqrt(12.0), axis=2)  # v_1 .. v_60
        is_last = (minutes == MINUTES - 1)[None, :, None]
        length = np.where(is_last, 59.0, 60.0)
        end_v = np.where(is_last, v[:, :, 58:59], v[:, :, 59:60])
        v = np.concatenate([np.zeros(v.shape[:2] + (1,)), v[:, :, :59]], axis=2)  # v_0 .. v_59
        frac = np.arange(60, dtype=np.float64)[None, None, :] / length
        a0 = self.anchors[:, minutes][:, :, None]
        a1 = self.anchors[:, minutes + 1][:, :, None]
        sig = (p.sigma / np.sqrt(MINUTES) / np.sqrt(60.0))[:, None, None]
        out = a0 + frac * (a1 - a0) + sig * (v - frac * end_v)
        out[:, is_last[0, :, 0], 59] = self.close_log[:, None]
        return out

    def second_prices(self, minutes: np.ndarray) -> np.ndarray:
        """Instrument prices at each second of the given minutes: (rows, len(minutes), 60)."""
        log_prices = self.second_log_prices(minutes)
        return instrument_price(self.p, log_prices, self.ordinal)

    def second_cum_lots(self, minutes: np.ndarray) -> np.ndarray:
        """Lots traded in the day up to and including each second: (rows, len(minutes), 60)."""
        minutes = np.asarray(minutes, dtype=np.int64)
        q = self._second_uniforms(_VOLSEC, self.p.token, minutes)[:, :, :60]
        cq = np.cumsum(q**3, axis=2)
        before = np.where(minutes > 0, self.cum_lots[:, np.maximum(minutes - 1, 0)], 0)
        in_minute = self.cum_lots[:, minutes] - before
        within = np.floor(in_minute[:, :, None] * cq / cq[:, :, -1:]).astype(np.int64)
        return before[:, :, None] + within
