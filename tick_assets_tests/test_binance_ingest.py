"""binance/klines_1m partitions end to end without Dagster: archive + REST tail into the lake,
the watermark, gaps, and every fault (corrupt zip, checksum mismatch, missing month, delisting,
429/418 during the tail)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from tick_assets.defs.binance.ingest import ASSET, VENUE, ingest_month, partition_of
from tick_assets.sim.binance.market import maintenance, month_index
from tick_assets.sim.binance.testing import fresh_venue
from tick_assets.sim.server import SimServer
from tick_assets.sources.binance.archive import (
    ArchiveIntegrityError,
    BinanceArchive,
    daily_path,
    monthly_path,
)
from tick_assets.sources.binance.rest import BinanceRest
from tick_assets.sources.ratelimit import RateLimiter
from tick_assets.store import lake

NOW = datetime(2025, 3, 10, 12, 34, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=42) as srv:
        yield srv


@pytest.fixture
def sim(server):
    with fresh_venue(server, "binance", NOW) as bv:
        yield bv


@pytest.fixture
def clients(server):
    rest = BinanceRest(
        server.endpoints["binance_rest"], limiter=RateLimiter([(5700, 60.0)], name="test")
    )
    return BinanceArchive(server.endpoints["binance_archive"]), rest


def _ingest(home, clients, sim, symbol, month, **kwargs):
    archive, rest = clients
    return ingest_month(
        home, symbol, month, archive=archive, rest=rest, now=sim.clock.now_datetime(),
        status=kwargs.pop("status", "TRADING"), **kwargs,
    )  # fmt: skip


def _stored(home, symbol, month) -> pl.DataFrame:
    frame = pl.from_arrow(
        lake.read_partition(home, VENUE, ASSET, partition_of(symbol, month), verify=True)
    )
    assert isinstance(frame, pl.DataFrame)
    return frame


def _expected_rows(year: int, month: int, days: int) -> int:
    window = maintenance(42, month_index(year, month))
    return days * 1440 - (window[1] if window else 0)


def test_a_backfill_across_the_ms_to_us_switch(tmp_path, clients, sim):
    dec = _ingest(tmp_path, clients, sim, "ETHUSDT", date(2024, 12, 1))
    jan = _ingest(tmp_path, clients, sim, "ETHUSDT", date(2025, 1, 1))
    assert dec.units == {"ms": dec.rows, "us": 0, "ns": 0}
    assert jan.units == {"ms": 0, "us": jan.rows, "ns": 0}
    assert dec.rows == _expected_rows(2024, 12, 31) and jan.rows == _expected_rows(2025, 1, 31)
    d, j = (
        _stored(tmp_path, "ETHUSDT", date(2024, 12, 1)),
        _stored(tmp_path, "ETHUSDT", date(2025, 1, 1)),
    )
    assert d["open_time"].max() == datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
    assert j["open_time"].min() == datetime(2025, 1, 1, tzinfo=UTC)
    assert d["close"][-1] == j["open"][0]  # one continuous series, no 1000x jump
    manifest = lake.read_manifest(tmp_path, VENUE, ASSET, partition_of("ETHUSDT", date(2025, 1, 1)))
    assert manifest.extra["watermark"] == "2025-01-31T23:59:59.999999+00:00"
    assert manifest.accounting["received"] == manifest.rows + sum(
        manifest.accounting["dropped"].values()
    )
    assert len(manifest.extra["archive_files"]) == 1
    assert manifest.extra["archive_files"][0]["path"].endswith("ETHUSDT-1m-2025-01.zip")


def test_the_watermark_decides_what_is_fetched(tmp_path, clients, sim):
    first = _ingest(tmp_path, clients, sim, "BTCUSDT", date(2025, 3, 1))
    assert len(first.files) == 9 and first.rest_requests == 1  # daily 1..9, REST for the 10th
    assert first.watermark == "2025-03-10T12:33:59.999999+00:00"
    window = maintenance(42, month_index(2025, 3))  # exchange maintenance: a real hole
    assert window is not None and first.missing_minutes == window[1]
    assert first.gaps == [
        {
            "start": datetime.fromtimestamp(1740787200 + window[0] * 60, UTC).isoformat(),
            "end": datetime.fromtimestamp(
                1740787200 + (window[0] + window[1] - 1) * 60, UTC
            ).isoformat(),
            "minutes": window[1],
        }
    ]
    again = _ingest(tmp_path, clients, sim, "BTCUSDT", date(2025, 3, 1))
    assert again.up_to_date and again.fetched_rows == 0 and again.rest_requests == 0

    sim.set_time(datetime(2025, 3, 11, 3, 0, 20, tzinfo=UTC))
    later = _ingest(tmp_path, clients, sim, "BTCUSDT", date(2025, 3, 1))
    assert later.kept_rows == first.rows
    assert [f["path"] for f in later.files] == [daily_path("BTCUSDT", date(2025, 3, 10))]
    assert later.fetched_rows == (1440 - (12 * 60 + 34)) + 180  # rest of the 10th + 3 h REST
    assert later.rest_requests == 1
    assert later.watermark == "2025-03-11T02:59:59.999999+00:00"
    stored = _stored(tmp_path, "BTCUSDT", date(2025, 3, 1))
    assert stored["open_time"].is_unique().all() and stored["open_time"].is_sorted()
    assert stored.height == _expected_rows(2025, 3, 10) + 180


def test_a_missing_month_falls_back_to_daily_files(tmp_path, clients, sim):
    normal = _ingest(tmp_path / "a", clients, sim, "BNBUSDT", date(2025, 1, 1))
    sim.missing_month("BNBUSDT", 2025, 1)
    fallback = _ingest(tmp_path / "b", clients, sim, "BNBUSDT", date(2025, 1, 1))
    assert fallback.missing_files == [clients[0].url(monthly_path("BNBUSDT", 2025, 1))]
    assert len(fallback.files) == 31 and fallback.rest_requests == 0
    assert _stored(tmp_path / "b", "BNBUSDT", date(2025, 1, 1)).equals(
        _stored(tmp_path / "a", "BNBUSDT", date(2025, 1, 1))
    )
    assert normal.rows == fallback.rows


@pytest.mark.parametrize("fault", ["corrupt_zip", "checksum_mismatch"])
def test_a_file_bad_once_is_refetched_and_recorded(tmp_path, clients, sim, fault):
    getattr(sim, fault)(monthly_path("ADAUSDT", 2025, 2), times=1)
    result = _ingest(tmp_path, clients, sim, "ADAUSDT", date(2025, 2, 1))
    assert result.rows == _expected_rows(2025, 2, 28)
    manifest = lake.read_manifest(tmp_path, VENUE, ASSET, partition_of("ADAUSDT", date(2025, 2, 1)))
    record = manifest.extra["archive_files"][0]
    assert record["downloads"] == 2 and len(record["problems"]) == 1
    assert any("refetched" in note for note in manifest.extra["notes"])


@pytest.mark.parametrize("fault", ["corrupt_zip", "checksum_mismatch"])
def test_a_file_still_bad_fails_the_partition_and_writes_nothing(tmp_path, clients, sim, fault):
    getattr(sim, fault)(monthly_path("ADAUSDT", 2025, 2), times=2)
    with pytest.raises(ArchiveIntegrityError, match="ADAUSDT-1m-2025-02.zip.*after one refetch"):
        _ingest(tmp_path, clients, sim, "ADAUSDT", date(2025, 2, 1))
    assert lake.list_partitions(tmp_path, VENUE, ASSET) == []
    assert not lake.dataset_dir(tmp_path, VENUE, ASSET).exists() or not any(
        lake.dataset_dir(tmp_path, VENUE, ASSET).rglob("*.parquet")
    )


def test_a_bad_update_leaves_the_stored_partition_intact(tmp_path, clients, sim):
    _ingest(tmp_path, clients, sim, "LINKUSDT", date(2025, 3, 1))
    part = partition_of("LINKUSDT", date(2025, 3, 1))
    before = lake.read_manifest(tmp_path, VENUE, ASSET, part)
    sim.set_time(datetime(2025, 3, 12, 1, 0, tzinfo=UTC))
    sim.corrupt_zip(daily_path("LINKUSDT", date(2025, 3, 11)), times=2)
    with pytest.raises(ArchiveIntegrityError, match="LINKUSDT-1m-2025-03-11.zip"):
        _ingest(tmp_path, clients, sim, "LINKUSDT", date(2025, 3, 1))
    after = lake.verify_partition(tmp_path, VENUE, ASSET, part)
    assert after.sha256 == before.sha256 and after.rows == before.rows


def test_a_pair_delisted_mid_month_is_recorded_not_fatal(tmp_path, clients, sim):
    at = datetime(2025, 2, 10, 9, 30, tzinfo=UTC)
    sim.delist("SOLUSDT", at)
    feb = _ingest(tmp_path, clients, sim, "SOLUSDT", date(2025, 2, 1), status="BREAK")
    stored = _stored(tmp_path, "SOLUSDT", date(2025, 2, 1))
    assert stored["open_time"].max() == datetime(2025, 2, 10, 9, 29, tzinfo=UTC)
    assert feb.delisted and any("delisted" in n for n in feb.notes)
    assert feb.missing_minutes == 0  # the months after delisting are not counted as gaps
    mar = _ingest(tmp_path, clients, sim, "SOLUSDT", date(2025, 3, 1), status="BREAK")
    assert mar.rows == 0 and mar.delisted and any("no candles" in n for n in mar.notes)
    again = _ingest(tmp_path, clients, sim, "SOLUSDT", date(2025, 2, 1), status="BREAK")
    assert again.up_to_date and again.fetched_rows == 0


def test_429_and_418_during_the_rest_tail_are_waited_out(tmp_path, clients, sim):
    sim.inject_429(count=1, retry_after=1)
    sim.inject_418(retry_after=1)
    result = _ingest(tmp_path, clients, sim, "DOGEUSDT", date(2025, 3, 1))
    assert result.rows == _expected_rows(2025, 3, 9) + 12 * 60 + 34
    rest = clients[1]
    assert rest.stats["http_418"] + rest.stats["http_429"] >= 1
