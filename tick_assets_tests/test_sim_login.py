"""The Kite login web pages, walked with requests the way a browser (or Selenium) would."""

from __future__ import annotations

from datetime import date
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pyotp
import pytest
import requests
from kiteconnect import KiteConnect

from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer

APP = SIM_APPS["nifty500"]


class _Forms(HTMLParser):
    """Collects each form's action and its inputs/buttons (attributes as dicts)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.error = ""
        self._in_error = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "inputs": [], "buttons": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(a)
        elif a.get("class") == "error":
            self._in_error = True

    def handle_data(self, data):
        if self._in_error:
            self.error += data
            self._in_error = False


def _parse(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


def _submit(session: requests.Session, page: requests.Response, values: dict) -> requests.Response:
    form = _parse(page.text).forms[0]
    data = {i["name"]: i.get("value", "") for i in form["inputs"] if "name" in i}
    data.update(values)
    return session.post(urljoin(page.url, form["action"]), data=data, timeout=30)


@pytest.fixture(scope="module")
def server():
    with SimServer(day=date(2026, 11, 20), rate=0) as srv:
        yield srv


def _login_page(server, session: requests.Session) -> requests.Response:
    return session.get(
        server.endpoints["kite_login"], params={"api_key": APP.api_key, "v": 3}, timeout=30
    )


def test_form_flow_redirects_with_a_request_token(server):
    session = requests.Session()
    page = _login_page(server, session)
    form = _parse(page.text).forms[0]
    ids = {i.get("id"): i for i in form["inputs"]}
    assert ids["userid"]["type"] == "text" and ids["password"]["type"] == "password"
    assert form["buttons"][0]["type"] == "submit"

    totp_page = _submit(session, page, {"user_id": APP.user_id, "password": APP.password})
    totp_form = _parse(totp_page.text).forms[0]
    visible = [i for i in totp_form["inputs"] if i.get("type") in ("text", "number")]
    assert len(visible) == 1 and visible[0]["type"] == "number"
    assert totp_form["buttons"][0]["type"] == "submit"

    done = _submit(session, totp_page, {visible[0]["name"]: pyotp.TOTP(APP.totp_seed).now()})
    assert done.status_code == 200 and [r.status_code for r in done.history] == [302, 302]
    query = parse_qs(urlsplit(done.url).query)
    assert urlsplit(done.url).path == "/kite/redirect"
    assert query["action"] == ["login"] and query["status"] == ["success"]
    token = query["request_token"][0]
    assert len(token) == 32 and token.isalnum()

    kite = KiteConnect(APP.api_key, root=server.endpoints["kite_rest"])
    assert kite.generate_session(token, APP.api_secret)["user_id"] == APP.user_id

    # the session cookie makes the next login a straight redirect, with a fresh token
    again = _login_page(server, session)
    assert again.history and parse_qs(urlsplit(again.url).query)["request_token"][0] != token


def test_wrong_password_and_wrong_totp_show_errors(server):
    session = requests.Session()
    page = _login_page(server, session)
    wrong = _submit(session, page, {"user_id": APP.user_id, "password": "wrong"})
    parsed = _parse(wrong.text)
    assert "Invalid" in parsed.error
    assert any(i.get("id") == "userid" for i in parsed.forms[0]["inputs"])

    totp_page = _submit(session, wrong, {"user_id": APP.user_id, "password": APP.password})
    bad = _submit(session, totp_page, {"twofa_value": "000000"})
    parsed = _parse(bad.text)
    assert "Invalid TOTP" in parsed.error and not bad.history
    assert "request_token" not in bad.url


def test_unknown_api_key_gets_no_form(server):
    page = requests.get(
        server.endpoints["kite_login"], params={"api_key": "nope", "v": 3}, timeout=30
    )
    parsed = _parse(page.text)
    assert not parsed.forms and "api_key" in parsed.error


def test_login_api_at_the_login_host_root(server):
    """Scripts written for kite.zerodha.com post to /api/login on the login page's host."""
    root = urljoin(server.endpoints["kite_login"], "/api/login")
    response = requests.post(
        root, data={"user_id": APP.user_id, "password": APP.password}, timeout=30
    )
    assert response.status_code == 200 and response.json()["data"]["twofa_type"] == "totp"
