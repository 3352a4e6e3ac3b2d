"""The simulated CoinGecko /coins/markets: paging, categories, point in time, limits, faults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from tick_assets.sim.binance.testing import control, fresh_venue
from tick_assets.sim.server import SimServer

DAY = datetime(2025, 3, 10, 23, 59, 59, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with SimServer(seed=42) as srv:
        yield srv


@pytest.fixture
def gecko(server):
    with fresh_venue(server, "coingecko", DAY) as cg:
        yield cg


def _markets(server, **params):
    query = {"vs_currency": "usd", **params}
    return requests.get(
        server.endpoints["coingecko_rest"] + "/coins/markets", params=query, timeout=30
    )


def test_pages_are_contiguous_by_market_cap(server, gecko):
    pages = [_markets(server, per_page=40, page=p).json() for p in (1, 2, 3)]
    rows = [r for page in pages for r in page]
    assert [len(p) for p in pages] == [40, 40, 40]
    caps = [r["market_cap"] for r in rows]
    assert caps == sorted(caps, reverse=True)
    assert [r["market_cap_rank"] for r in rows] == list(range(1, 121))
    assert len({r["id"] for r in rows}) == 120
    first = rows[0]
    assert first["id"] == "bitcoin" and first["symbol"] == "btc"
    assert {"current_price", "total_volume", "circulating_supply", "last_updated"} <= set(first)
    assert first["last_updated"].startswith("2025-03-10T23:59")


def test_categories_list_stablecoins_and_wrapped_tokens(server, gecko):
    stable = {r["id"] for r in _markets(server, per_page=250, category="stablecoins").json()}
    wrapped = {r["id"] for r in _markets(server, per_page=250, category="wrapped-tokens").json()}
    staked = {
        r["id"] for r in _markets(server, per_page=250, category="liquid-staking-tokens").json()
    }
    assert {"tether", "usd-coin", "dai", "first-digital-usd"} <= stable
    assert "bitcoin" not in stable
    assert {"wrapped-bitcoin", "weth", "coinbase-wrapped-btc"} <= wrapped
    assert {"staked-ether", "wrapped-steth", "jito-staked-sol"} <= staked


def test_the_ranking_is_point_in_time(server, gecko):
    march = {r["id"]: r for r in _markets(server, per_page=250).json()}
    gecko.set_time(datetime(2024, 12, 1, 12, tzinfo=UTC))
    december = {r["id"]: r for r in _markets(server, per_page=250).json()}
    assert "official-trump" in march and "official-trump" not in december  # listed 2025-01-19
    assert march["bitcoin"]["market_cap"] != december["bitcoin"]["market_cap"]
    gecko.set_time(DAY)
    again = {r["id"]: r for r in _markets(server, per_page=250).json()}
    assert again["bitcoin"]["market_cap"] == march["bitcoin"]["market_cap"]  # deterministic


def test_bad_requests_are_refused(server, gecko):
    missing = requests.get(server.endpoints["coingecko_rest"] + "/coins/markets", timeout=30)
    assert missing.status_code == 400 and "vs_currency" in missing.text
    assert _markets(server, per_page=251).status_code == 400
    assert _markets(server, category="no-such-category").status_code == 400


def test_injected_429_over_http_control(server, gecko):
    control(
        server.endpoints, "coingecko", "faults", {"action": "429", "count": 2, "retry_after": 3}
    )
    first, second, third = (_markets(server, per_page=5) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "3"
    assert first.json()["status"]["error_code"] == 429
    assert control(server.endpoints, "coingecko", "stats")["injected_429"] >= 2


def test_free_tier_limit_answers_429_without_retry_after(server, gecko):
    gecko.clear_faults()  # forget earlier calls of this minute
    gecko.calls_per_minute = 3
    try:
        responses = [_markets(server, per_page=5) for _ in range(5)]
    finally:
        gecko.calls_per_minute = 30
        gecko.clear_faults()
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert "Retry-After" not in responses[3].headers  # keyless CoinGecko sends none
    assert "Rate Limit" in responses[3].json()["status"]["error_message"]
