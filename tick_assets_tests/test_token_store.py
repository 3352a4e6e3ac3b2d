"""The encrypted access-token store and the token API the other assets use."""

from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from tick_assets.defs.kite.resources import KiteResource
from tick_assets.sources.kite.login import kite_token_expiry
from tick_assets.store.tokens import (
    TOKEN_KEY_ENV,
    TokenExpiredError,
    TokenKeyError,
    TokenMissingError,
    TokenRecord,
    TokenStore,
    TokenStoreError,
)

TOKEN = "TOKENabcdefghijklmnopqrstuvwxyz0123"
LOGIN = datetime(2026, 11, 20, 2, 15, tzinfo=UTC)  # 07:45 IST
EXPIRY = datetime(2026, 11, 21, 0, 30, tzinfo=UTC)  # 06:00 IST next day


def _record(app: str = "nifty500", token: str = TOKEN) -> TokenRecord:
    return TokenRecord(
        app=app, access_token=token, login_time=LOGIN, expires_at=EXPIRY, method="http"
    )


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_encrypted_and_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_KEY_ENV, raising=False)
    store = TokenStore(tmp_path, "sim")
    store.save(_record())
    store.save(_record("indices", "OTHERtoken"))
    assert store.get_valid_token("nifty500", now=LOGIN) == TOKEN
    assert store.get_valid_token("indices", now=LOGIN) == "OTHERtoken"

    raw = store.path.read_bytes()
    assert TOKEN.encode() not in raw and b"OTHERtoken" not in raw  # encrypted at rest
    assert _mode(store.directory) == 0o700
    assert _mode(store.path) == 0o600
    key_file = store.directory / "token-key-sim"
    assert _mode(key_file) == 0o600
    assert not [p for p in store.directory.iterdir() if p.name.startswith(".tokens-")]
    # the clear part shows app, login time, expiry and method only
    assert store.status()["nifty500"] == {
        "app": "nifty500",
        "login_time": "2026-11-20 07:45 IST",
        "expires_at": "2026-11-21 06:00 IST",
        "method": "http",
    }
    # a second store (another process) reads it with the generated key
    assert TokenStore(tmp_path, "sim").load("nifty500") == _record()


def test_record_repr_and_metadata_never_show_the_token():
    record = _record()
    assert TOKEN not in repr(record) and TOKEN not in str(record.metadata())
    assert set(record.metadata()) == {"app", "login_time", "expires_at", "method"}


def test_missing_and_expired_tokens_say_what_to_do(tmp_path):
    store = TokenStore(tmp_path, "sim")
    with pytest.raises(TokenMissingError) as missing:
        store.get_valid_token("nifty500")
    assert "no access token stored for app 'nifty500'" in str(missing.value)
    assert "materialize kite/access_token (partition nifty500)" in str(missing.value)

    store.save(_record())
    assert store.get_valid_token("nifty500", now=EXPIRY - timedelta(seconds=1)) == TOKEN
    with pytest.raises(TokenExpiredError) as expired:
        store.get_valid_token("nifty500", now=EXPIRY)
    assert str(expired.value).startswith(
        "access token for app 'nifty500' expired at 2026-11-21 06:00 IST"
    )
    assert str(expired.value).endswith("materialize kite/access_token (partition nifty500)")
    assert TOKEN not in str(expired.value)


def test_live_mode_needs_the_key_from_the_environment(tmp_path):
    with pytest.raises(TokenKeyError) as err:
        TokenStore(tmp_path, "live", environ={}).save(_record())
    assert TOKEN_KEY_ENV in str(err.value) and "Fernet.generate_key" in str(err.value)
    assert not (tmp_path / "secrets" / "tokens-live.json").exists()
    assert not (tmp_path / "secrets" / "token-key-sim").exists()  # never generated in live

    with pytest.raises(TokenKeyError, match=f"{TOKEN_KEY_ENV} is not a Fernet key"):
        TokenStore(tmp_path, "live", environ={TOKEN_KEY_ENV: "not-a-key"}).save(_record())

    key = Fernet.generate_key().decode()
    live = TokenStore(tmp_path, "live", environ={TOKEN_KEY_ENV: key})
    live.save(_record())
    assert live.get_valid_token("nifty500", now=LOGIN) == TOKEN
    # sim and live keep separate files: a sim token is never served in live mode
    with pytest.raises(TokenMissingError):
        TokenStore(tmp_path, "sim").get_valid_token("nifty500", now=LOGIN)


def test_a_changed_key_is_a_clear_error(tmp_path):
    first = {TOKEN_KEY_ENV: Fernet.generate_key().decode()}
    TokenStore(tmp_path, "live", environ=first).save(_record())
    second = {TOKEN_KEY_ENV: Fernet.generate_key().decode()}
    with pytest.raises(TokenKeyError) as err:
        TokenStore(tmp_path, "live", environ=second).get_valid_token("nifty500", now=LOGIN)
    assert "does not decrypt with the current TICK_ASSETS_TOKEN_KEY" in str(err.value)
    assert "materialize kite/access_token (partition nifty500)" in str(err.value)


def test_editing_the_clear_fields_does_not_extend_a_token(tmp_path):
    store = TokenStore(tmp_path, "sim")
    store.save(_record())
    raw = json.loads(store.path.read_text())
    raw["apps"]["nifty500"]["expires_at"] = "2099-01-01 06:00 IST"
    store.path.write_text(json.dumps(raw))
    with pytest.raises(TokenExpiredError):
        store.get_valid_token("nifty500", now=EXPIRY + timedelta(hours=1))
    # moving another app's sealed token under this name is detected
    store.save(_record("indices", "OTHERtoken"))
    raw = json.loads(store.path.read_text())
    raw["apps"]["nifty500"]["sealed"] = raw["apps"]["indices"]["sealed"]
    store.path.write_text(json.dumps(raw))
    with pytest.raises(TokenStoreError, match="holds app 'indices'"):
        store.load("nifty500")


def test_a_world_readable_store_is_refused(tmp_path):
    store = TokenStore(tmp_path, "sim")
    store.save(_record())
    store.path.chmod(0o644)
    with pytest.raises(TokenStoreError, match="readable by other users; run: chmod 600"):
        store.load("nifty500")


def _save_many(home: str, app: str, n: int) -> None:
    store = TokenStore(home, "sim")
    for i in range(n):
        store.save(_record(app, f"{app}-token-{i}"))


def test_parallel_logins_of_two_apps_keep_both_tokens(tmp_path):
    TokenStore(tmp_path, "sim").save(_record("warmup"))  # the key exists before the race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), a, 25)) for a in ("a1", "a2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = TokenStore(tmp_path, "sim")
    assert store.get_valid_token("a1", now=LOGIN) == "a1-token-24"
    assert store.get_valid_token("a2", now=LOGIN) == "a2-token-24"


@pytest.mark.parametrize(
    ("login", "expiry"),
    [
        ("2026-11-20T07:45:00+05:30", "2026-11-21T06:00:00+05:30"),
        ("2026-11-20T23:59:00+05:30", "2026-11-21T06:00:00+05:30"),
        ("2026-11-21T05:59:00+05:30", "2026-11-21T06:00:00+05:30"),
        ("2026-11-21T06:00:00+05:30", "2026-11-22T06:00:00+05:30"),
    ],
)
def test_kite_tokens_expire_at_the_next_six_am_ist(login, expiry):
    got = kite_token_expiry(datetime.fromisoformat(login))
    assert got == datetime.fromisoformat(expiry) and got.tzinfo == UTC


def test_kite_resource_token_api(tmp_path):
    kite = KiteResource(app_names=["indices", "nifty500"], home=str(tmp_path))
    with pytest.raises(TokenMissingError, match="partition nifty500"):
        kite.access_token("nifty500")
    now = datetime.now(UTC)
    kite.token_store().save(
        TokenRecord("nifty500", TOKEN, now, now + timedelta(hours=1), "selenium")
    )
    assert kite.access_token("nifty500") == TOKEN
    client = kite.kite_connect("nifty500")
    assert client.access_token == TOKEN and client.api_key == kite.credentials("nifty500").api_key
    kite.token_store().save(
        TokenRecord("indices", TOKEN, now - timedelta(days=1), now - timedelta(hours=1), "http")
    )
    with pytest.raises(TokenExpiredError, match="access token for app 'indices' expired at"):
        kite.kite_connect("indices")
