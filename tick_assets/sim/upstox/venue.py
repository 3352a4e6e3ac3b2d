"""The Upstox venue of the simulator: v3 candles and the instruments file under /upstox.

It serves the Kite venue's universe and market (same day, clock, symbols and prices), so
Upstox candles, Kite candles and Kite ticks of the simulator agree. Test hooks (Python, run on
the server loop through ``SimServer.call``): ``halt`` removes candles (a halt, no trade),
``fault`` makes the next responses for a key fail (500, empty body, malformed JSON, 2 s late), and
``rest.expire`` expires access tokens.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from aiohttp import web

from tick_assets.sim.kite.venue import KiteVenue
from tick_assets.sim.upstox.rest import UpstoxRest

PREFIX = "/upstox"
FAULTS = ("500", "empty", "malformed", "slow")  # slow: answers after 2 s


class UpstoxVenue:
    name = "upstox"

    def __init__(self, kite: KiteVenue) -> None:
        self.kite = kite
        self.rest = UpstoxRest(self)
        self._halted: dict[str, dict[date, frozenset[int]]] = defaultdict(dict)
        self._faults: dict[str, list[str]] = defaultdict(list)

    def mount(self, app: web.Application) -> None:
        sub = web.Application()
        sub.add_routes(self.rest.routes())
        app.add_subapp(PREFIX, sub)

    @staticmethod
    def endpoints(base_http: str, base_ws: str) -> dict[str, str]:
        return {
            "upstox_rest": f"{base_http}{PREFIX}",
            "upstox_assets": f"{base_http}{PREFIX}/assets",
        }

    # --- test hooks ------------------------------------------------------------------------

    def halt(self, instrument_key: str, day: date, minutes: range | None = None) -> None:
        """No trades (so no candles) for ``instrument_key`` on ``day`` in session ``minutes``
        (minute 0 = 09:15; None = the whole day)."""
        chosen = frozenset(minutes if minutes is not None else range(375))
        self._halted[instrument_key][day] = (
            self._halted[instrument_key].get(day, frozenset()) | chosen
        )

    def halted_for(self, instrument_key: str) -> dict[date, frozenset[int]]:
        return dict(self._halted.get(instrument_key, {}))

    def fault(self, instrument_key: str, kind: str, count: int = 1) -> None:
        """The next ``count`` candle responses for ``instrument_key`` fail as ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r} is not one of {', '.join(FAULTS)}")
        self._faults[instrument_key].extend([kind] * count)

    def take_fault(self, instrument_key: str) -> str | None:
        queue = self._faults.get(instrument_key)
        return queue.pop(0) if queue else None
