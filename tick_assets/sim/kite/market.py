"""The live simulated market of one day: what every instrument looks like at any second, and
which instruments tick in each slice of time.

Prices, volumes and OI come from `DayPaths` (a pure function of seed, day and second), so the
websocket, the LVC snapshot on subscribe and the historical candles all agree. The stream is a
sequence of batches: batch b covers `batch_seconds` of simulated time and holds a fixed number
of change events (rate / batches_per_second), each picking an instrument by liquidity weight
and a second inside the batch. Events are keyed by (seed, day, b, slot), so the same seed, day,
rate and speed give the same stream whatever the wall-clock timing. Depth, buy/sell totals and
the last traded quantity are redrawn per event, so every event is a change (Kite sends a tick
only when a field of the subscribed mode changes).

Everything is vectorised over rows; nothing here loops per instrument or per tick.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from tick_assets.sim import rng
from tick_assets.sim.kite import sessions
from tick_assets.sim.kite.paths import MINUTES, SECONDS, DayPaths
from tick_assets.sim.kite.universe import Universe
from tick_assets.sources.kite.schema import DEPTH_LEVELS

_EVT_ROW, _EVT_TIME, _EVT_JITTER, _LVC_JITTER = 11, 12, 13, 14
_MINUTE_CACHE = 8
_STATS_CHUNK = 25


@dataclass
class _Minute:
    prices: np.ndarray  # (n, 60) instrument prices per second
    run_high: np.ndarray  # (n, 60) running max within the minute
    run_low: np.ndarray  # (n, 60) running min within the minute
    cum_lots: np.ndarray  # (n, 60) lots traded in the day up to each second


class LiveMarket:
    """One simulated trading day of a universe, streamed at `rate` events per wall second."""

    def __init__(
        self,
        universe: Universe,
        rate: float = 2000.0,
        speed: float = 400.0,
        batches_per_second: int = 50,
    ) -> None:
        if rate < 0 or not speed > 0 or batches_per_second < 1:
            raise ValueError(
                f"rate={rate} must be >= 0, speed={speed} > 0, batches_per_second >= 1"
            )
        self.universe = universe
        self.seed = universe.seed
        self.day = universe.day
        self.ordinal = universe.day.toordinal()
        prev = sessions.previous_session_day(universe.day)
        self.paths = DayPaths(universe.seed, universe.params, self.ordinal, prev.toordinal())
        self.open_epoch = sessions.session_open_epoch(universe.day)
        self.prev_close_epoch = sessions.session_open_epoch(prev) + SECONDS - 1
        self.rate = float(rate)
        self.batches_per_second = batches_per_second
        self.batch_seconds = float(speed) / batches_per_second
        self._cum_weight = np.cumsum(universe.weight)
        self._minutes: OrderedDict[int, _Minute] = OrderedDict()
        n = len(universe)
        self._cum_high = np.empty((MINUTES, n))  # running max up to the end of each minute
        self._cum_low = np.empty((MINUTES, n))
        self._stats_upto = -1
        p = universe.params
        self._lot = p.lot
        self._tick = p.tick
        self._is_index = universe.is_index
        self._depth_scale = np.maximum(p.vol_lots / 3000.0, 5.0)
        self._book_scale = np.maximum(p.vol_lots / 40.0, 50.0)

    # --- time ------------------------------------------------------------------------------

    def second_of(self, epoch: float) -> int:
        """Session second (0 = 09:15:00 IST) of a simulated epoch; negative before the open."""
        return int(np.floor(epoch - self.open_epoch))

    def batch_at(self, epoch: float) -> int:
        """Index of the batch that contains simulated time `epoch` (negative before the open)."""
        return int(np.floor((epoch - self.open_epoch) / self.batch_seconds))

    @property
    def last_batch(self) -> int:
        """The last batch that holds any in-session second."""
        return int(np.ceil(SECONDS / self.batch_seconds)) - 1

    # --- per-second paths --------------------------------------------------------------------

    def _minute(self, m: int) -> _Minute:
        cached = self._minutes.get(m)
        if cached is not None:
            self._minutes.move_to_end(m)
            return cached
        minute = np.array([m])
        prices = self.paths.second_prices(minute)[:, 0, :]
        lots = self.paths.second_cum_lots(minute)[:, 0, :]
        data = _Minute(
            prices,
            np.maximum.accumulate(prices, axis=1),
            np.minimum.accumulate(prices, axis=1),
            lots,
        )
        self._minutes[m] = data
        if len(self._minutes) > _MINUTE_CACHE:
            self._minutes.popitem(last=False)
        return data

    def _ensure_stats(self, upto: int) -> None:
        """Fill the running day high/low through minute `upto` (chunks of whole minutes)."""
        while self._stats_upto < upto:
            lo = self._stats_upto + 1
            hi = min(upto, lo + _STATS_CHUNK - 1)
            prices = self.paths.second_prices(np.arange(lo, hi + 1))  # (n, M, 60)
            highs = prices.max(axis=2).T  # (M, n)
            lows = prices.min(axis=2).T
            if lo > 0:
                highs[0] = np.maximum(highs[0], self._cum_high[lo - 1])
                lows[0] = np.minimum(lows[0], self._cum_low[lo - 1])
            self._cum_high[lo : hi + 1] = np.maximum.accumulate(highs, axis=0)
            self._cum_low[lo : hi + 1] = np.minimum.accumulate(lows, axis=0)
            self._stats_upto = hi

    # --- state -------------------------------------------------------------------------------

    def state(self, rows: np.ndarray, seconds: np.ndarray, jitter: np.ndarray) -> dict:
        """Tick columns (tick-schema names) of `rows` at session `seconds`.

        Seconds before 0 give the previous close (the LVC before the open); seconds past the
        close give the closing state. `jitter` holds one uint64 key per row for the per-event
        parts (depth, buy/sell totals, last traded quantity).
        """
        rows = np.asarray(rows, dtype=np.int64)
        s = np.clip(np.asarray(seconds, dtype=np.int64), -1, SECONDS - 1)
        n = len(rows)
        pre = s < 0
        sc = np.maximum(s, 0)
        m, j = sc // 60, sc % 60
        price = np.empty(n)
        run_hi = np.empty(n)
        run_lo = np.empty(n)
        cum_lots = np.empty(n, dtype=np.int64)
        for minute in np.unique(m[~pre]):
            sel = (m == minute) & ~pre
            data = self._minute(int(minute))
            r, jj = rows[sel], j[sel]
            price[sel] = data.prices[r, jj]
            run_hi[sel] = data.run_high[r, jj]
            run_lo[sel] = data.run_low[r, jj]
            cum_lots[sel] = data.cum_lots[r, jj]
        if (~pre).any():
            self._ensure_stats(int(m[~pre].max()) - 1)
        paths = self.paths
        prev_close = paths.prev_close[rows]
        high = run_hi.copy()
        low = run_lo.copy()
        later = (m > 0) & ~pre
        high[later] = np.maximum(high[later], self._cum_high[m[later] - 1, rows[later]])
        low[later] = np.minimum(low[later], self._cum_low[m[later] - 1, rows[later]])
        lot = self._lot[rows]

        before = np.where(m > 0, paths.cum_lots[rows, np.maximum(m - 1, 0)], 0)
        turnover = np.where(m > 0, paths.cum_turnover[rows, np.maximum(m - 1, 0)], 0.0)
        volume = cum_lots * lot
        turnover = turnover + (cum_lots - before) * lot * price
        avg = np.divide(turnover, volume, out=price.copy(), where=volume > 0)
        decimals = np.where(self._tick[rows] < 0.01, 4, 2)
        avg = np.where(decimals == 4, np.round(avg, 4), np.round(avg, 2))

        epoch = np.where(pre, self.prev_close_epoch, self.open_epoch + sc).astype(np.int64)
        u = [rng.uniform(rng.key(jitter, i)) for i in range(8)]
        oi_col = np.maximum(m, 0)
        out = {
            "instrument_token": self.universe.tokens[rows],
            "last_price": np.where(pre, prev_close, price),
            "last_traded_quantity": lot * (1 + np.floor(u[0] ** 4 * 40)).astype(np.int64),
            "average_traded_price": np.where(pre, prev_close, avg),
            "volume_traded": np.where(pre, 0, volume),
            "open": np.where(pre, prev_close, paths.open[rows]),
            "high": np.where(pre, prev_close, high),
            "low": np.where(pre, prev_close, low),
            "close": prev_close,
            "oi": paths.oi[rows, oi_col],
            "oi_day_high": paths.oi_high[rows, oi_col],
            "oi_day_low": paths.oi_low[rows, oi_col],
            "exchange_timestamp": epoch.astype("datetime64[s]"),
            "last_trade_time": (epoch - (u[1] < 0.3)).astype("datetime64[s]"),
        }
        book = self._book_scale[rows]
        out["total_buy_quantity"] = (lot * np.floor(book * (0.5 + u[2]))).astype(np.int64)
        out["total_sell_quantity"] = (lot * np.floor(book * (0.5 + u[3]))).astype(np.int64)
        out.update(self._depth(rows, out["last_price"], jitter, u[4], u[5]))
        no_volume = self._is_index[rows] | pre
        for name in ("last_traded_quantity", "total_buy_quantity", "total_sell_quantity"):
            out[name] = np.where(no_volume, 0, out[name])
        return out

    def _depth(
        self,
        rows: np.ndarray,
        price: np.ndarray,
        jitter: np.ndarray,
        ua: np.ndarray,
        ub: np.ndarray,
    ) -> dict[str, np.ndarray]:
        tick = self._tick[rows]
        lot = self._lot[rows]
        scale = self._depth_scale[rows]
        spread = 1 + np.floor(ua * 3)
        bid = price - np.floor(ub * (spread + 1)) * tick
        ask = bid + spread * tick
        levels = np.arange(DEPTH_LEVELS)
        keys = rng.key(jitter[:, None], 100 + levels[None, :])
        gaps = 1 + np.floor(rng.uniform(keys) * 2)  # (n, 5) ticks between levels
        offset = np.cumsum(gaps, axis=1) - gaps[:, :1]
        bids = bid[:, None] - offset * tick[:, None]
        asks = ask[:, None] + offset * tick[:, None]
        out: dict[str, np.ndarray] = {}
        empty = self._is_index[rows]
        for side, prices, salt in (("bid", bids, 200), ("ask", asks, 300)):
            uq = rng.uniform(rng.key(jitter[:, None], salt + levels[None, :]))
            lots = 1 + np.floor(uq**2 * scale[:, None])
            orders = 1 + np.floor(
                rng.uniform(rng.key(jitter[:, None], salt + 50 + levels)) * np.minimum(lots, 30)
            )
            live = (prices > 0) & ~empty[:, None]
            for k in range(DEPTH_LEVELS):
                out[f"{side}_price_{k + 1}"] = np.where(live[:, k], np.round(prices[:, k], 4), 0.0)
                out[f"{side}_quantity_{k + 1}"] = np.where(live[:, k], lots[:, k] * lot, 0).astype(
                    np.int64
                )
                out[f"{side}_orders_{k + 1}"] = np.where(live[:, k], orders[:, k], 0).astype(
                    np.int64
                )
        return out

    # --- the stream --------------------------------------------------------------------------

    def events(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, seconds, jitter keys) of the change events in `batch`, in time order."""
        if batch < 0 or batch > self.last_batch:
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint64))
        per = self.rate / self.batches_per_second
        count = int(np.floor((batch + 1) * per) - np.floor(batch * per))
        slots = np.arange(count, dtype=np.int64)
        total = self._cum_weight[-1]
        u_row = rng.uniform(rng.key(self.seed, _EVT_ROW, self.ordinal, batch, slots))
        rows = np.minimum(np.searchsorted(self._cum_weight, u_row * total, side="right"),
                          len(self._cum_weight) - 1)  # fmt: skip
        u_time = rng.uniform(rng.key(self.seed, _EVT_TIME, self.ordinal, batch, slots))
        seconds = np.floor((batch + u_time) * self.batch_seconds).astype(np.int64)
        keep = seconds < SECONDS
        order = np.argsort(seconds[keep], kind="stable")
        jitter = rng.key(self.seed, _EVT_JITTER, self.ordinal, batch, slots)
        return rows[keep][order], seconds[keep][order], jitter[keep][order]

    def batch_ticks(self, batch: int) -> tuple[np.ndarray, dict]:
        """(rows, tick columns) of one batch; empty outside the session."""
        rows, seconds, jitter = self.events(batch)
        if len(rows) == 0:
            return rows, {}
        return rows, self.state(rows, seconds, jitter)

    def snapshot(self, rows: np.ndarray, epoch: float) -> dict:
        """The last value cache: each row's state at simulated time `epoch`."""
        rows = np.asarray(rows, dtype=np.int64)
        s = self.second_of(epoch)
        seconds = np.full(len(rows), s, dtype=np.int64)
        jitter = rng.key(self.seed, _LVC_JITTER, self.ordinal, rows, max(s, -1))
        return self.state(rows, seconds, jitter)
