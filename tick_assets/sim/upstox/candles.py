"""Upstox v3 candles for one instrument, from the same minute bars the Kite simulator serves.

``tick_assets.sim.kite.candles.minute_bars`` is the one source of truth: minute OHLCV built
from the per-second prices the websocket streams, so Upstox candles, Kite candles and captured
ticks all describe the same market. Minutes listed in ``halted`` have no trade and so no
candle (a longer candle is built from the minutes that did trade, and is absent if none did);
that is how the simulator shows a candle the venue does not have. Rows come out newest first
with ``+05:30`` timestamps, as Upstox sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta

import numpy as np

from tick_assets.calendars import IST
from tick_assets.sim.kite import sessions
from tick_assets.sim.kite.candles import minute_bars
from tick_assets.sim.kite.paths import RowParams

_OPEN = timedelta(hours=9, minutes=15)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")  # 2025-01-02T09:15:00+05:30


def _row(stamp: datetime, g: np.ndarray, decimals: int) -> list:
    return [
        _stamp(stamp),
        round(float(g[0, 1]), decimals),
        round(float(g[:, 2].max()), decimals),
        round(float(g[:, 3].min()), decimals),
        round(float(g[-1, 4]), decimals),
        int(g[:, 5].sum()),
        int(g[-1, 6]),
    ]


def candles(
    seed: int,
    p: RowParams,
    unit: str,
    interval: int,
    first: date,
    last: date,
    sim_day: date,
    sim_second: int,
    halted: Mapping[date, frozenset[int]] | None = None,
    decimals: int = 2,
) -> list[list]:
    """Upstox candle rows [ts, o, h, l, c, volume, oi], newest first, for days [first, last].

    Days after ``sim_day`` have no data; ``sim_day`` only up to ``sim_second`` (session
    seconds since 09:15). ``halted`` maps a day to the session minutes with no trade.
    """
    days = sessions.session_days(first, min(last, sim_day))
    per_day: list[tuple[date, np.ndarray]] = []
    for day, bars in minute_bars(seed, p, days, sim_day, sim_second):
        gone = (halted or {}).get(day)
        if gone:
            bars = bars[~np.isin(bars[:, 0].astype(np.int64), list(gone))]
        if len(bars):
            per_day.append((day, bars))
    out: list[list] = []
    if unit in ("minutes", "hours"):
        size = interval * (60 if unit == "hours" else 1)
        for day, bars in per_day:
            keys = bars[:, 0].astype(np.int64) // size
            cuts = np.flatnonzero(np.diff(keys)) + 1
            midnight = datetime.combine(day, time(0, 0), tzinfo=IST)
            for g in np.split(bars, cuts):
                start = int(g[0, 0]) // size * size
                out.append(_row(midnight + _OPEN + timedelta(minutes=start), g, decimals))
    else:
        groups: dict[date, list[np.ndarray]] = {}
        for day, bars in per_day:
            if unit == "days":
                key = day
            elif unit == "weeks":
                key = day - timedelta(days=day.weekday())
            else:
                key = day.replace(day=1)
            groups.setdefault(key, []).append(bars)
        for key, parts in groups.items():
            g = np.concatenate(parts)
            out.append(_row(datetime.combine(key, time(0, 0), tzinfo=IST), g, decimals))
    out.reverse()
    return out
