"""What the candle engine needs from a venue's historical-candle client.

Kite (``tick_assets.sources.kite.historical``) and Upstox (``tick_assets.sources.upstox.
history``) implement it; the engine plans, paces, retries and stores the same way for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

import pyarrow as pa

from tick_assets.candles.fetch import RateLimitedHttp
from tick_assets.candles.timeframes import Timeframe


class CandleSource(Protocol):
    #: lake venue name ("upstox", "kite")
    venue: str
    #: the one rate-limited HTTP client (limiter + retries) every worker shares
    http: RateLimitedHttp

    def resolve(self, symbols: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        """({symbol: venue key}, {unknown symbol: why}) for the listed symbols."""
        ...

    def check_timeframe(self, timeframe: Timeframe) -> None:
        """Raise TimeframeError if the venue has no such candles."""
        ...

    def history_start(self, timeframe: Timeframe) -> date | None:
        """First day the venue has candles of this timeframe (None: not published)."""
        ...

    def window_end(self, timeframe: Timeframe, first: date) -> date | None:
        """Last day one request starting at ``first`` may cover (None: no limit)."""
        ...

    def fetch(
        self, symbol: str, key: str, timeframe: Timeframe, first: date, last: date
    ) -> pa.Table:
        """Candles of [first, last] (IST days) ascending, ``parse.CANDLE_SCHEMA``.

        Raises SymbolFetchError subclasses (naming URL and symbol) or CandleAuthError.
        """
        ...

    def describe(self) -> str:
        """Where the candles come from, for manifests (never a credential)."""
        ...
