"""Historical candles: request rate against the venues' limits, and JSON-to-Parquet throughput.

1. Rate (``--duration`` seconds, default 120): four clients run at once against the simulator,
   which enforces the real limits (Upstox 50/s + 500/min + 2000/30 min per user, Kite 3/s per
   api_key) with a 429 past any of them. For each venue, our client (one shared RateLimiter,
   several workers, retries) and the fixed-sleep approach (5 threads, 0.5 s sleep after each
   request) each use their own user/api_key. Reported: successful requests, 429s, and the
   share of what the limits permit in that time (for a fresh start: sum over windows, min of
   max_weight x ceil(T / window)). Goal: >= 90 % of it with zero 429s.
2. Throughput: Upstox 1-minute candle responses (simulated market, ``--symbols`` x one month)
   go through the real engine (``tick_assets.candles.backfill``: parse in worker threads,
   split into day partitions, write the lake with manifests) with a source that answers from
   memory instead of HTTP, so only network time is left out. Our parser vs the obvious
   json.loads + one dict per candle, measured in this run. Goal: >= 1,000,000 candles/s.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import requests

from tick_assets.calendars import trading_days
from tick_assets.candles.backfill import EngineOptions, backfill
from tick_assets.candles.errors import SymbolFetchError
from tick_assets.candles.fetch import RateLimitedHttp
from tick_assets.candles.parse import parse_candles, parse_candles_reference
from tick_assets.candles.timeframes import parse_timeframe
from tick_assets.defs.kite.assets import download_instruments_dump
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.kite.universe import build_universe
from tick_assets.sim.testing import access_token
from tick_assets.sim.upstox.accounts import SIM_UPSTOX_TOKENS
from tick_assets.sim.upstox.candles import candles as upstox_candles
from tick_assets.sources.kite.historical import KiteHistory
from tick_assets.sources.kite.historical import new_limiter as kite_limiter
from tick_assets.sources.kite.instruments import parse_instruments as parse_kite_instruments
from tick_assets.sources.kite.limits import HISTORICAL_REQUESTS_PER_SECOND
from tick_assets.sources.ratelimit import RateLimiter
from tick_assets.sources.upstox import limits as upstox_limits
from tick_assets.sources.upstox.history import UpstoxHistory, download_instruments
from tick_assets.sources.upstox.history import new_limiter as upstox_limiter
from tick_assets.sources.upstox.instruments import parse_instruments

SIM_DAY = date(2026, 11, 20)
DAYS = trading_days(date(2026, 9, 1), date(2026, 11, 19))
TF1 = parse_timeframe("1minute")
#: What the rate test asks for: one day candle per request. The limits count requests, not
#: candles, and a cheap answer keeps the simulator's own work from delaying the moment it
#: timestamps an arrival (its limiter's clock), which a real venue's front door does not have.
RATE_TF = parse_timeframe("day")


def permitted(windows, seconds: float) -> int:
    """Most requests the windows allow in ``seconds`` from a fresh start."""
    return int(min(limit * math.ceil(seconds / span) for limit, span in windows))


class Tally:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.ok = 0
        self.refused = 0
        self.errors = 0
        self.lock = threading.Lock()

    def add(self, status: str) -> None:
        if time.monotonic() > self.deadline:
            return
        with self.lock:
            setattr(self, status, getattr(self, status) + 1)


def run_limited(fetch: Callable[[int], None], workers: int, tally: Tally) -> list[threading.Thread]:
    """Our client: ``workers`` threads sharing the source's one limiter (retries inside)."""
    counter = iter(range(10**9))
    lock = threading.Lock()

    def loop() -> None:
        while time.monotonic() < tally.deadline:
            with lock:
                n = next(counter)
            try:
                fetch(n)
            except SymbolFetchError:
                tally.add("errors")
            else:
                tally.add("ok")

    return [threading.Thread(target=loop, daemon=True) for _ in range(workers)]


def run_fixed_sleep(
    url_of: Callable[[int], str], headers: dict[str, str], tally: Tally
) -> list[threading.Thread]:
    """The common script: 5 threads, each request followed by a 0.5 s sleep, no limiter."""
    counter = iter(range(10**9))
    lock = threading.Lock()

    def loop() -> None:
        session = requests.Session()
        while time.monotonic() < tally.deadline:
            with lock:
                n = next(counter)
            try:
                status = session.get(url_of(n), headers=headers, timeout=30).status_code
            except requests.RequestException:
                status = 0
            tally.add("ok" if status == 200 else "refused" if status == 429 else "errors")
            time.sleep(0.5)

    return [threading.Thread(target=loop, daemon=True) for _ in range(5)]


def bench_rate(duration: float) -> bool:
    print(f"### request rate over {duration:.0f} s against the simulator's enforced limits")
    # The simulator runs in its own process (as `tick-assets sim`), as a venue would: its
    # clock for the limits is not slowed by the client threads of this process.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "tick-assets"), "sim", "--day", SIM_DAY.isoformat(),
         "--seed", "7", "--rate", "100", "--speed", "60"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    ep = json.loads(server.stdout.readline())
    up_instruments = parse_instruments(download_instruments(ep["upstox_assets"]))
    kite_dump = parse_kite_instruments(download_instruments_dump(ep["kite_rest"]))
    symbols = up_instruments.filter(pl.col("segment") == "NSE_EQ")["trading_symbol"].to_list()
    ours_up = UpstoxHistory(
        ep["upstox_rest"], SIM_UPSTOX_TOKENS["SIMUP1"], up_instruments, limiter=upstox_limiter()
    )
    up_keys, _ = ours_up.resolve(symbols)
    up_syms = list(up_keys)
    idx, nif = SIM_APPS["indices"], SIM_APPS["nifty500"]
    ours_kite = KiteHistory(
        ep["kite_rest"], idx.api_key, access_token(ep, idx), kite_dump, limiter=kite_limiter()
    )
    kite_keys, _ = ours_kite.resolve(symbols)
    kite_syms = list(kite_keys)

    def pick(syms: list[str], n: int) -> tuple[str, date]:
        return syms[n % len(syms)], DAYS[(n // len(syms)) % len(DAYS)]

    def up_fetch(n: int) -> None:
        s, d = pick(up_syms, n)
        ours_up.fetch(s, up_keys[s], RATE_TF, d, d)

    def kite_fetch(n: int) -> None:
        s, d = pick(kite_syms, n)
        ours_kite.fetch(s, kite_keys[s], RATE_TF, d, d)

    naive_up = UpstoxHistory(ep["upstox_rest"], SIM_UPSTOX_TOKENS["SIMUP2"], up_instruments)
    naive_kite = KiteHistory(ep["kite_rest"], nif.api_key, "", kite_dump)

    def up_url(n: int) -> str:
        s, d = pick(up_syms, n)
        return naive_up.url(up_keys[s], RATE_TF, d, d)

    def kite_url(n: int) -> str:
        s, d = pick(kite_syms, n)
        return naive_kite.url(kite_keys[s], RATE_TF, d, d)

    up_headers = {"Authorization": f"Bearer {SIM_UPSTOX_TOKENS['SIMUP2']}"}
    kite_headers = {
        "X-Kite-Version": "3",
        "Authorization": f"token {nif.api_key}:{access_token(ep, nif)}",
    }
    start = time.monotonic()
    deadline = start + duration
    tallies = {
        ("upstox", "ours (RateLimiter, 8 workers)"): Tally(deadline),
        ("upstox", "fixed sleep (5 threads, 0.5 s)"): Tally(deadline),
        ("kite", "ours (RateLimiter, 2 workers)"): Tally(deadline),
        ("kite", "fixed sleep (5 threads, 0.5 s)"): Tally(deadline),
    }
    t = list(tallies.values())
    threads = [
        *run_limited(up_fetch, 8, t[0]),
        *run_fixed_sleep(up_url, up_headers, t[1]),
        *run_limited(kite_fetch, 2, t[2]),
        *run_fixed_sleep(kite_url, kite_headers, t[3]),
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, deadline - time.monotonic()))
    stats = {"upstox": ours_up.http.stats.as_dict(), "kite": ours_kite.http.stats.as_dict()}
    # Our clients' 429s as seen by their own retry loop (every one would have been retried).
    ours_429 = {venue: stats[venue]["http_429"] for venue in stats}
    allowed = {
        "upstox": permitted(upstox_limits.RATE_WINDOWS, duration),
        "kite": permitted([(HISTORICAL_REQUESTS_PER_SECOND, 1.0)], duration),
    }
    print(
        f"{'venue':<7} {'approach':<32} {'ok':>6} {'429s':>6} {'errors':>6} {'ok/s':>7} "
        f"{'permitted':>9} {'of permitted':>12}"
    )
    good = True
    for (venue, approach), tally in tallies.items():
        refused = ours_429[venue] if approach.startswith("ours") else tally.refused
        share = tally.ok / allowed[venue]
        print(
            f"{venue:<7} {approach:<32} {tally.ok:>6} {refused:>6} {tally.errors:>6} "
            f"{tally.ok / duration:>7.2f} {allowed[venue]:>9} {share:>11.1%}"
        )
        if approach.startswith("ours"):
            good &= share >= 0.90 and refused == 0
    for venue, source in (("upstox", ours_up), ("kite", ours_kite)):
        lim = source.http.limiter.stats()
        print(
            f"{venue} limiter: {lim['acquired']} grants, margin in force {lim['margin_s']:.3f} s, "
            f"{lim['penalties']} penalties; http {stats[venue]}"
        )
    server.terminate()
    server.wait(timeout=30)
    return good


def make_bodies(symbols: int) -> dict[str, bytes]:
    """``symbols`` one-month 1-minute Upstox responses of the simulated market (newest first)."""
    universe = build_universe(SIM_DAY, 7)
    rows = universe.instruments.with_row_index().filter(pl.col("segment") == "NSE")
    real = min(symbols, 25)  # compute 25 real paths; reuse them under other names
    bodies: dict[str, bytes] = {}
    for row, symbol in zip(rows["index"][:real], rows["tradingsymbol"][:real], strict=True):
        candles = upstox_candles(
            universe.seed, universe.params.take(np.array([row])), "minutes", 1,
            date(2026, 9, 21), date(2026, 10, 20), SIM_DAY, 0,
        )  # fmt: skip
        body = {"status": "success", "data": {"candles": candles}}
        bodies[symbol] = json.dumps(body, separators=(",", ":")).encode()
    base = list(bodies.values())
    for k in range(real, symbols):
        bodies[f"SYM{k:04d}"] = base[k % real]
    return bodies


class MemorySource:
    """A CandleSource answering from pre-built response bodies: the engine minus the network."""

    venue = "upstox"

    def __init__(self, bodies: dict[str, bytes], parse: Callable) -> None:
        self.bodies, self.parse = bodies, parse
        self.http = RateLimitedHttp(RateLimiter([(1e12, 1.0)]))

    def resolve(self, symbols):
        return {s: f"NSE_EQ|{s}" for s in symbols}, {}

    def check_timeframe(self, timeframe) -> None:
        return None

    def history_start(self, timeframe):
        return None

    def window_end(self, timeframe, first):
        return None

    def fetch(self, symbol, key, timeframe, first, last):
        return self.parse(self.bodies[symbol])

    def describe(self) -> str:
        return "memory"


def run_engine(bodies: dict[str, bytes], parse: Callable) -> tuple[int, float, float]:
    days = trading_days(date(2026, 9, 21), date(2026, 10, 20))
    with tempfile.TemporaryDirectory() as home:
        wall, cpu = time.perf_counter(), time.process_time()
        report = backfill(
            MemorySource(bodies, parse), home, list(bodies), {TF1: days},
            EngineOptions(workers=2, progress=False),
        )  # fmt: skip
        return report.candles_fetched, time.perf_counter() - wall, time.process_time() - cpu


def bench_throughput(symbols: int, repeats: int) -> bool:
    print(f"\n### JSON -> Parquet through the engine ({symbols} symbols x 1 month of 1minute)")
    bodies = make_bodies(symbols)
    mb = sum(len(b) for b in bodies.values()) / 1e6
    run_engine(dict(list(bodies.items())[:5]), parse_candles)  # warm up imports and threads
    best = None
    for _ in range(repeats):
        n, wall, cpu = run_engine(bodies, parse_candles)
        if best is None or wall < best[1]:
            best = (n, wall, cpu)
    assert best is not None
    n, wall, cpu = best
    base_bodies = dict(list(bodies.items())[: max(1, symbols // 4)])
    bn, bwall, bcpu = run_engine(base_bodies, parse_candles_reference)
    fast, slow = n / wall, bn / bwall
    print(f"responses: {len(bodies)} ({mb:.1f} MB of JSON), {n:,} candles")
    print(
        f"ours      : {fast:>12,.0f} candles/s wall  ({n / cpu:>12,.0f} per CPU-second), best of {repeats}"
    )
    print(f"json.loads: {slow:>12,.0f} candles/s wall  ({bn / bcpu:>12,.0f} per CPU-second), {bn:,} candles")  # fmt: skip
    print(f"ratio     : {fast / slow:.1f}x")
    return fast >= 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="rate test seconds")
    parser.add_argument("--symbols", type=int, default=100, help="responses in the parse test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    results = []
    if not args.skip_throughput:
        results.append(("throughput >= 1M candles/s", bench_throughput(args.symbols, args.repeats)))
    if not args.skip_rate:
        results.append(("rate >= 90% with 0 x 429", bench_rate(args.duration)))
    print()
    for name, ok in results:
        print(f"goal {name}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
