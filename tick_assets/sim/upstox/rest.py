"""Upstox v3 REST of the simulator, at the real paths, with the real limits and error shapes.

GET /v3/historical-candle/{instrument_key}/{unit}/{interval}/{to_date}[/{from_date}]
GET /v3/historical-candle/intraday/{instrument_key}/{unit}/{interval}
GET /assets/market-quote/instruments/exchange/{NSE|BSE|MCX|complete}.json.gz   (no auth)

Requests need ``Authorization: Bearer <token>`` (sim tokens in ``accounts.py``); each user has
its own sliding windows of 50/s, 500/min and 2000/30 min, and a request past any of them gets
HTTP 429 with UDAPI10005 and no Retry-After. Errors use Upstox's body shape
``{"status": "error", "errors": [{"errorCode", "message", ...}]}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web

from tick_assets.sim.upstox.accounts import SIM_UPSTOX_TOKENS, user_of
from tick_assets.sim.upstox.candles import candles
from tick_assets.sim.upstox.instruments import build_records, file_bytes
from tick_assets.sources.upstox import limits

if TYPE_CHECKING:
    from tick_assets.sim.upstox.venue import UpstoxVenue


class UpstoxError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        error = {
            "errorCode": self.code, "message": self.message, "propertyPath": None,
            "invalidValue": None, "error_code": self.code, "property_path": None,
            "invalid_value": None,
        }  # fmt: skip
        return web.json_response({"status": "error", "errors": [error]}, status=self.status)


class WindowLimiter:
    """Server side: per-user sliding windows, all checked; a refused request is not counted."""

    def __init__(
        self, windows: tuple[tuple[int, float], ...], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.windows = windows
        self._clock = clock
        self._seen: dict[str, list[deque[float]]] = defaultdict(lambda: [deque() for _ in windows])
        self.refused: dict[str, int] = defaultdict(int)
        self.accepted: dict[str, int] = defaultdict(int)

    def check(self, user: str) -> None:
        now = self._clock()
        logs = self._seen[user]
        for (limit, seconds), log in zip(self.windows, logs, strict=True):
            while log and now - log[0] >= seconds:
                log.popleft()
            if len(log) >= limit:
                self.refused[user] += 1
                raise UpstoxError(429, limits.RATE_LIMITED, "Too Many Request Sent")
        for log in logs:
            log.append(now)
        self.accepted[user] += 1


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UpstoxError(
            400, limits.BAD_DATES, f"Invalid {name}: date should be in valid format: yyyy-mm-dd"
        ) from None


class UpstoxRest:
    def __init__(self, venue: UpstoxVenue) -> None:
        self.venue = venue
        self.limiter = WindowLimiter(limits.RATE_WINDOWS)
        self.expired: set[str] = set()
        self._records: list[dict] | None = None
        self._files: dict[str, bytes] = {}
        self._rows: dict[str, int] = {}

    # --- instruments --------------------------------------------------------------------

    def records(self) -> list[dict]:
        if self._records is None:
            self._records = build_records(self.venue.kite.universe)
            self._rows = {r["instrument_key"]: i for i, r in enumerate(self._records)}
        return self._records

    def row_of(self, key: str) -> int | None:
        self.records()
        return self._rows.get(key)

    async def instruments(self, request: web.Request) -> web.StreamResponse:
        exchange = request.match_info["exchange"]
        if exchange not in limits.INSTRUMENT_EXCHANGES:
            return web.Response(status=404, text="Not Found")
        if exchange not in self._files:
            records = self.records()
            self._files[exchange] = await asyncio.get_running_loop().run_in_executor(
                None, file_bytes, records, exchange
            )
        return web.Response(body=self._files[exchange], content_type="application/gzip")

    # --- candles ------------------------------------------------------------------------

    def _user(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        user = user_of(token) if token else None
        if user is None or token in self.expired:
            raise UpstoxError(401, limits.INVALID_TOKEN, "Invalid token used to access API")
        return user

    def _instrument(self, key: str) -> int:
        if "|" not in key:
            raise UpstoxError(400, limits.BAD_KEY_FORMAT, "Instrument key is of invalid format")
        row = self.row_of(key)
        if row is None:
            raise UpstoxError(400, limits.UNKNOWN_KEY, "Invalid Instrument key")
        return row

    def _unit_interval(self, request: web.Request) -> tuple[str, int]:
        unit = request.match_info["unit"]
        try:
            interval = int(request.match_info["interval"])
        except ValueError:
            raise UpstoxError(400, limits.BAD_INTERVAL, "Invalid interval") from None
        problem = limits.check_unit_interval(unit, interval)
        if problem:
            code = problem.split(":", 1)[0]
            raise UpstoxError(400, code, problem.split(": ", 1)[1])
        return unit, interval

    async def historical(self, request: web.Request) -> web.StreamResponse:
        try:
            user = self._user(request)
            self.limiter.check(user)
            unit, interval = self._unit_interval(request)
            to_date = _date(request.match_info["to_date"], "to_date")
            raw_from = request.match_info.get("from_date")
            if raw_from is None:
                earliest = limits.earliest_from(unit, interval, to_date)
                from_date = earliest or limits.UNITS[unit].history_from
            else:
                from_date = _date(raw_from, "from_date")
            problem = limits.range_error(unit, interval, from_date, to_date)
            if problem:
                code, text = problem.split(": ", 1)
                raise UpstoxError(400, code, text)
            row = self._instrument(request.match_info["instrument_key"])
            first = max(from_date, limits.UNITS[unit].history_from)
            return await self._candles(request, row, unit, interval, first, to_date)
        except UpstoxError as err:
            return err.response()

    async def intraday(self, request: web.Request) -> web.StreamResponse:
        try:
            user = self._user(request)
            self.limiter.check(user)
            unit, interval = self._unit_interval(request)
            if unit not in ("minutes", "hours", "days"):
                raise UpstoxError(400, limits.BAD_UNIT, "Invalid unit")
            row = self._instrument(request.match_info["instrument_key"])
            day = self.venue.kite.universe.day
            return await self._candles(request, row, unit, interval, day, day)
        except UpstoxError as err:
            return err.response()

    async def _candles(
        self, request: web.Request, row: int, unit: str, interval: int, first: date, last: date
    ) -> web.StreamResponse:
        key = request.match_info["instrument_key"]
        fault = self.venue.take_fault(key)
        if fault == "500":
            raise UpstoxError(500, "UDAPI100500", "Something went wrong")
        if fault == "empty":
            return web.Response(body=b"", content_type="application/json")
        if fault == "slow":
            await asyncio.sleep(2.0)
        if fault == "malformed":
            return web.Response(
                text='{"status":"success","data":{"candles":[["oops"',
                content_type="application/json",
            )
        kite = self.venue.kite
        universe = kite.universe
        params = universe.params.take(np.array([row]))
        decimals = 4 if float(params.tick[0]) < 0.01 else 2
        second = kite.market.second_of(kite.clock.now())
        halted = self.venue.halted_for(key)

        def render() -> bytes:  # off the event loop, so arrivals are timed without delay
            rows = candles(
                universe.seed, params, unit, interval, first, last, universe.day, second,
                halted, decimals,
            )  # fmt: skip
            doc = {"status": "success", "data": {"candles": rows}}
            return json.dumps(doc, separators=(",", ":")).encode()

        body = await asyncio.get_running_loop().run_in_executor(None, render)
        return web.Response(body=body, content_type="application/json")

    def routes(self) -> list[web.RouteDef]:
        base = limits.HISTORICAL_PATH
        return [
            web.get(
                f"{limits.INTRADAY_PATH}/{{instrument_key}}/{{unit}}/{{interval}}", self.intraday
            ),
            web.get(
                f"{base}/{{instrument_key}}/{{unit}}/{{interval}}/{{to_date}}", self.historical
            ),
            web.get(
                f"{base}/{{instrument_key}}/{{unit}}/{{interval}}/{{to_date}}/{{from_date}}",
                self.historical,
            ),
            web.get(
                "/assets/market-quote/instruments/exchange/{exchange}.json.gz", self.instruments
            ),
        ]

    def expire(self, token: str | None = None) -> int:
        """Expire one sim token (or all); later requests with it get 401 UDAPI100050."""
        chosen = [token] if token else list(SIM_UPSTOX_TOKENS.values())
        self.expired.update(chosen)
        return len(chosen)
