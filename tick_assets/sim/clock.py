"""The simulator's clock: wall time accelerated by `speed` from a chosen start instant.

Everything the simulators stamp (exchange timestamps, token expiry, which candles exist) reads
this clock, so a whole 09:15-15:30 session can play in a minute (speed 400) and tests can jump
it forward (for example past 06:00 IST to expire access tokens).

With ``realtime_after`` (the Kite venue passes its session close) the acceleration stops there
and the clock goes on at real time. Without it a sim started at 09:15 at speed 400 would pass
the next 06:00 IST, when access tokens expire, about three wall minutes after start; with it a
token issued in the morning stays usable for the rest of the (real) day, as on Kite.
"""

from __future__ import annotations

import threading
import time as _time
from datetime import UTC, datetime


class SimClock:
    """sim_now = start + (monotonic elapsed) * speed, then real time past ``realtime_after``.

    Thread-safe to read and to move.
    """

    def __init__(
        self, start: datetime, speed: float = 1.0, realtime_after: datetime | None = None
    ) -> None:
        if start.tzinfo is None:
            raise ValueError(f"SimClock start {start!r} must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"speed={speed} must be > 0 (1 = real time, 400 = a session/minute)")
        self._lock = threading.Lock()
        self._anchor_sim = start.timestamp()
        self._anchor_real = _time.monotonic()
        self._speed = float(speed)
        if realtime_after is not None and realtime_after.tzinfo is None:
            raise ValueError(f"realtime_after {realtime_after!r} must be timezone-aware")
        self._fast_until = realtime_after.timestamp() if realtime_after is not None else None

    @property
    def speed(self) -> float:
        """The configured acceleration (the rate before ``realtime_after``)."""
        return self._speed

    @property
    def realtime_after(self) -> float | None:
        """Simulated epoch after which the clock runs at real time (None: always `speed`)."""
        return self._fast_until

    def current_speed(self) -> float:
        """Simulated seconds per wall second right now (1 once past ``realtime_after``)."""
        if self._fast_until is not None and self.now() >= self._fast_until:
            return 1.0
        return self._speed

    def _sim_at(self, real: float) -> float:
        elapsed = real - self._anchor_real
        fast = self._anchor_sim + elapsed * self._speed
        limit = self._fast_until
        if limit is None or fast <= limit:
            return fast
        if self._anchor_sim >= limit:
            return self._anchor_sim + elapsed
        return limit + (elapsed - (limit - self._anchor_sim) / self._speed)

    def now(self) -> float:
        """Simulated time as UTC epoch seconds."""
        with self._lock:
            return self._sim_at(_time.monotonic())

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def set(self, when: datetime | float, speed: float | None = None) -> None:
        """Jump to `when` (aware datetime or epoch seconds), optionally changing the speed."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError(f"clock time {when!r} must be timezone-aware")
            when = when.timestamp()
        if speed is not None and not speed > 0:
            raise ValueError(f"speed={speed} must be > 0")
        with self._lock:
            self._anchor_sim = float(when)
            self._anchor_real = _time.monotonic()
            if speed is not None:
                self._speed = float(speed)

    def real_seconds_until(self, sim_epoch: float) -> float:
        """Wall seconds until the clock reads `sim_epoch` (0 if already past)."""
        now, limit = self.now(), self._fast_until
        if sim_epoch <= now:
            return 0.0
        if limit is None:
            return (sim_epoch - now) / self._speed
        if now >= limit:
            return sim_epoch - now
        if sim_epoch <= limit:
            return (sim_epoch - now) / self._speed
        return (limit - now) / self._speed + (sim_epoch - limit)
