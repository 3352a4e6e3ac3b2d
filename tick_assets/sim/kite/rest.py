"""Kite Connect REST endpoints at the paths kiteconnect uses (`KiteConnect._routes`).

GET /instruments[/{exchange}]           gzipped CSV (HTTP content-encoding), no auth (as Kite)
POST /session/token                     request_token + sha256 checksum -> access_token
DELETE /session/token                   invalidate an access token
GET /user/profile                       a cheap authenticated call, to test a token
GET /instruments/historical/{t}/{iv}    candles; per-interval span limit; 3 requests/s per key
Errors are Kite's JSON shape {"status": "error", "message", "error_type"} with its status codes,
so kiteconnect raises its own exception classes (TokenException, InputException, ...).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web

from tick_assets.calendars import IST
from tick_assets.sim.kite.auth import KiteError
from tick_assets.sim.kite.candles import candles
from tick_assets.sources.kite.instruments import to_csv_bytes
from tick_assets.sources.kite.limits import (
    HISTORICAL_REQUESTS_PER_SECOND,
    OTHER_REQUESTS_PER_SECOND,
    historical_span_error,
)

if TYPE_CHECKING:
    from tick_assets.sim.kite.venue import KiteVenue

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXCHANGES = ("NSE", "NFO", "CDS", "BSE", "BFO", "BCD", "MCX", "MCXSX")
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def kite_json(handler: Handler) -> Handler:
    """Turn KiteError into Kite's JSON error response."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except KiteError as err:
            return web.json_response(err.body(), status=err.status)

    return wrapped


def success(data: object) -> web.Response:
    return web.json_response({"status": "success", "data": data})


class RateLimiter:
    """At most `limit` accepted requests per api_key in any sliding `window` seconds."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def check(self, api_key: str) -> None:
        now = time.monotonic()
        seen = self._seen[api_key]
        while seen and now - seen[0] >= self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            raise KiteError(429, "NetworkException", "Too many requests")
        seen.append(now)


def _parse_when(value: str | None, name: str) -> datetime:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime((value or "").strip(), fmt)
        except ValueError:
            continue
    raise KiteError(400, "InputException", f"invalid {name} date (use yyyy-mm-dd hh:mm:ss)")


def _user_fields(user_id: str) -> dict[str, object]:
    """The profile fields Kite returns both from /session/token and /user/profile."""
    return {
        "user_type": "individual",
        "email": f"{user_id.lower()}@sim.invalid",
        "user_name": f"Sim User {user_id}",
        "user_shortname": "Sim",
        "broker": "ZERODHA",
        "exchanges": ["NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD", "MF"],
        "products": ["CNC", "NRML", "MIS", "BO", "CO"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": None,
    }


class KiteRest:
    def __init__(self, venue: KiteVenue) -> None:
        self.venue = venue
        self.historical_limit = RateLimiter(HISTORICAL_REQUESTS_PER_SECOND)
        self.other_limit = RateLimiter(OTHER_REQUESTS_PER_SECOND)
        self._dumps: dict[str, bytes] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/instruments", kite_json(self.instruments)),
            web.get("/instruments/{exchange}", kite_json(self.instruments)),
            web.get(
                "/instruments/historical/{instrument_token}/{interval}", kite_json(self.historical)
            ),
            web.post("/session/token", kite_json(self.session_token)),
            web.delete("/session/token", kite_json(self.session_delete)),
            web.get("/user/profile", kite_json(self.profile)),
        ]

    def dump(self, exchange: str | None = None) -> bytes:
        """The gzipped instruments CSV (all exchanges, or one), built once per exchange."""
        key = exchange or ""
        if key not in self._dumps:
            frame = self.venue.universe.instruments
            if exchange:
                frame = frame.filter(frame["exchange"] == exchange)
            self._dumps[key] = gzip.compress(to_csv_bytes(frame), mtime=0)
        return self._dumps[key]

    async def instruments(self, request: web.Request) -> web.StreamResponse:
        exchange = request.match_info.get("exchange")
        if exchange is not None and exchange.upper() not in EXCHANGES:
            raise KiteError(400, "InputException", f"Invalid exchange {exchange!r}.")
        body = self.dump(exchange.upper() if exchange else None)
        return web.Response(
            body=body, content_type="text/csv", headers={"Content-Encoding": "gzip"}
        )

    async def session_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        for name in ("api_key", "request_token", "checksum"):
            if not form.get(name):
                raise KiteError(400, "InputException", f"Missing `{name}`.")
        grant = self.venue.auth.redeem(
            str(form["api_key"]), str(form["request_token"]), str(form["checksum"])
        )
        login_time = datetime.fromtimestamp(grant.login_time, IST).strftime("%Y-%m-%d %H:%M:%S")
        return success(
            {
                **_user_fields(grant.user_id),
                "user_id": grant.user_id,
                "api_key": grant.api_key,
                "access_token": grant.access_token,
                "public_token": grant.public_token,
                "enctoken": grant.enctoken,
                "refresh_token": "",
                "silo": "",
                "login_time": login_time,
                "meta": {"demat_consent": "physical"},
            }
        )

    async def session_delete(self, request: web.Request) -> web.StreamResponse:
        api_key = request.query.get("api_key", "")
        token = request.query.get("access_token", "")
        if not self.venue.auth.invalidate(api_key, token):
            raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return success(True)

    async def profile(self, request: web.Request) -> web.StreamResponse:
        grant = self.venue.auth.check_header(request.headers.get("Authorization"))
        self.other_limit.check(grant.api_key)
        return success(
            {
                **_user_fields(grant.user_id),
                "user_id": grant.user_id,
                "meta": {"demat_consent": "physical"},
            }
        )

    async def historical(self, request: web.Request) -> web.StreamResponse:
        grant = self.venue.auth.check_header(request.headers.get("Authorization"))
        self.historical_limit.check(grant.api_key)
        interval = request.match_info["interval"]
        start = _parse_when(request.query.get("from"), "from")
        end = _parse_when(request.query.get("to"), "to")
        problem = historical_span_error(interval, start, end)
        if problem:
            raise KiteError(400, "InputException", problem)
        try:
            token = int(request.match_info["instrument_token"])
        except ValueError:
            raise KiteError(400, "InputException", "invalid token") from None
        universe = self.venue.universe
        row = int(universe.rows_of(np.array([token]))[0])
        if row < 0:
            raise KiteError(400, "InputException", "invalid token")
        with_oi = request.query.get("oi") in ("1", "true")
        params = universe.params.take(np.array([row]))
        decimals = 4 if float(params.tick[0]) < 0.01 else 2
        market = self.venue.market
        second = market.second_of(self.venue.clock.now())
        rows = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: candles(
                universe.seed, params, interval, start, end, universe.day, second, with_oi, decimals
            ),
        )
        return web.Response(
            text=json.dumps({"status": "success", "data": {"candles": rows}}),
            content_type="application/json",
        )
