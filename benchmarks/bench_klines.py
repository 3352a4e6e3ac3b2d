"""Binance klines: bulk-archive ingest into the lake, and the REST tail against the weight limit.

1. Archive: one month of 1-minute klines for 100 symbols (~4.5M rows) served by the simulator
   as monthly zips + CHECKSUMs, through the real partition code (tick_assets.defs.binance
   .ingest.ingest_month: download, sha256, unzip/CRC, polars CSV parse with per-value unit
   detection, merge, zstd Parquet + manifest) with a few partitions in parallel. Baseline in
   the same run: the same downloads and checks, then a row-at-a-time `csv` reader converting
   each field in Python and a pyarrow table built from the rows (the classic downloader
   script), on the first ``--baseline-symbols`` files. Goal: 100 symbols in <= 20 s.
   The zips are built by the simulator before the clock starts (the real archive is static
   files); building them is not what is measured.
2. REST tail: python-binance klines pages (1000 candles, weight 2) from several threads
   sharing one weight limiter, for ``--rest-seconds``; the simulator counts the weight per
   minute exactly as Binance does and answers 429 beyond 6000. Goal: >= 90% of the permitted
   6000 weight/minute, zero 429s.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from tick_assets.defs.binance.ingest import ingest_month
from tick_assets.sim.binance.testing import venue
from tick_assets.sim.server import SimServer
from tick_assets.sources.binance import klines as kl
from tick_assets.sources.binance.archive import BinanceArchive, monthly_path
from tick_assets.sources.binance.rest import BinanceRest, shared_limiter

MONTH = date(2026, 10, 1)


def pick_symbols(model, n: int, month: date) -> list[str]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    usdt = [
        p.symbol for p in model.pairs.values()
        if p.quote == "USDT" and p.listed_at < start and p.delisted_at is None
    ]  # fmt: skip
    if len(usdt) < n:
        raise SystemExit(f"the simulator lists only {len(usdt)} USDT pairs before {month}")
    return sorted(usdt)[:n]


def baseline_ingest(archive: BinanceArchive, symbol: str, month: date, out_dir: str) -> int:
    """Row at a time: verified download, csv.reader, per-field Python conversion, pyarrow."""
    path = monthly_path(symbol, month.year, month.month)
    csv_bytes, _ = archive.fetch_csv(path)
    rows = []
    for rec in csv.reader(io.StringIO(csv_bytes.decode())):
        open_raw, close_raw = int(rec[0]), int(rec[6])
        open_us = open_raw if open_raw >= 10**15 else open_raw * 1000
        close_us = close_raw if close_raw >= 10**15 else close_raw * 1000
        rows.append(
            {
                "open_time": datetime.fromtimestamp(open_us / 1e6, UTC),
                "open": float(rec[1]), "high": float(rec[2]), "low": float(rec[3]),
                "close": float(rec[4]), "volume": float(rec[5]),
                "close_time": datetime.fromtimestamp(close_us / 1e6, UTC),
                "quote_volume": float(rec[7]), "trades": int(rec[8]),
                "taker_buy_base_volume": float(rec[9]), "taker_buy_quote_volume": float(rec[10]),
            }
        )  # fmt: skip
    table = pa.Table.from_pylist(rows)
    target = os.path.join(out_dir, f"{symbol}.parquet")
    pq.write_table(table, target, compression="zstd")
    with open(target, "rb") as fh:
        hashlib.sha256(fh.read()).hexdigest()
    return table.num_rows


def bench_archive(server: SimServer, symbols: int, workers: int, baseline_symbols: int) -> bool:
    endpoints = server.endpoints
    binance = venue(server, "binance")
    chosen = pick_symbols(binance.model, symbols, MONTH)
    paths = [monthly_path(s, MONTH.year, MONTH.month) for s in chosen]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        built = sum(pool.map(lambda p: binance.archive.prepare([p]), paths))
    print(f"simulator built {len(paths)} monthly zips ({built / 1e6:.0f} MB) in "
          f"{time.perf_counter() - t0:.1f} s (not timed)", flush=True)  # fmt: skip

    archive = BinanceArchive(endpoints["binance_archive"])
    rest = BinanceRest(endpoints["binance_rest"])
    now = datetime.fromtimestamp(rest.server_time_ms() / 1000, UTC)
    with tempfile.TemporaryDirectory(prefix="bench_klines_") as home:
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(
                pool.map(
                    lambda s: ingest_month(
                        home, s, MONTH, archive=archive, rest=rest, now=now, status="TRADING"
                    ),  # fmt: skip
                    chosen,
                )
            )
        fast_s = time.perf_counter() - start
        rows = sum(r.rows for r in results)
        assert all(len(r.files) == 1 and r.rest_requests == 0 for r in results)
        lake_bytes = sum(f.bytes for r in results for f in r.manifest.files)
    fast_rate = rows / fast_s

    with tempfile.TemporaryDirectory(prefix="bench_klines_base_") as out:
        start = time.perf_counter()
        base_rows = sum(baseline_ingest(archive, s, MONTH, out) for s in chosen[:baseline_symbols])
        base_s = time.perf_counter() - start
    base_rate = base_rows / base_s
    ok = fast_s <= 20.0
    print(
        f"archive -> lake: {len(chosen)} symbols x {MONTH:%Y-%m}, {rows:,} rows in {fast_s:.2f} s "
        f"({fast_rate:,.0f} rows/s, {workers} partitions in parallel, "
        f"{lake_bytes / rows:.1f} B/row in the lake)  goal <= 20 s: {'MET' if ok else 'MISSED'}"
    )
    print(
        f"baseline (csv.reader, row at a time, {baseline_symbols} symbols): {base_rows:,} rows in "
        f"{base_s:.2f} s ({base_rate:,.0f} rows/s); 100 symbols would take "
        f"{rows / base_rate:.0f} s"
    )
    print(f"ratio: {fast_rate / base_rate:.1f}x rows/s vs the baseline", flush=True)
    return ok


def bench_rest(server: SimServer, seconds: float, threads: int) -> bool:
    endpoints = server.endpoints
    binance = venue(server, "binance")
    binance.clear_faults()
    rest = BinanceRest(endpoints["binance_rest"], limiter=shared_limiter(endpoints["binance_rest"]))
    symbols = pick_symbols(binance.model, 100, MONTH)
    month_ms = int(datetime(MONTH.year, MONTH.month, 1, tzinfo=UTC).timestamp() * 1000)
    end_ms = month_ms + 31 * 1440 * 60_000
    stop = threading.Event()
    candles = [0] * threads
    before = dict(binance.meter.stats)

    def worker(i: int) -> None:
        for symbol in symbols[i::threads] * 10:
            for page in rest.klines_pages(symbol, month_ms, end_ms):
                frame, _ = kl.parse_rest_rows(page, symbol)
                candles[i] += frame.height
                if stop.is_set():
                    return

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    warmup = min(15.0, seconds / 3)
    time.sleep(warmup)  # the first seconds include the limiter's allowed burst
    steady_from, steady_weight = time.perf_counter(), binance.meter.stats["weight"]
    time.sleep(seconds - warmup)
    stop.set()
    steady_rate = (binance.meter.stats["weight"] - steady_weight) / (
        time.perf_counter() - steady_from
    )
    for t in pool:
        t.join(timeout=30)
    elapsed = time.perf_counter() - start
    after = binance.meter.stats
    weight = after["weight"] - before["weight"]
    http_429 = after["http_429"] - before["http_429"]
    http_418 = after["http_418"] - before["http_418"]
    permitted = binance.meter.limit / 60.0
    rate = weight / elapsed
    ok = min(rate, steady_rate) >= 0.9 * permitted and http_429 == 0 and http_418 == 0
    print(
        f"REST tail: {int(after['requests'] - before['requests']):,} klines requests, "
        f"{sum(candles):,} candles, weight {weight:,} in {elapsed:.1f} s = {rate:.1f} weight/s "
        f"of {permitted:.0f} permitted ({rate / permitted:.1%}); 429s: {http_429}, 418s: "
        f"{http_418}; highest X-MBX-USED-WEIGHT-1M seen: {int(rest.stats['max_used_weight'])}"
    )
    print(f"steady state (after the first {warmup:.0f} s): {steady_rate:.1f} weight/s "
          f"({steady_rate / permitted:.1%} of permitted)")  # fmt: skip
    print(f"ratio: {rate / permitted:.3f} of the permitted weight rate  goal >= 0.90 with zero "
          f"429s: {'MET' if ok else 'MISSED'}", flush=True)  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="partitions ingested in parallel")
    parser.add_argument("--baseline-symbols", type=int, default=10)
    parser.add_argument("--rest-seconds", type=float, default=75.0)
    parser.add_argument("--rest-threads", type=int, default=4)
    parser.add_argument("--skip-rest", action="store_true")
    args = parser.parse_args(argv)
    with SimServer(seed=42) as server:
        ok = bench_archive(server, args.symbols, args.workers, args.baseline_symbols)
        if not args.skip_rest:
            ok = bench_rest(server, args.rest_seconds, args.rest_threads) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
