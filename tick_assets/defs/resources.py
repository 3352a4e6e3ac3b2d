"""Resources every source shares: the settings, and the in-process simulator.

Settings are read once when the code location loads (tick_assets.config.load_settings), so a
bad setting fails the load with a message naming it. In sim mode (the default) every venue's
endpoints are the built-in simulator, started in-process on a loopback port the first time a
run needs it (once per process). Venue resources live in their folders (defs/kite/resources.py).
"""

import atexit
import os
import threading
from collections import OrderedDict
from datetime import date
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from tick_assets.config import CONFIG_ENV, HOME_ENV, MODE_ENV, Settings, load_settings

Mode = Literal["sim", "live"]

# ---------------------------------------------------------------- in-process simulator

_sim_lock = threading.Lock()
_sim_servers: "OrderedDict[tuple, Any]" = OrderedDict()
MAX_SIM_SERVERS = 4


def sim_server(day: date | None = None, *, seed: int, rate: float, speed: float) -> Any:
    """This process's simulator (tick_assets.sim.server.SimServer) for ``day``, started on first use.

    One loopback server per (day, seed, rate, speed): the simulated Kite of a past day serves
    that day's instrument dump and market, so sim backfills are point-in-time like live data.
    ``day=None`` is the simulator's default day (today in IST, or the last trading day). At
    most MAX_SIM_SERVERS stay up; the least recently used one is stopped.
    """
    key = (day, seed, rate, speed)
    with _sim_lock:
        server = _sim_servers.get(key)
        if server is None:
            from tick_assets.sim.server import SimServer

            server = SimServer(day=day, seed=seed, rate=rate, speed=speed).start(
                host="127.0.0.1", port=0
            )
            atexit.register(server.stop)
            _sim_servers[key] = server
            while len(_sim_servers) > MAX_SIM_SERVERS:
                _, oldest = _sim_servers.popitem(last=False)
                oldest.stop()
        _sim_servers.move_to_end(key)
        return server


def sim_endpoints(
    day: date | None = None, *, seed: int, rate: float, speed: float
) -> dict[str, str]:
    """Endpoints (``kite_rest``, ``kite_ws``, ...) of this process's simulator for ``day``."""
    return sim_server(day, seed=seed, rate=rate, speed=speed).endpoints


# ---------------------------------------------------------------- settings


class SettingsResource(dg.ConfigurableResource):
    """Mode, data root and config file of this deployment (read at load; shown in the UI)."""

    mode: Mode = "sim"
    home: str
    config_path: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "SettingsResource":
        return cls(
            mode=settings.mode, home=str(settings.home), config_path=str(settings.config_path)
        )

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    def load(self) -> Settings:
        """The full Settings (universes, apps, venues) for this resource's mode/home/config."""
        env = {
            **os.environ,
            MODE_ENV: self.mode,
            HOME_ENV: self.home,
            CONFIG_ENV: self.config_path,
        }
        return load_settings(env)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"settings": SettingsResource.from_settings(load_settings())})
