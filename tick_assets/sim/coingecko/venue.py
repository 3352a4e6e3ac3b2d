"""The CoinGecko venue of the simulator: /api/v3/coins/markets, paged, as of its clock's day.

Routes (prefix /coingecko, so the REST root is ``<http>/coingecko/api/v3``):

GET /api/v3/ping
GET /api/v3/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=..&page=..[&category=]

The markets list holds every catalogue coin listed by the clock's UTC day (see coins.py),
with caps drifting per day, so a ranking is point-in-time. Categories ``stablecoins``,
``wrapped-tokens`` and ``liquid-staking-tokens`` filter it as on CoinGecko. The free tier's
limit is modelled per minute (default 30 calls): beyond it a 429 without Retry-After, as the
keyless API answers.

Control (not part of CoinGecko), under /sim/control/coingecko:

GET  /clock, POST /clock {"time": ISO-8601 with offset}   move the simulated day
POST /faults {"action": "429", "count": n, "retry_after": s}   the next n calls get a 429
POST /faults {"action": "clear"}
GET  /stats   calls served, 429s sent
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from tick_assets.sim.clock import SimClock
from tick_assets.sim.coingecko.coins import CATEGORY_KINDS, market_on

PREFIX = "/coingecko"
CONTROL_PREFIX = "/sim/control/coingecko"
ORDERS = {
    "market_cap_desc": ("market_cap", True),
    "market_cap_asc": ("market_cap", False),
    "volume_desc": ("total_volume", True),
    "volume_asc": ("total_volume", False),
    "id_asc": ("id", False),
    "id_desc": ("id", True),
}


def _error(status: int, message: str, **extra: str) -> web.Response:
    body = {"status": {"error_code": status, "error_message": message}}
    return web.json_response(body, status=status, headers=extra or None)


class CoinGeckoVenue:
    """Simulated CoinGecko; ``calls_per_minute`` models the keyless free tier."""

    name = "coingecko"

    def __init__(self, seed: int = 42, clock: SimClock | None = None, calls_per_minute: int = 30):
        self.seed = seed
        self.clock = clock or SimClock(datetime.now(UTC), 1.0)
        self.calls_per_minute = calls_per_minute
        self._lock = threading.Lock()
        self._calls: list[float] = []
        self._forced_429: list[float | None] = []  # retry_after of each queued injected 429
        self.stats = {"calls": 0, "markets_calls": 0, "rate_limited": 0, "injected_429": 0}

    # --- in-process control -----------------------------------------------------------------

    def set_time(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError(f"time {when!r} needs a UTC offset")
        self.clock.set(when)

    def inject_429(self, count: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._forced_429.extend([retry_after] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._forced_429.clear()
            self._calls.clear()

    def day(self) -> date:
        return self.clock.now_datetime().date()

    # --- limits ---------------------------------------------------------------------------

    def _admit(self) -> web.Response | None:
        with self._lock:
            self.stats["calls"] += 1
            if self._forced_429:
                retry_after = self._forced_429.pop(0)
                self.stats["injected_429"] += 1
                extra = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
                return _error(429, "You've exceeded the Rate Limit (injected).", **extra)
            now = time.monotonic()
            self._calls = [t for t in self._calls if t > now - 60.0]
            if len(self._calls) >= self.calls_per_minute:
                self.stats["rate_limited"] += 1
                return _error(
                    429,
                    "You've exceeded the Rate Limit. Please visit "
                    "https://www.coingecko.com/en/api/pricing to subscribe to our API plans "
                    "for higher rate limits.",
                )
            self._calls.append(now)
        return None

    # --- REST -------------------------------------------------------------------------------

    async def ping(self, request: web.Request) -> web.Response:
        refused = self._admit()
        return refused or web.json_response({"gecko_says": "(V3) To the Moon!"})

    async def markets(self, request: web.Request) -> web.Response:
        refused = self._admit()
        if refused:
            return refused
        q = request.query
        if q.get("vs_currency", "").lower() != "usd":
            if "vs_currency" not in q:
                return web.json_response({"error": "Missing parameter vs_currency"}, status=400)
            return web.json_response({"error": "invalid vs_currency"}, status=400)
        order = q.get("order", "market_cap_desc")
        if order not in ORDERS:
            return web.json_response({"error": f"invalid order {order}"}, status=400)
        try:
            per_page = int(q.get("per_page", "100"))
            page = int(q.get("page", "1"))
        except ValueError:
            return web.json_response({"error": "per_page and page must be integers"}, status=400)
        if not 1 <= per_page <= 250 or page < 1:
            return web.json_response({"error": "per_page must be 1..250, page >= 1"}, status=400)
        category = q.get("category")
        if category is not None and category not in CATEGORY_KINDS:
            return web.json_response({"error": "invalid category"}, status=400)
        with self._lock:
            self.stats["markets_calls"] += 1
        now = self.clock.now_datetime()
        rows = self._rows(now, category)
        field, descending = ORDERS[order]
        present = sorted(
            (r for r in rows if r[field] is not None), key=lambda r: r[field], reverse=descending
        )
        rows = present + [r for r in rows if r[field] is None]  # nulls last, as on CoinGecko
        chunk = rows[(page - 1) * per_page : page * per_page]
        return web.json_response(chunk, dumps=json.dumps)

    def _rows(self, now: datetime, category: str | None) -> list[dict]:
        day = now.date()
        today = market_on(self.seed, day)
        yesterday = {m["coin"].id: m for m in market_on(self.seed, day - timedelta(days=1))}
        ranked = sorted(today, key=lambda m: -m["market_cap"])
        rank = {m["coin"].id: i + 1 for i, m in enumerate(ranked)}
        kinds = CATEGORY_KINDS.get(category or "", None)
        stamp = now.replace(microsecond=0).isoformat().replace("+00:00", ".000Z")
        rows = []
        for m in today:
            coin = m["coin"]
            if kinds is not None and coin.kind not in kinds:
                continue
            price, cap = m["current_price"], m["market_cap"]
            prev = yesterday.get(coin.id)
            prev_price = prev["current_price"] if prev else price
            prev_cap = prev["market_cap"] if prev else cap
            rows.append(
                {
                    "id": coin.id,
                    "symbol": coin.symbol,
                    "name": coin.name,
                    "image": f"https://coin-images.coingecko.com/coins/images/{coin.index + 1}/large/{coin.symbol}.png",
                    "current_price": _sig(price),
                    "market_cap": round(cap),
                    "market_cap_rank": rank[coin.id],
                    "fully_diluted_valuation": round(cap * 1.1),
                    "total_volume": round(m["total_volume"]),
                    "high_24h": _sig(max(price, prev_price) * 1.01),
                    "low_24h": _sig(min(price, prev_price) * 0.99),
                    "price_change_24h": _sig(price - prev_price),
                    "price_change_percentage_24h": round((price / prev_price - 1) * 100, 5),
                    "market_cap_change_24h": round(cap - prev_cap, 2),
                    "market_cap_change_percentage_24h": round((cap / prev_cap - 1) * 100, 5),
                    "circulating_supply": round(m["circulating_supply"], 2),
                    "total_supply": round(m["circulating_supply"] * 1.1, 2),
                    "max_supply": None,
                    "ath": _sig(price * 1.8),
                    "ath_change_percentage": -44.44444,
                    "ath_date": "2024-12-17T15:02:41.429Z",
                    "atl": _sig(price * 0.01),
                    "atl_change_percentage": 9900.0,
                    "atl_date": "2019-01-01T00:00:00.000Z",
                    "roi": None,
                    "last_updated": stamp,
                }
            )
        return rows

    # --- control ----------------------------------------------------------------------------

    async def get_clock(self, request: web.Request) -> web.Response:
        now = self.clock.now_datetime()
        return web.json_response({"time": now.isoformat(), "day": now.date().isoformat()})

    async def set_clock(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
            when = datetime.fromisoformat(str(body["time"]))
            self.set_time(when)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response(
                {"status": "error", "message": f"clock body needs 'time' with an offset ({exc})"},
                status=400,
            )
        return await self.get_clock(request)

    async def faults(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            return web.json_response({"status": "error", "message": str(exc)}, status=400)
        action = body.get("action")
        if action == "429":
            count = body.get("count", 1)
            retry_after = body.get("retry_after")
            if not isinstance(count, int) or count < 1:
                return web.json_response(
                    {"status": "error", "message": "'count' must be a positive integer"},
                    status=400,
                )
            self.inject_429(count, retry_after)
        elif action == "clear":
            self.clear_faults()
        else:
            return web.json_response(
                {"status": "error", "message": f"action {action!r} is not one of 429, clear"},
                status=400,
            )
        return web.json_response({"action": action})

    async def get_stats(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(dict(self.stats))

    # --- venue protocol -------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        api = web.Application()
        api.add_routes(
            [
                web.get("/api/v3/ping", self.ping),
                web.get("/api/v3/coins/markets", self.markets),
            ]
        )
        app.add_subapp(PREFIX, api)
        control = web.Application()
        control.add_routes(
            [
                web.get("/clock", self.get_clock),
                web.post("/clock", self.set_clock),
                web.post("/faults", self.faults),
                web.get("/stats", self.get_stats),
            ]
        )
        app.add_subapp(CONTROL_PREFIX, control)

    @staticmethod
    def endpoints(base_http: str, base_ws: str) -> dict[str, str]:
        return {
            "coingecko_rest": f"{base_http}{PREFIX}/api/v3",
            "coingecko_control": f"{base_http}{CONTROL_PREFIX}",
        }


def _sig(value: float) -> float:
    """A price as CoinGecko prints it: about 6 significant digits."""
    return float(f"{value:.6g}")
