"""The Kite Connect resource: endpoints, apps and clients, in sim or live mode.

In sim mode the endpoints are the in-process simulator and each configured app uses the
simulator's account of the same name. In live mode the roots come from [venues.kite] of the
config file and each app's credentials are dg.EnvVar references (resolved at launch, hidden
in the UI); no credential is ever logged or put in metadata.
"""

from datetime import date
from typing import Literal

import dagster as dg
from kiteconnect import KiteConnect

from tick_assets.config import MODE_ENV, KiteAppSecrets, Settings, SettingsError, load_settings
from tick_assets.defs.resources import sim_endpoints

Mode = Literal["sim", "live"]


class KiteAppCredentials(dg.Config):
    """One live Kite app's credentials; every field is a dg.EnvVar set from the config file."""

    api_key: str
    api_secret: str
    user_id: str
    password: str
    totp_seed: str


class KiteResource(dg.ConfigurableResource):
    """Kite Connect endpoints and apps, in sim or live mode.

    ``app_names`` are the [kite.apps] of the config file, in order. In live mode ``apps`` holds
    each app's credentials as dg.EnvVar references; in sim mode it is empty and credentials
    come from the simulator's accounts of the same names.
    """

    mode: Mode = "sim"
    app_names: list[str]
    api_root: str = "https://api.kite.trade"
    ws_root: str = "wss://ws.kite.trade"
    login_url: str = "https://kite.zerodha.com/connect/login"
    apps: dict[str, KiteAppCredentials] = {}
    timeout_seconds: int = 30
    sim_seed: int = 42
    sim_rate: float = 2000.0
    sim_speed: float = 375.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "KiteResource":
        kite_venue = settings.venues.get("kite", {})
        apps = {}
        if settings.mode == "live":
            apps = {
                name: KiteAppCredentials(
                    api_key=dg.EnvVar(app.api_key_env),
                    api_secret=dg.EnvVar(app.api_secret_env),
                    user_id=dg.EnvVar(app.user_id_env),
                    password=dg.EnvVar(app.password_env),
                    totp_seed=dg.EnvVar(app.totp_seed_env),
                )
                for name, app in settings.kite_apps.items()
            }
        return cls(
            mode=settings.mode,
            app_names=list(settings.kite_apps),
            apps=apps,
            sim_seed=settings.sim.seed,
            sim_rate=float(settings.sim.rate),
            sim_speed=float(settings.sim.speed),
            **{k: kite_venue[k] for k in ("api_root", "ws_root", "login_url") if k in kite_venue},
        )

    def endpoints(self, day: date | None = None) -> dict[str, str]:
        """``kite_rest``, ``kite_ws``, ``kite_login`` (and, in sim mode, the other venues).

        In sim mode ``day`` picks the simulated trading day (default: the simulator's
        default day); live Kite has only "now", so ``day`` is ignored there.
        """
        if self.mode == "sim":
            return sim_endpoints(day, seed=self.sim_seed, rate=self.sim_rate, speed=self.sim_speed)
        return {"kite_rest": self.api_root, "kite_ws": self.ws_root, "kite_login": self.login_url}

    @property
    def default_app(self) -> str:
        if not self.app_names:
            raise SettingsError(
                "no Kite app is configured; add a [kite.apps.<name>] table to tick_assets.toml"
            )
        return self.app_names[0]

    def credentials(self, app: str) -> KiteAppSecrets:
        """The app's credentials (secret fields are SecretStr; repr shows the app name only)."""
        if app not in self.app_names:
            raise SettingsError(
                f"Kite app {app!r} is not configured (known: {', '.join(self.app_names) or 'none'}); "
                f"add a [kite.apps.{app}] table to tick_assets.toml"
            )
        if self.mode == "sim":
            from tick_assets.sim.accounts import SIM_APPS

            if app not in SIM_APPS:
                raise SettingsError(
                    f"Kite app {app!r} has no simulator account (sim apps: "
                    f"{', '.join(SIM_APPS)}); rename it in [kite.apps] or set {MODE_ENV}=live"
                )
            creds = SIM_APPS[app]
        else:
            creds = self.apps[app]
        return KiteAppSecrets(
            app=app,
            api_key=creds.api_key,
            api_secret=creds.api_secret,
            user_id=creds.user_id,
            password=creds.password,
            totp_seed=creds.totp_seed,
        )

    def client(
        self, app: str | None = None, access_token: str | None = None, day: date | None = None
    ) -> KiteConnect:
        """An unmodified kiteconnect.KiteConnect for ``app`` pointed at this mode's REST root."""
        creds = self.credentials(app or self.default_app)
        return KiteConnect(
            api_key=creds.api_key,
            access_token=access_token,
            root=self.endpoints(day)["kite_rest"],
            timeout=self.timeout_seconds,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"kite": KiteResource.from_settings(load_settings())})
