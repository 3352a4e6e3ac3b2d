"""Kite login state: password + TOTP logins, request tokens, access tokens and their expiry.

Wall time bounds the short-lived things a human or script races against (pending 2FA, the
request_token); the simulated clock bounds access tokens, which expire at 06:00 IST after
they were issued, as Kite's do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp

from tick_assets.calendars import IST
from tick_assets.sim.accounts import SIM_APPS, SimApp, app_by_key
from tick_assets.sim.clock import SimClock
from tick_assets.sources.kite.limits import ACCESS_TOKEN_EXPIRY_IST, REQUEST_TOKEN_TTL_S

PENDING_TWOFA_TTL_S = 300.0
_ALNUM = string.ascii_letters + string.digits


def random_token(length: int = 32) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


class KiteError(Exception):
    """An error Kite reports as {"status": "error", "message": ..., "error_type": ...}."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message

    def body(self) -> dict:
        return {
            "status": "error",
            "message": self.message,
            "data": None,
            "error_type": self.error_type,
        }


@dataclass
class Grant:
    api_key: str
    user_id: str
    access_token: str
    public_token: str
    enctoken: str
    login_time: float  # simulated epoch
    expires_at: float  # simulated epoch
    revoked: bool = False


def next_expiry(sim_epoch: float) -> float:
    """The first 06:00 IST strictly after `sim_epoch`."""
    now = datetime.fromtimestamp(sim_epoch, IST)
    expiry = datetime.combine(now.date(), ACCESS_TOKEN_EXPIRY_IST, tzinfo=IST)
    if expiry <= now:
        expiry += timedelta(days=1)
    return expiry.timestamp()


class KiteAuth:
    """All login and token state of the Kite simulator (used from the event-loop thread)."""

    def __init__(self, clock: SimClock, apps: dict[str, SimApp] | None = None) -> None:
        self.clock = clock
        self.apps = apps or SIM_APPS
        self._pending: dict[str, tuple[str, float]] = {}  # request_id -> (user_id, deadline)
        self._sessions: dict[str, str] = {}  # browser session id -> user_id
        self._request_tokens: dict[str, tuple[str, str, float]] = {}  # -> (api_key, user, deadline)
        self._grants: dict[str, Grant] = {}

    # --- password and TOTP ---------------------------------------------------------------------

    def _user(self, user_id: str) -> SimApp | None:
        return next((a for a in self.apps.values() if a.user_id == user_id), None)

    def login(self, user_id: str, password: str) -> str:
        """Check the password; return a request_id for the 2FA step."""
        app = self._user(user_id)
        if app is None or not hmac.compare_digest(app.password, password):
            raise KiteError(403, "InputException", "Invalid `user_id` or `password`.")
        request_id = random_token(64)
        self._pending[request_id] = (user_id, time.monotonic() + PENDING_TWOFA_TTL_S)
        return request_id

    def twofa(self, user_id: str, request_id: str, code: str) -> str:
        """Check the TOTP for a pending login; return a new browser session id."""
        pending = self._pending.get(request_id)
        if pending is None or pending[0] != user_id or pending[1] < time.monotonic():
            raise KiteError(
                403, "TokenException", "Login session expired or invalid. Log in again."
            )
        app = self._user(user_id)
        assert app is not None
        if not pyotp.TOTP(app.totp_seed).verify(str(code).strip(), valid_window=1):
            raise KiteError(403, "TwoFAException", "Invalid TOTP. Check the time on your device.")
        del self._pending[request_id]
        session = random_token(48)
        self._sessions[session] = user_id
        return session

    def session_user(self, session: str | None) -> str | None:
        return self._sessions.get(session) if session else None

    # --- request and access tokens -------------------------------------------------------------

    def issue_request_token(self, api_key: str, user_id: str) -> str:
        token = random_token(32)
        self._request_tokens[token] = (api_key, user_id, time.monotonic() + REQUEST_TOKEN_TTL_S)
        return token

    def redeem(self, api_key: str, request_token: str, checksum: str) -> Grant:
        """POST /session/token: exchange a request_token (single use) for an access token."""
        app = app_by_key(api_key)
        if app is None or app not in self.apps.values():
            raise KiteError(403, "TokenException", "Invalid `api_key`.")
        expected = hashlib.sha256((api_key + request_token + app.api_secret).encode()).hexdigest()
        if not hmac.compare_digest(expected, checksum or ""):
            raise KiteError(403, "TokenException", "Invalid `checksum`.")
        issued = self._request_tokens.pop(request_token, None)
        if issued is None or issued[0] != api_key or issued[2] < time.monotonic():
            raise KiteError(403, "TokenException", "Token is invalid or has expired.")
        now = self.clock.now()
        grant = Grant(
            api_key=api_key,
            user_id=issued[1],
            access_token=random_token(32),
            public_token=random_token(32),
            enctoken=random_token(64),
            login_time=now,
            expires_at=next_expiry(now),
        )
        self._grants[grant.access_token] = grant
        return grant

    def check(self, api_key: str, access_token: str) -> Grant | None:
        """The grant behind a key:token pair, or None when unknown, revoked or expired."""
        grant = self._grants.get(access_token)
        if grant is None or grant.revoked or grant.api_key != api_key:
            return None
        if self.clock.now() >= grant.expires_at:
            return None
        return grant

    def check_header(self, authorization: str | None) -> Grant:
        """Validate `Authorization: token api_key:access_token` or raise a 403 TokenException."""
        scheme, _, credentials = (authorization or "").partition(" ")
        api_key, _, access_token = credentials.partition(":")
        grant = None
        if scheme.lower() == "token" and api_key and access_token:
            grant = self.check(api_key, access_token)
        if grant is None:
            raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return grant

    def invalidate(self, api_key: str, access_token: str) -> bool:
        grant = self._grants.get(access_token)
        if grant is None or grant.api_key != api_key:
            return False
        grant.revoked = True
        return True

    def expire(self, access_token: str | None = None) -> int:
        """Expire one access token (or all); returns how many were live and now are not."""
        now = self.clock.now()
        count = 0
        for token, grant in self._grants.items():
            if access_token is not None and token != access_token:
                continue
            if not grant.revoked and grant.expires_at > now:
                count += 1
            grant.expires_at = min(grant.expires_at, now)
        return count
