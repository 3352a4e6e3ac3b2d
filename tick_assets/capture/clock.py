"""The venue's clock, injectable: "now" for receipt stamps, deadlines and market hours.

Live capture uses the wall clock (`time.time_ns`). A time-accelerated simulator or a replay
runs on its own clock; `LinearClock` maps wall time onto it (venue = anchor + elapsed * speed).
Latency from receipt to journaled is always measured on the monotonic clock, never on this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A venue clock: UTC epoch nanoseconds.
Clock = Callable[[], int]

wall_clock: Clock = time.time_ns


class LinearClock:
    """venue_ns = anchor_venue_ns + (monotonic elapsed since creation) * speed.

    With ``realtime_after_ns`` the speed drops to 1 once the venue clock passes that instant,
    as the simulator's clock does after the session close.
    """

    def __init__(
        self, anchor_venue_ns: int, speed: float = 1.0, realtime_after_ns: int | None = None
    ) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed {speed} must be > 0 (1 = real time)")
        self.anchor_venue_ns = int(anchor_venue_ns)
        self.speed = float(speed)
        self.realtime_after_ns = realtime_after_ns
        self._anchor_mono = time.monotonic_ns()

    def __call__(self) -> int:
        elapsed = time.monotonic_ns() - self._anchor_mono
        fast = self.anchor_venue_ns + int(elapsed * self.speed)
        limit = self.realtime_after_ns
        if limit is None or fast <= limit:
            return fast
        if self.anchor_venue_ns >= limit:
            return self.anchor_venue_ns + elapsed
        return limit + elapsed - int((limit - self.anchor_venue_ns) / self.speed)
