"""The Binance venue of the simulator: spot REST, the bulk archive, and their controls.

Endpoints: ``binance_rest`` (``<http>/binance``: python-binance's ``API_URL`` is that plus
``/api``), ``binance_archive`` (``<http>/binance-archive``, laid out like
https://data.binance.vision) and ``binance_control``. The venue's clock is real UTC time
unless moved; archive publication, listings, delistings and which klines exist follow it.

Control (not part of Binance), under /sim/control/binance; each action also has an
in-process method on ``BinanceVenue`` for tests:

POST /faults {"action": "429", "count": n, "retry_after": s}     next n REST calls get 429
POST /faults {"action": "418", "retry_after": s}                 ban the IP for s seconds
POST /faults {"action": "corrupt_zip", "path": p, "times": n}    next n downloads corrupt
POST /faults {"action": "checksum_mismatch", "path": p, "times": n}
POST /faults {"action": "missing_month", "symbol": S, "month": "YYYY-MM"}  monthly zip 404
POST /faults {"action": "delist", "symbol": S, "at": ISO-8601}   status BREAK, no klines after
POST /faults {"action": "clear"}               every fault off, pairs relisted, weight counter 0
GET  /stats        REST weight, 429/418 counts, archive downloads
GET|POST /clock    {"time": ISO-8601 with offset}
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime

from aiohttp import web

from tick_assets.sim.binance.archive import Archive, daily_path, monthly_path, parse_path
from tick_assets.sim.binance.market import KlineModel
from tick_assets.sim.binance.rest import DEFAULT_WEIGHT_LIMIT, BinanceRestSim, WeightMeter
from tick_assets.sim.clock import SimClock

PREFIX = "/binance"
ARCHIVE_PREFIX = "/binance-archive"
CONTROL_PREFIX = "/sim/control/binance"
_NO_SUCH_KEY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    "<Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"
)


def _bad(message: str) -> web.Response:
    return web.json_response({"status": "error", "message": message}, status=400)


class BinanceVenue:
    """Simulated Binance spot: one kline model shared by REST and the archive."""

    name = "binance"

    def __init__(
        self,
        seed: int = 42,
        clock: SimClock | None = None,
        weight_limit: int = DEFAULT_WEIGHT_LIMIT,
    ) -> None:
        self.seed = seed
        self.clock = clock or SimClock(datetime.now(UTC), 1.0)
        self.model = KlineModel(seed)
        self.meter = WeightMeter(weight_limit)
        self.archive = Archive(self.model)
        self.rest = BinanceRestSim(self.model, self.clock, self.meter)

    # --- in-process control -------------------------------------------------------------

    def set_time(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError(f"time {when!r} needs a UTC offset")
        self.clock.set(when)

    def inject_429(self, count: int = 1, retry_after: float = 1.0) -> None:
        self.meter.inject(429, retry_after, count)

    def inject_418(self, retry_after: float) -> None:
        self.meter.inject(418, retry_after)

    def corrupt_zip(self, path: str, times: int = 1) -> None:
        self._check_path(path)
        self.archive.inject("corrupt_zip", path, times)

    def checksum_mismatch(self, path: str, times: int = 1) -> None:
        self._check_path(path)
        self.archive.inject("checksum_mismatch", path, times)

    def missing_month(self, symbol: str, year: int, month: int) -> None:
        self.archive.inject("missing", monthly_path(symbol, year, month), -1)

    def missing_day(self, symbol: str, day: date) -> None:
        self.archive.inject("missing", daily_path(symbol, day), -1)

    def delist(self, symbol: str, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError(f"delist time {at!r} needs a UTC offset")
        self.model.delist(symbol, at)

    def clear_faults(self) -> None:
        self.meter.clear()
        self.archive.clear()
        self.model.relist_all()

    def stats(self) -> dict:
        return {
            "rest": dict(self.meter.stats),
            "used_weight_1m": self.meter.used(),
            "weight_limit": self.meter.limit,
            "archive": dict(self.archive.stats),
        }

    @staticmethod
    def _check_path(path: str) -> None:
        if parse_path(path) is None or path.endswith(".CHECKSUM"):
            raise ValueError(f"{path!r} is not a spot 1m kline zip path of the archive")

    # --- archive ----------------------------------------------------------------------------

    async def archive_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        f = parse_path(path)
        if f is None:
            return self._not_found(path)
        now = self.clock.now_datetime()
        body = await asyncio.get_running_loop().run_in_executor(None, self.archive.serve, f, now)
        if body is None:
            return self._not_found(path)
        if f.checksum:
            return web.Response(body=body, content_type="text/plain")
        return web.Response(body=body, content_type="application/zip")

    @staticmethod
    def _not_found(path: str) -> web.Response:
        return web.Response(
            text=_NO_SUCH_KEY.format(key=path), status=404, content_type="application/xml"
        )

    # --- control ----------------------------------------------------------------------------

    async def faults(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            return _bad(f"faults body is not a JSON object: {exc}")
        action = body.get("action")
        try:
            if action == "429":
                self.inject_429(int(body.get("count", 1)), float(body.get("retry_after", 1)))
            elif action == "418":
                self.inject_418(float(body["retry_after"]))
            elif action in ("corrupt_zip", "checksum_mismatch"):
                method = self.corrupt_zip if action == "corrupt_zip" else self.checksum_mismatch
                method(str(body["path"]), int(body.get("times", 1)))
            elif action == "missing_month":
                year, month = (int(x) for x in str(body["month"]).split("-"))
                self.missing_month(str(body["symbol"]), year, month)
            elif action == "delist":
                self.delist(str(body["symbol"]), datetime.fromisoformat(str(body["at"])))
            elif action == "clear":
                self.clear_faults()
            else:
                return _bad(
                    f"action {action!r} is not one of 429, 418, corrupt_zip, checksum_mismatch, "
                    "missing_month, delist, clear"
                )
        except (KeyError, ValueError, TypeError) as exc:
            return _bad(f"bad {action} fault: {type(exc).__name__}: {exc}")
        return web.json_response({"action": action})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def get_clock(self, request: web.Request) -> web.Response:
        now = self.clock.now_datetime()
        return web.json_response({"time": now.isoformat(), "epoch_ms": int(now.timestamp() * 1000)})

    async def set_clock(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
            self.set_time(datetime.fromisoformat(str(body["time"])))
        except (ValueError, KeyError, TypeError) as exc:
            return _bad(f"clock body needs 'time' as ISO-8601 with an offset ({exc})")
        return await self.get_clock(request)

    # --- venue protocol -------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        rest = web.Application()
        rest.add_routes(self.rest.routes())
        app.add_subapp(PREFIX, rest)
        archive = web.Application()
        archive.add_routes([web.get("/{path:.+}", self.archive_file)])
        app.add_subapp(ARCHIVE_PREFIX, archive)
        control = web.Application()
        control.add_routes(
            [
                web.post("/faults", self.faults),
                web.get("/stats", self.get_stats),
                web.get("/clock", self.get_clock),
                web.post("/clock", self.set_clock),
            ]
        )
        app.add_subapp(CONTROL_PREFIX, control)

    @staticmethod
    def endpoints(base_http: str, base_ws: str) -> dict[str, str]:
        return {
            "binance_rest": f"{base_http}{PREFIX}",
            "binance_archive": f"{base_http}{ARCHIVE_PREFIX}",
            "binance_control": f"{base_http}{CONTROL_PREFIX}",
        }


def crypto_venues(seed: int) -> list:
    """The CoinGecko and Binance venues of one simulator (same seed, same coins)."""
    from tick_assets.sim.coingecko.venue import CoinGeckoVenue

    return [CoinGeckoVenue(seed), BinanceVenue(seed)]
