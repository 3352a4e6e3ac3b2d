"""Live capture throughput and latency: our engine vs a row-at-a-time recorder, same simulator.

The simulator runs as its own process (`tick-assets sim`), so it and the capture share the
machine's cores as they would in production, and everything crosses a real loopback websocket.

1. Throughput: the engine captures every instrument in full mode from a simulator publishing
   `--rate` ticks/s, into the journal and raw archive (fsync per 200 ms flush). The figure is
   the rate it journaled while keeping up, and it only counts if nothing was lost: the
   simulator's packets sent on the connection equal the packets the engine decoded, and the
   simulator never had to skip a batch or drop us as a slow consumer.
2. Baseline, same simulator and rate: what recorders commonly do, kiteconnect's
   `KiteTicker._parse_binary` per message and one SQL INSERT per tick into SQLite, committing
   per message (as rthennan/ZerodhaWebsocket commits per on_ticks call). It cannot keep up; its
   figure is the rate it processed while saturated (an upper bound of what it could sustain).
   A second baseline commits per tick (autocommit), as simpler recorders do.
3. Latency: at `--latency-rate` (20,000 ticks/s), p99 from receipt to journaled (fsynced).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import requests
import websockets
from kiteconnect import KiteConnect, KiteTicker

from tick_assets.capture.clock import LinearClock
from tick_assets.capture.engine import CaptureEngine, CaptureSettings, Shard
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.testing import access_token, ws_url
from tick_assets.sources.kite.stream import KiteCredentials, KiteStream

DAY = date(2026, 11, 20)
APP = SIM_APPS["nifty500"]
BIN = Path(sys.executable).parent


class Sim:
    """`tick-assets sim` in its own process."""

    def __init__(self, rate: int, speed: float) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "tick-assets"), "sim", "--rate", str(rate), "--speed", str(speed),
             "--day", DAY.isoformat()],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.endpoints = json.loads(self.proc.stdout.readline())
        self.token = access_token(self.endpoints, APP)
        kite = KiteConnect(APP.api_key, root=self.endpoints["kite_rest"])
        kite.set_access_token(self.token)
        listed = kite.instruments()
        self.instruments = [int(i["instrument_token"]) for i in listed]
        #: without the 2 indices every frame holds only 184-byte packets (see the notes printed)
        self.tradable = [int(i["instrument_token"]) for i in listed if i["segment"] != "INDICES"]

    def control(self, path: str, body: dict | None = None) -> dict:
        url = f"{self.endpoints['kite_control']}/{path}"
        r = requests.post(url, json=body, timeout=10) if body else requests.get(url, timeout=10)
        return r.json()

    def connection(self) -> dict:
        """The newest connection of our api_key, per the simulator's own counters."""
        return max(
            (c for c in self.control("connections")["connections"] if c["api_key"] == APP.api_key),
            key=lambda c: c["id"],
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def capture(sim: Sim, seconds: float, home: Path, instruments: list[int]) -> dict:
    """Run the engine for `seconds` after a warm-up; freeze the feed, stop, compare counters."""
    clock_info = sim.control("clock")
    sim.control("faults", {"action": "drop", "api_key": APP.api_key})  # earlier runs' sockets
    engine = CaptureEngine(
        KiteStream(sim.endpoints["kite_ws"], "full"),
        [Shard("all", tuple(instruments), KiteCredentials(APP.api_key, sim.token))],
        CaptureSettings(home=home, day=DAY, flush_interval_s=0.2),
        clock=LinearClock(int(clock_info["epoch"] * 1e9), clock_info["speed"]),
    )
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=asyncio.run(engine.run())))
    thread.start()
    while not engine.runners or engine.runners[0].counters.rows_journaled == 0:
        time.sleep(0.05)
    runner = engine.runners[0]
    time.sleep(1.5)  # warm-up: subscription, first flushes
    start_rows, start = runner.counters.rows_journaled, time.perf_counter()
    time.sleep(seconds)
    rows, elapsed = runner.counters.rows_journaled - start_rows, time.perf_counter() - start
    backlog = runner.inbox.pending
    sim.control("faults", {"action": "stall", "api_key": APP.api_key})  # nothing more is sent
    time.sleep(1.0)
    engine.stop("benchmark done")
    thread.join(60)
    report = result["report"].shards[0]
    sent = sim.connection()
    return {
        "journaled_per_s": rows / elapsed,
        "sent_packets": sent["packets_sent"],
        "decoded_packets": report.counters["packets_decoded"],
        "zero_loss": sent["packets_sent"] == report.counters["packets_decoded"]
        and sent["close_reason"] in (None, "client closed")
        and all(report.accounting.values()),
        "batches_skipped": sim.control("connections")["batches_skipped"],
        "backlog_at_end": backlog,
        "spilled": report.counters["spilled_messages"],
        "p99_ms": report.latency["received_to_journaled_ms"]["p99"],
        "p50_ms": report.latency["received_to_journaled_ms"]["p50"],
    }


_COLUMNS = (
    ["instrument_token", "mode", "tradable", "last_price", "last_traded_quantity",
     "average_traded_price", "volume_traded", "total_buy_quantity", "total_sell_quantity",
     "open", "high", "low", "close", "change", "last_trade_time", "oi", "oi_day_high",
     "oi_day_low", "exchange_timestamp"]
    + [f"{side}_{field}_{i}" for side in ("bid", "ask") for i in range(1, 6)
       for field in ("quantity", "price", "orders")]
)  # fmt: skip


def _row(tick: dict) -> tuple:
    ohlc, depth = tick.get("ohlc", {}), tick.get("depth", {})
    row = [tick.get(k) for k in _COLUMNS[:9]]
    row += [ohlc.get("open"), ohlc.get("high"), ohlc.get("low"), ohlc.get("close")]
    row += [tick.get("change"), str(tick.get("last_trade_time")), tick.get("oi"),
            tick.get("oi_day_high"), tick.get("oi_day_low"), str(tick.get("exchange_timestamp"))]  # fmt: skip
    for side in ("buy", "sell"):
        for level in depth.get(side, [{}] * 5):
            row += [level.get("quantity"), level.get("price"), level.get("orders")]
    return tuple(row)


def baseline(sim: Sim, seconds: float, db: Path, commit_per_tick: bool) -> float:
    """Ticks/s a parse-and-INSERT-per-tick recorder processes while saturated."""
    con = sqlite3.connect(db)
    con.execute(f"CREATE TABLE ticks ({', '.join(_COLUMNS)})")
    insert = f"INSERT INTO ticks VALUES ({', '.join('?' for _ in _COLUMNS)})"  # noqa: S608 - fixed names
    parser = KiteTicker(APP.api_key, sim.token)
    url = ws_url(sim.endpoints, APP, sim.token)

    async def run() -> float:
        processed, window_start, window_rows, last = 0, None, 0, 0.0
        deadline = None
        async with websockets.connect(url, max_size=None, ping_interval=None, proxy=None,
                                      compression=None) as ws:  # fmt: skip
            await ws.send(json.dumps({"a": "subscribe", "v": sim.instruments}))
            await ws.send(json.dumps({"a": "mode", "v": ["full", sim.instruments]}))
            try:
                async for message in ws:
                    if not isinstance(message, bytes) or len(message) < 2:
                        continue
                    for tick in parser._parse_binary(message):
                        con.execute(insert, _row(tick))
                        processed += 1
                        if commit_per_tick:
                            con.commit()
                    con.commit()
                    now = last = time.perf_counter()
                    if window_start is None and processed > 2000:
                        window_start, window_rows = now, processed
                        deadline = now + seconds
                    if deadline is not None and now >= deadline:
                        break
            except websockets.ConnectionClosed:
                pass  # the simulator dropped the slow consumer: measure up to that point
        assert window_start is not None, "the baseline processed almost nothing"
        return (processed - window_rows) / (last - window_start)

    try:
        return asyncio.run(run())
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--latency-rate", type=int, default=20_000)
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sim = Sim(args.rate, speed=10)
        try:
            mixed = capture(sim, args.seconds, home / "mixed", sim.instruments)
            ours = capture(sim, args.seconds, home / "fast", sim.tradable)
            per_message = baseline(sim, args.baseline_seconds, home / "a.db", commit_per_tick=False)
            per_tick = baseline(
                sim, min(2.0, args.baseline_seconds), home / "b.db", commit_per_tick=True
            )
        finally:
            sim.close()
        sim = Sim(args.latency_rate, speed=10)
        try:
            slow = capture(sim, args.seconds, home / "slow", sim.instruments)
        finally:
            sim.close()
    print(f"offered {args.rate:,} full-mode ticks/s over a loopback websocket (simulator process)")
    print(f"  all {len(sim.instruments)} instruments, frames mixing index (32 B) and 184 B packets: "
          f"journaled {mixed['journaled_per_s']:,.0f} ticks/s; zero loss: {mixed['zero_loss']}; "
          f"backlog at end {mixed['backlog_at_end']} messages")  # fmt: skip
    print(f"  {len(sim.tradable)} instruments (no index), uniform full-mode frames: engine journaled {ours['journaled_per_s']:,.0f} ticks/s; zero loss: {ours['zero_loss']} "
          f"(simulator sent {ours['sent_packets']:,} packets, engine decoded "
          f"{ours['decoded_packets']:,}; simulator batches skipped {ours['batches_skipped']}, "
          f"backlog at end {ours['backlog_at_end']} messages, spilled {ours['spilled']})")  # fmt: skip
    print(f"  baseline parse+INSERT per tick, commit per message: {per_message:,.0f} ticks/s")
    print(f"  baseline parse+INSERT per tick, commit per tick:    {per_tick:,.0f} ticks/s")
    print(f"  ratio vs commit-per-message baseline: {ours['journaled_per_s'] / per_message:.1f}x "
          f"(goal >= 30x); vs commit-per-tick: {ours['journaled_per_s'] / per_tick:.0f}x")  # fmt: skip
    print(f"at {args.latency_rate:,} ticks/s: receipt -> journaled (fsynced) p50 {slow['p50_ms']} ms, "
          f"p99 {slow['p99_ms']} ms (goal <= 250 ms); zero loss: {slow['zero_loss']} "
          f"({slow['journaled_per_s']:,.0f} ticks/s journaled)")  # fmt: skip
    print(f"under load p99 at {args.rate:,}/s: {ours['p99_ms']} ms")


if __name__ == "__main__":
    main()
