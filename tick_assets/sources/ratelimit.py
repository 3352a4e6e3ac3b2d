"""One client-side rate limiter that honours every published window of a venue at once.

Venues publish several windows that all apply together (Upstox: 50/s, 500/min, 2000/30 min;
Binance: 6000 weight/min; Kite historical: 3/s) and some send no Retry-After on a 429, so the
client must pace itself exactly. ``RateLimiter`` keeps a log of granted requests and hands out
*reservations*: each ``acquire`` computes the earliest instant at which every sliding window
still has room for its weight, books the request at that instant and sleeps until it. Because
the booking happens under a lock and the sleep outside it, any number of threads (or asyncio
tasks, through ``AsyncRateLimiter``) share one limiter, are served first come first served,
and never stampede after a wait. A sliding log is the strictest form of a window limit, so a
server counting fixed calendar windows is never exceeded either.

``margin_s`` lengthens every window a little so that jitter in network latency (a request
booked exactly one window after another arriving a few ms early) cannot trip the server.
If a venue still answers 429 (its clock saw two requests closer together than they were
booked, because one was delayed more than the margin on its way), ``widen()`` doubles the
margin in force, up to ``MAX_MARGIN_S``: after a 429 or two the limiter has learnt the jitter
of the path and stays clear of the limit from then on.

``penalize(seconds)`` blocks every caller until then (Retry-After, Binance 418); callers that
were already booked re-book after the penalty so the burst that follows still respects the
windows. Bookings a caller abandons (an exception while sleeping) stay counted: that only
slows the limiter down, never speeds it past the venue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """At most ``limit`` weight in any ``seconds``-long sliding window."""

    limit: float
    seconds: float


class _Log:
    """Granted (time, weight) bookings of one window, oldest first, with their running sum."""

    __slots__ = ("window", "span", "entries", "total")

    def __init__(self, window: Window, margin_s: float) -> None:
        self.window = window
        self.span = window.seconds + margin_s  # updated when the margin in force changes
        self.entries: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def prune(self, now: float) -> None:
        """Forget bookings that have left the window as seen from ``now``."""
        cutoff = now - self.span
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            self.total -= entries.popleft()[1]
        if not entries:
            self.total = 0.0

    def earliest(self, weight: float) -> float:
        """Earliest time at which ``weight`` more fits (-inf if it fits at any time)."""
        room = self.window.limit - weight
        excess = self.total - room
        if excess <= 1e-9:
            return float("-inf")
        dropped = 0.0
        for at, w in self.entries:
            dropped += w
            if dropped >= excess - 1e-9:
                return at + self.span
        raise AssertionError("unreachable: weight was checked against the limit")

    def used(self) -> float:
        return self.total


MIN_WIDENED_MARGIN_S = 0.05
MAX_MARGIN_S = 0.5


class RateLimiter:
    """Blocks callers so that every window in ``windows`` is honoured; thread-safe.

    ``windows`` is a sequence of ``(max_weight, seconds)``, e.g. ``[(50, 1), (500, 60),
    (2000, 1800)]``. ``acquire(weight)`` returns when the request may be sent.
    """

    def __init__(
        self,
        windows: Sequence[tuple[float, float]],
        *,
        margin_s: float = 0.0,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not windows:
            raise ValueError("RateLimiter needs at least one (max_weight, seconds) window")
        parsed = []
        for item in windows:
            limit, seconds = item
            if not (limit > 0 and seconds > 0):
                raise ValueError(
                    f"bad rate-limit window {item!r}: max weight and seconds must be > 0"
                )
            parsed.append(Window(float(limit), float(seconds)))
        if margin_s < 0:
            raise ValueError(f"margin_s must be >= 0, got {margin_s}")
        self.name = name
        self.windows: tuple[Window, ...] = tuple(parsed)
        self.margin_s = margin_s
        self._logs = [_Log(w, margin_s) for w in self.windows]
        self._margin_now = margin_s
        self._widened = 0
        self._max_weight = min(w.limit for w in self.windows)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = float("-inf")  # bookings are handed out in non-decreasing time order
        self._blocked_until = float("-inf")
        self._acquired = 0
        self._weight = 0.0
        self._waited_s = 0.0
        self._penalties = 0
        self._penalized_s = 0.0

    # --- booking -------------------------------------------------------------------------

    def clock(self) -> float:
        """The limiter's clock (time.monotonic unless injected)."""
        return self._clock()

    def _check_weight(self, weight: float) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        if weight > self._max_weight:
            raise ValueError(
                f"weight {weight} can never be granted: the smallest window allows "
                f"{self._max_weight} (limiter {self.name or 'unnamed'})"
            )

    def reserve(self, weight: float = 1.0) -> float:
        """Book ``weight`` at the earliest allowed instant and return that instant (clock time).

        The booking counts at once; the caller must not send before the returned time.
        """
        self._check_weight(weight)
        with self._lock:
            now = self._clock()
            at = max(now, self._last, self._blocked_until)
            for log in self._logs:
                log.prune(now)
                at = max(at, log.earliest(weight))
            for log in self._logs:
                log.entries.append((at, weight))
                log.total += weight
            self._last = at
            self._acquired += 1
            self._weight += weight
            self._waited_s += at - now
            return at

    def _blocked(self, now: float) -> bool:
        with self._lock:
            return now < self._blocked_until

    def acquire(self, weight: float = 1.0) -> float:
        """Block until every window allows ``weight`` more, then count it as sent.

        Returns the booked instant (``clock`` time).
        """
        while True:
            at = self.reserve(weight)
            delay = at - self._clock()
            if delay > 0:
                self._sleep(delay)
            if not self._blocked(self._clock()):
                return at
            # A penalty arrived while we slept: our booking predates it, so book again.

    def widen(self) -> float:
        """A 429 despite pacing: the server saw two bookings closer than a window apart.

        Network and scheduling jitter moved them; double the margin in force (up to
        ``MAX_MARGIN_S``) so the same jitter cannot do it again. Returns the new margin.
        """
        with self._lock:
            margin = min(MAX_MARGIN_S, max(2 * self._margin_now, MIN_WIDENED_MARGIN_S))
            self._set_margin(margin)
            self._widened += 1
            return margin

    def _set_margin(self, margin: float) -> None:
        self._margin_now = margin
        for log in self._logs:
            log.span = log.window.seconds + margin

    def penalize(self, seconds: float) -> None:
        """Block every caller for ``seconds`` from now (Retry-After, ban, or a bare 429)."""
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until > self._blocked_until:
                self._blocked_until = until
            self._penalties += 1
            self._penalized_s += seconds

    def stats(self) -> dict[str, float | int | str | list[dict[str, float]]]:
        """Counters for metadata and benchmarks: grants, weight, waits, penalties, usage."""
        with self._lock:
            now = self._clock()
            usage = []
            for log in self._logs:
                log.prune(now)
                usage.append(
                    {
                        "limit": log.window.limit,
                        "seconds": log.window.seconds,
                        "used": log.used(),
                    }
                )
            return {
                "name": self.name,
                "acquired": self._acquired,
                "weight": self._weight,
                "waited_s": round(self._waited_s, 6),
                "penalties": self._penalties,
                "penalized_s": round(self._penalized_s, 6),
                "blocked_for_s": round(max(0.0, self._blocked_until - now), 6),
                "margin_s": round(self._margin_now, 6),
                "widened": self._widened,
                "windows": usage,
            }

    def __repr__(self) -> str:
        spec = ", ".join(f"{w.limit:g}/{w.seconds:g}s" for w in self.windows)
        return f"RateLimiter({self.name or 'unnamed'}: {spec}, margin {self.margin_s:g}s)"


class AsyncRateLimiter:
    """asyncio face of a ``RateLimiter``: same bookings, awaits instead of sleeping a thread.

    Wrap an existing limiter to share its windows between threads and event loops.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def acquire(self, weight: float = 1.0) -> float:
        lim = self.limiter
        while True:
            at = lim.reserve(weight)
            delay = at - lim._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if not lim._blocked(lim._clock()):
                return at

    def widen(self) -> float:
        return self.limiter.widen()

    def penalize(self, seconds: float) -> None:
        self.limiter.penalize(seconds)

    def stats(self) -> dict[str, float | int | str | list[dict[str, float]]]:
        return self.limiter.stats()


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(
    key: str,
    windows: Sequence[tuple[float, float]],
    *,
    margin_s: float = 0.0,
    name: str = "",
) -> RateLimiter:
    """The one limiter of this process for ``key`` (e.g. one per venue user or API key).

    Every client of the same quota in the process must pace through the same limiter; asking
    again with other windows is a programming error and raises ValueError. ``key`` is never
    shown (it may be derived from a credential); ``name`` is what stats() reports.
    """
    wanted = tuple(Window(float(limit), float(seconds)) for limit, seconds in windows)
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = RateLimiter(windows, margin_s=margin_s, name=name)
        elif limiter.windows != wanted or limiter.margin_s != margin_s:
            raise ValueError(
                f"shared limiter {name or 'unnamed'} already exists with windows "
                f"{limiter.windows} and margin {limiter.margin_s}; asked for {wanted}, {margin_s}"
            )
        return limiter
