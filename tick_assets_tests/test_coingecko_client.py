"""CoinGecko client (paging, cache, 429 backoff, key hygiene) and the ranking it feeds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tick_assets.sim.binance.testing import fresh_venue
from tick_assets.sim.server import SimServer
from tick_assets.sources.coingecko.client import CoinGeckoClient, CoinGeckoError, ResponseCache
from tick_assets.sources.coingecko.rankings import RankingError, build_ranking
from tick_assets.sources.ratelimit import RateLimiter

DAY = datetime(2025, 6, 1, 23, 59, 59, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=42) as srv:
        yield srv


@pytest.fixture
def gecko(server):
    with fresh_venue(server, "coingecko", DAY) as cg:
        yield cg


def _client(server, tmp_path=None, **kwargs) -> CoinGeckoClient:
    cache = ResponseCache(tmp_path, 600) if tmp_path is not None else None
    limiter = RateLimiter([(100, 60.0)], name="test")
    return CoinGeckoClient(
        server.endpoints["coingecko_rest"], cache=cache, limiter=limiter, **kwargs
    )


def test_top_markets_pages_until_n(server, gecko):
    client = _client(server)
    rows = client.top_markets(100, per_page=40)
    assert client.stats["calls"] == 3 and len(rows) == 120
    frame, dropped = build_ranking(rows, 100, DAY)
    assert frame.height == 100 and frame["rank"].to_list() == list(range(1, 101))
    assert dropped == {"below_top_n": 20}
    assert frame["id"][0] == "bitcoin"


def test_the_cache_spares_calls(server, gecko, tmp_path):
    first = _client(server, tmp_path)
    first.markets(1, 50)
    served = gecko.stats["markets_calls"]
    second = _client(server, tmp_path)
    assert second.markets(1, 50) == first.markets(1, 50)
    assert second.stats == {"calls": 0, "cache_hits": 1, "http_429": 0, "waited_s": 0.0}
    assert gecko.stats["markets_calls"] == served


def test_429_with_retry_after_waits_that_long(server, gecko):
    client = _client(server, backoff_seconds=30)
    gecko.inject_429(1, retry_after=1)
    start = time.monotonic()
    assert len(client.markets(1, 10)) == 10
    assert time.monotonic() - start >= 1.0
    assert client.stats["http_429"] == 1 and client.stats["waited_s"] == 1


def test_bare_429s_back_off_exponentially(server, gecko):
    client = _client(server, backoff_seconds=0.3)
    gecko.inject_429(2)  # no Retry-After, like keyless CoinGecko
    start = time.monotonic()
    client.markets(1, 10)
    assert time.monotonic() - start >= 0.9  # 0.3 + 0.6
    assert client.stats["waited_s"] == pytest.approx(0.9)


def test_persistent_429_is_a_clear_error(server, gecko):
    client = _client(server, backoff_seconds=0.05, max_attempts=3)
    gecko.inject_429(5)
    with pytest.raises(CoinGeckoError, match="still rate-limited.*Demo API key"):
        client.markets(1, 10)


def test_the_api_key_stays_out_of_urls_errors_and_repr(server, gecko, tmp_path):
    secret = "CG-secret-demo-key-123"
    client = _client(server, tmp_path, api_key=secret)
    assert secret not in repr(client)
    with pytest.raises(CoinGeckoError) as err:
        client.get("/coins/markets", {"vs_currency": "usd", "per_page": 999})
    assert secret not in str(err.value) and "HTTP 400" in str(err.value)
    client.markets(1, 5)
    for cached in tmp_path.glob("*.json"):
        assert secret not in cached.read_text()


def test_ranking_drops_uncapped_and_duplicate_coins():
    rows = [
        {"id": "a", "symbol": "AAA", "market_cap": 300, "market_cap_rank": 1},
        {"id": "b", "symbol": "bbb", "market_cap": None, "market_cap_rank": None},
        {"id": "c", "symbol": "ccc", "market_cap": 0},
        {"id": "a", "symbol": "aaa", "market_cap": 290},  # seen again on the next page
        {"id": "d", "symbol": "ddd", "market_cap": 500, "last_updated": "2025-06-01T23:59:00.000Z"},
        {"symbol": "eee", "market_cap": 10},
    ]
    frame, dropped = build_ranking(rows, 5, DAY, stablecoin_ids={"d"})
    assert frame["id"].to_list() == ["d", "a"] and frame["symbol"].to_list() == ["ddd", "aaa"]
    assert dropped == {"no_market_cap": 2, "duplicate_id": 1, "malformed": 1}
    assert frame["stablecoin"].to_list() == [True, False]
    assert frame["last_updated"][0] == datetime(2025, 6, 1, 23, 59, tzinfo=UTC)
    with pytest.raises(RankingError):
        build_ranking([{"id": "x", "symbol": "x", "market_cap": None}], 5, DAY)
