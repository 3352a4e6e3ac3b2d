"""The simulator's clock: wall time accelerated by `speed` from a chosen start instant.

Everything the simulators stamp (exchange timestamps, token expiry, which candles exist) reads
this clock, so a whole 09:15-15:30 session can play in a minute (speed 400) and tests can jump
it forward (for example past 06:00 IST to expire access tokens).
"""

from __future__ import annotations

import threading
import time as _time
from datetime import UTC, datetime


class SimClock:
    """sim_now = start + (monotonic elapsed) * speed; thread-safe to read and to move."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError(f"SimClock start {start!r} must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"speed={speed} must be > 0 (1 = real time, 400 = a session/minute)")
        self._lock = threading.Lock()
        self._anchor_sim = start.timestamp()
        self._anchor_real = _time.monotonic()
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        """Simulated time as UTC epoch seconds."""
        with self._lock:
            return self._anchor_sim + (_time.monotonic() - self._anchor_real) * self._speed

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
        return max(0.0, (sim_epoch - self.now()) / self._speed)
