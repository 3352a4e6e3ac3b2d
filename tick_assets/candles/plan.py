"""Which requests to send: the fewest windows the venue's span allows, per symbol.

The days that need fetching (from the lake, see ``lakeio.needs_fetch``) are cut into windows:
a window starts at the first day still needed and reaches as far as one request may span
(``CandleSource.window_end``). Every symbol needing any day of a window gets one request,
clipped to its own first and last needed day. For a plain backfill that is the minimum:
ceil(days / span) requests per symbol; days the lake already holds are not asked for unless
they sit between two needed days of the same window (which costs no extra request).
Windows are shared by all symbols so a window's day partitions can be written as soon as its
requests are done, keeping memory to one window's candles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Request:
    symbol: str
    key: str
    first: date
    last: date
    window: int  # index into the windows of its timeframe


def windows(
    days: Sequence[date], window_end: Callable[[date], date | None]
) -> list[tuple[date, date]]:
    """Greedy cover of sorted ``days`` by windows [first, last], each within one request's span."""
    ordered = sorted(set(days))
    out: list[tuple[date, date]] = []
    i = 0
    while i < len(ordered):
        first = ordered[i]
        limit = window_end(first)
        j = i
        while j + 1 < len(ordered) and (limit is None or ordered[j + 1] <= limit):
            j += 1
        out.append((first, ordered[j]))
        i = j + 1
    return out


def requests_for(
    needs: Mapping[str, set[date]],
    keys: Mapping[str, str],
    spans: Sequence[tuple[date, date]],
) -> list[Request]:
    """One request per (window, symbol) with needed days in the window, window order first."""
    out: list[Request] = []
    ordered = {symbol: sorted(days) for symbol, days in needs.items() if days}
    for index, (lo, hi) in enumerate(spans):
        for symbol, days in ordered.items():
            mine = [d for d in days if lo <= d <= hi]
            if mine:
                out.append(Request(symbol, keys[symbol], mine[0], mine[-1], index))
    return out
