"""Every simulated venue, mounted side by side on the one loopback server.

A venue is an object with a `name`, `mount(app)` adding its routes under its own prefix, and
`endpoints(base_http, base_ws)` naming them for the `tick-assets sim` JSON line. Adding a venue
to the simulator means adding it to `build_venues`.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from tick_assets.sim.binance.venue import crypto_venues
from tick_assets.sim.kite.venue import KiteSimConfig, KiteVenue
from tick_assets.sim.upstox.venue import UpstoxVenue


class Venue(Protocol):
    name: str

    def mount(self, app: web.Application) -> None: ...

    def endpoints(self, base_http: str, base_ws: str) -> dict[str, str]: ...


def build_venues(kite: KiteSimConfig) -> list[Venue]:
    """One instance of each simulated venue; Kite's day and market follow `kite`."""
    kite_venue = KiteVenue(kite)
    crypto = crypto_venues(kite.seed)  # CoinGecko and Binance (one coin catalogue)
    return [kite_venue, UpstoxVenue(kite_venue), *crypto]  # Upstox serves the same market
