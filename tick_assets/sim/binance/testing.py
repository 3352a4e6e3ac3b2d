"""Helpers for tests and benchmarks that drive the crypto simulators (CoinGecko, Binance).

``venue(server, name)`` finds a venue object of a running SimServer (for its in-process
fault methods); ``control(endpoints, venue, ...)`` uses the HTTP control endpoints instead
(what a test of the Dagster assets, which only see endpoints, can reach).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import requests


def venue(server: Any, name: str) -> Any:
    """The venue called ``name`` ("binance", "coingecko") of a started SimServer."""
    for v in server.venues:
        if v.name == name:
            return v
    raise LookupError(f"the simulator has no venue {name!r}")


@contextmanager
def fresh_venue(server: Any, name: str, now: datetime) -> Iterator[Any]:
    """The venue with no faults and its clock at ``now``; faults cleared again afterwards."""
    v = venue(server, name)
    v.clear_faults()
    v.set_time(now)
    try:
        yield v
    finally:
        v.clear_faults()


def control(endpoints: dict[str, str], name: str, path: str, body: dict | None = None) -> dict:
    """POST (with a body) or GET ``<name>_control/<path>``; raises on an error answer."""
    url = f"{endpoints[f'{name}_control']}/{path}"
    if body is None:
        response = requests.get(url, timeout=30)
    else:
        response = requests.post(url, json=body, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def reset(endpoints: dict[str, str], now: datetime | None = None) -> None:
    """Clear every crypto fault and put both crypto clocks back at ``now`` (default: now)."""
    when = (now or datetime.now(UTC)).isoformat()
    for name in ("binance", "coingecko"):
        control(endpoints, name, "faults", {"action": "clear"})
        control(endpoints, name, "clock", {"time": when})
