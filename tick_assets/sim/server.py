"""One loopback HTTP/websocket server for every simulated venue.

`SimServer` runs it in a background thread with its own asyncio loop (for tests and for sim
mode inside the platform); `run_forever` runs it in the foreground for `tick-assets sim`,
printing the endpoints as one JSON line first. Each venue mounts its routes under its own
prefix (Kite under /kite, its controls under /sim/control/kite); later venues add theirs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TextIO, TypeVar

from aiohttp import web

from tick_assets.sim.kite.ticker import TickerHub
from tick_assets.sim.kite.venue import KiteSimConfig, KiteVenue
from tick_assets.sim.venues import Venue, build_venues

T = TypeVar("T")


def check_loopback(host: str) -> None:
    """The simulator never listens beyond this machine."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"host {host!r} is not a loopback address; the simulator only listens on 127.0.0.1"
        )


def _health(venues: list[str]) -> Callable[[web.Request], Any]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "venues": venues})

    return health


def build_app(venues: Sequence[Venue]) -> web.Application:
    app = web.Application()
    for venue in venues:
        venue.mount(app)
    app.router.add_get("/sim/health", _health([v.name for v in venues]))
    return app


def _runner(app: web.Application) -> web.AppRunner:
    # No access log: websocket URLs carry access tokens, which are never logged.
    return web.AppRunner(app, handle_signals=False, access_log=None)


def endpoints_for(host: str, port: int, venues: Sequence[Venue]) -> dict[str, str]:
    http, ws = f"http://{host}:{port}", f"ws://{host}:{port}"
    named: dict[str, str] = {}
    for venue in venues:
        named.update(venue.endpoints(http, ws))
    return {**named, "sim_health": f"{http}/sim/health"}


class SimServer:
    """The simulator in a background thread: start(), .endpoints, stop(), or use `with`."""

    def __init__(self, kite: KiteSimConfig | None = None, **kite_overrides: Any) -> None:
        base = kite or KiteSimConfig()
        if kite_overrides:
            base = KiteSimConfig(**{**base.__dict__, **kite_overrides})
        self.kite_config = base
        self.venues: list[Venue] = []
        self.kite: KiteVenue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._endpoints: dict[str, str] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        check_loopback(host)
        if self._thread is not None:
            raise RuntimeError("SimServer already started")
        self.venues = build_venues(self.kite_config)
        self.kite = next(v for v in self.venues if isinstance(v, KiteVenue))
        ready: Future[dict[str, str]] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(host, port, ready), name="tick-assets-sim", daemon=True
        )
        self._thread.start()
        self._endpoints = ready.result(timeout=30)
        return self

    def _run(self, host: str, port: int, ready: Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._runner = _runner(build_app(self.venues))
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, host, port)
            loop.run_until_complete(site.start())
            bound_port = self._runner.addresses[0][1]
        except BaseException as exc:  # noqa: BLE001 - handed to the thread calling start()
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(endpoints_for(host, bound_port, self.venues))
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._loop = self._thread = None

    def __enter__(self) -> SimServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoints(self) -> dict[str, str]:
        if self._endpoints is None:
            raise RuntimeError("SimServer is not started; call start() first")
        return dict(self._endpoints)

    # --- in-process control (runs on the server's loop thread) -------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(*args, **kwargs) on the server loop and return its result."""
        if self._loop is None:
            raise RuntimeError("SimServer is not started")

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def _hub(self) -> TickerHub:
        assert self.kite is not None
        return self.kite.hub

    def drop_connections(
        self, connection: int | None = None, api_key: str | None = None
    ) -> list[int]:
        return self.call(self._hub().drop, connection, api_key)

    def stall_connections(
        self, seconds: float | None, connection: int | None = None, api_key: str | None = None
    ) -> list[int]:
        return self.call(self._hub().stall, seconds, connection, api_key)

    def send_malformed(
        self, count: int = 1, connection: int | None = None, api_key: str | None = None
    ) -> list[int]:
        return self.call(self._hub().malformed, count, connection, api_key)

    def connection_stats(self) -> list[dict]:
        return self.call(self._hub().stats)

    def expire_access_tokens(self, access_token: str | None = None) -> int:
        assert self.kite is not None
        return self.call(self.kite.auth.expire, access_token)


def run_forever(
    port: int = 0,
    host: str = "127.0.0.1",
    kite: KiteSimConfig | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; the first stdout line is the endpoints."""
    check_loopback(host)
    out = out or sys.stdout
    venues = build_venues(kite or KiteSimConfig())

    async def main() -> None:
        runner = _runner(build_app(venues))
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        out.write(json.dumps(endpoints_for(host, runner.addresses[0][1], venues)) + "\n")
        out.flush()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
