"""The end-of-day archive of one synthetic full day: ours vs the classic end-of-day backup.

A synthetic day is written as capture journals (Arrow IPC, lz4, batches of one flush) in the
staging layout, split over shards as the lookup would split it: by default 500 instruments x
22,500 s (09:15-15:30) at one tick per instrument-second, 11,250,000 full-mode ticks.

The ticks are generated to look like Kite full-mode packets, not to compress well: each
instrument a random walk at its own price level (50..5000) moving 0, 1 or 2 ticks of 0.05 per
second (P = 0.5, 0.4, 0.1), trade quantities
drawn per tick, cumulative volume, running average price, buy/sell totals that drift, day
high/low, a last-trade time a few seconds behind the exchange timestamp, five depth levels on
each side around the price where each level's quantity and order count are redrawn with
probability 0.35 per tick (and kept otherwise), and a receipt time 20-300 ms (random ns) after
the exchange timestamp (one receipt time per frame, i.e. per shard-second, as a frame carries
every instrument that changed).

1. Ours: `tick_assets.capture.archive.archive_day` in a fresh process (its peak RSS measured
   as the child's ru_maxrss): session filter, dedupe, lookup join, sort by (symbol,
   exchange_timestamp, received_at), Parquet with per-column encodings, manifest.
2. Baseline, same journals, same run: the classic end-of-day backup script, which loads the
   day's ticks and saves them as they are, with pyarrow's default Parquet settings (snappy,
   unsorted, no filter or dedupe) in a fresh process.

Goals (issue 4): 60 s or less, peak memory 3 GB or less, 30 bytes or less per tick.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from tick_assets.calendars import IST, SESSION_OPEN
from tick_assets.capture.layout import ShardPaths
from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store.journal import JournalWriter

DAY = date(2026, 11, 20)
FLUSH_ROWS = 40_000  # one 200 ms flush at 200k ticks/s
CHUNK_SECONDS = 900


def _ffill_redraw(rng, shape, p, draw, state):
    """Per column (instrument), values redrawn with probability p per row, else kept."""
    rows, cols = shape
    fresh = draw(rng, shape)
    change = rng.random(shape) < p
    change[0] |= state is None
    index = np.where(change, np.arange(rows)[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    out = np.take_along_axis(fresh, index, axis=0)
    if state is not None:
        never = ~np.logical_or.accumulate(change, axis=0)
        out = np.where(never, state[None, :], out)
    return out


class DayGenerator:
    """State of every instrument, advanced one chunk of seconds at a time (time-major rows)."""

    def __init__(self, instruments: int, seed: int = 11) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = instruments
        self.tokens = (np.arange(instruments, dtype=np.uint32) * 256 + 408065).astype(np.uint32)
        self.paise = self.rng.integers(5_000, 500_000, instruments) // 5 * 5  # price in paise
        self.close = self.paise / 100.0
        self.open = None
        self.high = self.low = None
        self.volume = np.zeros(instruments, dtype=np.int64)
        self.turnover = np.zeros(instruments)
        self.buy = self.rng.integers(10_000, 2_000_000, instruments)
        self.sell = self.rng.integers(10_000, 2_000_000, instruments)
        self.depth: dict[str, np.ndarray | None] = {}

    def chunk(self, start_s: int, seconds: int, session_start_ns: int) -> pa.Table:
        rng, n = self.rng, self.n
        shape = (seconds, n)
        steps = rng.choice([-2, -1, 0, 1, 2], p=[0.05, 0.2, 0.5, 0.2, 0.05], size=shape) * 5
        paise = self.paise + np.cumsum(steps, axis=0)
        paise = np.maximum(paise, 5)
        self.paise = paise[-1]
        ltp = paise / 100.0
        if self.open is None:
            self.open, self.high, self.low = ltp[0].copy(), ltp[0].copy(), ltp[0].copy()
        high = np.maximum(np.maximum.accumulate(ltp, axis=0), self.high)
        low = np.minimum(np.minimum.accumulate(ltp, axis=0), self.low)
        self.high, self.low = high[-1], low[-1]
        qty = rng.geometric(0.02, size=shape)
        volume = self.volume + np.cumsum(qty, axis=0)
        turnover = self.turnover + np.cumsum(qty * ltp, axis=0)
        self.volume, self.turnover = volume[-1], turnover[-1]
        atp = np.round(turnover / volume, 2)
        buy = self.buy + np.cumsum(rng.integers(-500, 501, size=shape), axis=0)
        sell = self.sell + np.cumsum(rng.integers(-500, 501, size=shape), axis=0)
        self.buy, self.sell = buy[-1], sell[-1]
        seconds_col = np.arange(start_s, start_s + seconds)[:, None]
        exchange = session_start_ns + seconds_col * 1_000_000_000 + np.zeros(shape, np.int64)
        last_trade = exchange - rng.integers(0, 4, size=shape) * 1_000_000_000
        # one websocket frame per shard per second carries every instrument that changed, so
        # its packets share one receipt time (set per shard in write_day)
        received = exchange + rng.integers(20_000_000, 300_000_000, size=(seconds, 1))
        cols: dict[str, np.ndarray] = {
            "instrument_token": np.broadcast_to(self.tokens, shape),
            "last_price": ltp,
            "last_traded_quantity": qty,
            "average_traded_price": atp,
            "volume_traded": volume,
            "total_buy_quantity": np.maximum(buy, 0),
            "total_sell_quantity": np.maximum(sell, 0),
            "open": np.broadcast_to(self.open, shape),
            "high": high,
            "low": low,
            "close": np.broadcast_to(self.close, shape),
            "change": (ltp - self.close) / self.close * 100,
            "oi": np.zeros(shape, np.int64),
            "oi_day_high": np.zeros(shape, np.int64),
            "oi_day_low": np.zeros(shape, np.int64),
        }
        for side, sign in (("bid", -1), ("ask", 1)):
            for level in range(1, 6):
                key = f"{side}_gap_{level}"
                gap = _ffill_redraw(rng, shape, 0.1, lambda r, s: r.integers(0, 2, s),
                                    self.depth.get(key))  # fmt: skip
                self.depth[key] = gap[-1]
                cols[f"{side}_price_{level}"] = (paise + sign * (level + gap) * 5) / 100.0
                for what, draw in (
                    ("quantity", lambda r, s: r.geometric(0.004, s)),
                    ("orders", lambda r, s: r.integers(1, 25, s)),
                ):
                    name = f"{side}_{what}_{level}"
                    values = _ffill_redraw(rng, shape, 0.35, draw, self.depth.get(name))
                    self.depth[name] = values[-1]
                    cols[name] = values
        rows = seconds * n
        arrays = []
        for field in TICK_SCHEMA:
            name = field.name
            if name == "mode":
                arrays.append(pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(rows, np.int8)), pa.array(["full"])))  # fmt: skip
            elif name == "tradable":
                arrays.append(pa.array(np.ones(rows, bool)))
            elif name in ("exchange_timestamp", "last_trade_time", "received_at"):
                values = {"exchange_timestamp": exchange, "last_trade_time": last_trade,
                          "received_at": received}[name]  # fmt: skip
                arrays.append(pa.array(values.reshape(rows)).cast(field.type))
            elif name == "connection":
                arrays.append(pa.array([""] * rows, pa.string()))  # filled per shard
            else:
                arrays.append(
                    pa.array(np.ascontiguousarray(cols[name]).reshape(rows)).cast(field.type)
                )
        return pa.Table.from_arrays(arrays, schema=TICK_SCHEMA)


def write_day(home: Path, instruments: int, seconds: int, shards: int) -> tuple[int, pl.DataFrame]:
    """Journals of the synthetic day under home/staging; returns (rows, lookup)."""
    session_start_ns = int(datetime.combine(DAY, SESSION_OPEN, tzinfo=IST).timestamp() * 1e9)
    gen = DayGenerator(instruments)
    names = [f"nifty500-{k}" for k in range(shards)]
    shard_of = np.arange(instruments) % shards
    writers, counts = [], [0] * shards
    for name in names:
        paths = ShardPaths(home, "kite", DAY, name)
        paths.staging.mkdir(parents=True, exist_ok=True)
        writers.append(JournalWriter(paths.journal_segment(1, 1), TICK_SCHEMA, "lz4"))
    for start in range(0, seconds, CHUNK_SECONDS):
        table = gen.chunk(start, min(CHUNK_SECONDS, seconds - start), session_start_ns)
        which = np.tile(shard_of, table.num_rows // instruments)
        for k, writer in enumerate(writers):
            part = table.filter(pa.array(which == k))
            at = part.schema.get_field_index("received_at")
            shifted = pa.compute.add(part.column(at).cast(pa.int64()), k * 7_654_321)
            part = part.set_column(at, TICK_SCHEMA.field(at), shifted.cast(TICK_SCHEMA.field(at).type))
            index = part.schema.get_field_index("connection")
            part = part.set_column(
                index, TICK_SCHEMA.field(index),
                pa.array([f"{names[k]}#1.1"] * part.num_rows, pa.string()),
            )  # fmt: skip
            for offset in range(0, part.num_rows, FLUSH_ROWS):
                writer.append(part.slice(offset, FLUSH_ROWS))
            counts[k] += part.num_rows
    for k, (writer, name) in enumerate(zip(writers, names, strict=True)):
        writer.close()
        paths = ShardPaths(home, "kite", DAY, name)
        counters = {"messages_received": counts[k] // 100, "messages_written": counts[k] // 100,
                    "binary_frames": counts[k] // 100, "data_frames": counts[k] // 100,
                    "packets_decoded": counts[k], "rows_journaled": counts[k]}  # fmt: skip
        paths.counters(1).write_text(json.dumps({"state": "stopped", "counters": counters}))
    lookup = pl.DataFrame({
        "instrument_token": gen.tokens.astype(np.int64),
        "symbol": [f"SYM{k:04d}" for k in range(instruments)],
        "table_name": [f"SYM{k:04d}" for k in range(instruments)],
    })  # fmt: skip
    return sum(counts), lookup


ARCHIVE = """
import json, sys, time
from datetime import date, datetime
import polars as pl
from tick_assets.calendars import IST, SESSION_CLOSE, SESSION_OPEN
from tick_assets.capture.archive import ArchiveSpec, archive_day
from tick_assets.sources.kite.schema import TICK_SCHEMA
home, lookup = sys.argv[1], pl.read_parquet(sys.argv[2])
day = date.fromisoformat(sys.argv[3])
spec = ArchiveSpec(home, "kite", day, datetime.combine(day, SESSION_OPEN, tzinfo=IST),
                   datetime.combine(day, SESSION_CLOSE, tzinfo=IST))
t = time.perf_counter()
result = archive_day(spec, TICK_SCHEMA, lookup)
import resource
print(json.dumps({"seconds": time.perf_counter() - t, "rows": result.manifest.rows,
                  "bytes": sum(f.bytes for f in result.manifest.files), "ok": result.ok,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

BASELINE = """
import glob, json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from tick_assets.store.journal import read_segments
t = time.perf_counter()
table, _ = read_segments(sorted(glob.glob(sys.argv[1] + "/staging/kite/*/*/journal-*.arrows")))
pq.write_table(table, sys.argv[2])
import os, resource
print(json.dumps({"seconds": time.perf_counter() - t, "rows": table.num_rows,
                  "bytes": os.path.getsize(sys.argv[2]),
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_child(code: str, *args: str) -> tuple[dict, float]:
    """Run code in a fresh interpreter; (its JSON line, its own peak RSS in GB)."""
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    return result, result["peak_kb"] / 1024 / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=22_500, help="session seconds (22,500)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_archive_", dir=args.dir) as tmp:
        home = Path(tmp)
        t = time.perf_counter()
        rows, lookup = write_day(home, args.instruments, args.seconds, args.shards)
        lookup.write_parquet(home / "lookup.parquet")
        journal_bytes = sum(p.stat().st_size for p in home.glob("staging/**/*.arrows"))
        print(f"synthetic day: {args.instruments} instruments x {args.seconds} s = {rows:,} "
              f"full-mode ticks in {args.shards} shards, journals {journal_bytes / rows:.1f} B/tick "
              f"(lz4), generated in {time.perf_counter() - t:.1f} s")  # fmt: skip
        base, base_gb = run_child(BASELINE, str(home), str(home / "backup.parquet"))
        ours, ours_gb = run_child(ARCHIVE, str(home), str(home / "lookup.parquet"), DAY.isoformat())
        assert ours["rows"] == rows and ours["ok"], ours
        print(
            f"archive (ours):   {ours['seconds']:.1f} s, peak RSS {ours_gb:.2f} GB, "
            f"{ours['bytes'] / rows:.1f} B/tick ({ours['bytes'] / 1e6:.0f} MB), "
            f"{rows / ours['seconds']:,.0f} ticks/s; goals 60 s, 3 GB, 30 B/tick"
        )
        print(
            f"baseline backup:  {base['seconds']:.1f} s, peak RSS {base_gb:.2f} GB, "
            f"{base['bytes'] / rows:.1f} B/tick (pyarrow defaults, unsorted, no checks)"
        )
        print(
            f"ratio: {base['bytes'] / ours['bytes']:.1f}x smaller, "
            f"{base['seconds'] / ours['seconds']:.2f}x the baseline's speed"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
