"""Binance clients against the simulator: REST limits (429/418, Retry-After, weight) and the
archive's checksum/zip verification with one refetch."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tick_assets.sim.binance.testing import fresh_venue, venue
from tick_assets.sim.server import SimServer
from tick_assets.sources.binance.archive import (
    ArchiveFileMissing,
    ArchiveIntegrityError,
    BinanceArchive,
    daily_path,
    monthly_path,
)
from tick_assets.sources.binance.rest import BinanceBanned, BinanceRest
from tick_assets.sources.ratelimit import RateLimiter

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
JAN_MS = 1735689600000


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=42) as srv:
        yield srv


@pytest.fixture
def binance(server):
    with fresh_venue(server, "binance", NOW) as bv:
        yield bv


def _rest(server, **kwargs) -> BinanceRest:
    limiter = RateLimiter([(5700, 60.0)], name="test")  # private: tests must not share waits
    return BinanceRest(server.endpoints["binance_rest"], limiter=limiter, **kwargs)


# ---------------------------------------------------------------- REST


def test_pages_of_1000_through_python_binance(server, binance):
    rest = _rest(server)
    pages = list(rest.klines_pages("BTCUSDT", JAN_MS, JAN_MS + 2500 * 60_000))
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert pages[1][0][0] == pages[0][-1][0] + 60_000
    assert rest.stats["requests"] == 3 and rest.stats["weight"] == 6
    assert rest.stats["max_used_weight"] >= 6  # read from X-MBX-USED-WEIGHT-1M


def test_429_retry_after_is_honoured(server, binance):
    rest = _rest(server)
    binance.inject_429(count=1, retry_after=1.0)
    start = time.monotonic()
    rows = rest.klines("BTCUSDT", JAN_MS, JAN_MS + 60_000 * 9)
    waited = time.monotonic() - start
    assert len(rows) == 10
    assert rest.stats["http_429"] == 1 and waited >= 1.0
    assert rest.limiter.stats()["penalties"] == 1


def test_418_retry_after_is_honoured(server, binance):
    rest = _rest(server)
    binance.inject_418(retry_after=1.5)
    start = time.monotonic()
    info = rest.symbol_info("ETHUSDT")
    waited = time.monotonic() - start
    assert info["status"] == "TRADING"
    assert rest.stats["http_418"] >= 1 and waited >= 1.4
    assert venue(server, "binance").meter.stats["http_418"] >= 1


def test_a_ban_longer_than_the_client_waits_is_a_clear_error(server, binance):
    rest = _rest(server, max_retry_after=5)
    binance.inject_418(retry_after=600)
    with pytest.raises(BinanceBanned, match="Retry-After 600"):
        rest.klines("BTCUSDT", JAN_MS, JAN_MS + 60_000)


def test_used_weight_near_the_limit_pauses_until_the_minute_turns(server, binance):
    rest = _rest(server, weight_limit=6000)
    frozen = (time.time() // 60) * 60 + 10.0
    binance.meter.wall = lambda: frozen  # the whole test inside one minute
    binance.meter.clear()
    binance.meter.add_other_clients(5900)  # other processes on this IP used most of the minute
    try:
        rest.klines("BTCUSDT", JAN_MS, JAN_MS + 60_000)
    finally:
        binance.meter.wall = time.time
        binance.meter.clear()
    assert rest.stats["header_pauses"] == 1
    assert rest.limiter.stats()["blocked_for_s"] > 0


def test_unknown_symbol_is_none(server, binance):
    assert _rest(server).symbol_info("NOPEUSDT") is None


# ---------------------------------------------------------------- archive


def test_a_verified_download(server, binance):
    archive = BinanceArchive(server.endpoints["binance_archive"])
    csv_bytes, record = archive.fetch_csv(monthly_path("BTCUSDT", 2025, 1))
    assert csv_bytes.startswith(str(JAN_MS * 1000).encode())
    assert record.downloads == 1 and not record.problems and len(record.sha256) == 64


@pytest.mark.parametrize("fault", ["corrupt_zip", "checksum_mismatch"])
def test_a_bad_file_is_refetched_once(server, binance, fault):
    path = daily_path("XRPUSDT", datetime(2025, 3, 2).date())
    getattr(binance, fault)(path, times=1)
    csv_bytes, record = BinanceArchive(server.endpoints["binance_archive"]).fetch_csv(path)
    assert record.downloads == 2 and len(record.problems) == 1
    expected = "corrupt zip" if fault == "corrupt_zip" else "does not match the CHECKSUM"
    assert expected in record.problems[0]
    assert csv_bytes.count(b"\n") == 1440


@pytest.mark.parametrize("fault", ["corrupt_zip", "checksum_mismatch"])
def test_a_file_still_bad_after_the_refetch_fails_clearly(server, binance, fault):
    path = daily_path("XRPUSDT", datetime(2025, 3, 3).date())
    getattr(binance, fault)(path, times=2)
    with pytest.raises(ArchiveIntegrityError) as err:
        BinanceArchive(server.endpoints["binance_archive"]).fetch_csv(path)
    message = str(err.value)
    assert "XRPUSDT-1m-2025-03-03.zip" in message and "after one refetch" in message


def test_a_missing_file_is_its_own_error(server, binance):
    binance.missing_month("BTCUSDT", 2025, 1)
    with pytest.raises(ArchiveFileMissing, match="404"):
        BinanceArchive(server.endpoints["binance_archive"]).fetch_csv(
            monthly_path("BTCUSDT", 2025, 1)
        )
