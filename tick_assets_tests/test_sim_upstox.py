"""The simulated Upstox v3: real paths and shapes, limits, errors, and the same market as Kite."""

from __future__ import annotations

import gzip
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime

import pytest
import requests

from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.server import SimServer
from tick_assets.sim.testing import access_token
from tick_assets.sim.upstox.accounts import SIM_UPSTOX_TOKENS
from tick_assets.sim.upstox.instruments import isin_check_digit, sim_isin
from tick_assets.sim.upstox.rest import UpstoxError, WindowLimiter
from tick_assets.sources.upstox import limits

DAY = date(2026, 11, 20)
TOKEN = SIM_UPSTOX_TOKENS["SIMUP3"]
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}


@pytest.fixture(scope="module")
def server():
    with SimServer(day=DAY, rate=100, speed=60) as srv:
        yield srv


@pytest.fixture(scope="module")
def records(server) -> list[dict]:
    url = server.endpoints["upstox_assets"] + "/market-quote/instruments/exchange/NSE.json.gz"
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    return json.loads(gzip.decompress(response.content))


def _key(records: list[dict], symbol: str) -> str:
    return next(r["instrument_key"] for r in records if r.get("trading_symbol") == symbol)


def _get(server, path: str, headers=AUTH) -> requests.Response:
    return requests.get(server.endpoints["upstox_rest"] + path, headers=headers, timeout=30)


def test_instruments_file_maps_symbols_to_keys(server, records):
    infy = next(r for r in records if r.get("trading_symbol") == "INFY")
    assert infy["segment"] == "NSE_EQ" and infy["instrument_type"] == "EQ"
    assert infy["instrument_key"] == f"NSE_EQ|{infy['isin']}"
    assert len(infy["isin"]) == 12 and infy["isin"].startswith("INE")
    assert infy["isin"][-1] == isin_check_digit(infy["isin"][:-1])
    assert infy["tick_size"] == 5.0  # paise
    nifty = next(r for r in records if r["segment"] == "NSE_INDEX" and r["name"] == "Nifty 50")
    assert nifty["instrument_key"] == "NSE_INDEX|Nifty 50"
    fut = next(r for r in records if r["segment"] == "NSE_FO" and r["instrument_type"] == "FUT")
    assert fut["instrument_key"] == f"NSE_FO|{fut['exchange_token']}" and fut["expiry"] > 1e12
    assert len({r["instrument_key"] for r in records}) == len(records)
    bse = requests.get(
        server.endpoints["upstox_assets"] + "/market-quote/instruments/exchange/BSE.json.gz",
        timeout=30,
    )
    assert {r["exchange"] for r in json.loads(gzip.decompress(bse.content))} == {"BSE"}


def test_known_isin_check_digit():
    assert isin_check_digit("INE009A0102") == "1"  # Infosys: INE009A01021
    assert isin_check_digit("US037833100") == "5"  # Apple: US0378331005
    assert sim_isin(408065 >> 8) != sim_isin((408065 >> 8) + 1)


def test_historical_candles_real_shape_newest_first_ist(server, records):
    key = _key(records, "INFY")
    r = _get(
        server, f"/v3/historical-candle/{key.replace('|', '%7C')}/minutes/5/2026-11-19/2026-11-18"
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "success" and set(body["data"]) == {"candles"}
    candles = body["data"]["candles"]
    assert len(candles) == 2 * 75  # two full sessions of 5-minute candles
    assert all(len(c) == 7 for c in candles)
    stamps = [datetime.fromisoformat(c[0]) for c in candles]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert candles[0][0] == "2026-11-19T15:25:00+05:30"
    assert candles[-1][0] == "2026-11-18T09:15:00+05:30"
    ts, o, h, lo, c, v, oi = candles[0]
    assert lo <= min(o, c) <= max(o, c) <= h and v > 0 and oi == 0


def test_units_and_intervals(server, records):
    key = _key(records, "TCS").replace("|", "%7C")
    hours = _get(server, f"/v3/historical-candle/{key}/hours/2/2026-11-19/2026-11-19").json()
    stamps = [c[0][11:16] for c in hours["data"]["candles"]]
    assert stamps == ["15:15", "13:15", "11:15", "09:15"]
    days = _get(server, f"/v3/historical-candle/{key}/days/1/2026-11-20/2026-11-16").json()
    assert [c[0] for c in days["data"]["candles"]] == [
        f"2026-11-{d}T00:00:00+05:30" for d in (20, 19, 18, 17, 16)
    ]
    weeks = _get(server, f"/v3/historical-candle/{key}/weeks/1/2026-11-20/2026-11-02").json()
    assert [c[0][:10] for c in weeks["data"]["candles"]] == [
        "2026-11-16",
        "2026-11-09",
        "2026-11-02",
    ]
    months = _get(server, f"/v3/historical-candle/{key}/months/1/2026-10-31/2026-09-01").json()
    assert [c[0][:10] for c in months["data"]["candles"]] == ["2026-10-01", "2026-09-01"]
    # a day candle is the day's minutes: first open, max high, min low, last close, sum volume
    minutes = _get(server, f"/v3/historical-candle/{key}/minutes/1/2026-11-19/2026-11-19").json()
    m = minutes["data"]["candles"]
    d = next(c for c in days["data"]["candles"] if c[0].startswith("2026-11-19"))
    assert d[1] == m[-1][1] and d[4] == m[0][4]
    assert d[2] == max(c[2] for c in m) and d[3] == min(c[3] for c in m)
    assert d[5] == sum(c[5] for c in m)
    # to_date only: the longest span ending there
    only_to = _get(server, f"/v3/historical-candle/{key}/minutes/30/2026-11-19").json()
    first_day = min(c[0][:10] for c in only_to["data"]["candles"])
    assert first_day == "2026-08-19"  # a quarter back (2026-08-19 is a Wednesday)


def _error(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert body["status"] == "error"
    return response.status_code, body["errors"][0]["errorCode"]


def test_errors_use_upstox_codes(server, records):
    key = _key(records, "INFY").replace("|", "%7C")
    base = "/v3/historical-candle"
    assert _error(_get(server, f"{base}/{key}/minutes/1/2026-11-19/2026-10-18")) == (
        400,
        "UDAPI1148",
    )
    assert _error(_get(server, f"{base}/{key}/minutes/1/2026-10-01/2026-10-05")) == (
        400,
        "UDAPI1015",
    )
    assert _error(_get(server, f"{base}/{key}/seconds/1/2026-11-19/2026-11-18")) == (
        400,
        "UDAPI1146",
    )
    assert _error(_get(server, f"{base}/{key}/minutes/301/2026-11-19/2026-11-18")) == (
        400,
        "UDAPI1147",
    )
    assert _error(_get(server, f"{base}/{key}/hours/6/2026-11-19/2026-11-18")) == (400, "UDAPI1147")
    assert _error(_get(server, f"{base}/NSE_EQ%7CINE000X01019/days/1/2026-11-19")) == (
        400,
        "UDAPI100011",
    )
    assert _error(_get(server, f"{base}/INFY/days/1/2026-11-19")) == (400, "UDAPI1021")
    no_auth = _get(server, f"{base}/{key}/days/1/2026-11-19", headers={})
    assert _error(no_auth) == (401, "UDAPI100050")
    bad = _get(server, f"{base}/{key}/days/1/2026-11-19", headers={"Authorization": "Bearer x"})
    assert _error(bad) == (401, "UDAPI100050")
    # a month of 1-minute candles is allowed, a day more is not
    assert _get(server, f"{base}/{key}/minutes/1/2026-11-19/2026-10-19").status_code == 200


def test_history_starts_where_upstox_says(server, records):
    key = _key(records, "INFY").replace("|", "%7C")
    r = _get(server, f"/v3/historical-candle/{key}/minutes/30/2022-01-31/2021-11-15").json()
    assert min(c[0][:10] for c in r["data"]["candles"]) == "2022-01-03"  # minutes from Jan 2022


def test_intraday_endpoint_serves_the_simulated_day(server, records):
    key = _key(records, "INFY").replace("|", "%7C")
    r = _get(server, f"/v3/historical-candle/intraday/{key}/minutes/1")
    assert r.status_code == 200
    candles = r.json()["data"]["candles"]
    assert candles and all(c[0].startswith("2026-11-20T") for c in candles)


def test_upstox_and_kite_candles_describe_the_same_market(server, records):
    key = _key(records, "RELIANCE").replace("|", "%7C")
    up = _get(server, f"/v3/historical-candle/{key}/minutes/1/2026-11-18/2026-11-18").json()
    app = SIM_APPS["nifty500"]
    token = access_token(server.endpoints, app)
    time.sleep(0.4)
    kite = requests.get(
        server.endpoints["kite_rest"] + "/instruments/historical/738561/minute",
        params={"from": "2026-11-18 09:00:00", "to": "2026-11-18 15:30:00"},
        headers={"Authorization": f"token {app.api_key}:{token}", "X-Kite-Version": "3"},
        timeout=30,
    ).json()
    ups = list(reversed(up["data"]["candles"]))
    kites = kite["data"]["candles"]
    assert len(ups) == len(kites) == 375
    for u, k in zip(ups, kites, strict=True):
        assert u[0].replace("+05:30", "+0530") == k[0]
        assert u[1:6] == k[1:6]


def test_429_past_the_per_second_window(server, records):
    key = _key(records, "ITC").replace("|", "%7C")
    headers = {"Authorization": f"Bearer {SIM_UPSTOX_TOKENS['SIMUP4']}"}
    url = f"/v3/historical-candle/{key}/days/1/2026-11-19/2026-11-19"
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: _get(server, url, headers=headers), range(70)))
    codes = [r.status_code for r in statuses]
    assert codes.count(200) <= 50 and codes.count(429) >= 20
    refused = next(r for r in statuses if r.status_code == 429)
    assert _error(refused) == (429, "UDAPI10005")
    assert "Retry-After" not in refused.headers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_server_limiter_enforces_minute_and_half_hour_windows():
    clock = Clock()
    lim = WindowLimiter(limits.RATE_WINDOWS, clock)
    accepted = 0
    # 50 per second for 10 s fills the minute window (500) ...
    for second in range(10):
        clock.now = float(second)
        for _ in range(50):
            lim.check("u")
            accepted += 1
    clock.now = 30.0
    with pytest.raises(UpstoxError) as err:
        lim.check("u")
    assert (err.value.status, err.value.code) == (429, "UDAPI10005")
    # ... which frees 60 s later; four minutes of 500 fill the 30-minute window (2000)
    for minute in range(1, 4):
        clock.now = 60.0 * minute
        for k in range(500):
            clock.now = 60.0 * minute + k / 32  # exact binary fractions
            lim.check("u")
    clock.now = 600.0
    with pytest.raises(UpstoxError):
        lim.check("u")
    clock.now = 1800.0  # the first 500 leave the 30-minute window
    lim.check("u")
    lim.check("other-user")  # windows are per user
    assert lim.refused["u"] == 2
