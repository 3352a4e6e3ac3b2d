"""Control endpoints of the Kite simulator (not part of Kite): faults, counters, clock, tokens.

GET  /sim/control/kite/connections      per-connection counters (frames, packets, heartbeats...)
POST /sim/control/kite/faults           {"action": "drop"|"stall"|"malformed", "seconds": s,
                                         "count": n, "connection": id, "api_key": key}
POST /sim/control/kite/expire           {"access_token": t} (or {} for all) -> expire tokens
GET  /sim/control/kite/clock            simulated time, day, speed, session second
POST /sim/control/kite/clock            {"time": ISO-8601 with offset} -> jump the clock
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from tick_assets.calendars import IST

if TYPE_CHECKING:
    from tick_assets.sim.kite.venue import KiteVenue


def _bad(message: str) -> web.Response:
    return web.json_response({"status": "error", "message": message}, status=400)


class KiteControl:
    def __init__(self, venue: KiteVenue) -> None:
        self.venue = venue

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/connections", self.connections),
            web.post("/faults", self.faults),
            web.post("/expire", self.expire),
            web.get("/clock", self.get_clock),
            web.post("/clock", self.set_clock),
        ]

    async def _body(self, request: web.Request) -> dict:
        text = await request.text()
        if not text.strip():
            return {}
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    async def connections(self, request: web.Request) -> web.Response:
        hub = self.venue.hub
        return web.json_response(
            {"connections": hub.stats(), "batches_skipped": hub.batches_skipped}
        )

    async def faults(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
        except ValueError as exc:
            return _bad(f"faults body is not a JSON object: {exc}")
        hub = self.venue.hub
        action = body.get("action")
        who = {"connection": body.get("connection"), "api_key": body.get("api_key")}
        if action == "drop":
            hit = hub.drop(**who)
        elif action == "stall":
            seconds = body.get("seconds")
            if seconds is not None and not isinstance(seconds, int | float):
                return _bad("stall 'seconds' must be a number (or omitted: stall until dropped)")
            hit = hub.stall(seconds, **who)
        elif action == "malformed":
            frames = body.get("count", 1)
            if not isinstance(frames, int) or frames < 1:
                return _bad("malformed 'count' must be a positive integer")
            hit = hub.malformed(frames, **who)
        else:
            return _bad(f"action {action!r} is not one of drop, stall, malformed")
        return web.json_response({"action": action, "connections": hit})

    async def expire(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
        except ValueError as exc:
            return _bad(f"expire body is not a JSON object: {exc}")
        count = self.venue.auth.expire(body.get("access_token"))
        return web.json_response({"expired": count})

    async def get_clock(self, request: web.Request) -> web.Response:
        clock, market = self.venue.clock, self.venue.market
        now = clock.now()
        return web.json_response(
            {
                "time": datetime.fromtimestamp(now, IST).isoformat(),
                "epoch": now,
                "day": self.venue.universe.day.isoformat(),
                "speed": clock.speed,
                "realtime_after": clock.realtime_after,
                "session_second": market.second_of(now),
                "seed": self.venue.universe.seed,
                "rate": market.rate,
            }
        )

    async def set_clock(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            when = datetime.fromisoformat(str(body["time"]))
        except (ValueError, KeyError) as exc:
            return _bad(f"clock body needs 'time' as ISO-8601 with a UTC offset ({exc})")
        if when.tzinfo is None:
            return _bad("clock 'time' needs a UTC offset, e.g. 2026-11-20T09:15:00+05:30")
        self.venue.clock.set(when)
        return await self.get_clock(request)
