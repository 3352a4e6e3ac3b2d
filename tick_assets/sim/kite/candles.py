"""Historical candles for one instrument, from the same paths the websocket streams.

Minute candles are the OHLC of the per-second prices and the volume traded within the minute,
so bars built from captured ticks reconcile with them. On the simulated day itself only the
part of the session that has already happened (by the simulated clock) exists. Many days of
one instrument are computed together as rows of one `DayPaths`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np

from tick_assets.calendars import IST
from tick_assets.sim.kite import sessions
from tick_assets.sim.kite.paths import MINUTES, SECONDS, DayPaths, RowParams
from tick_assets.sources.kite.limits import INTERVAL_MINUTES

_SESSION_START = timedelta(hours=9, minutes=15)
_DAYS_PER_CHUNK = 40


def minute_bars(
    seed: int, p: RowParams, days: list[date], last_day: date, last_second: int
) -> list[tuple[date, np.ndarray]]:
    """Per day, a (k, 7) array [minute, open, high, low, close, volume, oi] of minutes with data.

    `p` has one row. On `last_day` only seconds up to `last_second` (session seconds since
    09:15) exist; later days have none.
    """
    days = [d for d in days if d <= last_day and (d < last_day or last_second >= 0)]
    out: list[tuple[date, np.ndarray]] = []
    minutes = np.arange(MINUTES)
    second_of = (minutes[:, None] * 60 + np.arange(60)[None, :])[None, :, :]
    lot = int(p.lot[0])
    for lo in range(0, len(days), _DAYS_PER_CHUNK):
        chunk = days[lo : lo + _DAYS_PER_CHUNK]
        rows = p.take(np.zeros(len(chunk), dtype=np.int64))
        ords = np.array([d.toordinal() for d in chunk])
        prevs = np.array([sessions.previous_session_day(d).toordinal() for d in chunk])
        paths = DayPaths(seed, rows, ords, prevs)
        prices = paths.second_prices(minutes)  # (days, 375, 60)
        upto = np.array([last_second if d == last_day else SECONDS - 1 for d in chunk])
        upto = np.minimum(upto, SECONDS - 1)
        late = second_of > upto[:, None, None]
        if late.any():
            prices = np.where(late, np.nan, prices)
        for i, day in enumerate(chunk):
            count = int(upto[i]) // 60 + 1
            p_i = prices[i, :count]
            closes = p_i[:, 59].copy()
            closes[-1] = p_i[-1, int(upto[i]) % 60]
            # lots at each minute's end; the minute in progress ends at `upto`
            end_lots = paths.cum_lots[i, :count].copy()
            if upto[i] % 60 != 59:
                one = DayPaths(seed, rows.take(np.array([i])), ords[i : i + 1], prevs[i : i + 1])
                end_lots[-1] = one.second_cum_lots(np.array([count - 1]))[0, 0, int(upto[i]) % 60]
            bars = np.column_stack(
                [
                    minutes[:count],
                    p_i[:, 0],
                    np.nanmax(p_i, axis=1),
                    np.nanmin(p_i, axis=1),
                    closes,
                    np.diff(end_lots, prepend=0) * lot,
                    paths.oi[i, :count],
                ]
            )
            out.append((day, bars))
    return out


def _stamp(day: date, minute: int | None) -> str:
    base = datetime(day.year, day.month, day.day, tzinfo=IST)
    if minute is not None:
        base += _SESSION_START + timedelta(minutes=minute)
    return base.strftime("%Y-%m-%dT%H:%M:%S%z")


def candles(
    seed: int,
    p: RowParams,
    interval: str,
    start: datetime,
    end: datetime,
    sim_day: date,
    sim_second: int,
    with_oi: bool,
    decimals: int = 2,
) -> list[list]:
    """Kite-shaped candle rows [ts, o, h, l, c, v(, oi)] for one instrument (p has one row).

    `start`/`end` are naive IST (as Kite reads `from`/`to`); days after `sim_day` have no data
    and `sim_day` only up to `sim_second` (session seconds since 09:15).
    """
    days = sessions.session_days(start.date(), min(end.date(), sim_day))
    out: list[list] = []
    for day, bars in minute_bars(seed, p, days, sim_day, sim_second):
        if interval == "day":
            groups = [(None, bars)]
        else:
            size = INTERVAL_MINUTES[interval]
            keys = bars[:, 0].astype(np.int64) // size
            cuts = np.flatnonzero(np.diff(keys)) + 1
            groups = [(int(g[0, 0]) // size * size, g) for g in np.split(bars, cuts)]
        midnight = datetime(day.year, day.month, day.day)
        for minute, g in groups:
            if minute is None:
                inside = start.date() <= day <= end.date()
            else:
                inside = start <= midnight + _SESSION_START + timedelta(minutes=minute) <= end
            if not inside:
                continue
            row = [
                _stamp(day, minute),
                round(float(g[0, 1]), decimals),
                round(float(g[:, 2].max()), decimals),
                round(float(g[:, 3].min()), decimals),
                round(float(g[-1, 4]), decimals),
                int(g[:, 5].sum()),
            ]
            if with_oi:
                row.append(int(g[-1, 6]))
            out.append(row)
    return out
