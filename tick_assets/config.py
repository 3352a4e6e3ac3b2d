"""Settings: the mode, the data root and one TOML config file, checked at load.

Environment: TICK_ASSETS_MODE (sim|live, default sim), TICK_ASSETS_HOME (default ./data),
TICK_ASSETS_CONFIG (default <repo>/tick_assets.toml), TICK_ASSETS_HOLIDAYS_FILE (optional
holiday override CSV). A ``.env`` in the working directory is read too; real environment
variables win over it. The config file never holds secrets: ``[kite.apps.<name>]`` names the
environment variables that do, and ``kite_app_secrets`` reads them when a login needs them.
Every bad setting raises SettingsError naming the setting and the fix, never a secret value.
Dagster-free: the defs layer wraps these values in ConfigurableResources with dg.EnvVar.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from dotenv import dotenv_values, load_dotenv
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from tick_assets import calendars
from tick_assets.store.tokens import TOKEN_KEY_ENV

MODE_ENV = "TICK_ASSETS_MODE"
HOME_ENV = "TICK_ASSETS_HOME"
CONFIG_ENV = "TICK_ASSETS_CONFIG"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "tick_assets.toml"
UNIVERSE_SUFFIXES = (".csv", ".xlsx")


class SettingsError(ValueError):
    """A missing or bad setting; the message names the setting and the fix."""


# --- config file schema ---------------------------------------------------------------------


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
        raise ValueError(
            "must be the NAME of an environment variable (capitals, digits, _), e.g. "
            "KITE_INDICES_API_KEY; put the secret itself in the environment or .env"
        )
    return value


def _simple_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", value):
        raise ValueError("must be lower-case letters, digits and _ (it names partitions and files)")
    return value


def _url(*schemes: str):
    def check(value: str) -> str:
        if not value.startswith(tuple(f"{s}://" for s in schemes)) or " " in value:
            raise ValueError(f"must be a {' or '.join(schemes)} URL")
        return value.rstrip("/")

    return AfterValidator(check)


EnvName = Annotated[str, AfterValidator(_env_name)]
Name = Annotated[str, AfterValidator(_simple_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class KiteAppConfig(_Model):
    """One Kite Connect app: the env vars holding its credentials, how it logs in, what it streams."""

    api_key_env: EnvName
    api_secret_env: EnvName
    user_id_env: EnvName
    password_env: EnvName
    totp_seed_env: EnvName
    login_method: Literal["selenium", "http"] = "selenium"
    universe: Name


class KiteVenueConfig(_Model):
    api_root: Annotated[str, _url("https", "http")] = "https://api.kite.trade"
    ws_root: Annotated[str, _url("wss", "ws")] = "wss://ws.kite.trade"
    login_url: Annotated[str, _url("https", "http")] = "https://kite.zerodha.com/connect/login"


class UpstoxVenueConfig(_Model):
    """Upstox API v3 (historical candles): roots and the NAME of the env var with the token."""

    api_root: Annotated[str, _url("https", "http")] = "https://api.upstox.com"
    assets_root: Annotated[str, _url("https", "http")] = "https://assets.upstox.com"
    access_token_env: EnvName = "UPSTOX_ACCESS_TOKEN"


def _quote_asset(value: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]{2,10}", value):
        raise ValueError("must be a Binance asset in capitals, e.g. USDT")
    return value


class CoinGeckoVenueConfig(_Model):
    """CoinGecko (coingecko/rankings): REST root, ranking depth, free-tier budget, cache."""

    rest_root: Annotated[str, _url("https", "http")] = "https://api.coingecko.com/api/v3"
    top_n: int = Field(100, ge=1, le=1000)
    per_page: int = Field(250, ge=1, le=250)
    calls_per_minute: float = Field(10.0, gt=0, le=500)  # keyless free tier: stay low
    cache_seconds: int = Field(600, ge=0, le=86_400)
    backoff_seconds: float = Field(60.0, ge=0, le=3600)  # first wait after a bare 429
    demo_api_key_env: EnvName | None = None  # NAME of the env var holding a Demo key


class BinanceVenueConfig(_Model):
    """Binance spot (binance/universe, binance/klines_1m): roots, weight budget, overrides."""

    rest_root: Annotated[str, _url("https", "http")] = "https://data-api.binance.vision"
    archive_root: Annotated[str, _url("https", "http")] = "https://data.binance.vision"
    quote_asset: Annotated[str, AfterValidator(_quote_asset)] = "USDT"
    overrides_file: str = "config/crypto/binance_overrides.toml"  # relative to the config file
    weight_limit: int = Field(6000, ge=10, le=1_000_000)  # REQUEST_WEIGHT per minute per IP
    weight_budget: float = Field(0.95, gt=0, le=1.0)  # share of it this deployment uses
    download_workers: int = Field(4, ge=1, le=32)


class VenuesConfig(_Model):
    kite: KiteVenueConfig = KiteVenueConfig()
    upstox: UpstoxVenueConfig = UpstoxVenueConfig()
    coingecko: CoinGeckoVenueConfig = CoinGeckoVenueConfig()
    binance: BinanceVenueConfig = BinanceVenueConfig()


def _ist_time_of_day(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?", value):
        raise ValueError("must be an IST time of day as HH:MM or HH:MM:SS, e.g. 15:35")
    return value


IstTime = Annotated[str, AfterValidator(_ist_time_of_day)]


class CaptureConfig(_Model):
    """[capture]: the live capture (kite/ticks) and its watchdog, queues and alerts."""

    flush_interval_ms: int = Field(200, ge=1, le=5000)
    mode: Literal["full", "quote", "ltp"] = "full"
    start_at: IstTime = "09:00"  # the capture sensor launches runs from this IST time
    stop_at: IstTime = "15:35"  # a capture run stops itself at this IST time (venue clock)
    stall_timeout_s: float = Field(5.0, gt=0, le=600)
    backoff_cap_s: float = Field(30.0, gt=0, le=600)
    queue_max_mb: int = Field(128, ge=1, le=65536)
    down_alert_s: float = Field(30.0, gt=0, le=86400)
    no_ticks_alert_s: float = Field(120.0, gt=0, le=86400)
    webhook_url_env: EnvName | None = None  # NAME of the env var holding the webhook URL

    @model_validator(mode="after")
    def _window(self) -> CaptureConfig:
        if self.stop_at <= self.start_at:
            raise ValueError(f"stop_at {self.stop_at} must be later than start_at {self.start_at}")
        return self


class PostgresSinkConfig(_Model):
    """[sink.postgres]: the optional SQL copy of each archived day (one table, a partition per day)."""

    enabled: bool = False
    dsn_env: EnvName = "TICK_ASSETS_POSTGRES_DSN"  # NAME of the env var holding the DSN
    table: Name = "kite_ticks"
    pg_schema: Name = "public"


class SinkConfig(_Model):
    postgres: PostgresSinkConfig = PostgresSinkConfig()


class SimConfig(_Model):
    seed: int = 42
    speed: float = Field(375.0, gt=0, le=100_000)
    rate: int = Field(2000, ge=1, le=1_000_000)


class _KiteSection(_Model):
    apps: dict[Name, KiteAppConfig] = {}


CANDLE_TIMEFRAMES = ("1minute", "3minute", "5minute", "10minute", "15minute", "30minute",
                     "60minute", "day")  # fmt: skip


def _candle_timeframes(value: list[str]) -> list[str]:
    bad = [t for t in value if t not in CANDLE_TIMEFRAMES]
    if bad or not value or len(set(value)) != len(value):
        raise ValueError(
            f"must be a non-empty list without repeats of timeframes both Kite and Upstox offer "
            f"({', '.join(CANDLE_TIMEFRAMES)}); {bad or value} is not"
        )
    return value


class CandleVenueConfig(_Model):
    """Historical candles from one venue: which symbol lists, how many concurrent requests."""

    symbols: list[Name] = ["nifty50"]  # names from [candles.symbol_lists]
    workers: int = Field(4, ge=1, le=64)  # 1 = sequential


class KiteCandleConfig(CandleVenueConfig):
    app: Name = "indices"  # whose access token (kite/access_token partition) pays the 3 req/s


class CandlesConfig(_Model):
    """[candles]: historical candles (upstox/candles, kite/candles)."""

    symbol_lists: dict[Name, str] = {}  # name -> CSV with a `symbol` column
    timeframes: Annotated[list[str], AfterValidator(_candle_timeframes)] = [
        "1minute", "5minute", "15minute", "day",
    ]  # fmt: skip
    max_failed_fraction: float = Field(0.2, ge=0.0, le=1.0)
    retries: int = Field(6, ge=1, le=20)
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    progress: Literal["auto", "always", "never"] = "auto"
    refetch_missing: bool = False
    upstox: CandleVenueConfig = CandleVenueConfig(workers=8)
    kite: KiteCandleConfig = KiteCandleConfig(workers=2)


class _ConfigFile(_Model):
    kite: _KiteSection = _KiteSection()
    universes: dict[Name, str] = {}
    venues: VenuesConfig = VenuesConfig()
    capture: CaptureConfig = CaptureConfig()
    sink: SinkConfig = SinkConfig()
    sim: SimConfig = SimConfig()
    candles: CandlesConfig = CandlesConfig()


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything tick_assets reads at load. Holds env var names, never secret values."""

    mode: Literal["sim", "live"]
    home: Path
    config_path: Path
    kite_apps: dict[str, KiteAppConfig]
    universes: dict[str, Path]  # absolute; the files are checked when used (resolve_universe)
    venues: dict[str, dict[str, Any]]  # live endpoints, e.g. venues["kite"]["api_root"]
    capture: CaptureConfig
    sim: SimConfig
    holidays_file: Path | None = None
    dotenv_path: Path | None = None  # the .env that was read, if any
    candles: CandlesConfig = CandlesConfig()
    sink: SinkConfig = SinkConfig()


class KiteAppSecrets(BaseModel):
    """Credentials of one Kite app; repr/str show only the app name."""

    model_config = ConfigDict(frozen=True)

    app: str
    api_key: str = Field(repr=False)
    user_id: str = Field(repr=False)
    api_secret: SecretStr
    password: SecretStr
    totp_seed: SecretStr


def _read_env(environ: Mapping[str, str] | None, dotenv_path: Path | None) -> Mapping[str, str]:
    """The environment with .env beneath it: load into os.environ, or merge under ``environ``."""
    if dotenv_path is not None and dotenv_path.is_file():
        if os.name != "nt" and dotenv_path.stat().st_mode & 0o077:
            raise SettingsError(
                f"{dotenv_path} is readable by other users and may hold secrets; "
                f"run: chmod 600 {dotenv_path}"
            )
        if environ is None:
            load_dotenv(dotenv_path, override=False)
        else:
            values = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
            return {**values, **environ}
    return os.environ if environ is None else environ


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) == 1:
        return f"[{parts[0]}]"
    return f"[{'.'.join(parts[:-1])}].{parts[-1]}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    node: Any = _ConfigFile
    for part in loc:
        if get_origin(node) is dict:
            node = get_args(node)[1]
        elif isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = node.model_fields[part].annotation
        else:
            return None
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _explain(error: Any, source: Path) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    if loc and loc[-1] == "[key]":  # a bad table name, e.g. [kite.apps.Main-App]
        msg = error["msg"].removeprefix("Value error, ")
        return f"{source.name} {_where(loc[:-1])}: the name {msg}; rename it"
    where = _where(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see the example tick_assets.toml"
        what = "section" if isinstance(error.get("input"), dict) else "setting"
        if len(loc) == 1 and what == "setting":
            where = str(loc[0])
        return (
            f"{source.name} {where}: unknown {what}; remove it or fix its spelling "
            f"(allowed: {allowed})"
        )
    if kind == "missing":
        return f"{source.name} {where}: missing; add it"
    value = error.get("input")
    shown = "" if str(loc[-1]).endswith("_env") or isinstance(value, dict) else f"={value!r}"
    msg = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") and isinstance(value, str):
        msg += "; write it without quotes if it is a number or true/false"
    return f"{source.name} {where}{shown}: {msg}"


def _parse_file(path: Path) -> _ConfigFile:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(
            f"{CONFIG_ENV}: config file {path} not found; point {CONFIG_ENV} at your "
            f"tick_assets.toml or copy the example from {DEFAULT_CONFIG}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc}); fix the syntax there") from None
    try:
        return _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_explain(e, path) for e in exc.errors())
        raise SettingsError(f"bad settings in {path}:\n  {problems}") from None


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv_path: Path | None = None
) -> Settings:
    """Read and check every setting; raise SettingsError naming the first bad one(s).

    ``environ`` defaults to os.environ, into which ``.env`` (``dotenv_path``, default
    ./.env) is loaded without overriding variables already set. With an explicit mapping
    nothing global changes: .env values are merged beneath it.
    """
    dotenv_path = (dotenv_path or Path.cwd() / ".env").absolute()
    env = _read_env(environ, dotenv_path)

    mode = (_get(env, MODE_ENV) or "sim").lower()
    if mode not in ("sim", "live"):
        raise SettingsError(
            f"{MODE_ENV}={env.get(MODE_ENV)!r} is not a mode; set it to 'sim' (built-in "
            "simulator, no credentials) or 'live' (real Kite endpoints)"
        )
    home = Path(_get(env, HOME_ENV) or "./data").expanduser().absolute()
    if home.exists() and not home.is_dir():
        raise SettingsError(f"{HOME_ENV}={str(home)!r} is a file; point it at a directory")

    config_path = Path(_get(env, CONFIG_ENV) or DEFAULT_CONFIG).expanduser().absolute()
    parsed = _parse_file(config_path)

    universes: dict[str, Path] = {}
    for name, raw in parsed.universes.items():
        path = Path(raw).expanduser()
        if path.suffix.lower() not in UNIVERSE_SUFFIXES:
            raise SettingsError(
                f"{config_path.name} [universes].{name}={raw!r}: a universe file must be .csv "
                "or .xlsx; fix the path"
            )
        universes[name] = path if path.is_absolute() else config_path.parent / path
    for app_name, app in parsed.kite.apps.items():
        if app.universe not in universes:
            known = ", ".join(universes) or "none"
            raise SettingsError(
                f"{config_path.name} [kite.apps.{app_name}].universe={app.universe!r} is not "
                f"listed under [universes] (known: {known}); add it there or fix the name"
            )

    holidays_raw = _get(env, calendars.HOLIDAYS_FILE_ENV)
    holidays_file = Path(holidays_raw).expanduser().absolute() if holidays_raw else None
    if holidays_file is not None:
        try:
            calendars.nse_holidays(holidays_file)
        except calendars.CalendarError as exc:
            raise SettingsError(f"{calendars.HOLIDAYS_FILE_ENV}: {exc}") from None

    settings = Settings(
        mode=mode,  # type: ignore[arg-type]
        home=home,
        config_path=config_path,
        kite_apps=dict(parsed.kite.apps),
        universes=universes,
        venues=parsed.venues.model_dump(),
        capture=parsed.capture,
        sim=parsed.sim,
        candles=parsed.candles,
        sink=parsed.sink,
        holidays_file=holidays_file,
        dotenv_path=dotenv_path if dotenv_path.is_file() else None,
    )
    if mode == "live":
        if not settings.kite_apps:
            raise SettingsError(
                f"{MODE_ENV}=live but {config_path.name} has no [kite.apps.<name>] table; "
                "add one (see the example tick_assets.toml)"
            )
        for app_name in settings.kite_apps:
            kite_app_secrets(settings, app_name, env)
        if not _get(env, TOKEN_KEY_ENV):
            raise SettingsError(
                f"{MODE_ENV}=live needs {TOKEN_KEY_ENV}, the Fernet key that encrypts stored "
                'access tokens; generate one with: python -c "from cryptography.fernet import '
                'Fernet; print(Fernet.generate_key().decode())" and set it in the environment '
                "or .env"
            )
    return settings


def resolve_universe(settings: Settings, name: str) -> Path:
    """The universe file for ``name``; SettingsError when it is unknown or missing."""
    if name not in settings.universes:
        known = ", ".join(settings.universes) or "none"
        raise SettingsError(
            f"universe {name!r} is not listed under [universes] in {settings.config_path} "
            f"(known: {known}); add it there"
        )
    path = settings.universes[name]
    if not path.is_file():
        raise SettingsError(
            f"{settings.config_path.name} [universes].{name}: file {path} does not exist; "
            "create it (CSV or XLSX of symbols) or fix the path"
        )
    return path


_SECRET_FIELDS = ("api_key", "api_secret", "user_id", "password", "totp_seed")


def sim_app_secrets(app_name: str) -> KiteAppSecrets:
    """The simulator's built-in account for a configured app name (sim mode)."""
    from tick_assets.sim.accounts import SIM_APPS

    if app_name not in SIM_APPS:
        raise SettingsError(
            f"Kite app {app_name!r} has no simulator account (sim apps: "
            f"{', '.join(SIM_APPS)}); use one of those names in [kite.apps] or "
            f"set {MODE_ENV}=live"
        )
    account = SIM_APPS[app_name]
    return KiteAppSecrets(app=app_name, **{f: getattr(account, f) for f in _SECRET_FIELDS})


def kite_app_secrets(
    settings: Settings, app_name: str, environ: Mapping[str, str] | None = None
) -> KiteAppSecrets:
    """Credentials of one Kite app: from the environment (live) or the simulator's apps (sim).

    A missing variable raises SettingsError naming the variable, never a value.
    """
    if app_name not in settings.kite_apps:
        known = ", ".join(settings.kite_apps) or "none"
        raise SettingsError(
            f"Kite app {app_name!r} is not configured in {settings.config_path} (known: "
            f"{known}); add a [kite.apps.{app_name}] table"
        )
    if settings.mode == "sim":
        return sim_app_secrets(app_name)
    else:
        env = _read_env(environ, settings.dotenv_path)
        app = settings.kite_apps[app_name]
        names = {f: getattr(app, f"{f}_env") for f in _SECRET_FIELDS}
        missing = [n for n in names.values() if _get(env, n) is None]
        if missing:
            raise SettingsError(
                f"Kite app {app_name!r} (live) needs environment variable(s) "
                f"{', '.join(missing)}, named in [kite.apps.{app_name}] of "
                f"{settings.config_path.name}; set them in the environment or in .env "
                "(chmod 600)"
            )
        values = {f: _get(env, n) for f, n in names.items()}
    return KiteAppSecrets(app=app_name, **values)  # type: ignore[arg-type]
