"""Kite REST of the simulator, driven by kiteconnect's own unmodified KiteConnect."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tick_assets.calendars import IST
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token, request_token

DAY = date(2026, 11, 20)
APP = SIM_APPS["indices"]
OTHER = SIM_APPS["nifty500"]
SESSION_FIELDS = {
    "user_type", "email", "user_name", "user_shortname", "broker", "exchanges", "products",
    "order_types", "avatar_url", "user_id", "api_key", "access_token", "public_token",
    "enctoken", "refresh_token", "silo", "login_time", "meta",
}  # fmt: skip


@pytest.fixture(scope="module")
def server():
    with SimServer(day=DAY, rate=100, speed=60) as srv:
        yield srv


@pytest.fixture(scope="module")
def kite(server) -> KiteConnect:
    client = KiteConnect(APP.api_key, root=server.endpoints["kite_rest"])
    client.set_access_token(access_token(server.endpoints, APP))
    return client


def _historical(kite: KiteConnect, *args, **kwargs):
    time.sleep(0.35)  # stay under 3 requests/s per api_key
    return kite.historical_data(*args, **kwargs)


def test_instruments_parse_with_kiteconnect(server):
    kite = KiteConnect(APP.api_key, root=server.endpoints["kite_rest"])
    rows = kite.instruments()
    assert len(rows) == len(server.kite.universe)
    infy = next(r for r in rows if r["tradingsymbol"] == "INFY")
    assert infy["instrument_token"] == 408065 and infy["segment"] == "NSE"
    fut = next(r for r in rows if r["tradingsymbol"] == "NIFTY26DECFUT")
    assert isinstance(fut["expiry"], date) and fut["lot_size"] == 65
    nfo = kite.instruments("NFO")
    assert nfo and {r["exchange"] for r in nfo} == {"NFO"}
    response = requests.get(server.endpoints["kite_rest"] + "/instruments", timeout=30)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"].startswith("text/csv")


def test_generate_session_returns_kites_fields(server):
    kite = KiteConnect(APP.api_key, root=server.endpoints["kite_rest"])
    token = request_token(server.endpoints, APP)
    assert len(token) == 32
    data = kite.generate_session(token, APP.api_secret)
    assert set(data) == SESSION_FIELDS
    assert data["user_id"] == APP.user_id and data["api_key"] == APP.api_key
    assert len(data["access_token"]) == 32 and kite.access_token == data["access_token"]
    assert isinstance(data["login_time"], datetime)
    assert kite.profile()["user_id"] == APP.user_id
    with pytest.raises(kex.TokenException):  # a request_token is single use
        kite.generate_session(token, APP.api_secret)


def test_wrong_checksum_is_a_token_exception(server):
    kite = KiteConnect(APP.api_key, root=server.endpoints["kite_rest"])
    token = request_token(server.endpoints, APP)
    with pytest.raises(kex.TokenException) as err:
        kite.generate_session(token, "not-the-secret")
    assert err.value.code == 403 and "checksum" in str(err.value)


def test_bad_token_is_403_token_exception(server):
    kite = KiteConnect(APP.api_key, access_token="x" * 32, root=server.endpoints["kite_rest"])
    with pytest.raises(kex.TokenException) as err:
        kite.profile()
    assert err.value.code == 403
    with pytest.raises(kex.TokenException):
        kite.historical_data(256265, "2026-11-19 09:15:00", "2026-11-19 15:30:00", "minute")
    raw = requests.get(server.endpoints["kite_rest"] + "/user/profile", timeout=30)
    assert raw.status_code == 403
    assert raw.json() == {
        "status": "error", "message": "Incorrect `api_key` or `access_token`.",
        "data": None, "error_type": "TokenException",
    }  # fmt: skip


def test_expired_and_invalidated_tokens_are_refused(server):
    kite = KiteConnect(APP.api_key, root=server.endpoints["kite_rest"])
    kite.set_access_token(access_token(server.endpoints, APP))
    assert kite.profile()["user_id"] == APP.user_id
    assert server.expire_access_tokens(kite.access_token) == 1
    with pytest.raises(kex.TokenException):
        kite.profile()
    kite.set_access_token(access_token(server.endpoints, APP))
    kite.invalidate_access_token()
    with pytest.raises(kex.TokenException):
        kite.profile()


def test_tokens_expire_at_six_am_ist_by_the_sim_clock():
    with SimServer(day=DAY, rate=0, speed=1) as srv:
        ep = srv.endpoints
        kite = KiteConnect(APP.api_key, root=ep["kite_rest"])
        kite.set_access_token(access_token(ep, APP))
        before = datetime(2026, 11, 21, 5, 59, 50, tzinfo=IST).isoformat()
        requests.post(
            ep["kite_control"] + "/clock", json={"time": before}, timeout=30
        ).raise_for_status()
        assert kite.profile()["user_id"] == APP.user_id
        after = datetime(2026, 11, 21, 6, 0, 0, tzinfo=IST).isoformat()
        clock = requests.post(
            ep["kite_control"] + "/clock", json={"time": after}, timeout=30
        ).json()
        assert clock["time"].startswith("2026-11-21T06:00")
        with pytest.raises(kex.TokenException):
            kite.profile()


def test_historical_candles(kite, server):
    candles = _historical(
        kite, 256265, datetime(2026, 11, 18, 9, 15), datetime(2026, 11, 19, 15, 30), "minute"
    )
    assert len(candles) == 2 * 375
    first = candles[0]
    assert first["date"] == datetime(2026, 11, 18, 9, 15, tzinfo=first["date"].tzinfo)
    assert first["date"].utcoffset() == timedelta(hours=5, minutes=30)
    assert all(
        c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
        for c in candles
    )
    assert all(c["volume"] == 0 for c in candles)  # indices have no volume
    five = _historical(
        kite, 408065, "2026-11-19 09:15:00", "2026-11-19 15:30:00", "5minute", oi=True
    )
    assert len(five) == 75 and all(c["volume"] > 0 for c in five) and "oi" in five[0]
    hour = _historical(kite, 408065, "2026-11-19 09:15:00", "2026-11-19 15:30:00", "60minute")
    assert [c["date"].strftime("%H:%M") for c in hour] == [f"{h:02d}:15" for h in range(9, 16)]
    assert sum(c["volume"] for c in hour) == sum(c["volume"] for c in five)
    day = _historical(kite, 408065, "2026-11-01 00:00:00", "2026-11-19 23:59:59", "day")
    assert day[-1]["high"] == max(c["high"] for c in five)
    assert day[-1]["volume"] == sum(c["volume"] for c in five)
    # the simulated day exists only up to the simulated clock
    today = _historical(kite, 408065, "2026-11-20 09:15:00", "2026-11-20 15:30:00", "minute")
    elapsed = (server.kite.clock.now() - server.kite.market.open_epoch) / 60
    assert 1 <= len(today) <= elapsed + 2


def test_historical_span_limit_is_an_input_exception(kite):
    _historical(kite, 408065, "2026-09-21 09:15:00", "2026-11-20 09:15:00", "minute")  # 60 days
    with pytest.raises(kex.InputException) as err:
        _historical(kite, 408065, "2026-09-20 09:15:00", "2026-11-20 09:15:00", "minute")
    assert err.value.code == 400 and "interval exceeds max limit: 60 days" in str(err.value)
    with pytest.raises(kex.InputException):
        _historical(kite, 408065, "2026-11-19 09:15:00", "2026-11-19 15:30:00", "2minute")
    with pytest.raises(kex.InputException):
        _historical(kite, 12345678, "2026-11-19 09:15:00", "2026-11-19 15:30:00", "minute")


def test_historical_rate_limit_is_429(server):
    kite = KiteConnect(OTHER.api_key, root=server.endpoints["kite_rest"])
    kite.set_access_token(access_token(server.endpoints, OTHER))
    time.sleep(1.1)
    args = (408065, "2026-11-19 09:15:00", "2026-11-19 09:20:00", "minute")
    for _ in range(3):
        kite.historical_data(*args)
    with pytest.raises(kex.NetworkException) as err:
        kite.historical_data(*args)
    assert err.value.code == 429
    time.sleep(1.1)
    assert len(kite.historical_data(*args)) == 6


def test_login_api_errors_are_kite_shaped(server):
    api = server.endpoints["kite_login_api"]
    bad = requests.post(
        f"{api}/login", data={"user_id": APP.user_id, "password": "nope"}, timeout=30
    )
    assert bad.status_code == 403 and bad.json()["error_type"] == "InputException"
    ok = requests.post(
        f"{api}/login", data={"user_id": APP.user_id, "password": APP.password}, timeout=30
    )
    data = ok.json()["data"]
    assert data["twofa_type"] == "totp" and len(data["request_id"]) > 20
    form = {
        "user_id": APP.user_id,
        "request_id": data["request_id"],
        "twofa_value": "000000",
        "twofa_type": "totp",
    }
    wrong = requests.post(f"{api}/twofa", data=form, timeout=30)
    assert wrong.status_code == 403 and wrong.json()["error_type"] == "TwoFAException"
    assert "kf_session" not in wrong.cookies
