"""Settings: defaults, every bad setting named with its fix, .env handling, secrets hidden."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from tick_assets.config import (
    DEFAULT_CONFIG,
    KiteAppSecrets,
    SettingsError,
    kite_app_secrets,
    load_settings,
    resolve_universe,
)

APP = """
[kite.apps.main]
api_key_env = "K_KEY"
api_secret_env = "K_SECRET"
user_id_env = "K_USER"
password_env = "K_PASSWORD"
totp_seed_env = "K_TOTP"
universe = "main"

[universes]
main = "universes/main.csv"
"""

SECRETS = {
    "K_KEY": "key-visible-in-urls-1234",
    "K_SECRET": "s3cr3t-api-secret-9f8e7d",
    "K_USER": "AB1234",
    "K_PASSWORD": "hunter2-password-xyz",
    "K_TOTP": "JBSWY3DPEHPK3PXPJBSWY3DP",
}


@pytest.fixture
def no_dotenv(tmp_path: Path) -> Path:
    """A .env path that does not exist, so tests never read a developer's real .env."""
    return tmp_path / "absent.env"


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "tick_assets.toml"
    path.write_text(text)
    return {"TICK_ASSETS_CONFIG": str(path)}


def settings_error(env: dict[str, str], dotenv: Path) -> str:
    with pytest.raises(SettingsError) as err:
        load_settings(env, dotenv_path=dotenv)
    return str(err.value)


# --- defaults and the shipped example ------------------------------------------------------


def test_defaults_from_the_shipped_example(
    no_dotenv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({}, dotenv_path=no_dotenv)
    assert s.mode == "sim"
    assert s.home == tmp_path / "data"
    assert s.config_path == DEFAULT_CONFIG
    assert DEFAULT_CONFIG.name == "tick_assets.toml" and DEFAULT_CONFIG.is_file()
    assert set(s.kite_apps) == {"indices", "nifty500"}
    assert {a.login_method for a in s.kite_apps.values()} == {"selenium"}
    assert s.kite_apps["indices"].universe == "indices"
    assert s.universes["nifty500"] == DEFAULT_CONFIG.parent / "config/universes/nifty500.csv"
    assert s.venues["kite"] == {
        "api_root": "https://api.kite.trade",
        "ws_root": "wss://ws.kite.trade",
        "login_url": "https://kite.zerodha.com/connect/login",
    }
    assert (s.capture.flush_interval_ms, s.capture.mode) == (200, "full")
    assert s.holidays_file is None


def test_minimal_file_gets_section_defaults(tmp_path: Path, no_dotenv: Path) -> None:
    s = load_settings(write_config(tmp_path, ""), dotenv_path=no_dotenv)
    assert s.kite_apps == {} and s.universes == {}
    assert s.capture.flush_interval_ms == 200
    assert s.venues["kite"]["ws_root"] == "wss://ws.kite.trade"


def test_env_example_lists_every_variable_the_example_config_names() -> None:
    example = (DEFAULT_CONFIG.parent / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=$", example, flags=re.M))
    raw = tomllib.loads(DEFAULT_CONFIG.read_text())
    named = {
        v for app in raw["kite"]["apps"].values() for k, v in app.items() if k.endswith("_env")
    }
    assert named <= listed
    assert {"TICK_ASSETS_MODE", "TICK_ASSETS_HOME", "TICK_ASSETS_CONFIG"} <= listed
    assert "chmod 600" in example


def test_home_is_expanded_and_absolute(tmp_path: Path, no_dotenv: Path) -> None:
    s = load_settings({"TICK_ASSETS_HOME": "~/tick-data"}, dotenv_path=no_dotenv)
    assert s.home == Path.home() / "tick-data"
    s = load_settings({"TICK_ASSETS_HOME": "rel/dir"}, dotenv_path=no_dotenv)
    assert s.home.is_absolute() and s.home == Path.cwd() / "rel/dir"
    s = load_settings({"TICK_ASSETS_HOME": "", "TICK_ASSETS_MODE": ""}, dotenv_path=no_dotenv)
    assert s.home == Path.cwd() / "data" and s.mode == "sim"  # empty means unset


# --- each bad setting is named with its fix ----------------------------------------------


def test_bad_mode_names_the_variable(no_dotenv: Path) -> None:
    msg = settings_error({"TICK_ASSETS_MODE": "prod"}, no_dotenv)
    assert "TICK_ASSETS_MODE='prod'" in msg and "'sim'" in msg and "'live'" in msg


def test_home_that_is_a_file(tmp_path: Path, no_dotenv: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    msg = settings_error({"TICK_ASSETS_HOME": str(f)}, no_dotenv)
    assert "TICK_ASSETS_HOME=" in msg and "directory" in msg


def test_missing_config_file_names_the_variable(tmp_path: Path, no_dotenv: Path) -> None:
    msg = settings_error({"TICK_ASSETS_CONFIG": str(tmp_path / "nope.toml")}, no_dotenv)
    assert "TICK_ASSETS_CONFIG" in msg and "nope.toml" in msg


def test_invalid_toml_names_the_file(tmp_path: Path, no_dotenv: Path) -> None:
    msg = settings_error(write_config(tmp_path, "[capture\nmode = 1"), no_dotenv)
    assert "tick_assets.toml" in msg and "not valid TOML" in msg and "line 1" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[capture]\nflush_interval_ms = 0\n", "[capture].flush_interval_ms=0"),
        ("[capture]\nflush_interval_ms = 5001\n", "less than or equal to 5000"),
        ("[capture]\nflush_interval_ms = '200'\n", "[capture].flush_interval_ms='200'"),
        ("[capture]\nmode = 'depth'\n", "'full', 'quote' or 'ltp'"),
        ("[capture]\nflush_ms = 10\n", "[capture].flush_ms: unknown setting"),
        ("[captures]\nmode = 'full'\n", "[captures]: unknown section"),
        ("flush_interval_ms = 10\n", "flush_interval_ms: unknown setting"),
        ("[sim]\nspeed = 0\n", "[sim].speed=0"),
        ("[sim]\nrate = 1.5\n", "[sim].rate=1.5"),
        ("[venues.kite]\napi_root = 'api.kite.trade'\n", "[venues.kite].api_root='api.kite.trade'"),
        ("[venues.nosuchvenue]\nx = 1\n", "[venues].nosuchvenue: unknown section"),
        ("[venues.binance]\nx = 1\n", "[venues.binance].x: unknown setting"),
        (
            APP.replace('universe = "main"', 'universe = "main"\nlogin_method = "chrome"'),
            "'selenium' or 'http'",
        ),
        (
            APP.replace('universe = "main"', 'universe = "other"'),
            "[kite.apps.main].universe='other'",
        ),
        (
            APP.replace('universe = "main"', 'universe = "main"\ncolour = 1'),
            "[kite.apps.main].colour: unknown",
        ),
        (APP.replace('totp_seed_env = "K_TOTP"\n', ""), "[kite.apps.main].totp_seed_env: missing"),
        (
            APP.replace("[kite.apps.main]", "[kite.apps.Main-App]"),
            "[kite.apps].Main-App: the name must be lower-case",
        ),
        (APP.replace("main.csv", "main.txt"), "[universes].main='universes/main.txt'"),
    ],
)
def test_bad_file_setting_names_file_and_key(
    tmp_path: Path, no_dotenv: Path, text: str, expected: str
) -> None:
    msg = settings_error(write_config(tmp_path, text), no_dotenv)
    assert "tick_assets.toml" in msg
    assert expected in msg


def test_several_problems_are_reported_together(tmp_path: Path, no_dotenv: Path) -> None:
    text = "[capture]\nflush_interval_ms = 0\nmode = 'x'\n[sim]\nseed = 'a'\n"
    msg = settings_error(write_config(tmp_path, text), no_dotenv)
    for key in ("[capture].flush_interval_ms", "[capture].mode", "[sim].seed"):
        assert key in msg
    assert "allowed" not in msg


def test_unknown_key_lists_allowed_keys(tmp_path: Path, no_dotenv: Path) -> None:
    msg = settings_error(write_config(tmp_path, "[sim]\nsede = 1\n"), no_dotenv)
    assert "allowed: seed, speed, rate" in msg


def test_secret_pasted_into_an_env_name_is_not_echoed(tmp_path: Path, no_dotenv: Path) -> None:
    text = APP.replace('"K_SECRET"', '"s3cr3t-api-secret-9f8e7d"')
    msg = settings_error(write_config(tmp_path, text), no_dotenv)
    assert "[kite.apps.main].api_secret_env" in msg and "NAME of an environment variable" in msg
    assert "s3cr3t" not in msg


def test_bad_holidays_file_fails_at_load(tmp_path: Path, no_dotenv: Path) -> None:
    bad = tmp_path / "h.csv"
    bad.write_text("date,description\n2025-02-30,No such day\n")
    msg = settings_error({"TICK_ASSETS_HOLIDAYS_FILE": str(bad)}, no_dotenv)
    assert "TICK_ASSETS_HOLIDAYS_FILE" in msg and f"{bad}:2:" in msg


# --- universes ---------------------------------------------------------------------------


def test_resolve_universe(tmp_path: Path, no_dotenv: Path) -> None:
    s = load_settings(write_config(tmp_path, APP), dotenv_path=no_dotenv)
    with pytest.raises(SettingsError) as err:
        resolve_universe(s, "main")
    assert "[universes].main" in str(err.value) and "main.csv" in str(err.value)
    (tmp_path / "universes").mkdir()
    (tmp_path / "universes/main.csv").write_text("symbol\nINFY\n")
    assert resolve_universe(s, "main") == tmp_path / "universes/main.csv"
    with pytest.raises(SettingsError, match="'nifty' is not listed"):
        resolve_universe(s, "nifty")


# --- live secrets ------------------------------------------------------------------------


TOKEN_KEY = "x1Q8wQ0ZJc0cE6m7Xc4cQqkq3u5E5bJ8oQ1yVYt8m0A="  # a well-formed Fernet key, tests only


def live_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    config = write_config(tmp_path, APP)
    return {**config, "TICK_ASSETS_MODE": "live", "TICK_ASSETS_TOKEN_KEY": TOKEN_KEY, **extra}


def test_live_mode_without_token_key_fails_at_load(tmp_path: Path, no_dotenv: Path) -> None:
    env = live_env(tmp_path, **SECRETS, TICK_ASSETS_TOKEN_KEY="")
    msg = settings_error(env, no_dotenv)
    assert "TICK_ASSETS_TOKEN_KEY" in msg and "Fernet.generate_key" in msg


def test_live_mode_missing_secret_names_the_variable_only(tmp_path: Path, no_dotenv: Path) -> None:
    env = live_env(tmp_path, **{k: v for k, v in SECRETS.items() if k != "K_PASSWORD"})
    msg = settings_error(env, no_dotenv)
    assert "K_PASSWORD" in msg and "'main'" in msg and ".env" in msg
    assert "K_SECRET" not in msg
    for value in SECRETS.values():
        assert value not in msg


def test_live_secrets_are_read_and_hidden(tmp_path: Path, no_dotenv: Path) -> None:
    env = live_env(tmp_path, **SECRETS)
    s = load_settings(env, dotenv_path=no_dotenv)
    secrets = kite_app_secrets(s, "main", env)
    assert isinstance(secrets, KiteAppSecrets)
    assert secrets.api_key == SECRETS["K_KEY"] and secrets.user_id == SECRETS["K_USER"]
    assert secrets.api_secret.get_secret_value() == SECRETS["K_SECRET"]
    assert secrets.password.get_secret_value() == SECRETS["K_PASSWORD"]
    assert secrets.totp_seed.get_secret_value() == SECRETS["K_TOTP"]
    shown = " ".join([repr(secrets), str(secrets), f"{secrets}", repr(s), str(s)])
    assert "main" in shown
    for value in SECRETS.values():
        assert value not in shown


def test_secrets_for_unknown_app(tmp_path: Path, no_dotenv: Path) -> None:
    s = load_settings(live_env(tmp_path, **SECRETS), dotenv_path=no_dotenv)
    with pytest.raises(SettingsError, match=r"\[kite.apps.other\]"):
        kite_app_secrets(s, "other", SECRETS)


def test_live_mode_without_apps(tmp_path: Path, no_dotenv: Path) -> None:
    env = {**write_config(tmp_path, ""), "TICK_ASSETS_MODE": "live"}
    assert "[kite.apps.<name>]" in settings_error(env, no_dotenv)


def test_sim_mode_uses_the_simulator_accounts(no_dotenv: Path) -> None:
    from tick_assets.sim.accounts import SIM_APPS

    s = load_settings({}, dotenv_path=no_dotenv)  # the shipped example, sim mode
    for name in s.kite_apps:
        secrets = kite_app_secrets(s, name, {})  # no credentials in the environment
        assert secrets.api_key == SIM_APPS[name].api_key
        assert secrets.totp_seed.get_secret_value() == SIM_APPS[name].totp_seed
        assert SIM_APPS[name].password not in repr(secrets)


def test_sim_mode_app_without_simulator_account(tmp_path: Path, no_dotenv: Path) -> None:
    s = load_settings(write_config(tmp_path, APP), dotenv_path=no_dotenv)
    with pytest.raises(SettingsError, match="'main' has no simulator account"):
        kite_app_secrets(s, "main", {})


# --- .env --------------------------------------------------------------------------------


def write_dotenv(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_dotenv_supplies_values_but_never_overrides_environment(tmp_path: Path) -> None:
    secrets = "".join(f"{k}={v}\n" for k, v in SECRETS.items())
    dotenv = write_dotenv(tmp_path, f"TICK_ASSETS_MODE=sim\nK_KEY=from-dotenv\n{secrets}")
    env = live_env(tmp_path)  # sets TICK_ASSETS_MODE=live, which .env must not override
    s = load_settings(env, dotenv_path=dotenv)
    assert s.mode == "live" and s.dotenv_path == dotenv
    secrets_ = kite_app_secrets(s, "main", {"K_KEY": "from-env"})
    assert secrets_.api_key == "from-env"  # the real environment wins
    assert secrets_.password.get_secret_value() == SECRETS["K_PASSWORD"]  # filled from .env


def test_dotenv_loads_into_os_environ_without_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICK_ASSETS_MODE", "sim")
    monkeypatch.setenv("TICK_ASSETS_TEST_ONLY_DOTENV", "placeholder")
    monkeypatch.delenv("TICK_ASSETS_TEST_ONLY_DOTENV")  # restored (unset) after the test
    monkeypatch.delenv("TICK_ASSETS_CONFIG", raising=False)
    dotenv = write_dotenv(tmp_path, "TICK_ASSETS_MODE=prod\nTICK_ASSETS_TEST_ONLY_DOTENV=yes\n")
    s = load_settings(dotenv_path=dotenv)
    assert s.mode == "sim"
    assert os.environ["TICK_ASSETS_MODE"] == "sim"
    assert os.environ["TICK_ASSETS_TEST_ONLY_DOTENV"] == "yes"


def test_world_readable_dotenv_is_refused(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, "K_SECRET=x\n", mode=0o644)
    msg = settings_error({}, dotenv)
    assert "chmod 600" in msg and str(dotenv) in msg
