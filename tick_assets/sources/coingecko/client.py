"""CoinGecko REST client for /coins/markets, kept inside the free tier.

The free tiers are small and move (keyless: IP-shared, "5-30 calls/min" over the years; Demo
key: 30-100 calls/min and 10k calls/month), so the client plans for the low end: a shared
``RateLimiter`` (default 10 calls per minute), a response cache on disk (a re-run within
``cache_seconds`` costs no call), and on a 429 it waits for Retry-After when sent, else backs
off exponentially from ``backoff_seconds`` (CoinGecko often sends no Retry-After), then
retries. A Demo key, if configured, goes in the ``x-cg-demo-api-key`` header, never in a URL,
a log line, an error message or the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from tick_assets.sources.ratelimit import RateLimiter

DEMO_KEY_HEADER = "x-cg-demo-api-key"
MAX_PER_PAGE = 250
TRANSIENT_ATTEMPTS = 3


class CoinGeckoError(RuntimeError):
    """A CoinGecko call failed; the message names the URL (never the API key)."""


class ResponseCache:
    """JSON responses on disk under ``directory``, fresh for ``ttl_seconds``."""

    def __init__(self, directory: Path | str, ttl_seconds: float) -> None:
        self.directory = Path(directory)
        self.ttl_seconds = ttl_seconds

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def get(self, key: str) -> Any | None:
        if self.ttl_seconds <= 0:
            return None
        path = self._path(key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # an unreadable cache entry is a miss; the fresh answer replaces it
        if doc.get("key") != key or time.time() - float(doc.get("at", 0)) > self.ttl_seconds:
            return None
        return doc["body"]

    def put(self, key: str, body: Any) -> None:
        if self.ttl_seconds <= 0:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "at": time.time(), "body": body}, fh)
        os.replace(tmp, self._path(key))


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(root: str, calls_per_minute: float) -> RateLimiter:
    """The process-wide call limiter of one CoinGecko root."""
    key = (root.rstrip("/"), float(calls_per_minute))
    with _limiters_lock:
        if key not in _limiters:
            _limiters[key] = RateLimiter(
                [(calls_per_minute, 60.0)], margin_s=0.5, name=f"coingecko {root}"
            )
        return _limiters[key]


class CoinGeckoClient:
    """GET /coins/markets (paged) within the free tier; see the module doc."""

    def __init__(
        self,
        root: str,
        *,
        api_key: str | None = None,
        calls_per_minute: float = 10.0,
        cache: ResponseCache | None = None,
        timeout: float = 30.0,
        backoff_seconds: float = 60.0,
        max_attempts: int = 4,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self._api_key = api_key
        self.cache = cache
        self.timeout = timeout
        self.backoff_seconds = backoff_seconds
        self.max_attempts = max_attempts
        self.session = session or requests.Session()
        self.limiter = limiter or shared_limiter(self.root, calls_per_minute)
        self.stats = {"calls": 0, "cache_hits": 0, "http_429": 0, "waited_s": 0.0}

    def __repr__(self) -> str:
        return f"CoinGeckoClient({self.root}, key={'set' if self._api_key else 'none'})"

    def get(self, path: str, params: Mapping[str, Any]) -> Any:
        """GET ``root + path`` with ``params``: cached, rate-limited, 429-aware."""
        url = f"{self.root}{path}"
        key = url + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))
        cached = self.cache.get(key) if self.cache else None
        if cached is not None:
            self.stats["cache_hits"] += 1
            return cached
        headers = {"accept": "application/json"}
        if self._api_key:
            headers[DEMO_KEY_HEADER] = self._api_key
        backoff = self.backoff_seconds
        transient = 0
        for _ in range(self.max_attempts):
            self.limiter.acquire()
            self.stats["calls"] += 1
            try:
                response = self.session.get(
                    url, params=params, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                transient += 1
                if transient >= TRANSIENT_ATTEMPTS:
                    raise CoinGeckoError(f"GET {key}: {type(exc).__name__}") from None
                time.sleep(2.0 * transient)
                continue
            if response.status_code == 429:
                self.stats["http_429"] += 1
                wait = _retry_after(response) or backoff
                backoff *= 2
                self.stats["waited_s"] += wait
                self.limiter.penalize(wait)
                continue
            if response.status_code >= 500 and transient + 1 < TRANSIENT_ATTEMPTS:
                transient += 1
                time.sleep(2.0 * transient)
                continue
            if response.status_code != 200:
                raise CoinGeckoError(
                    f"GET {key}: HTTP {response.status_code} {response.text[:300]}"
                    + (" (check the Demo API key)" if response.status_code in (401, 403) else "")
                )
            try:
                body = response.json()
            except ValueError:
                raise CoinGeckoError(f"GET {key}: the response is not JSON") from None
            if self.cache:
                self.cache.put(key, body)
            return body
        raise CoinGeckoError(
            f"GET {key}: still rate-limited (HTTP 429) after {self.max_attempts} attempts; "
            "the free tier is exhausted for now: retry later or configure a Demo API key"
        )

    def markets(
        self, page: int, per_page: int = MAX_PER_PAGE, category: str | None = None
    ) -> list[dict]:
        """One page of /coins/markets in USD, by market cap (largest first)."""
        params: dict[str, Any] = {
            "vs_currency": "usd",
            "order": "market_cap_desc",
            "per_page": per_page,
            "page": page,
        }
        if category:
            params["category"] = category
        body = self.get("/coins/markets", params)
        if not isinstance(body, list):
            raise CoinGeckoError(f"/coins/markets page {page}: expected a JSON array")
        return body

    def top_markets(self, n: int, per_page: int = MAX_PER_PAGE, spare: int = 10) -> list[dict]:
        """Rows of pages 1.. until ``n + spare`` coins with a market cap were seen.

        ``spare`` covers coins without a market cap and coins seen twice across pages (the
        ranking can shift between page calls).
        """
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{MAX_PER_PAGE}, got {per_page}")
        rows: list[dict] = []
        page = 1
        while sum(1 for r in rows if r.get("market_cap")) < n + spare:
            batch = self.markets(page, per_page)
            rows.extend(batch)
            if len(batch) < per_page:
                break
            page += 1
        return rows

    def category_ids(self, category: str, max_pages: int = 4) -> set[str]:
        """Ids of every coin in a CoinGecko category (e.g. stablecoins), up to max_pages."""
        ids: set[str] = set()
        for page in range(1, max_pages + 1):
            batch = self.markets(page, MAX_PER_PAGE, category=category)
            ids.update(str(row["id"]) for row in batch if "id" in row)
            if len(batch) < MAX_PER_PAGE:
                break
        return ids


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None
