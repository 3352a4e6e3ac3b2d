"""The Kite login: HTML pages a browser (or Selenium) fills in, and the JSON login API scripts use.

Browser:  GET connect/login?api_key=..&v=3 -> user id + password form -> TOTP form
          -> session cookie -> GET connect/login again -> 302 to the app's redirect URL with
          ?request_token=<32 chars>&action=login&status=success
Scripts:  POST api/login (user_id, password) -> request_id; POST api/twofa (user_id,
          request_id, twofa_value, twofa_type=totp) -> session cookie; then GET connect/login
          with that cookie as above.
The form ids follow what automation scripts target on the real page (input#userid,
input#password, button[type=submit]; the TOTP input is type=number).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from tick_assets.sim.accounts import app_by_key
from tick_assets.sim.kite.auth import KiteError
from tick_assets.sim.kite.rest import kite_json, success

if TYPE_CHECKING:
    from tick_assets.sim.kite.venue import KiteVenue

SESSION_COOKIE = "kf_session"
_STYLE = "body{font-family:sans-serif;max-width:22em;margin:4em auto}input,button{display:block;margin:.5em 0;width:100%}"


def _page(title: str, body: str) -> web.Response:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html")


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


def _error(message: str) -> str:
    return f"<p class='error' id='error'>{html.escape(message)}</p>" if message else ""


class KiteLogin:
    def __init__(self, venue: KiteVenue, prefix: str = "/kite") -> None:
        self.venue = venue
        self.prefix = prefix

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/connect/login", self.connect_login),
            web.post("/connect/login", self.password_form),
            web.post("/connect/twofa", self.totp_form),
            web.get("/redirect", self.redirect_page),
            *self.api_routes(),
        ]

    def api_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/login", kite_json(self.api_login)),
            web.post("/api/twofa", kite_json(self.api_twofa)),
        ]

    # --- browser pages ------------------------------------------------------------------------

    def _login_form(self, api_key: str, redirect_params: str, message: str = "") -> web.Response:
        action = f"{self.prefix}/connect/login?" + urlencode({"api_key": api_key, "v": "3"})
        return _page(
            "Login to Kite",
            f"<form method='post' action='{html.escape(action)}'>"
            f"<input type='hidden' name='redirect_params' value='{html.escape(redirect_params)}'>"
            "<input type='text' id='userid' name='user_id' placeholder='User ID' autocomplete='username' required>"
            "<input type='password' id='password' name='password' placeholder='Password' required>"
            f"{_error(message)}<button type='submit' class='button-orange'>Login</button></form>",
        )

    def _totp_form(
        self, api_key: str, user_id: str, request_id: str, redirect_params: str, message: str = ""
    ) -> web.Response:
        fields = {
            "api_key": api_key,
            "user_id": user_id,
            "request_id": request_id,
            "redirect_params": redirect_params,
        }
        hidden = "".join(
            f"<input type='hidden' name='{k}' value='{html.escape(v)}'>" for k, v in fields.items()
        )
        return _page(
            "External TOTP",
            f"<form method='post' action='{self.prefix}/connect/twofa'>{hidden}"
            "<input type='number' id='totp' name='twofa_value' label='External TOTP' placeholder='••••••' "
            "autocomplete='one-time-code' minlength='6' maxlength='6' required>"
            f"{_error(message)}<button type='submit' class='button-orange'>Continue</button></form>",
        )

    async def connect_login(self, request: web.Request) -> web.StreamResponse:
        api_key = request.query.get("api_key", "")
        app = app_by_key(api_key)
        if app is None or app not in self.venue.auth.apps.values():
            return _page("Invalid api_key", _error("Invalid `api_key`. Check the app's api_key."))
        redirect_params = request.query.get("redirect_params", "")
        user = self.venue.auth.session_user(request.cookies.get(SESSION_COOKIE))
        if user is None:
            return self._login_form(api_key, redirect_params)
        if user != app.user_id:
            return _page("Not authorised", _error(f"User {user} has not authorised this app."))
        token = self.venue.auth.issue_request_token(api_key, user)
        params = [("request_token", token), ("action", "login"), ("status", "success")]
        params += parse_qsl(redirect_params)
        return _redirect(f"{request.url.origin()}{self.prefix}/redirect?{urlencode(params)}")

    async def password_form(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        api_key = request.query.get("api_key", "") or str(form.get("api_key", ""))
        redirect_params = str(form.get("redirect_params", ""))
        user_id = str(form.get("user_id", "")).strip().upper()
        try:
            request_id = self.venue.auth.login(user_id, str(form.get("password", "")))
        except KiteError as err:
            return self._login_form(api_key, redirect_params, err.message)
        return self._totp_form(api_key, user_id, request_id, redirect_params)

    async def totp_form(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        api_key = str(form.get("api_key", ""))
        user_id = str(form.get("user_id", ""))
        request_id = str(form.get("request_id", ""))
        redirect_params = str(form.get("redirect_params", ""))
        try:
            session = self.venue.auth.twofa(user_id, request_id, str(form.get("twofa_value", "")))
        except KiteError as err:
            if err.error_type == "TwoFAException":
                return self._totp_form(api_key, user_id, request_id, redirect_params, err.message)
            return self._login_form(api_key, redirect_params, err.message)
        query = {"api_key": api_key, "v": "3"}
        if redirect_params:
            query["redirect_params"] = redirect_params
        response = _redirect(f"{self.prefix}/connect/login?{urlencode(query)}")
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Lax", path="/")
        return response

    async def redirect_page(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("request_token", "")
        return _page(
            "Login successful",
            f"<p>request_token: <code id='request_token'>{html.escape(token)}</code></p>",
        )

    # --- JSON login API -----------------------------------------------------------------------

    async def api_login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        user_id = str(form.get("user_id", "")).strip().upper()
        if not user_id or not form.get("password"):
            raise KiteError(400, "InputException", "Missing `user_id` or `password`.")
        request_id = self.venue.auth.login(user_id, str(form["password"]))
        return success(
            {
                "user_id": user_id,
                "request_id": request_id,
                "twofa_type": "totp",
                "twofa_types": ["totp"],
                "twofa_status": "active",
                "profile": {"user_name": f"Sim User {user_id}", "user_shortname": "Sim"},
            }
        )

    async def api_twofa(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if str(form.get("twofa_type", "totp")) != "totp":
            raise KiteError(400, "InputException", "Invalid `twofa_type`; this account uses totp.")
        user_id = str(form.get("user_id", "")).strip().upper()
        session = self.venue.auth.twofa(
            user_id, str(form.get("request_id", "")), str(form.get("twofa_value", ""))
        )
        response = success({"profile": {}})
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Lax", path="/")
        return response
