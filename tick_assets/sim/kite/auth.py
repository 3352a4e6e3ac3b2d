"""Kite login state: password + TOTP logins, request tokens, access tokens and their expiry.

Wall time bounds the short-lived things a human or script races against (pending 2FA, the
request_token); the simulated clock bounds access tokens, which expire at 06:00 IST after
they were issued, as Kite's do.

Access tokens are stateless: 32 base62 characters packing the expiry, the login time, a nonce
and an HMAC-SHA256 (keyed by the app's api_secret, over api_key and the rest). Any simulator
instance, in this process or another, accepts a token another instance issued, as every Kite
server accepts Kite's: the platform starts one simulator per partition day and logs in on one
of them. A token is refused once the validating instance's clock reaches its expiry. Logout
(DELETE /session/token) and the control endpoint's expire mark a token dead for every instance
in the process (a process-wide set); the sim apps' secrets are public test values, so these
tokens protect nothing real.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import threading
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


# --- stateless access tokens -------------------------------------------------------------------

TOKEN_LENGTH = 32
_MAC_BYTES = 10
_NONCE_BYTES = 5
_TOKEN_BYTES = 4 + 4 + _NONCE_BYTES + _MAC_BYTES  # expiry, login, nonce, mac: 23 bytes
_MAC_LABEL = b"tick-assets sim kite access token v1\0"
_dead_lock = threading.Lock()
_dead_tokens: set[str] = set()  # revoked or force-expired, for every instance in the process


def _b62(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(TOKEN_LENGTH):
        n, r = divmod(n, 62)
        out.append(_ALNUM[r])
    return "".join(reversed(out))


def _unb62(text: str) -> bytes | None:
    if len(text) != TOKEN_LENGTH:
        return None
    n = 0
    for ch in text:
        i = _ALNUM.find(ch)
        if i < 0:
            return None
        n = n * 62 + i
    if n >> (8 * _TOKEN_BYTES):
        return None
    return n.to_bytes(_TOKEN_BYTES, "big")


def _mac(app: SimApp, body: bytes) -> bytes:
    key = hashlib.sha256(_MAC_LABEL + app.api_secret.encode()).digest()
    return hmac.new(key, app.api_key.encode() + b"\0" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def mint_access_token(app: SimApp, login_time: float, expires_at: float) -> str:
    """A signed access token for ``app`` valid until ``expires_at`` (simulated epoch)."""
    body = (
        int(expires_at).to_bytes(4, "big")
        + int(login_time).to_bytes(4, "big")
        + secrets.token_bytes(_NONCE_BYTES)
    )
    return _b62(body + _mac(app, body))


def read_access_token(app: SimApp, token: str) -> tuple[float, float] | None:
    """(login_time, expires_at) of a token signed for ``app``; None if forged or malformed."""
    raw = _unb62(token)
    if raw is None:
        return None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(app, body)):
        return None
    return float(int.from_bytes(body[4:8], "big")), float(int.from_bytes(body[:4], "big"))


def _is_dead(token: str) -> bool:
    with _dead_lock:
        return token in _dead_tokens


def _kill(token: str) -> None:
    with _dead_lock:
        _dead_tokens.add(token)


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
        self._known: dict[str, str] = {}  # access tokens issued or accepted here -> api_key

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
        expires_at = next_expiry(now)
        grant = Grant(
            api_key=api_key,
            user_id=issued[1],
            access_token=mint_access_token(app, now, expires_at),
            public_token=random_token(32),
            enctoken=random_token(64),
            login_time=float(int(now)),
            expires_at=float(int(expires_at)),
        )
        self._known[grant.access_token] = api_key
        return grant

    def _grant(self, api_key: str, access_token: str) -> Grant | None:
        """The grant a well-signed token of a known app stands for (expired or not)."""
        app = app_by_key(api_key)
        if app is None or app not in self.apps.values():
            return None
        times = read_access_token(app, access_token)
        if times is None:
            return None
        login_time, expires_at = times
        return Grant(
            api_key=api_key,
            user_id=app.user_id,
            access_token=access_token,
            public_token="",
            enctoken="",
            login_time=login_time,
            expires_at=expires_at,
        )

    def check(self, api_key: str, access_token: str) -> Grant | None:
        """The grant behind a key:token pair, or None when forged, revoked or expired."""
        grant = self._grant(api_key, access_token)
        if grant is None or _is_dead(access_token) or self.clock.now() >= grant.expires_at:
            return None
        self._known.setdefault(access_token, api_key)
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
        """DELETE /session/token: the token is dead everywhere in this process."""
        if self._grant(api_key, access_token) is None:
            return False
        _kill(access_token)
        return True

    def expire(self, access_token: str | None = None) -> int:
        """Expire one access token (or all issued or accepted here); returns how many were
        live and now are not."""
        if access_token is not None:
            targets = {access_token: self._known.get(access_token)}
        else:
            targets = dict(self._known)
        count = 0
        for token, api_key in targets.items():
            keys = [api_key] if api_key else [a.api_key for a in self.apps.values()]
            if any(self.check(key, token) is not None for key in keys):
                count += 1
            if any(self._grant(key, token) is not None for key in keys):
                _kill(token)
        return count
