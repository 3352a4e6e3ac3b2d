"""The Binance resource: REST and archive roots, the weight budget and the override file.

In sim mode both roots are the in-process simulator (python-binance talks to it unmodified);
in live mode they come from [venues.binance] of the config file (by default the keyless
market-data host https://data-api.binance.vision and https://data.binance.vision). No key is
needed for either: klines, exchangeInfo and the archive are public.
"""

from pathlib import Path
from typing import Literal

import dagster as dg

from tick_assets.config import Settings, load_settings
from tick_assets.defs.resources import sim_endpoints
from tick_assets.sources.binance.archive import BinanceArchive
from tick_assets.sources.binance.rest import BinanceRest
from tick_assets.sources.binance.universe import Overrides, load_overrides

Mode = Literal["sim", "live"]


class BinanceResource(dg.ConfigurableResource):
    """Binance spot REST + bulk archive; see the module doc."""

    mode: Mode = "sim"
    rest_root: str = "https://data-api.binance.vision"
    archive_root: str = "https://data.binance.vision"
    quote_asset: str = "USDT"
    overrides_file: str = ""
    weight_limit: int = 6000
    weight_budget: float = 0.95
    download_workers: int = 4
    timeout_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0
    sim_seed: int = 42
    sim_rate: float = 2000.0
    sim_speed: float = 375.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "BinanceResource":
        venue = dict(settings.venues.get("binance", {}))
        overrides = venue.pop("overrides_file", "")
        if overrides:
            path = Path(overrides).expanduser()
            overrides = str(path if path.is_absolute() else settings.config_path.parent / path)
        return cls(
            mode=settings.mode,
            overrides_file=overrides,
            sim_seed=settings.sim.seed,
            sim_rate=float(settings.sim.rate),
            sim_speed=float(settings.sim.speed),
            **venue,
        )

    def endpoints(self) -> dict[str, str]:
        if self.mode == "sim":
            return sim_endpoints(None, seed=self.sim_seed, rate=self.sim_rate, speed=self.sim_speed)
        return {"binance_rest": self.rest_root, "binance_archive": self.archive_root}

    def rest(self) -> BinanceRest:
        return BinanceRest(
            self.endpoints()["binance_rest"],
            weight_limit=self.weight_limit,
            budget=self.weight_budget,
            timeout=self.timeout_seconds,
            max_retry_after=self.max_retry_after_seconds,
        )

    def archive(self) -> BinanceArchive:
        return BinanceArchive(self.endpoints()["binance_archive"], timeout=self.timeout_seconds)

    def overrides(self) -> Overrides:
        return load_overrides(self.overrides_file or None)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"binance": BinanceResource.from_settings(load_settings())})
