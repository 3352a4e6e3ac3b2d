"""Helpers for tests and demos that drive the simulator the way a user's script would.

`request_token` walks Kite's HTTP login (api/login -> api/twofa -> connect/login redirect);
`access_token` then exchanges it with kiteconnect's own `generate_session`.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import requests
from kiteconnect import KiteConnect

from tick_assets.sim.accounts import SimApp


class SimLoginFailed(RuntimeError):
    """A login step against the simulator did not succeed (message names the step)."""


def request_token(
    endpoints: dict[str, str], app: SimApp, session: requests.Session | None = None
) -> str:
    http = session or requests.Session()
    api = endpoints["kite_login_api"]
    r = http.post(
        f"{api}/login", data={"user_id": app.user_id, "password": app.password}, timeout=30
    )
    if r.status_code != 200:
        raise SimLoginFailed(f"api/login for {app.name}: HTTP {r.status_code} {r.text[:200]}")
    request_id = r.json()["data"]["request_id"]
    totp = pyotp.TOTP(app.totp_seed).now()
    form = {
        "user_id": app.user_id,
        "request_id": request_id,
        "twofa_value": totp,
        "twofa_type": "totp",
    }
    r = http.post(f"{api}/twofa", data=form, timeout=30)
    if r.status_code != 200:
        raise SimLoginFailed(f"api/twofa for {app.name}: HTTP {r.status_code} {r.text[:200]}")
    query = urlencode({"api_key": app.api_key, "v": "3"})
    r = http.get(f"{endpoints['kite_login']}?{query}", timeout=30, allow_redirects=False)
    location = r.headers.get("Location", "")
    tokens = parse_qs(urlsplit(location).query).get("request_token")
    if r.status_code != 302 or not tokens:
        raise SimLoginFailed(
            f"connect/login for {app.name}: HTTP {r.status_code}, no request_token"
        )
    return tokens[0]


def access_token(endpoints: dict[str, str], app: SimApp) -> str:
    kite = KiteConnect(app.api_key, root=endpoints["kite_rest"])
    return kite.generate_session(request_token(endpoints, app), app.api_secret)["access_token"]


def ws_url(endpoints: dict[str, str], app: SimApp, token: str) -> str:
    """The URL KiteTicker builds: root?api_key=..&access_token=.."""
    return f"{endpoints['kite_ws']}?api_key={app.api_key}&access_token={token}"
