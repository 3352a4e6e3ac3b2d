"""Upstox v3 historical candles over plain HTTP, paced by one shared rate limiter.

``GET {base}/v3/historical-candle/{instrument_key}/{unit}/{interval}/{to_date}/{from_date}``
with ``Authorization: Bearer <token>``; to_date comes before from_date, the key is URL-encoded
(``NSE_EQ%7CINE848E01016``), candles arrive newest first with IST timestamps. The upstox SDK
is not used: its generated HistoryV3Api sends no token, builds a Python object per candle and
has no rate limiting, while this client parses a response straight into Arrow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date
from urllib.parse import quote

import polars as pl
import pyarrow as pa
import requests

from tick_assets.candles.errors import (
    CandleAuthError,
    HttpStatusError,
    MalformedResponseError,
    SymbolFetchError,
)
from tick_assets.candles.fetch import RateLimitedHttp, RetryPolicy
from tick_assets.candles.parse import MalformedCandlesError, parse_candles
from tick_assets.candles.timeframes import Timeframe, TimeframeError
from tick_assets.sources.ratelimit import RateLimiter, shared_limiter
from tick_assets.sources.upstox import instruments as upstox_instruments
from tick_assets.sources.upstox import limits

#: Client-side margin on every window: network jitter must not make two requests that left
#: a window apart arrive inside one.
MARGIN_S = 0.05


def new_limiter(name: str = "upstox") -> RateLimiter:
    """A fresh limiter for one Upstox user: 50/s, 500/min and 2000/30 min at once."""
    return RateLimiter(limits.RATE_WINDOWS, margin_s=MARGIN_S, name=name)


def limiter_for_token(access_token: str) -> RateLimiter:
    """This process's one limiter for the user behind ``access_token`` (limits are per user)."""
    key = "upstox:" + hashlib.sha256(access_token.encode()).hexdigest()
    return shared_limiter(key, limits.RATE_WINDOWS, margin_s=MARGIN_S, name="upstox")


def unit_interval(timeframe: Timeframe) -> tuple[str, int]:
    """The v3 (unit, interval) of a timeframe: 5minute -> (minutes, 5), 1hour -> (hours, 1)."""
    if timeframe.is_day:
        return "days", 1
    if (
        timeframe.name.endswith("hour")
        and timeframe.minutes // 60 <= limits.UNITS["hours"].max_interval
    ):
        return "hours", timeframe.minutes // 60
    return "minutes", timeframe.minutes


def _error_codes(body: str) -> list[str]:
    try:
        doc = json.loads(body)
    except json.JSONDecodeError:
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(e.get("errorCode") or e.get("error_code")) for e in errors if isinstance(e, dict)]


def download_instruments(assets_root: str, exchange: str = "NSE", timeout: float = 60) -> bytes:
    """The instruments file of one exchange (no credentials needed)."""
    url = assets_root.rstrip("/") + limits.INSTRUMENTS_PATH.format(exchange=exchange)
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise SymbolFetchError(
            f"GET {url} failed ({type(exc).__name__}); is the Upstox assets host reachable?",
            url=url,
        ) from None
    if response.status_code != 200:
        raise SymbolFetchError(
            f"GET {url} returned HTTP {response.status_code}: {response.text[:200]}", url=url
        )
    return response.content


class UpstoxHistory:
    """The Upstox v3 candle client for the engine (``tick_assets.candles.source``)."""

    venue = "upstox"

    def __init__(
        self,
        base_url: str,
        access_token: str,
        instruments: pl.DataFrame,
        *,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        token_hint: str = "UPSTOX_ACCESS_TOKEN",
        exchange: str = "NSE",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json", "Authorization": f"Bearer {access_token}"}
        self.instruments = instruments
        self.http = RateLimitedHttp(limiter or new_limiter(), policy)
        self.token_hint = token_hint
        self.exchange = exchange

    def __repr__(self) -> str:
        return f"UpstoxHistory({self.base_url})"

    def describe(self) -> str:
        return f"upstox v3 GET {self.base_url}{limits.HISTORICAL_PATH}"

    def resolve(self, symbols: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        found, unknown = upstox_instruments.resolve(self.instruments, symbols, self.exchange)
        why = {
            s: f"{s!r} is not in the Upstox {self.exchange} instruments file (no NSE_EQ/"
            "NSE_INDEX/NSE_FO trading_symbol or index name matches); fix the symbol list"
            for s in unknown
        }
        return found, why

    def check_timeframe(self, timeframe: Timeframe) -> None:
        unit, interval = unit_interval(timeframe)
        problem = limits.check_unit_interval(unit, interval)
        if problem:
            raise TimeframeError(f"Upstox has no {timeframe.name} candles ({problem})")

    def history_start(self, timeframe: Timeframe) -> date:
        return limits.UNITS[unit_interval(timeframe)[0]].history_from

    def window_end(self, timeframe: Timeframe, first: date) -> date | None:
        return limits.latest_to(*unit_interval(timeframe), first)

    def url(self, key: str, timeframe: Timeframe, first: date, last: date) -> str:
        unit, interval = unit_interval(timeframe)
        return (
            f"{self.base_url}{limits.HISTORICAL_PATH}/{quote(key, safe='')}/{unit}/{interval}/"
            f"{last.isoformat()}/{first.isoformat()}"
        )

    def fetch(
        self, symbol: str, key: str, timeframe: Timeframe, first: date, last: date
    ) -> pa.Table:
        url = self.url(key, timeframe, first, last)
        try:
            body = self.http.get(url, symbol=symbol, headers=self._headers)
        except HttpStatusError as err:
            codes = _error_codes(err.body)
            if err.status == 401 or limits.INVALID_TOKEN in codes:
                raise CandleAuthError(
                    f"Upstox refused the access token (HTTP {err.status} {', '.join(codes)}) "
                    f"on GET {url}; put a fresh token in ${self.token_hint} (Upstox tokens "
                    "expire at 03:30 IST) and re-run"
                ) from None
            if limits.UNKNOWN_KEY in codes:
                raise HttpStatusError(
                    f"GET {url} for {symbol}: Upstox does not know instrument key {key!r} "
                    f"({limits.UNKNOWN_KEY}); refresh the instruments file or fix the symbol",
                    url=url, symbol=symbol, status=err.status, body=err.body,
                ) from None  # fmt: skip
            raise
        try:
            return parse_candles(body)
        except MalformedCandlesError as exc:
            raise MalformedResponseError(
                f"GET {url} for {symbol}: malformed candle response: {exc}", url=url, symbol=symbol
            ) from None
