"""The simulated Binance spot REST and bulk archive, driven by python-binance and requests."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from datetime import UTC, datetime

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tick_assets.sim.binance.market import maintenance, month_index
from tick_assets.sim.binance.testing import control, fresh_venue
from tick_assets.sim.server import SimServer
from tick_assets.sources.binance.archive import unzip_single_csv

NOW = datetime(2025, 3, 10, 12, 34, 56, tzinfo=UTC)
JAN_2025_MS = 1735689600000
DEC_2024_MS = 1733011200000


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=42) as srv:
        yield srv


@pytest.fixture
def binance(server):
    with fresh_venue(server, "binance", NOW) as bv:
        yield bv
    bv.meter.limit = 6000
    bv.meter.wall = time.time


@pytest.fixture
def client(server, binance) -> Client:
    c = Client(ping=False)
    c.API_URL = server.endpoints["binance_rest"] + "/api"
    return c


def _archive(server, path: str) -> requests.Response:
    return requests.get(f"{server.endpoints['binance_archive']}/{path}", timeout=60)


def _unzip(data: bytes) -> tuple[list[str], list[list[str]]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        text = zf.read(names[0]).decode()
    return names, [line.split(",") for line in text.splitlines()]


# ---------------------------------------------------------------- REST


def test_exchange_info_through_python_binance(client):
    info = client.get_exchange_info()
    limits = {(r["rateLimitType"], r["interval"]): r["limit"] for r in info["rateLimits"]}
    assert limits[("REQUEST_WEIGHT", "MINUTE")] == 6000
    symbols = {s["symbol"]: s for s in info["symbols"]}
    assert symbols["BTCUSDT"]["status"] == "TRADING" and symbols["BTCUSDT"]["quoteAsset"] == "USDT"
    assert symbols["XMRUSDT"]["status"] == "BREAK"  # delisted 2024-02-20
    assert "ETHBTC" in symbols and "BTCFDUSD" in symbols
    assert "BERAUSDT" in symbols and "USD1USDT" not in symbols  # listed 2025-02-06 / 2025-05-22
    assert client.response.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    assert client.get_symbol_info("USD1USDT") is None


def test_klines_shape_order_and_paging(client):
    rows = client.get_klines(symbol="BTCUSDT", interval="1m", startTime=JAN_2025_MS, limit=1000)
    assert len(rows) == 1000
    first = rows[0]
    assert len(first) == 12 and first[0] == JAN_2025_MS and first[6] == JAN_2025_MS + 59_999
    assert all(isinstance(first[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10))
    assert (
        isinstance(first[8], int) and first[1].count(".") == 1 and len(first[1].split(".")[1]) == 8
    )
    opens = [r[0] for r in rows]
    assert opens == sorted(opens) and len(set(opens)) == 1000
    nxt = client.get_klines(symbol="BTCUSDT", interval="1m", startTime=opens[-1] + 60_000, limit=2)
    assert nxt[0][0] == opens[-1] + 60_000 and nxt[0][1] == rows[-1][4]  # open = last close
    capped = client.get_klines(symbol="BTCUSDT", interval="1m", startTime=JAN_2025_MS, limit=5000)
    assert len(capped) == 1000


def test_klines_end_at_the_clock_and_include_the_open_candle(client):
    rows = client.get_klines(symbol="ETHUSDT", interval="1m", limit=3)
    now_ms = int(NOW.timestamp() * 1000)
    assert rows[-1][0] == now_ms - now_ms % 60_000  # the candle still open
    assert rows[-1][6] > now_ms


def test_klines_in_microseconds_on_request(server, binance):
    c = Client(ping=False, time_unit="MICROSECOND")
    c.API_URL = server.endpoints["binance_rest"] + "/api"
    rows = c.get_klines(symbol="BTCUSDT", interval="1m", startTime=JAN_2025_MS, limit=1)
    assert rows[0][0] == JAN_2025_MS * 1000 and rows[0][6] == JAN_2025_MS * 1000 + 59_999_999


def test_unknown_symbol_is_code_1121(client):
    with pytest.raises(BinanceAPIException) as err:
        client.get_klines(symbol="NOPEUSDT", interval="1m")
    assert err.value.status_code == 400 and err.value.code == -1121


def test_weight_limit_gives_429_then_418_for_a_client_that_keeps_going(client, binance):
    frozen = (time.time() // 60) * 60 + 10.0
    binance.meter.wall = lambda: frozen  # one minute for the whole test
    binance.meter.clear()
    binance.meter.limit = 30  # one exchangeInfo (20) and a few klines (2) fit
    client.get_exchange_info()
    for _ in range(5):
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
    with pytest.raises(BinanceAPIException) as err:
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
    assert err.value.status_code == 429 and err.value.code == -1003
    assert 1 <= int(err.value.response.headers["Retry-After"]) <= 60
    statuses = []
    for _ in range(12):  # ignoring Retry-After
        try:
            client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
        except BinanceAPIException as exc:
            statuses.append(exc.status_code)
    assert statuses[-1] == 418 and 429 in statuses
    assert "banned" in client.response.text


def test_injected_faults_over_http_control(server, client):
    endpoints = server.endpoints
    control(endpoints, "binance", "faults", {"action": "429", "count": 1, "retry_after": 7})
    with pytest.raises(BinanceAPIException) as err:
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
    assert err.value.status_code == 429 and err.value.response.headers["Retry-After"] == "7"
    control(endpoints, "binance", "faults", {"action": "clear"})
    control(endpoints, "binance", "faults", {"action": "418", "retry_after": 1})
    with pytest.raises(BinanceAPIException) as err:
        client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)
    assert err.value.status_code == 418 and err.value.response.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert len(client.get_klines(symbol="BTCUSDT", interval="1m", limit=1)) == 1
    stats = control(endpoints, "binance", "stats")
    assert stats["rest"]["injected_429"] >= 1 and stats["rest"]["injected_418"] >= 1


# ---------------------------------------------------------------- archive


def test_monthly_zip_and_checksum_layout(server, binance):
    path = "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01.zip"
    checksum = _archive(server, path + ".CHECKSUM")
    data = _archive(server, path)
    assert data.status_code == 200 and checksum.status_code == 200
    digest, name = checksum.text.split()
    assert name == "BTCUSDT-1m-2025-01.zip" and digest == hashlib.sha256(data.content).hexdigest()
    names, rows = _unzip(data.content)
    assert names == ["BTCUSDT-1m-2025-01.csv"]
    assert len(rows) == 31 * 1440 - (maintenance(42, month_index(2025, 1)) or (0, 0))[1]
    assert rows[0][0] == str(JAN_2025_MS * 1000) and len(rows[0][0]) == 16  # µs from 2025
    assert rows[0][6] == str(JAN_2025_MS * 1000 + 59_999_999) and len(rows[0]) == 12


def test_archive_before_2025_is_in_milliseconds_and_matches_rest(server, client):
    names, rows = _unzip(
        _archive(server, "data/spot/monthly/klines/ETHUSDT/1m/ETHUSDT-1m-2024-12.zip").content
    )
    assert rows[0][0] == str(DEC_2024_MS) and len(rows[0][0]) == 13
    rest = client.get_klines(symbol="ETHUSDT", interval="1m", startTime=DEC_2024_MS, limit=3)
    assert [r[:6] for r in rest] == [
        [int(x[0]), *x[1:6]] for x in rows[:3]
    ]  # the same candles, byte for byte


def test_months_join_without_a_jump(server):
    _, dec = _unzip(
        _archive(server, "data/spot/monthly/klines/SOLUSDT/1m/SOLUSDT-1m-2024-12.zip").content
    )
    _, jan = _unzip(
        _archive(server, "data/spot/monthly/klines/SOLUSDT/1m/SOLUSDT-1m-2025-01.zip").content
    )
    assert dec[-1][4] == jan[0][1]  # last close of December = first open of January


def test_availability_follows_publication_listing_and_faults(server, binance):
    assert (
        _archive(server, "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-03-09.zip").status_code
        == 200
    )
    assert (
        _archive(server, "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-03-10.zip").status_code
        == 404
    )
    feb = "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2025-02.zip"
    assert _archive(server, feb).status_code == 200  # first Monday of March was the 3rd
    binance.set_time(datetime(2025, 3, 2, tzinfo=UTC))
    missing = _archive(server, feb)
    assert missing.status_code == 404 and "NoSuchKey" in missing.text
    binance.set_time(NOW)
    assert (
        _archive(
            server, "data/spot/monthly/klines/TRUMPUSDT/1m/TRUMPUSDT-1m-2024-12.zip"
        ).status_code
        == 404
    )
    binance.missing_month("BTCUSDT", 2025, 2)
    assert _archive(server, feb).status_code == 404
    assert _archive(server, feb + ".CHECKSUM").status_code == 404


def test_corrupt_zip_and_checksum_mismatch_faults(server, binance):
    path = "data/spot/daily/klines/ADAUSDT/1m/ADAUSDT-1m-2025-03-01.zip"
    good = _archive(server, path).content
    binance.corrupt_zip(path, times=1)
    checksum = _archive(server, path + ".CHECKSUM").text.split()[0]
    bad = _archive(server, path).content
    assert bad != good and checksum == hashlib.sha256(bad).hexdigest()  # matches, but unreadable
    with pytest.raises(ValueError, match="corrupt zip"):
        unzip_single_csv(bad, "ADAUSDT-1m-2025-03-01.zip")
    assert unzip_single_csv(good, "ADAUSDT-1m-2025-03-01.zip").startswith(b"17407872")
    assert _archive(server, path).content == good  # only once
    control(server.endpoints, "binance", "faults", {"action": "checksum_mismatch", "path": path})
    wrong = _archive(server, path + ".CHECKSUM").text.split()[0]
    assert wrong != hashlib.sha256(good).hexdigest()
    assert _archive(server, path + ".CHECKSUM").text.split()[0] == hashlib.sha256(good).hexdigest()


def test_delisting_mid_month_ends_the_data(server, client, binance):
    control(server.endpoints, "binance", "faults",
            {"action": "delist", "symbol": "DOTUSDT", "at": "2025-02-10T00:00:00+00:00"})  # fmt: skip
    assert client.get_symbol_info("DOTUSDT")["status"] == "BREAK"
    _, rows = _unzip(
        _archive(server, "data/spot/monthly/klines/DOTUSDT/1m/DOTUSDT-1m-2025-02.zip").content
    )
    assert int(rows[-1][0]) // 1000 < int(datetime(2025, 2, 10, tzinfo=UTC).timestamp() * 1000)
    assert (
        _archive(server, "data/spot/monthly/klines/DOTUSDT/1m/DOTUSDT-1m-2025-03.zip").status_code
        == 404
    )
    after = client.get_klines(symbol="DOTUSDT", interval="1m", startTime=1739145600000, limit=5)
    assert after == []


def test_archive_files_are_built_once_and_served_from_the_cache(server, binance):
    symbols = sorted(s for s, p in binance.model.pairs.items() if p.quote == "USDT")[:3]
    paths = [f"data/spot/monthly/klines/{s}/1m/{s}-1m-2024-06.zip" for s in symbols]
    built_before = binance.archive.stats["built"]
    size = binance.archive.prepare(paths)
    assert size > 3 * 500_000 and binance.archive.stats["built"] == built_before + 3
    assert binance.archive.prepare(paths) == size  # cached: the same bytes, nothing rebuilt
    assert binance.archive.stats["built"] == built_before + 3
    served = _archive(server, paths[0]).content
    assert (
        hashlib.sha256(served).hexdigest()
        == _archive(server, paths[0] + ".CHECKSUM").text.split()[0]
    )
