"""Capped exponential reconnect backoff with jitter.

Delays grow base, 2*base, 4*base ... up to `cap`; each is drawn from [d/2, d] ("equal jitter")
so shards that fail together do not reconnect in lockstep, yet no delay is ever near zero: a
flapping server never turns into a hot loop.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, base: float = 0.25, cap: float = 30.0, factor: float = 2.0, seed: int | None = None
    ) -> None:
        if not 0 < base <= cap or factor < 1:
            raise ValueError(
                f"backoff needs 0 < base ({base}) <= cap ({cap}) and factor ({factor}) >= 1"
            )
        self.base, self.cap, self.factor = base, cap, factor
        self.attempts = 0
        self._rng = random.Random(seed)

    def next(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        ceiling = min(self.cap, self.base * self.factor**self.attempts)
        self.attempts += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0
