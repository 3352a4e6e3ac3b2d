"""The CoinGecko resource: endpoint, ranking depth and free-tier budget, in sim or live mode.

In sim mode the endpoint is the in-process simulator, and a day's snapshot is taken with the
simulated CoinGecko moved to the end of that day (point-in-time, like live data taken that
night). Live CoinGecko has only "now": a day's snapshot can be taken only during the day
after it (the daily schedule runs at 00:15 UTC); an older day fails with a message saying so.
A Demo API key, if configured, is a dg.EnvVar: resolved at launch, never shown or logged.
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
import requests

from tick_assets.config import Settings, load_settings
from tick_assets.defs.resources import sim_endpoints
from tick_assets.sources.coingecko.client import CoinGeckoClient, ResponseCache

Mode = Literal["sim", "live"]


class CoinGeckoResource(dg.ConfigurableResource):
    """CoinGecko /coins/markets: see the module doc and [venues.coingecko] in the config file."""

    mode: Mode = "sim"
    rest_root: str = "https://api.coingecko.com/api/v3"
    top_n: int = 100
    per_page: int = 250
    calls_per_minute: float = 10.0
    cache_seconds: int = 600
    backoff_seconds: float = 60.0
    demo_api_key: str | None = None
    timeout_seconds: float = 30.0
    sim_seed: int = 42
    sim_rate: float = 2000.0
    sim_speed: float = 375.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "CoinGeckoResource":
        venue = settings.venues.get("coingecko", {})
        key_env = venue.get("demo_api_key_env")
        return cls(
            mode=settings.mode,
            rest_root=venue.get("rest_root", cls.model_fields["rest_root"].default),
            top_n=venue.get("top_n", 100),
            per_page=venue.get("per_page", 250),
            calls_per_minute=float(venue.get("calls_per_minute", 10.0)),
            cache_seconds=venue.get("cache_seconds", 600),
            backoff_seconds=float(venue.get("backoff_seconds", 60.0)),
            demo_api_key=dg.EnvVar(key_env) if key_env and settings.mode == "live" else None,
            sim_seed=settings.sim.seed,
            sim_rate=float(settings.sim.rate),
            sim_speed=float(settings.sim.speed),
        )

    def endpoints(self) -> dict[str, str]:
        if self.mode == "sim":
            return sim_endpoints(None, seed=self.sim_seed, rate=self.sim_rate, speed=self.sim_speed)
        return {"coingecko_rest": self.rest_root}

    def snapshot_time(self, day: str, now: datetime | None = None) -> datetime:
        """When the snapshot of ``day`` is taken; in sim mode the simulator is moved there.

        Live: now, allowed only within the 24 hours after the day ends (else dg.Failure).
        """
        now = now or datetime.now(UTC)
        start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
        end = start + timedelta(days=1)
        if self.mode == "live":
            if now < start or now >= end + timedelta(days=1):
                raise dg.Failure(
                    description=(
                        f"coingecko/rankings[{day}]: CoinGecko serves only the current market, so "
                        f"the snapshot of {day} can be taken only during the day or the day after "
                        f"it (UTC); it is now {now:%Y-%m-%d %H:%M} UTC. A past day exists only if "
                        "it was materialized then."
                    )
                )
            return now
        when = min(end - timedelta(seconds=1), now)
        control = self.endpoints()["coingecko_control"]
        response = requests.post(
            f"{control}/clock", json={"time": when.isoformat()}, timeout=self.timeout_seconds
        )
        response.raise_for_status()
        return when

    def client(self, home: str, day: str) -> CoinGeckoClient:
        """A client with the disk cache under ``home``; sim caches are per simulated day."""
        scope = f"sim/{day}" if self.mode == "sim" else "live"
        return CoinGeckoClient(
            self.endpoints()["coingecko_rest"],
            api_key=self.demo_api_key,
            calls_per_minute=self.calls_per_minute,
            cache=ResponseCache(Path(home) / "cache" / "coingecko" / scope, self.cache_seconds),
            timeout=self.timeout_seconds,
            backoff_seconds=self.backoff_seconds,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"coingecko": CoinGeckoResource.from_settings(load_settings())})
