"""The Upstox resource: v3 endpoints and the access token, in sim or live mode.

Sim mode points at the in-process simulator (its Upstox venue serves the same market as its
Kite venue) with a simulator test token. Live mode uses [venues.upstox] of the config file and
reads the token, at run time only, from the environment variable named there; the token is
never part of the resource's config, so it never shows in the UI, logs or metadata.
"""

import os
from datetime import date
from typing import Literal

import dagster as dg

from tick_assets.config import MODE_ENV, Settings, SettingsError, load_settings
from tick_assets.defs.resources import sim_endpoints

Mode = Literal["sim", "live"]


class UpstoxResource(dg.ConfigurableResource):
    """Upstox API v3 roots and where its access token comes from."""

    mode: Mode = "sim"
    api_root: str = "https://api.upstox.com"
    assets_root: str = "https://assets.upstox.com"
    access_token_env: str = "UPSTOX_ACCESS_TOKEN"
    sim_user: str = "SIMUP1"
    sim_seed: int = 42
    sim_rate: float = 2000.0
    sim_speed: float = 375.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "UpstoxResource":
        venue = settings.venues.get("upstox", {})
        return cls(
            mode=settings.mode,
            sim_seed=settings.sim.seed,
            sim_rate=float(settings.sim.rate),
            sim_speed=float(settings.sim.speed),
            **{k: venue[k] for k in ("api_root", "assets_root", "access_token_env") if k in venue},
        )

    def endpoints(self, day: date | None = None) -> dict[str, str]:
        """``upstox_rest`` and ``upstox_assets`` (sim: the simulator of ``day``)."""
        if self.mode == "sim":
            found = sim_endpoints(day, seed=self.sim_seed, rate=self.sim_rate, speed=self.sim_speed)
            return {k: found[k] for k in ("upstox_rest", "upstox_assets")}
        return {"upstox_rest": self.api_root, "upstox_assets": self.assets_root}

    def access_token(self) -> str:
        """The bearer token (sim: the simulator user's test token). Never log it."""
        if self.mode == "sim":
            from tick_assets.sim.upstox.accounts import SIM_UPSTOX_TOKENS

            if self.sim_user not in SIM_UPSTOX_TOKENS:
                raise SettingsError(
                    f"Upstox sim user {self.sim_user!r} does not exist "
                    f"(sim users: {', '.join(SIM_UPSTOX_TOKENS)})"
                )
            return SIM_UPSTOX_TOKENS[self.sim_user]
        token = os.environ.get(self.access_token_env, "").strip()
        if not token:
            raise SettingsError(
                f"{MODE_ENV}=live needs an Upstox access token in ${self.access_token_env} "
                "(named by [venues.upstox].access_token_env); get one through Upstox's login "
                "flow (valid until 03:30 IST) and set it in the environment or .env"
            )
        return token


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"upstox": UpstoxResource.from_settings(load_settings())})
