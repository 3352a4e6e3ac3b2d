"""The Kite Connect resource: endpoints, apps and clients, in sim or live mode.

In sim mode the endpoints are the in-process simulator and each configured app uses the
simulator's account of the same name. In live mode the roots come from [venues.kite] of the
config file and each app's credentials are dg.EnvVar references (resolved at launch, hidden
in the UI); no credential is ever logged or put in metadata.
"""

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
from kiteconnect import KiteConnect

from tick_assets.calendars import IST, SESSION_OPEN
from tick_assets.config import (
    KiteAppSecrets,
    Settings,
    SettingsError,
    load_settings,
    sim_app_secrets,
)
from tick_assets.defs.resources import sim_endpoints, sim_server
from tick_assets.sources.kite.login import (
    LoginEndpoints,
    LoginResult,
    browser_available,
    login,
)
from tick_assets.store.tokens import TokenRecord, TokenStore

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
    home: str = ""  # TICK_ASSETS_HOME (token store); "" = read the settings when needed
    login_methods: dict[str, str] = {}  # app -> "selenium" | "http" ([kite.apps.<app>])

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
            home=str(settings.home),
            app_names=list(settings.kite_apps),
            login_methods={name: app.login_method for name, app in settings.kite_apps.items()},
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

    def venue_clock(self, day: date | None = None) -> Callable[[], int]:
        """Kite's "now" as UTC epoch ns: the wall clock, or the (accelerated) simulator's."""
        if self.mode != "sim":
            return time.time_ns
        server = sim_server(day, seed=self.sim_seed, rate=self.sim_rate, speed=self.sim_speed)
        clock = server.kite.clock
        return lambda: int(clock.now() * 1e9)

    def sim_rewind_to_open(self, day: date, lead_seconds: float = 5.0) -> None:
        """Sim mode only: set the simulator's clock of ``day`` just before 09:15 IST, so a
        capture started now records the whole simulated session (the clock has been running
        since the simulator started)."""
        if self.mode != "sim":
            raise SettingsError("only the simulator's clock can be moved (TICK_ASSETS_MODE=sim)")
        server = sim_server(day, seed=self.sim_seed, rate=self.sim_rate, speed=self.sim_speed)
        opening = datetime.combine(day, SESSION_OPEN, tzinfo=IST)
        server.kite.clock.set(opening - timedelta(seconds=lead_seconds))

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
            return sim_app_secrets(app)
        creds = self.apps[app]
        return KiteAppSecrets(
            app=app,
            api_key=creds.api_key,
            api_secret=creds.api_secret,
            user_id=creds.user_id,
            password=creds.password,
            totp_seed=creds.totp_seed,
        )

    # --- login (kite/access_token) -------------------------------------------------------------

    def login_endpoints(self) -> LoginEndpoints:
        """The login page, login API and REST root: the simulator's, or Kite's."""
        if self.mode == "sim":
            ep = self.endpoints()
            return LoginEndpoints(ep["kite_login"], ep["kite_login_api"], ep["kite_rest"])
        return LoginEndpoints.live(self.login_url, self.api_root)

    def login_method(self, app: str) -> tuple[str, str | None]:
        """(method to use, why it differs from the configured one or None).

        A configured "selenium" login falls back to "http" where Chromium/chromedriver are
        not installed, as the HTTP login needs no browser.
        """
        configured = self.login_methods.get(app, "selenium")
        if configured == "selenium" and not browser_available():
            return "http", (
                "login_method 'selenium' configured but /usr/bin/chromium or "
                "/usr/bin/chromedriver is missing; logged in through the HTTP login API"
            )
        return configured, None

    def login(self, app: str, screenshot_dir: Path) -> tuple[LoginResult, str | None]:
        """Log ``app`` in now; (result, fallback note). Raises KiteLoginError naming the step."""
        method, note = self.login_method(app)
        result = login(
            self.credentials(app),
            method,
            self.login_endpoints(),
            screenshot_dir,
            timeout=self.timeout_seconds,
        )
        return result, note

    # --- access tokens (kite/access_token writes them; everything else reads them) -------------

    def token_store(self) -> TokenStore:
        """This mode's encrypted token store under TICK_ASSETS_HOME/secrets/."""
        home = Path(self.home) if self.home else load_settings().home
        return TokenStore(home, self.mode)

    def token_record(self, app: str) -> TokenRecord:
        """The app's valid token record (TokenMissingError / TokenExpiredError otherwise)."""
        self.credentials(app)  # an unknown app is a SettingsError, not a "missing token"
        return self.token_store().get_valid(app)

    def access_token(self, app: str) -> str:
        """The app's current access token from the store.

        Raises tick_assets.store.tokens.TokenMissingError or TokenExpiredError (both
        TokenStoreError) with a message naming the app, the expiry and the fix
        ("materialize kite/access_token (partition <app>)"). Never log the returned value.
        """
        return self.token_record(app).access_token

    def kite_connect(self, app: str, day: date | None = None) -> KiteConnect:
        """An authorized kiteconnect.KiteConnect for ``app`` (token from the store).

        ``day`` picks the simulated day in sim mode (one simulator per day; any of them
        accepts the token), and is ignored in live mode.
        """
        return self.client(app, access_token=self.access_token(app), day=day)

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
