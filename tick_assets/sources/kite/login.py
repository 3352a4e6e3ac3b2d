"""Kite Connect login clients: user id + password + TOTP -> request_token -> access_token.

Two ways, as people automate it (shared/reference/kite.md §3.3):
- ``SeleniumLogin`` drives headless Debian Chromium through the login page (input#userid,
  input#password, button[type=submit]) and the TOTP page (the number/text input), then reads
  ``request_token`` from the URL the browser is redirected to. Selenium is pointed at
  /usr/bin/chromedriver and /usr/bin/chromium, so Selenium Manager never downloads a driver.
- ``HttpLogin`` posts to the login and 2FA API (``api/login``, ``api/twofa``) with a
  requests.Session, then follows ``connect/login`` redirects without fetching the app's own
  redirect URL (which usually does not exist) until one carries ``request_token``.
Both then call kiteconnect's own ``KiteConnect.generate_session``.

Every failure is a ``KiteLoginError`` naming the app and the step, with any credential value
scrubbed from the text; on the Selenium path a screenshot of the page is saved (owner-only)
and its path is in the message. The access token is in ``LoginResult.access_token`` only
(its repr hides it); it expires at 06:00 IST the next day (``kite_token_expiry``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit
from zoneinfo import ZoneInfo

import pyotp
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from tick_assets.sources.kite.limits import ACCESS_TOKEN_EXPIRY_IST

IST = ZoneInfo("Asia/Kolkata")
LoginMethod = Literal["selenium", "http"]
LOGIN_METHODS: tuple[str, ...] = ("selenium", "http")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
MAX_REDIRECTS = 10
_REQUEST_TOKEN_RE = re.compile(r"[?&]request_token=([A-Za-z0-9]+)")


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


class AppCredentials(Protocol):
    """What a login needs (tick_assets.config.KiteAppSecrets has exactly these)."""

    app: str
    api_key: str
    user_id: str
    api_secret: Secret
    password: Secret
    totp_seed: Secret


@dataclass(frozen=True)
class LoginEndpoints:
    """Where to log in: the connect/login page, the login API base, the REST root."""

    login_url: str  # e.g. https://kite.zerodha.com/connect/login
    login_api: str  # e.g. https://kite.zerodha.com/api  (api/login, api/twofa)
    rest_root: str  # e.g. https://api.kite.trade  (session/token)

    @classmethod
    def live(cls, login_url: str, api_root: str) -> LoginEndpoints:
        parts = urlsplit(login_url)
        return cls(login_url, f"{parts.scheme}://{parts.netloc}/api", api_root)


@dataclass(frozen=True)
class LoginResult:
    app: str
    access_token: str = field(repr=False)
    user_id: str
    login_time: datetime  # UTC, when the session was generated
    expires_at: datetime  # UTC, 06:00 IST the next day
    method: str


class KiteLoginError(RuntimeError):
    """A login failed; the message names the app and the step and holds no credential."""

    def __init__(
        self, app: str, step: str, reason: str, screenshot: Path | str | None = None
    ) -> None:
        """``screenshot``: the saved page (a Path), or why none was saved (a str)."""
        text = f"Kite login for app {app!r} failed at step '{step}': {reason}"
        if isinstance(screenshot, Path):
            text += f" (screenshot of the page: {screenshot})"
        elif screenshot:
            text += f" ({screenshot})"
        super().__init__(text)
        self.app, self.step, self.reason = app, step, reason
        self.screenshot = screenshot if isinstance(screenshot, Path) else None


def kite_token_expiry(login_time: datetime) -> datetime:
    """06:00 IST after ``login_time`` (the same day if logged in before 06:00), in UTC."""
    local = login_time.astimezone(IST)
    expiry = datetime.combine(local.date(), ACCESS_TOKEN_EXPIRY_IST, tzinfo=IST)
    if expiry <= local:
        expiry += timedelta(days=1)
    return expiry.astimezone(UTC)


def _secret_values(creds: AppCredentials) -> list[str]:
    values = [
        creds.api_key,
        creds.api_secret.get_secret_value(),
        creds.password.get_secret_value(),
        creds.totp_seed.get_secret_value(),
    ]
    return sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value (and any request/access token) replaced by ***."""
    for value in secrets:
        text = text.replace(value, "***")
    text = re.sub(r"(request_token|access_token|api_key|enctoken)=[^&\s'\"]+", r"\1=***", text)
    return text


def _where(url: str) -> str:
    """A URL without its query (query strings carry api_key and tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def request_token_from_url(url: str) -> str | None:
    """The request_token query parameter of a redirect URL, if there is one."""
    values = parse_qs(urlsplit(url).query).get("request_token")
    return values[0] if values else None


def _connect_url(endpoints: LoginEndpoints, creds: AppCredentials) -> str:
    return f"{endpoints.login_url}?{urlencode({'api_key': creds.api_key, 'v': '3'})}"


# --- session (both paths) ---------------------------------------------------------------------


def generate_session(
    creds: AppCredentials,
    request_token: str,
    endpoints: LoginEndpoints,
    method: str,
    timeout: float = 30,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> LoginResult:
    """Exchange the request_token with kiteconnect's own generate_session."""
    step = "generate_session (POST session/token)"
    kite = KiteConnect(api_key=creds.api_key, root=endpoints.rest_root, timeout=timeout)
    try:
        data = kite.generate_session(request_token, creds.api_secret.get_secret_value())
    except kite_exceptions.KiteException as exc:
        hint = " (is the app's api_secret right?)" if "checksum" in str(exc).lower() else ""
        raise KiteLoginError(
            creds.app, step, scrub(f"Kite refused it: {exc}{hint}", _secret_values(creds))
        ) from None
    except requests.RequestException as exc:
        raise KiteLoginError(
            creds.app,
            step,
            f"cannot reach {_where(endpoints.rest_root)} ({type(exc).__name__})",
        ) from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not token:
        raise KiteLoginError(creds.app, step, "the response has no access_token")
    login_time = now()
    return LoginResult(
        app=creds.app,
        access_token=str(token),
        user_id=str(data.get("user_id") or creds.user_id),
        login_time=login_time,
        expires_at=kite_token_expiry(login_time),
        method=method,
    )


# --- HTTP --------------------------------------------------------------------------------------


class HttpLogin:
    """Login through Kite's login and 2FA API with one requests.Session (no browser)."""

    method = "http"

    def __init__(self, endpoints: LoginEndpoints, timeout: float = 30) -> None:
        self.endpoints = endpoints
        self.timeout = timeout

    def _post(self, http: requests.Session, creds: AppCredentials, step: str, path: str, form):
        url = f"{self.endpoints.login_api}/{path}"
        try:
            response = http.post(url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise KiteLoginError(
                creds.app, step, f"cannot reach {_where(url)} ({type(exc).__name__})"
            ) from None
        body: dict = {}
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = {}
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("message") or response.text[:200] or "no message"
            kind = body.get("error_type", "")
            raise KiteLoginError(
                creds.app,
                step,
                scrub(
                    f"HTTP {response.status_code} {kind}: {detail}".replace("  ", " "),
                    _secret_values(creds),
                ),
            )
        return body.get("data") or {}

    def request_token(self, creds: AppCredentials) -> str:
        with requests.Session() as http:
            data = self._post(
                http,
                creds,
                "password (api/login)",
                "login",
                {"user_id": creds.user_id, "password": creds.password.get_secret_value()},
            )
            request_id = data.get("request_id")
            if not request_id:
                raise KiteLoginError(creds.app, "password (api/login)", "no request_id returned")
            totp = pyotp.TOTP(creds.totp_seed.get_secret_value()).now()
            self._post(
                http,
                creds,
                "totp (api/twofa)",
                "twofa",
                {
                    "user_id": creds.user_id,
                    "request_id": request_id,
                    "twofa_value": totp,
                    "twofa_type": "totp",
                },
            )
            return self._follow(http, creds)

    def _follow(self, http: requests.Session, creds: AppCredentials) -> str:
        """GET connect/login and follow redirects until one carries request_token."""
        step = "redirect (connect/login)"
        url = _connect_url(self.endpoints, creds)
        for _ in range(MAX_REDIRECTS):
            try:
                response = http.get(url, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise KiteLoginError(
                    creds.app, step, f"cannot reach {_where(url)} ({type(exc).__name__})"
                ) from None
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                raise KiteLoginError(
                    creds.app,
                    step,
                    f"{_where(url)} answered HTTP {response.status_code} without a redirect "
                    "to the app (is the app's api_key right, and the user authorised for it?)",
                )
            url = urljoin(url, location)
            token = request_token_from_url(url)
            if token:
                return token  # the app's redirect URL itself is never fetched
        raise KiteLoginError(creds.app, step, f"no request_token after {MAX_REDIRECTS} redirects")

    def login(self, creds: AppCredentials) -> LoginResult:
        token = self.request_token(creds)
        return generate_session(creds, token, self.endpoints, self.method, self.timeout)


# --- Selenium ----------------------------------------------------------------------------------

USERID = "input#userid"
PASSWORD = "input#password"
SUBMIT = "button[type='submit']"
TOTP = "form input[type='number'], form input[type='text'][autocomplete='one-time-code']"
PAGE_ERROR = ".error, #error, .su-message.error"


def browser_available() -> bool:
    """Debian's chromium and chromium-driver are installed where SeleniumLogin looks."""
    return Path(CHROMEDRIVER).is_file() and Path(CHROMIUM).is_file()


class SeleniumLogin:
    """Login by driving headless Chromium through the login and TOTP pages."""

    method = "selenium"

    def __init__(
        self,
        endpoints: LoginEndpoints,
        screenshot_dir: Path,
        timeout: float = 20,
        chromium: str = CHROMIUM,
        chromedriver: str = CHROMEDRIVER,
    ) -> None:
        self.endpoints = endpoints
        self.screenshot_dir = Path(screenshot_dir)
        self.timeout = timeout  # for each element or redirect to appear
        self.page_load_timeout = max(timeout, 30.0)
        self.chromium, self.chromedriver = chromium, chromedriver

    def _driver(self, app: str, profile: str):
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        if not (Path(self.chromedriver).is_file() and Path(self.chromium).is_file()):
            raise KiteLoginError(
                app,
                "start browser",
                f"{self.chromium} or {self.chromedriver} is not installed (Debian: apt-get "
                'install chromium chromium-driver), or set login_method = "http" for this app',
            )
        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        try:
            driver = webdriver.Chrome(
                service=Service(executable_path=self.chromedriver), options=options
            )
        except WebDriverException as exc:
            raise KiteLoginError(
                app, "start browser", f"chromium did not start: {exc.msg or type(exc).__name__}"
            ) from None
        driver.set_page_load_timeout(self.page_load_timeout)
        return driver

    def _screenshot(self, driver, app: str, step: str) -> Path | str:
        """Save the page as PNG (owner-only) and say where, or why there is none."""
        from selenium.common.exceptions import WebDriverException

        directory = self.screenshot_dir
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = directory / f"{app}-{slug}-{stamp}.png"
        try:
            png = driver.get_screenshot_as_png()
        except WebDriverException as exc:
            return f"no screenshot: the browser could not take one ({type(exc).__name__})"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        return path

    def request_token(self, creds: AppCredentials) -> str:
        profile = tempfile.mkdtemp(prefix="tick-assets-chromium-")  # a fresh profile per login
        try:
            driver = self._driver(creds.app, profile)
            try:
                return self._walk(driver, creds)
            finally:
                driver.quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    def _fail(self, driver, creds: AppCredentials, step: str, reason: str) -> KiteLoginError:
        shot = self._screenshot(driver, creds.app, step)
        return KiteLoginError(creds.app, step, scrub(reason, _secret_values(creds)), shot)

    def _wait(self, driver, creds: AppCredentials, step: str, what: str, selectors, want_token):
        """Poll until a displayed element matches one of ``selectors`` (name -> CSS), or (with
        ``want_token``) the URL carries request_token. Returns (name, element or token)."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if want_token:
                token = request_token_from_url(driver.current_url)
                if token:
                    return "token", token
            for name, css in selectors.items():
                try:
                    shown = [
                        e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()
                    ]
                except StaleElementReferenceException:  # the page is navigating; look again
                    shown = []
                if shown:
                    return name, shown[0]
            time.sleep(0.1)
        raise self._fail(
            driver,
            creds,
            step,
            f"{what} did not appear within {self.timeout:.0f}s on {_where(driver.current_url)}"
            " (the page layout may have changed)",
        )

    def _walk(self, driver, creds: AppCredentials) -> str:
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.common.by import By

        step = "open login page"
        url = _connect_url(self.endpoints, creds)
        try:
            driver.get(url)
        except TimeoutException:
            raise self._fail(
                driver,
                creds,
                step,
                f"{_where(url)} did not load within {self.page_load_timeout:.0f}s",
            ) from None
        except WebDriverException as exc:
            net = re.search(r"net::(ERR_[A-Z_]+)", exc.msg or "")
            reason = (
                f"cannot reach {_where(url)} ({net.group(1)})"
                if net
                else (f"{_where(url)}: {(exc.msg or type(exc).__name__).splitlines()[0]}")
            )
            raise self._fail(driver, creds, step, reason) from None
        if str(driver.execute_script("return document.documentURI")).startswith("chrome-error:"):
            code = driver.execute_script(
                "var e = document.querySelector('.error-code'); return e ? e.textContent : ''"
            )
            raise self._fail(
                driver, creds, step, f"cannot reach {_where(url)} ({code or 'network error'})"
            )

        step = "login form"
        _, userid = self._wait(
            driver, creds, step, "the user id field (input#userid)", {"userid": USERID}, False
        )
        elements = {}
        for css in (PASSWORD, SUBMIT):
            found = driver.find_elements(By.CSS_SELECTOR, css)
            if not found:
                raise self._fail(
                    driver,
                    creds,
                    step,
                    f"element {css} is missing from the login page (the page layout changed)",
                )
            elements[css] = found[0]
        userid.send_keys(creds.user_id)
        elements[PASSWORD].send_keys(creds.password.get_secret_value())
        elements[SUBMIT].click()

        step = "password"
        name, element = self._wait(
            driver,
            creds,
            step,
            "the TOTP field or an error message",
            {"totp": TOTP, "error": PAGE_ERROR},
            False,
        )
        if name == "error":
            raise self._fail(driver, creds, step, f"Kite said: {element.text.strip()}")

        step = "totp"
        element.send_keys(pyotp.TOTP(creds.totp_seed.get_secret_value()).now())
        submits = driver.find_elements(By.CSS_SELECTOR, SUBMIT)
        if not submits:
            raise self._fail(driver, creds, step, f"element {SUBMIT} is missing from the TOTP page")
        submits[0].click()
        name, found = self._wait(
            driver, creds, step, "the redirect with request_token", {"error": PAGE_ERROR}, True
        )
        if name == "error":
            raise self._fail(driver, creds, step, f"Kite said: {found.text.strip()}")
        return str(found)

    def login(self, creds: AppCredentials) -> LoginResult:
        token = self.request_token(creds)
        return generate_session(creds, token, self.endpoints, self.method)


def login(
    creds: AppCredentials,
    method: str,
    endpoints: LoginEndpoints,
    screenshot_dir: Path,
    timeout: float = 30,
) -> LoginResult:
    """Log ``creds`` in with ``method`` ("selenium" or "http")."""
    if method == "selenium":
        return SeleniumLogin(endpoints, screenshot_dir, timeout=min(timeout, 30)).login(creds)
    if method == "http":
        return HttpLogin(endpoints, timeout=timeout).login(creds)
    raise ValueError(f"login_method {method!r} is not one of {', '.join(LOGIN_METHODS)}")
