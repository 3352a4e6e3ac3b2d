"""Kite Connect historical candles over plain HTTP, paced by one shared rate limiter.

``GET {root}/instruments/historical/{instrument_token}/{interval}?from=..&to=..&oi=1`` with the
headers kiteconnect sends (``X-Kite-Version: 3``, ``Authorization: token api_key:token``).
kiteconnect's own ``historical_data`` is not used for bulk history: it has no pacing (3
requests/s per key, 429 past it), and builds a dict with a dateutil-parsed datetime per candle;
this client parses the response straight into Arrow. Spans per interval come from
``limits.HISTORICAL_MAX_DAYS`` (60 days of minute candles, ..., 2000 of day candles).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta
from urllib.parse import urlencode

import polars as pl
import pyarrow as pa

from tick_assets.candles.errors import CandleAuthError, HttpStatusError, MalformedResponseError
from tick_assets.candles.fetch import RateLimitedHttp, RetryPolicy
from tick_assets.candles.parse import MalformedCandlesError, parse_candles
from tick_assets.candles.timeframes import Timeframe, TimeframeError
from tick_assets.sources.kite.limits import HISTORICAL_MAX_DAYS, HISTORICAL_REQUESTS_PER_SECOND
from tick_assets.sources.ratelimit import RateLimiter, shared_limiter

HISTORICAL_PATH = "/instruments/historical"
#: Margin on the 1 s window so jitter in arrival times cannot squeeze 4 requests into 1 s.
MARGIN_S = 0.05


WINDOWS = ((HISTORICAL_REQUESTS_PER_SECOND, 1.0),)


def new_limiter(name: str = "kite-historical") -> RateLimiter:
    """A fresh limiter for one api_key: 3 historical requests per second."""
    return RateLimiter(WINDOWS, margin_s=MARGIN_S, name=name)


def limiter_for_api_key(api_key: str) -> RateLimiter:
    """This process's one historical-candle limiter for ``api_key`` (the limit is per key)."""
    return shared_limiter(
        f"kite-historical:{api_key}", WINDOWS, margin_s=MARGIN_S, name="kite-historical"
    )


def kite_interval(timeframe: Timeframe) -> str:
    """Kite's interval name: 1minute -> minute, 5minute -> 5minute, 1hour -> 60minute, day."""
    if timeframe.is_day:
        return "day"
    name = "minute" if timeframe.minutes == 1 else f"{timeframe.minutes}minute"
    if name not in HISTORICAL_MAX_DAYS:
        offered = ", ".join(HISTORICAL_MAX_DAYS)
        raise TimeframeError(f"Kite has no {timeframe.name} candles (intervals: {offered})")
    return name


def resolve_tokens(
    instruments: pl.DataFrame, symbols: Sequence[str], exchange: str = "NSE"
) -> tuple[dict[str, str], list[str]]:
    """({symbol: instrument_token as text}, [unknown]) from a parsed Kite instruments dump."""
    part = instruments.filter(pl.col("exchange") == exchange)
    table = dict(
        zip(
            [s.upper() for s in part["tradingsymbol"].to_list()],
            part["instrument_token"].to_list(),
            strict=True,
        )
    )
    found: dict[str, str] = {}
    unknown: list[str] = []
    for symbol in symbols:
        token = table.get(symbol.upper())
        if token is None and symbol.isdigit() and int(symbol) in table.values():
            token = int(symbol)
        if token is None:
            unknown.append(symbol)
        else:
            found[symbol] = str(token)
    return found, unknown


def _error_type(body: str) -> str:
    """Kite's ``error_type`` from an error body ("" when the body is not Kite's JSON shape)."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError:
        return ""
    return str(doc.get("error_type", "")) if isinstance(doc, dict) else ""


class KiteHistory:
    """The Kite candle client for the engine (``tick_assets.candles.source``)."""

    venue = "kite"

    def __init__(
        self,
        root: str,
        api_key: str,
        access_token: str,
        instruments: pl.DataFrame,
        *,
        app: str = "",
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        exchange: str = "NSE",
    ) -> None:
        self.root = root.rstrip("/")
        self._headers = {
            "X-Kite-Version": "3",
            "Authorization": f"token {api_key}:{access_token}",
        }
        self.instruments = instruments
        self.app = app
        self.exchange = exchange
        self.http = RateLimitedHttp(limiter or new_limiter(), policy)

    def __repr__(self) -> str:
        return f"KiteHistory({self.root}, app={self.app!r})"

    def describe(self) -> str:
        return f"kite GET {self.root}{HISTORICAL_PATH} (app {self.app or '?'})"

    def resolve(self, symbols: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        found, unknown = resolve_tokens(self.instruments, symbols, self.exchange)
        why = {
            s: f"{s!r} is not an {self.exchange} tradingsymbol in Kite's instruments dump; "
            "fix the symbol list"
            for s in unknown
        }
        return found, why

    def check_timeframe(self, timeframe: Timeframe) -> None:
        kite_interval(timeframe)

    def history_start(self, timeframe: Timeframe) -> date | None:
        return None  # Kite publishes no start date for its history

    def window_end(self, timeframe: Timeframe, first: date) -> date:
        return first + timedelta(days=HISTORICAL_MAX_DAYS[kite_interval(timeframe)] - 1)

    def url(self, token: str, timeframe: Timeframe, first: date, last: date) -> str:
        query = urlencode(
            {"from": f"{first.isoformat()} 00:00:00", "to": f"{last.isoformat()} 23:59:59", "oi": 1}
        )
        return f"{self.root}{HISTORICAL_PATH}/{token}/{kite_interval(timeframe)}?{query}"

    def fetch(
        self, symbol: str, key: str, timeframe: Timeframe, first: date, last: date
    ) -> pa.Table:
        url = self.url(key, timeframe, first, last)
        try:
            body = self.http.get(url, symbol=symbol, headers=self._headers)
        except HttpStatusError as err:
            error_type = _error_type(err.body)
            if err.status == 403 or error_type == "TokenException":
                app = self.app or "<app>"
                raise CandleAuthError(
                    f"Kite refused the access token of app {app!r} (HTTP {err.status} "
                    f"{error_type or 'error'}) on GET {url}; the token has expired or was "
                    f"revoked: materialize kite/access_token (partition {app}) and re-run"
                ) from None
            raise
        try:
            return parse_candles(body)
        except MalformedCandlesError as exc:
            raise MalformedResponseError(
                f"GET {url} for {symbol}: malformed candle response: {exc}", url=url, symbol=symbol
            ) from None
