"""The Kite venue of the simulator: one day's universe and market, login state, REST, login
pages, the ticker websocket and its control endpoints, mounted on the shared aiohttp app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time

from aiohttp import web

from tick_assets.calendars import IST, SESSION_CLOSE, SESSION_OPEN
from tick_assets.sim.clock import SimClock
from tick_assets.sim.kite import sessions
from tick_assets.sim.kite.auth import KiteAuth
from tick_assets.sim.kite.control import KiteControl
from tick_assets.sim.kite.login import KiteLogin
from tick_assets.sim.kite.market import LiveMarket
from tick_assets.sim.kite.rest import KiteRest
from tick_assets.sim.kite.ticker import TickerHub
from tick_assets.sim.kite.universe import Universe, build_universe

PREFIX = "/kite"
CONTROL_PREFIX = "/sim/control/kite"


@dataclass(frozen=True)
class KiteSimConfig:
    seed: int = 7
    day: date | None = None  # None: today (IST) if a trading day, else the last one
    rate: float = 2000.0  # change events (packets to a client subscribed to everything) per s
    speed: float = 400.0  # simulated seconds per wall second (400: a session in ~56 s)
    start: time = SESSION_OPEN  # IST wall time the simulated clock starts at on `day`
    batches_per_second: int = 50
    packets_per_frame: int = 200

    def resolved_day(self) -> date:
        day = self.day or sessions.default_day()
        if not sessions.is_session_day(day):
            raise ValueError(
                f"day {day} is not an NSE trading day; pick a trading day for the simulator"
            )
        return day


class KiteVenue:
    """Everything Kite in the simulator; mount() adds its routes to the server's app."""

    name = "kite"

    def __init__(self, config: KiteSimConfig | None = None) -> None:
        self.config = config or KiteSimConfig()
        day = self.config.resolved_day()
        # accelerated through the session, real time after the close (tokens stay usable)
        self.clock = SimClock(
            datetime.combine(day, self.config.start, tzinfo=IST),
            self.config.speed,
            realtime_after=datetime.combine(day, SESSION_CLOSE, tzinfo=IST),
        )
        self.universe: Universe = build_universe(day, self.config.seed)
        self.market = LiveMarket(
            self.universe, self.config.rate, self.config.speed, self.config.batches_per_second
        )
        self.auth = KiteAuth(self.clock)
        self.hub = TickerHub(self.market, self.auth, self.clock, self.config.packets_per_frame)
        self.rest = KiteRest(self)
        self.login = KiteLogin(self, PREFIX)
        self.control = KiteControl(self)

    def mount(self, app: web.Application) -> None:
        kite = web.Application()
        kite.add_routes(self.rest.routes())
        kite.add_routes(self.login.routes())
        kite.add_routes([web.get("/ws", self.hub.handle)])
        app.add_subapp(PREFIX, kite)
        # kiteconnect builds URLs with urljoin(root, "/instruments"), which drops any path in
        # root, so the REST routes are also served at the root of the server.
        app.add_routes(self.rest.routes())
        # Login scripts written for kite.zerodha.com post to /api/login and /api/twofa on the
        # host of the login page; serve those at the root too.
        app.add_routes(self.login.api_routes())
        control = web.Application()
        control.add_routes(self.control.routes())
        app.add_subapp(CONTROL_PREFIX, control)
        app.cleanup_ctx.append(self._broadcaster)
        app.on_shutdown.append(self._close_websockets)

    async def _broadcaster(self, _app: web.Application) -> AsyncIterator[None]:
        self._stop = asyncio.Event()
        task = asyncio.create_task(self.hub.run(self._stop))
        yield
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _close_websockets(self, _app: web.Application) -> None:
        """On shutdown, stop the feed and cut every websocket so the server need not wait."""
        self._stop.set()
        self.hub.drop()

    @staticmethod
    def endpoints(base_http: str, base_ws: str) -> dict[str, str]:
        return {
            "kite_rest": f"{base_http}{PREFIX}",
            "kite_ws": f"{base_ws}{PREFIX}/ws",
            "kite_login": f"{base_http}{PREFIX}/connect/login",
            "kite_login_api": f"{base_http}{PREFIX}/api",
            "kite_control": f"{base_http}{CONTROL_PREFIX}",
        }
