"""Binance spot REST (exchangeInfo, klines) through python-binance, within the IP weight limit.

python-binance's ``Client`` builds every public URL as ``API_URL + "/v3/" + path`` (see
binance/base_client.py ``_create_api_uri``), so pointing it at the simulator, at
https://data-api.binance.vision or at https://api.binance.com is ``client.API_URL =
root + "/api"`` on a ``Client(ping=False)`` (no network call in the constructor).

Limits (Binance spot docs): REQUEST_WEIGHT 6000 per minute per IP, klines weight 2 for up to
1000 candles, exchangeInfo weight 20. Every request first takes its weight from a shared
``RateLimiter`` (a sliding minute at ``budget`` of the limit, plus a 10-second window that
spreads the minute evenly so a burst cannot use it all at once). Every response's
``X-MBX-USED-WEIGHT-1M`` is read: if other processes on this IP push the used weight near the
limit, all callers pause until the minute turns. A 429 or 418 pauses every caller for its
Retry-After and the request is retried; a ban longer than ``max_retry_after`` raises
``BinanceBanned`` rather than block for hours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from tick_assets.sources.ratelimit import RateLimiter

DEFAULT_WEIGHT_LIMIT = 6000  # REQUEST_WEIGHT per 1 MINUTE per IP
DEFAULT_BUDGET = 0.95  # share of the limit this process plans to use
KLINES_WEIGHT = 2
EXCHANGE_INFO_WEIGHT = 20
KLINES_LIMIT = 1000
MINUTE_MS = 60_000
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
HEADER_PAUSE_SHARE = 0.97  # pause to the next minute when the IP's used weight reaches this
SMOOTHING_SECONDS = 10.0


class BinanceRestError(RuntimeError):
    """A REST call failed; the message names the call and Binance's code and message."""


class BinanceBanned(BinanceRestError):
    """Binance answered 418 (IP auto-ban) or 429 with a Retry-After too long to wait for."""


_limiters: dict[tuple[str, float, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(
    root: str, weight_limit: float = DEFAULT_WEIGHT_LIMIT, budget: float = DEFAULT_BUDGET
) -> RateLimiter:
    """The process-wide weight limiter of one REST root (every client of it shares it)."""
    key = (root.rstrip("/"), float(weight_limit), float(budget))
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            per_minute = weight_limit * budget
            limiter = RateLimiter(
                [(per_minute, 60.0), (per_minute * SMOOTHING_SECONDS / 60.0, SMOOTHING_SECONDS)],
                margin_s=0.05,
                name=f"binance weight {root}",
            )
            _limiters[key] = limiter
        return limiter


def _retry_after(response: requests.Response | None, default: float) -> float:
    if response is None:
        return default
    try:
        return max(float(response.headers.get("Retry-After", default)), 0.0)
    except ValueError:
        return default


class BinanceRest:
    """Thread-safe: one python-binance Client per thread, one limiter for all of them."""

    def __init__(
        self,
        root: str,
        *,
        limiter: RateLimiter | None = None,
        weight_limit: float = DEFAULT_WEIGHT_LIMIT,
        budget: float = DEFAULT_BUDGET,
        timeout: float = 30.0,
        max_retry_after: float = 300.0,
        max_attempts: int = 6,
    ) -> None:
        self.root = root.rstrip("/")
        self.weight_limit = weight_limit
        self.limiter = limiter or shared_limiter(self.root, weight_limit, budget)
        self.timeout = timeout
        self.max_retry_after = max_retry_after
        self.max_attempts = max_attempts
        self._local = threading.local()
        self._lock = threading.Lock()
        self.stats: dict[str, float] = {"requests": 0, "weight": 0, "http_429": 0,
                                        "http_418": 0, "retry_after_s": 0.0,
                                        "max_used_weight": 0, "header_pauses": 0}  # fmt: skip

    # --- plumbing -------------------------------------------------------------------------

    def client(self) -> Client:
        """This thread's unmodified python-binance Client, pointed at ``root``."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = Client(ping=False, requests_params={"timeout": self.timeout})
            client.API_URL = self.root + "/api"
            self._local.client = client
        return client

    def _count(self, name: str, value: float = 1) -> None:
        with self._lock:
            self.stats[name] += value

    def _observe(self, response: requests.Response | None) -> None:
        if response is None:
            return
        raw = response.headers.get(USED_WEIGHT_HEADER)
        if raw is None or not raw.isdigit():
            return
        used = int(raw)
        with self._lock:
            self.stats["max_used_weight"] = max(self.stats["max_used_weight"], used)
        if used >= self.weight_limit * HEADER_PAUSE_SHARE:
            self._count("header_pauses")
            self.limiter.penalize(60.0 - time.time() % 60.0 + 0.25)

    def call(self, what: str, weight: int, method: str, **params: Any) -> Any:
        """``Client.<method>(**params)`` within the weight limit, honouring 429/418."""
        transient = 0
        for _ in range(self.max_attempts):
            self.limiter.acquire(weight)
            client = self.client()
            self._count("requests")
            self._count("weight", weight)
            try:
                result = getattr(client, method)(**params)
            except BinanceAPIException as exc:
                self._observe(exc.response)
                if exc.status_code in (429, 418):
                    wait = _retry_after(exc.response, 60.0 if exc.status_code == 429 else 120.0)
                    self._count(f"http_{exc.status_code}")
                    if wait > self.max_retry_after:
                        raise BinanceBanned(
                            f"{what}: Binance answered HTTP {exc.status_code} with Retry-After "
                            f"{wait:.0f} s (over the {self.max_retry_after:.0f} s this client "
                            "waits); this IP is rate-limited or banned, retry after that"
                        ) from None
                    self._count("retry_after_s", wait)
                    self.limiter.penalize(wait)
                    continue
                if exc.status_code >= 500 and transient < 2:
                    transient += 1
                    time.sleep(1.0 * transient)
                    continue
                raise BinanceRestError(
                    f"{what}: HTTP {exc.status_code}, Binance code {exc.code}: {exc.message}"
                ) from None
            except (BinanceRequestException, requests.RequestException) as exc:
                if transient >= 2:
                    raise BinanceRestError(f"{what}: {type(exc).__name__}: {exc}") from None
                transient += 1
                time.sleep(1.0 * transient)
                continue
            self._observe(client.response)
            return result
        raise BinanceRestError(f"{what}: still refused after {self.max_attempts} attempts")

    # --- endpoints ------------------------------------------------------------------------

    def exchange_info(self) -> dict:
        """GET /api/v3/exchangeInfo (weight 20); checks its REQUEST_WEIGHT limit against ours."""
        what = f"GET {self.root}/api/v3/exchangeInfo"
        info = self.call(what, EXCHANGE_INFO_WEIGHT, "get_exchange_info")
        for limit in info.get("rateLimits", []):
            if (limit.get("rateLimitType"), limit.get("interval"), limit.get("intervalNum")) == (
                "REQUEST_WEIGHT", "MINUTE", 1,
            ) and float(limit["limit"]) < self.weight_limit:  # fmt: skip
                raise BinanceRestError(
                    f"{what}: the exchange allows {limit['limit']} weight/minute, less than the "
                    f"configured {self.weight_limit:g}; lower [venues.binance].weight_limit"
                )
        return info

    def symbol_info(self, symbol: str) -> dict | None:
        """exchangeInfo entry of one symbol (python-binance get_symbol_info), None if unlisted."""
        return self.call(
            f"GET {self.root}/api/v3/exchangeInfo ({symbol})",
            EXCHANGE_INFO_WEIGHT,
            "get_symbol_info",
            symbol=symbol,
        )

    def server_time_ms(self) -> int:
        """Binance's clock (GET /api/v3/time, weight 1): what "now" is for closed candles."""
        body = self.call(f"GET {self.root}/api/v3/time", 1, "get_server_time")
        return int(body["serverTime"])

    def klines(self, symbol: str, start_ms: int, end_ms: int, limit: int = KLINES_LIMIT) -> list:
        """One /api/v3/klines request: up to ``limit`` 1m candles opening in [start, end]."""
        return self.call(
            f"GET {self.root}/api/v3/klines?symbol={symbol}&startTime={start_ms}",
            KLINES_WEIGHT,
            "get_klines",
            symbol=symbol,
            interval=Client.KLINE_INTERVAL_1MINUTE,
            startTime=start_ms,
            endTime=end_ms,
            limit=limit,
        )

    def klines_pages(self, symbol: str, start_ms: int, end_ms: int) -> Iterator[list]:
        """1000-candle pages of candles opening in [start_ms, end_ms), oldest first."""
        cursor = start_ms
        while cursor < end_ms:
            rows = self.klines(symbol, cursor, end_ms - 1)
            if not rows:
                return
            yield rows
            last_open = int(rows[-1][0])
            last_open = last_open // 1000 if last_open >= 10**15 else last_open
            cursor = last_open + MINUTE_MS
            if len(rows) < KLINES_LIMIT:
                return
