"""Rate-limited HTTP GETs with retries, shared by every candle client and every worker thread.

Every attempt first takes a slot from the venue's one ``RateLimiter`` (all its windows at
once), so concurrent workers together never exceed the venue's published limits. 429s, 5xx
answers, timeouts and dropped connections are retried with exponential backoff and full
jitter; a 429 also pauses the whole limiter (``penalize``) for the Retry-After the venue sent,
or for the backoff when it sends none (Upstox), and widens its margin (``widen``): a 429
despite exact pacing means jitter on the way or someone else spending the same quota. Other statuses are not retried: they are answers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tick_assets.candles.errors import HttpStatusError, RetriesExhaustedError
from tick_assets.sources.ratelimit import RateLimiter


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request: attempts in all, backoff base and cap, per-try timeout."""

    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    timeout_s: float = 30.0

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff after ``failures`` consecutive failures (>= 1)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** (failures - 1)))


@dataclass
class FetchStats:
    """Thread-safe counters of one run's HTTP traffic (for metadata and benchmarks)."""

    requests: int = 0
    ok: int = 0
    retries: int = 0
    http_429: int = 0
    http_5xx: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                k: getattr(self, k)
                for k in (
                    "requests", "ok", "retries", "http_429", "http_5xx", "timeouts",
                    "connection_errors", "bytes",
                )
            }  # fmt: skip


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RateLimitedHttp:
    """GET through one limiter with retries; one requests.Session per worker thread."""

    def __init__(
        self,
        limiter: RateLimiter,
        policy: RetryPolicy | None = None,
        stats: FetchStats | None = None,
        *,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limiter = limiter
        self.policy = policy or RetryPolicy()
        self.stats = stats or FetchStats()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._local = threading.local()
        self._sleep = sleep

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _backoff(self, failures: int) -> float:
        with self._rng_lock:
            return self.policy.backoff(failures, self._rng)

    def get(self, url: str, *, symbol: str, headers: dict[str, str] | None = None) -> bytes:
        """The body of a 200 answer to GET ``url``.

        Raises HttpStatusError (a non-retryable status; body kept for the caller to classify)
        or RetriesExhaustedError; both name the URL and the symbol.
        """
        failures = 0
        while True:
            self.limiter.acquire()
            self.stats.add(requests=1)
            retry_after: float | None = None
            limited = False
            try:
                response = self._session().get(url, headers=headers, timeout=self.policy.timeout_s)
                # it reached the server somewhere in [booked, now]: let the limiter allow for it
            except requests.Timeout:
                self.stats.add(timeouts=1)
                last = f"timed out after {self.policy.timeout_s:g} s"
            except requests.ConnectionError as exc:
                self.stats.add(connection_errors=1)
                last = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 200:
                    self.stats.add(ok=1, bytes=len(response.content))
                    return response.content
                if status == 429:
                    self.stats.add(http_429=1)
                    limited = True
                elif status >= 500:
                    self.stats.add(http_5xx=1)
                else:
                    raise HttpStatusError(
                        f"GET {url} for {symbol}: HTTP {status}: {response.text[:300]}",
                        url=url,
                        symbol=symbol,
                        status=status,
                        body=response.text[:2000],
                    )
                last = f"HTTP {status}: {response.text[:200]}"
                retry_after = _retry_after(response)
            failures += 1
            if failures >= self.policy.attempts:
                raise RetriesExhaustedError(
                    f"GET {url} for {symbol}: gave up after {failures} attempts; last: {last}",
                    url=url,
                    symbol=symbol,
                )
            self.stats.add(retries=1)
            pause = retry_after if retry_after is not None else self._backoff(failures)
            if limited:
                self.limiter.penalize(pause)  # every worker waits; acquire() sees it
                self.limiter.widen()  # and the pacing leaves more room from now on
            else:
                self._sleep(pause)
