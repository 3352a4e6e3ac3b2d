"""Binance spot REST of the simulator: /api/v3/ping, time, exchangeInfo and klines.

Request weights are Binance's (klines 2, exchangeInfo 20, ping/time 1) and are counted per
calendar minute (one IP: the loopback), reported on every response in
``X-MBX-USED-WEIGHT-1M``. Beyond the limit (default 6000) a request gets a 429 with
Retry-After (seconds to the next minute) and body code -1003; a client that keeps sending
during that back-off is banned with 418 and a Retry-After (Binance's auto-ban). Faults add a
429 or a 418 on command. python-binance's ``Client`` works against it unmodified once its
``API_URL`` is ``<binance_rest>/api``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from tick_assets.sim.binance.market import MINUTE_MS, KlineModel, Pair, klines_json

if TYPE_CHECKING:
    from tick_assets.sim.clock import SimClock

WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 20, "klines": 2}
DEFAULT_WEIGHT_LIMIT = 6000
VIOLATIONS_BEFORE_BAN = 10  # requests already in flight when a 429 lands are forgiven
BAN_SECONDS = 120
MAX_LIMIT = 1000


def _err(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def _mandatory(name: str) -> web.Response:
    return _err(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


class WeightMeter:
    """Per-minute request weight of the one (loopback) IP, bans, and injected faults."""

    def __init__(self, limit: int = DEFAULT_WEIGHT_LIMIT, wall=time.time) -> None:
        self.limit = limit
        self.wall = wall  # the clock minutes are counted on (tests may freeze it)
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0
        self._backoff_until = 0.0
        self._violations = 0
        self._ban_until = 0.0
        self._bans = 0
        self._injected: deque[tuple[int, float]] = deque()
        self.stats = {"requests": 0, "weight": 0, "http_429": 0, "http_418": 0,
                      "injected_429": 0, "injected_418": 0, "max_used_weight": 0}  # fmt: skip

    def inject(self, status: int, retry_after: float, count: int = 1) -> None:
        with self._lock:
            if status == 418:
                self._ban_until = max(self._ban_until, self.wall() + retry_after)
                self.stats["injected_418"] += 1
            else:
                self._injected.extend([(429, retry_after)] * count)

    def clear(self) -> None:
        with self._lock:
            self._injected.clear()
            self._ban_until = self._backoff_until = 0.0
            self._violations = 0
            self._used = 0  # a fresh minute's worth of weight

    def add_other_clients(self, weight: int) -> None:
        """Count ``weight`` as used this minute by other clients sharing the IP."""
        with self._lock:
            now = self.wall()
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            self._used += weight

    def used(self) -> int:
        with self._lock:
            now = self.wall()
            return self._used if int(now // 60) == self._minute else 0

    def charge(self, weight: int) -> tuple[int, int, float]:
        """(status, used weight, retry_after): status 200 admits the request."""
        with self._lock:
            now = self.wall()
            self.stats["requests"] += 1
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            to_next_minute = (minute + 1) * 60 - now
            if now < self._ban_until:
                self.stats["http_418"] += 1
                return 418, self._used, self._ban_until - now
            if self._injected:
                _, retry = self._injected.popleft()
                self.stats["http_429"] += 1
                self.stats["injected_429"] += 1
                self._backoff_until = max(self._backoff_until, now + retry)
                return 429, self._used, retry
            if now < self._backoff_until:
                self._violations += 1
                if self._violations >= VIOLATIONS_BEFORE_BAN:
                    self._bans += 1
                    self._violations = 0
                    self._ban_until = now + BAN_SECONDS * 2 ** (self._bans - 1)
                    self.stats["http_418"] += 1
                    return 418, self._used, self._ban_until - now
                self.stats["http_429"] += 1
                return 429, self._used, self._backoff_until - now
            if self._used + weight > self.limit:
                self._backoff_until = now + to_next_minute
                self.stats["http_429"] += 1
                return 429, self._used, to_next_minute
            self._used += weight
            self.stats["weight"] += weight
            self.stats["max_used_weight"] = max(self.stats["max_used_weight"], self._used)
            return 200, self._used, 0.0


def _symbol_info(pair: Pair, now: datetime) -> dict:
    tick = f"{pair.tick_e8 / 1e8:.8f}"
    step = f"{pair.step_e8 / 1e8:.8f}"
    return {
        "symbol": pair.symbol,
        "status": pair.status(now),
        "baseAsset": pair.base,
        "baseAssetPrecision": 8,
        "quoteAsset": pair.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],  # fmt: skip
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": pair.quote == "USDT",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },  # fmt: skip
            {
                "filterType": "LOT_SIZE",
                "minQty": step,
                "maxQty": "9000000.00000000",
                "stepSize": step,
            },  # fmt: skip
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"] if pair.quote == "USDT" else ["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": [
            "EXPIRE_TAKER",
            "EXPIRE_MAKER",
            "EXPIRE_BOTH",
            "DECREMENT",
        ],  # fmt: skip
    }


class BinanceRestSim:
    """aiohttp handlers for the REST endpoints; ``meter`` counts weight, ``model`` has klines."""

    def __init__(self, model: KlineModel, clock: SimClock, meter: WeightMeter) -> None:
        self.model = model
        self.clock = clock
        self.meter = meter

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/ping", self.ping),
            web.get("/api/v3/time", self.server_time),
            web.get("/api/v3/exchangeInfo", self.exchange_info),
            web.get("/api/v3/klines", self.klines),
        ]

    def _admit(self, endpoint: str) -> tuple[web.Response | None, dict[str, str]]:
        status, used, retry_after = self.meter.charge(WEIGHTS[endpoint])
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if status == 200:
            return None, headers
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        if status == 418:
            until = int((time.time() + retry_after) * 1000)
            msg = (f"Way too much request weight used; IP banned until {until}. Please use "
                   "WebSocket Streams for live updates to avoid bans.")  # fmt: skip
        else:
            msg = (f"Too much request weight used; current limit is {self.meter.limit} request "
                   "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                   "polling the API.")  # fmt: skip
        return _err(status, -1003, msg, headers), headers

    def _now(self) -> datetime:
        return self.clock.now_datetime()

    async def ping(self, request: web.Request) -> web.Response:
        refused, headers = self._admit("ping")
        return refused or web.json_response({}, headers=headers)

    async def server_time(self, request: web.Request) -> web.Response:
        refused, headers = self._admit("time")
        if refused:
            return refused
        return web.json_response({"serverTime": int(self.clock.now() * 1000)}, headers=headers)

    async def exchange_info(self, request: web.Request) -> web.Response:
        refused, headers = self._admit("exchangeInfo")
        if refused:
            return refused
        now = self._now()
        listed = [p for p in self.model.pairs if self.model.pair(p).listed_at <= now]
        wanted: list[str] | None = None
        if "symbol" in request.query:
            wanted = [request.query["symbol"]]
        elif "symbols" in request.query:
            try:
                wanted = json.loads(request.query["symbols"])
                if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
                    raise ValueError
            except ValueError:
                return _err(400, -1100, "Illegal characters found in parameter 'symbols'.")
        if wanted is not None:
            unknown = [s for s in wanted if s not in listed]
            if unknown:
                return _err(400, -1121, "Invalid symbol.", headers)
            listed = wanted
        body = {
            "timezone": "UTC",
            "serverTime": int(now.timestamp() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.meter.limit,
                },  # fmt: skip
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },  # fmt: skip
            ],
            "exchangeFilters": [],
            "symbols": [_symbol_info(self.model.pair(s), now) for s in listed],
        }
        return web.json_response(body, headers=headers)

    async def klines(self, request: web.Request) -> web.Response:
        refused, headers = self._admit("klines")
        if refused:
            return refused
        q = request.query
        symbol = q.get("symbol", "")
        if not symbol:
            return _mandatory("symbol")
        if "interval" not in q:
            return _mandatory("interval")
        pair = self.model.pair(symbol)
        now = self._now()
        if pair is None or pair.listed_at > now:
            return _err(400, -1121, "Invalid symbol.", headers)
        if q["interval"] != "1m":
            return _err(400, -1120, "Invalid interval.", headers)
        try:
            limit = int(q.get("limit", "500"))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return _err(400, -1100, "Illegal characters found in a parameter.", headers)
        if limit < 1:
            return _err(400, -1100, "Illegal characters found in parameter 'limit'.", headers)
        limit = min(limit, MAX_LIMIT)
        start, end = _ms(start), _ms(end)
        rows = self._select(pair, now, start, end, limit)
        unit = "us" if request.headers.get("X-MBX-TIME-UNIT", "").upper() == "MICROSECOND" else "ms"
        return web.Response(
            text=klines_json(rows, unit), content_type="application/json", headers=headers
        )

    def _select(self, pair: Pair, now: datetime, start: int | None, end: int | None, limit: int):
        """Klines as Binance picks them: by open time, ascending, at most ``limit``."""
        now_ms = int(now.timestamp() * 1000)
        newest_open = now_ms - now_ms % MINUTE_MS  # the candle still open is included
        upper = newest_open if end is None else min(end, newest_open)
        first = int(pair.listed_at.timestamp() * 1000)
        if start is not None:
            lo = max(start + (-start % MINUTE_MS), first)
            span = limit
            while True:
                hi = min(lo + span * MINUTE_MS, upper + 1)
                rows = self.model.klines_between(pair.symbol, lo, hi)
                if len(rows["open_ms"]) >= limit or hi > upper:
                    return {k: v[:limit] for k, v in rows.items()}
                span *= 2
        span = limit
        while True:
            lo = max(upper - upper % MINUTE_MS - (span - 1) * MINUTE_MS, first)
            rows = self.model.klines_between(pair.symbol, lo, upper + 1)
            if len(rows["open_ms"]) >= limit or lo <= first:
                return {k: v[-limit:] for k, v in rows.items()}
            span *= 2


def _ms(value: int | None) -> int | None:
    """startTime/endTime may come in ms or µs."""
    if value is None:
        return None
    return value // 1000 if value >= 10**15 else value
