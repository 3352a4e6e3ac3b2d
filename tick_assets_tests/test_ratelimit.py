"""The shared rate limiter: every window honoured at once, across threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tick_assets.sources.ratelimit import AsyncRateLimiter, RateLimiter


class FakeClock:
    """A clock that only moves when someone sleeps, so schedules are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _max_in_window(times: list[float], seconds: float) -> int:
    """Largest number of grant times inside any half-open window of ``seconds``."""
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - seconds:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_every_window_honoured_and_no_slower_than_needed():
    clock = FakeClock()
    lim = RateLimiter([(5, 1), (12, 10)], clock=clock, sleep=clock.sleep)
    grants = []
    for _ in range(40):
        lim.acquire()
        grants.append(clock.now)
    assert _max_in_window(grants, 1) <= 5
    assert _max_in_window(grants, 10) <= 12
    # 5 at once, 5 one second later, 2 more a second after that; then the 10 s window binds.
    assert grants[:5] == [1000.0] * 5
    assert grants[5:10] == [1001.0] * 5
    assert grants[10:12] == [1002.0] * 2
    assert grants[12] == pytest.approx(1010.0)
    # The pattern repeats every 10 s, so grant 36 (the 37th) opens the fourth period.
    assert grants[36:] == [pytest.approx(1030.0)] * 4


def test_weights_count_against_windows():
    clock = FakeClock()
    lim = RateLimiter([(10, 60)], clock=clock, sleep=clock.sleep)
    lim.acquire(4)
    lim.acquire(4)
    assert clock.now == 1000.0
    lim.acquire(4)  # 12 > 10: must wait for the first booking to leave the window
    assert clock.now == pytest.approx(1060.0)
    with pytest.raises(ValueError, match="can never be granted"):
        lim.acquire(11)
    with pytest.raises(ValueError, match="weight must be > 0"):
        lim.acquire(0)


def test_margin_lengthens_windows():
    clock = FakeClock()
    lim = RateLimiter([(2, 1)], margin_s=0.05, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        lim.acquire()
    assert clock.now == pytest.approx(1001.05)


def test_penalize_blocks_everyone_then_rebooks():
    clock = FakeClock()
    lim = RateLimiter([(3, 1)], clock=clock, sleep=clock.sleep)
    lim.acquire()
    lim.penalize(30)
    lim.acquire()
    assert clock.now == pytest.approx(1030.0)
    s = lim.stats()
    assert s["penalties"] == 1 and s["acquired"] == 2
    assert s["windows"][0]["used"] == 1  # the pre-penalty booking has left the 1 s window


def test_bad_windows_are_named():
    with pytest.raises(ValueError, match="at least one"):
        RateLimiter([])
    with pytest.raises(ValueError, match=r"bad rate-limit window \(0, 1\)"):
        RateLimiter([(0, 1)])


def test_threads_share_one_limiter_real_clock():
    lim = RateLimiter([(10, 0.2), (25, 1.0)], name="t")
    grants: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            lim.acquire()
            with lock:
                grants.append(time.monotonic())

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    elapsed = time.monotonic() - t0
    grants.sort()
    assert len(grants) == 60
    # Wall-clock stamps are taken after the sleep returns, so a late wake-up can bunch them by
    # scheduler jitter; allow 30 ms of it (the venue clients add a margin for the same reason).
    assert _max_in_window(grants, 0.2 - 0.03) <= 10
    assert _max_in_window(grants, 1.0 - 0.03) <= 25
    # 60 grants at 25/s: two full extra seconds are needed, and not much more.
    assert 2.0 <= elapsed < 4.0


def test_penalty_wakes_sleeping_threads_late():
    lim = RateLimiter([(1, 0.05)])
    lim.acquire()
    done: list[float] = []
    t = threading.Thread(target=lambda: (lim.acquire(), done.append(time.monotonic())))
    start = time.monotonic()
    t.start()
    time.sleep(0.01)
    lim.penalize(0.3)
    t.join(timeout=5)
    assert done and done[0] - start >= 0.3


def test_async_variant_shares_bookings():
    lim = RateLimiter([(4, 0.25)])
    alim = AsyncRateLimiter(lim)

    async def main() -> list[float]:
        out: list[float] = []

        async def one():
            await alim.acquire()
            out.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(12)))
        return out

    t0 = time.monotonic()
    grants = sorted(asyncio.run(main()))
    assert _max_in_window(grants, 0.25 - 0.05) <= 4  # wake-ups may be late, never early
    assert 0.5 <= time.monotonic() - t0 < 2.0
    assert alim.stats()["acquired"] == 12


def test_widen_after_an_unexpected_429_doubles_the_margin():
    clock = FakeClock()
    lim = RateLimiter([(2, 1)], margin_s=0.05, clock=clock, sleep=clock.sleep)
    assert lim.acquire() == 1000.0  # acquire returns the booked instant
    assert lim.widen() == pytest.approx(0.1)
    lim.acquire()
    lim.acquire()  # the first booking now leaves the window 1.1 s after it was made
    assert clock.now == pytest.approx(1001.1)
    for _ in range(5):
        lim.widen()
    stats = lim.stats()
    assert stats["margin_s"] == pytest.approx(0.5) and stats["widened"] == 6  # capped


def test_shared_limiter_is_one_per_key():
    from tick_assets.sources.ratelimit import shared_limiter

    a = shared_limiter("test:key-1", [(5, 1)], name="t")
    assert shared_limiter("test:key-1", [(5, 1)], name="t") is a
    assert shared_limiter("test:key-2", [(5, 1)], name="t") is not a
    with pytest.raises(ValueError, match="already exists"):
        shared_limiter("test:key-1", [(6, 1)], name="t")


def test_upstox_windows_all_bind_in_turn():
    """50/s, 500/min and 2000/30 min at once: a burst of 50, 500 in the first minute, 2000
    in the first four minutes, and the 2001st request waits for the half hour to turn."""
    from tick_assets.sources.upstox.limits import RATE_WINDOWS

    clock = FakeClock()
    lim = RateLimiter(RATE_WINDOWS, clock=clock, sleep=clock.sleep)
    grants = []
    for _ in range(2001):
        lim.acquire()
        grants.append(clock.now - 1000.0)
    assert _max_in_window(grants, 1) == 50
    assert _max_in_window(grants, 60) == 500
    assert _max_in_window(grants, 1800) == 2000
    assert grants[49] == 0 and grants[50] == pytest.approx(1.0)
    assert grants[500] == pytest.approx(60.0) and grants[1999] < 200
    assert grants[2000] == pytest.approx(1800.0)
