"""Kite login clients against the simulator: HTTP login API and a real headless Chromium.

The Selenium tests drive Debian's /usr/bin/chromium through /usr/bin/chromedriver. They skip
(saying why) only on a machine without chromedriver and without CI set; under CI they run, so
a missing browser fails the build (.ci/run installs chromium and chromium-driver).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyotp
import pytest
from kiteconnect import KiteConnect

from tick_assets.config import KiteAppSecrets
from tick_assets.defs.kite import resources as kite_resources
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer
from tick_assets.sources.kite.login import (
    CHROMEDRIVER,
    HttpLogin,
    KiteLoginError,
    LoginEndpoints,
    SeleniumLogin,
)

APP = SIM_APPS["nifty500"]
OTHER_SEED = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # valid base32, not the account's seed

needs_browser = pytest.mark.skipif(
    not Path(CHROMEDRIVER).exists() and not os.environ.get("CI"),
    reason=f"{CHROMEDRIVER} is not installed (apt-get install chromium chromium-driver); "
    "under CI this test runs and fails instead",
)


@pytest.fixture(scope="module")
def sim():
    with SimServer(day=date(2026, 11, 20), rate=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def endpoints(sim) -> LoginEndpoints:
    ep = sim.endpoints
    return LoginEndpoints(ep["kite_login"], ep["kite_login_api"], ep["kite_rest"])


def creds(**changes) -> KiteAppSecrets:
    values = dict(
        app="nifty500",
        api_key=APP.api_key,
        user_id=APP.user_id,
        api_secret=APP.api_secret,
        password=APP.password,
        totp_seed=APP.totp_seed,
    )
    values.update(changes)
    return KiteAppSecrets(**values)


def assert_no_secret(text: str, used: KiteAppSecrets) -> None:
    for secret in (
        used.api_key,
        used.api_secret.get_secret_value(),
        used.password.get_secret_value(),
        used.totp_seed.get_secret_value(),
        pyotp.TOTP(used.totp_seed.get_secret_value()).now(),
    ):
        assert secret not in text


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_works(result, sim) -> None:
    kite = KiteConnect(
        APP.api_key, access_token=result.access_token, root=sim.endpoints["kite_rest"]
    )
    assert kite.profile()["user_id"] == APP.user_id
    now = datetime.now(UTC)
    assert now - timedelta(minutes=2) < result.login_time <= now
    assert result.expires_at > now and result.expires_at.astimezone(UTC).tzinfo == UTC
    assert result.access_token not in repr(result)


# ---------------------------------------------------------------- HTTP login API


def test_http_login_gets_a_working_token(sim, endpoints):
    result = HttpLogin(endpoints).login(creds())
    assert result.method == "http" and result.app == "nifty500"
    assert_works(result, sim)


@pytest.mark.parametrize(
    ("changes", "step", "reason"),
    [
        ({"password": "wrong-password"}, "password (api/login)", "Invalid `user_id` or `password`"),
        ({"totp_seed": OTHER_SEED}, "totp (api/twofa)", "Invalid TOTP"),
        ({"api_secret": "wrong-secret-wrong"}, "generate_session", "Invalid `checksum`"),
        ({"api_key": "notanapikey0000"}, "redirect (connect/login)", "without a redirect"),
    ],
)
def test_http_login_failures_name_app_and_step_without_secrets(endpoints, changes, step, reason):
    used = creds(**changes)
    with pytest.raises(KiteLoginError) as err:
        HttpLogin(endpoints).login(used)
    text = str(err.value)
    assert text.startswith(f"Kite login for app 'nifty500' failed at step '{step}")
    assert reason in text
    assert_no_secret(text, used)


def test_http_login_refused_connection(endpoints):
    port = closed_port()
    dead = LoginEndpoints(
        f"http://127.0.0.1:{port}/connect/login",
        f"http://127.0.0.1:{port}/api",
        endpoints.rest_root,
    )
    with pytest.raises(KiteLoginError) as err:
        HttpLogin(dead, timeout=5).login(creds())
    assert "step 'password (api/login)'" in str(err.value)
    assert f"cannot reach http://127.0.0.1:{port}/api/login (ConnectionError)" in str(err.value)


# ---------------------------------------------------------------- Selenium + Chromium


def _shot(err: KiteLoginError, directory: Path) -> Path:
    assert err.screenshot is not None, str(err)
    assert str(err.screenshot) in str(err)
    assert err.screenshot.parent == directory and err.screenshot.is_file()
    assert err.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(err.screenshot.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    return err.screenshot


@needs_browser
def test_real_chromium_logs_in_to_the_simulator(sim, endpoints, tmp_path):
    result = SeleniumLogin(endpoints, tmp_path / "shots").login(creds())
    assert result.method == "selenium"
    assert_works(result, sim)
    assert not (tmp_path / "shots").exists()  # no failure, no screenshot


@needs_browser
@pytest.mark.parametrize(
    ("changes", "step", "reason"),
    [
        ({"password": "wrong-password"}, "password", "Invalid `user_id` or `password`"),
        ({"totp_seed": OTHER_SEED}, "totp", "Invalid TOTP"),
    ],
)
def test_chromium_login_failures_save_a_screenshot(endpoints, tmp_path, changes, step, reason):
    used = creds(**changes)
    shots = tmp_path / "shots"
    with pytest.raises(KiteLoginError) as err:
        SeleniumLogin(endpoints, shots, timeout=10).login(used)
    text = str(err.value)
    assert text.startswith(f"Kite login for app 'nifty500' failed at step '{step}': ")
    assert reason in text
    assert_no_secret(text, used)
    _shot(err.value, shots)


class _ChangedLayout(BaseHTTPRequestHandler):
    """A login page whose user id field was renamed (as when Kite redesigns the page)."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = (
            b"<!doctype html><html><body><form method='post'>"
            b"<input type='text' id='user_id_v2' name='user_id'>"
            b"<input type='password' id='password' name='password'>"
            b"<button type='submit'>Login</button></form></body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        return


@needs_browser
def test_chromium_reports_a_missing_element_when_the_layout_changed(endpoints, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChangedLayout)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        changed = LoginEndpoints(f"{base}/connect/login", f"{base}/api", endpoints.rest_root)
        with pytest.raises(KiteLoginError) as err:
            SeleniumLogin(changed, tmp_path, timeout=4).login(creds())
    finally:
        server.shutdown()
        server.server_close()
    text = str(err.value)
    assert "failed at step 'login form'" in text
    assert "input#userid" in text and "layout" in text
    assert_no_secret(text, creds())
    _shot(err.value, tmp_path)


@needs_browser
def test_chromium_reports_a_refused_connection(endpoints, tmp_path):
    port = closed_port()
    dead = LoginEndpoints(
        f"http://127.0.0.1:{port}/connect/login",
        f"http://127.0.0.1:{port}/api",
        endpoints.rest_root,
    )
    with pytest.raises(KiteLoginError) as err:
        SeleniumLogin(dead, tmp_path, timeout=10).login(creds())
    text = str(err.value)
    assert "failed at step 'open login page'" in text
    assert f"cannot reach http://127.0.0.1:{port}/connect/login (ERR_CONNECTION_REFUSED)" in text
    _shot(err.value, tmp_path)


def test_missing_browser_is_a_clear_error(endpoints, tmp_path):
    login = SeleniumLogin(endpoints, tmp_path, chromium=str(tmp_path / "no-chromium"))
    with pytest.raises(KiteLoginError) as err:
        login.login(creds())
    assert "step 'start browser'" in str(err.value)
    assert 'login_method = "http"' in str(err.value)


def test_resource_falls_back_to_http_without_a_browser(monkeypatch, tmp_path):
    kite = KiteResource(
        app_names=["indices", "nifty500"],
        login_methods={"indices": "selenium", "nifty500": "http"},
        home=str(tmp_path),
    )
    monkeypatch.setattr(kite_resources, "browser_available", lambda: False)
    method, note = kite.login_method("indices")
    assert method == "http" and "chromedriver is missing" in note
    assert kite.login_method("nifty500") == ("http", None)
    result, note = kite.login("indices", tmp_path / "shots")
    assert result.method == "http" and note
    monkeypatch.setattr(kite_resources, "browser_available", lambda: True)
    assert kite.login_method("indices") == ("selenium", None)
