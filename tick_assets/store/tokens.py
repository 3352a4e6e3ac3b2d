"""The access-token store: each app's current token, encrypted at rest, with its expiry.

One JSON file per mode under ``<TICK_ASSETS_HOME>/secrets/`` (directory 0700, file 0600):
``tokens-sim.json`` / ``tokens-live.json``. Per app it holds the login time, the expiry and
the login method in clear (so a status view needs no key) and a Fernet ciphertext of the whole
record; reads trust only the ciphertext, so an edited clear field cannot extend a token.

The Fernet key comes from the environment variable ``TICK_ASSETS_TOKEN_KEY`` (generate one
with ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``).
In sim mode, when it is unset, a key is generated once into ``secrets/token-key-sim`` (0600);
in live mode a missing key is an error, because a key kept next to the tokens protects nothing.

Writers (one login run per app, possibly in parallel processes) serialise on a lock file and
replace the file atomically. Nothing here logs or prints a token: ``TokenRecord``'s repr and
``metadata()`` show the app, the login time, the expiry and the method only.
Dagster-free and venue-agnostic (the Kite expiry rule lives in sources/kite/login.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from cryptography.fernet import Fernet, InvalidToken

try:  # POSIX advisory locks; the platform targets Linux/macOS
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TOKEN_KEY_ENV = "TICK_ASSETS_TOKEN_KEY"
SECRETS_DIR = "secrets"
STORE_FORMAT = 1
IST = ZoneInfo("Asia/Kolkata")
Mode = Literal["sim", "live"]
_GENERATE_HINT = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


class TokenStoreError(RuntimeError):
    """The token store cannot answer; the message names the file or setting and the fix."""


class TokenMissingError(TokenStoreError):
    """No token was ever stored for the app (or the store was removed)."""


class TokenExpiredError(TokenStoreError):
    """The stored token is past its expiry; a new login is needed."""


class TokenKeyError(TokenStoreError):
    """TICK_ASSETS_TOKEN_KEY is missing (live mode) or malformed, or does not open the store."""


def _ist(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")


def _remedy(app: str) -> str:
    return f"materialize kite/access_token (partition {app})"


@dataclass(frozen=True)
class TokenRecord:
    """One app's access token; repr and metadata never show the token itself."""

    app: str
    access_token: str = field(repr=False)
    login_time: datetime  # tz-aware UTC
    expires_at: datetime  # tz-aware UTC
    method: str  # how it was obtained: "selenium" or "http"

    def __post_init__(self) -> None:
        for name in ("login_time", "expires_at"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"TokenRecord.{name} {value!r} must be timezone-aware")
            object.__setattr__(self, name, value.astimezone(UTC))
        if not self.access_token:
            raise ValueError(f"TokenRecord for app {self.app!r} has an empty access_token")

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def metadata(self) -> dict[str, str]:
        """What may be shown (UI, logs): app, login time, expiry, method. Never the token."""
        return {
            "app": self.app,
            "login_time": _ist(self.login_time),
            "expires_at": _ist(self.expires_at),
            "method": self.method,
        }

    def _payload(self) -> dict[str, str]:
        return {
            "app": self.app,
            "access_token": self.access_token,
            "login_time": self.login_time.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "method": self.method,
        }

    @classmethod
    def _from_payload(cls, payload: Mapping[str, str]) -> TokenRecord:
        return cls(
            app=payload["app"],
            access_token=payload["access_token"],
            login_time=datetime.fromisoformat(payload["login_time"]),
            expires_at=datetime.fromisoformat(payload["expires_at"]),
            method=payload["method"],
        )


def _check_private(path: Path, what: str) -> None:
    if os.name != "nt" and path.stat().st_mode & 0o077:
        raise TokenStoreError(
            f"{what} {path} is readable by other users; run: chmod 600 {path} "
            "(and chmod 700 its directory)"
        )


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name != "nt" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)  # we created it, or it is our secrets dir: tighten, never loosen
    return path


def _fernet_key(raw: str | bytes, source: str) -> Fernet:
    try:
        return Fernet(raw.strip() if isinstance(raw, bytes) else raw.strip().encode())
    except (ValueError, TypeError):
        raise TokenKeyError(
            f"{source} is not a Fernet key (32 url-safe base64-encoded bytes); {_GENERATE_HINT}"
        ) from None


def load_key(home: Path, mode: Mode, environ: Mapping[str, str] | None = None) -> Fernet:
    """The store's Fernet key: TICK_ASSETS_TOKEN_KEY, else (sim only) a generated key file."""
    env = os.environ if environ is None else environ
    raw = (env.get(TOKEN_KEY_ENV) or "").strip()
    if raw:
        return _fernet_key(raw, TOKEN_KEY_ENV)
    if mode != "sim":
        raise TokenKeyError(
            f"{TOKEN_KEY_ENV} is not set; live access tokens are stored encrypted with it. "
            f"Set it in the environment or .env (chmod 600); {_GENERATE_HINT}"
        )
    key_file = _private_dir(Path(home) / SECRETS_DIR) / "token-key-sim"
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _check_private(key_file, "sim token key file")
        return _fernet_key(key_file.read_bytes(), f"sim token key file {key_file}")
    with os.fdopen(fd, "wb") as fh:
        fh.write(Fernet.generate_key())
        fh.flush()
        os.fsync(fh.fileno())
    return _fernet_key(key_file.read_bytes(), f"sim token key file {key_file}")


class TokenStore:
    """Read and write the encrypted token file of one mode under ``home``."""

    def __init__(
        self,
        home: Path | str,
        mode: Mode = "sim",
        *,
        key: Fernet | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if mode not in ("sim", "live"):
            raise ValueError(f"mode {mode!r} must be 'sim' or 'live'")
        self.home = Path(home)
        self.mode: Mode = mode
        self._key = key
        self._environ = environ

    @property
    def directory(self) -> Path:
        return self.home / SECRETS_DIR

    @property
    def path(self) -> Path:
        return self.directory / f"tokens-{self.mode}.json"

    def _fernet(self) -> Fernet:
        if self._key is None:
            self._key = load_key(self.home, self.mode, self._environ)
        return self._key

    # --- file access ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = _private_dir(self.directory) / f"tokens-{self.mode}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read_raw(self) -> dict:
        if not self.path.exists():
            return {"format": STORE_FORMAT, "apps": {}}
        _check_private(self.path, "token store")
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenStoreError(
                f"token store {self.path} is unreadable ({type(exc).__name__}); delete it and "
                "materialize kite/access_token again"
            ) from None
        if not isinstance(raw, dict) or raw.get("format") != STORE_FORMAT:
            raise TokenStoreError(
                f"token store {self.path} has an unknown format; delete it and materialize "
                "kite/access_token again"
            )
        return raw

    def _write_raw(self, raw: dict) -> None:
        directory = _private_dir(self.directory)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=directory)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(raw, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _decrypt(self, app: str, entry: Mapping[str, str]) -> TokenRecord:
        try:
            payload = json.loads(self._fernet().decrypt(entry["sealed"].encode()))
        except InvalidToken:
            raise TokenKeyError(
                f"the token of app {app!r} in {self.path} does not decrypt with the current "
                f"{TOKEN_KEY_ENV} (the key changed, or the file was edited); "
                f"{_remedy(app)} to store a fresh one"
            ) from None
        except (KeyError, ValueError, TypeError):
            raise TokenStoreError(
                f"the entry of app {app!r} in {self.path} is malformed; {_remedy(app)}"
            ) from None
        record = TokenRecord._from_payload(payload)
        if record.app != app:
            raise TokenStoreError(
                f"the entry of app {app!r} in {self.path} holds app {record.app!r}'s token "
                f"(the file was edited); {_remedy(app)}"
            )
        return record

    # --- API -----------------------------------------------------------------------------------

    def save(self, record: TokenRecord) -> None:
        """Store (replace) the app's token, encrypted; other apps' entries are kept."""
        sealed = self._fernet().encrypt(json.dumps(record._payload()).encode()).decode()
        with self._locked():
            raw = self._read_raw()
            raw["apps"][record.app] = {**record.metadata(), "sealed": sealed}
            self._write_raw(raw)

    def load(self, app: str) -> TokenRecord | None:
        """The app's stored record (expired or not), or None when there is none."""
        entry = self._read_raw()["apps"].get(app)
        return None if entry is None else self._decrypt(app, entry)

    def remove(self, app: str) -> bool:
        with self._locked():
            raw = self._read_raw()
            found = raw["apps"].pop(app, None) is not None
            if found:
                self._write_raw(raw)
        return found

    def status(self) -> dict[str, dict[str, str]]:
        """Per app: login time, expiry and method as stored in clear (needs no key)."""
        apps = self._read_raw()["apps"]
        return {app: {k: v for k, v in e.items() if k != "sealed"} for app, e in apps.items()}

    def get_valid(self, app: str, now: datetime | None = None) -> TokenRecord:
        """The app's record if its token is still valid; TokenMissingError/TokenExpiredError."""
        record = self.load(app)
        if record is None:
            raise TokenMissingError(
                f"no access token stored for app {app!r} ({self.mode} mode, {self.path}); "
                f"{_remedy(app)}"
            )
        if record.is_expired(now):
            raise TokenExpiredError(
                f"access token for app {app!r} expired at {_ist(record.expires_at)} "
                f"(logged in {_ist(record.login_time)} by {record.method}); {_remedy(app)}"
            )
        return record

    def get_valid_token(self, app: str, now: datetime | None = None) -> str:
        """The app's access token, or TokenMissingError / TokenExpiredError saying what to do."""
        return self.get_valid(app, now).access_token
