"""The candle engine: check the range, plan from the lake, fetch in parallel, write day partitions.

One call covers any number of timeframes and days for one venue and one symbol list:

1. the range is checked first (reversed, before the venue's history, in the future: a clear
   CandleRangeError before any request);
2. symbols are resolved to venue keys; an unknown symbol is reported and the others go on;
3. the lake says what is already held (``lakeio.DayState``); only absent, failed, partial and
   holed (symbol, day) pairs are fetched, in the fewest requests the venue's span allows
   (``plan``);
4. ``workers`` threads (1 = sequential) send the requests through the venue's one rate
   limiter with retries (``fetch``), a tqdm bar on stderr when it is a terminal;
5. as soon as every request of a window is answered its days are merged into the lake
   (``lakeio.write_day``), so a failure later in the run loses nothing already fetched.

A symbol whose request fails is recorded as failed in its days' manifests and in the report;
the caller decides whether that many failures fail the partition. An expired token stops the
run (after writing what was fetched) with CandleAuthError.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from tick_assets.calendars import IST
from tick_assets.candles import lakeio, plan
from tick_assets.candles.errors import CandleAuthError, CandleRangeError, SymbolFetchError
from tick_assets.candles.source import CandleSource
from tick_assets.candles.timeframes import Timeframe


@dataclass(frozen=True)
class EngineOptions:
    workers: int = 4  # concurrent requests; 1 = sequential
    progress: bool | None = None  # None: a bar only when stderr is a terminal
    refetch_missing: bool = False  # ask again for candles the venue said it does not have
    writers: int = 2  # threads writing day partitions while later requests are in flight


@dataclass
class BackfillReport:
    venue: str
    listed: int
    unknown: dict[str, str]
    days: dict[tuple[str, str], lakeio.DayReport] = field(default_factory=dict)
    held: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: partitions left unwritten because every request for them failed: symbol -> error
    unwritten: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    requests_planned: int = 0
    windows: dict[str, int] = field(default_factory=dict)
    candles_fetched: int = 0
    rows_outside_needed_days: int = 0
    elapsed_s: float = 0.0
    http: dict[str, int] = field(default_factory=dict)
    limiter: dict[str, Any] = field(default_factory=dict)

    def failed_symbols(self, timeframe: str, day: str) -> dict[str, str]:
        """Symbols with no data for that partition in this run: fetch failures and unknowns."""
        report = self.days.get((timeframe, day))
        failed = dict(report.failed) if report else {}
        failed.update(self.unwritten.get((timeframe, day), {}))
        held = self.held.get((timeframe, day))
        if held:
            failed.update(held.get("failed", {}))
        return {**failed, **self.unknown}


_IST_OFFSET_MS = (5 * 60 + 30) * 60_000
_DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def check_days(
    source: CandleSource, timeframe: Timeframe, days: Sequence[date], today: date
) -> list[date]:
    """The days, sorted; CandleRangeError if any is before the venue's history or in the future."""
    ordered = sorted(set(days))
    if not ordered:
        return ordered
    start = source.history_start(timeframe)
    if start is not None and ordered[0] < start:
        raise CandleRangeError(
            f"{source.venue} has {timeframe.name} candles from {start} only; the range starts "
            f"at {ordered[0]}. Start the range on or after {start}"
        )
    if ordered[-1] > today:
        raise CandleRangeError(
            f"{ordered[-1]} is in the future (today is {today} IST); {source.venue} has no "
            "candles for it yet. End the range today or earlier"
        )
    return ordered


def check_range(first: date, last: date) -> None:
    """CandleRangeError for a reversed range (it would silently select nothing)."""
    if first > last:
        raise CandleRangeError(
            f"the date range is reversed: {first} is after {last}; swap them ({last}...{first})"
        )


def _fetch_one(source: CandleSource, timeframe: Timeframe, r: plan.Request) -> pl.DataFrame:
    """One request, in a worker thread: candles with the symbol and venue key as columns."""
    table = source.fetch(r.symbol, r.key, timeframe, r.first, r.last)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(
        pl.lit(r.symbol, pl.String()).alias("symbol"),
        pl.lit(r.key, pl.String()).alias("instrument"),
    ).select(list(lakeio.LAKE_SCHEMA))


def _held_summary(state: lakeio.DayState) -> dict[str, Any]:
    ledger = state.ledger
    step = max(state.timeframe.minutes, 1) * 60_000
    return {
        "complete": state.complete(),
        "missing": {
            s: sum((_iso_ms(hi) - _iso_ms(lo)) // step + 1 for lo, hi in ranges)
            for s, ranges in ledger.missing.items()
            if ledger.status.get(s) == lakeio.MISSING
        },
        "failed": {
            s: ledger.errors.get(s, "") for s, st in ledger.status.items() if st == lakeio.FAILED
        },
        "rows": int(sum(len(v) for v in state.present.values())),
    }


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def backfill(
    source: CandleSource,
    home: Path | str,
    symbols: Sequence[str],
    jobs: Mapping[Timeframe, Sequence[date]],
    options: EngineOptions | None = None,
    *,
    now: datetime | None = None,
    log: Callable[[str], None] | None = None,
) -> BackfillReport:
    """Fetch what the lake lacks of ``symbols`` x ``jobs`` (timeframe -> days) and store it."""
    options = options or EngineOptions()
    if options.workers < 1:
        raise ValueError(f"workers must be >= 1 (1 = sequential), got {options.workers}")
    started = time.monotonic()
    clock = (lambda: now) if now is not None else now_utc
    now = now or datetime.now(UTC)
    today = now.astimezone(IST).date()
    say = log or (lambda _msg: None)
    listed = list(dict.fromkeys(symbols))

    checked: dict[Timeframe, list[date]] = {}
    for timeframe, days in jobs.items():
        source.check_timeframe(timeframe)
        checked[timeframe] = check_days(source, timeframe, days, today)

    keys, unknown = source.resolve(listed)
    report = BackfillReport(source.venue, len(listed), dict(unknown))
    for symbol, why in unknown.items():
        say(f"{source.venue}: skipping unknown symbol {symbol}: {why}")

    # --- plan ------------------------------------------------------------------------------
    work: list[tuple[Timeframe, plan.Request]] = []
    spans: dict[Timeframe, list[tuple[date, date]]] = {}
    reasons: dict[tuple[Timeframe, date], dict[str, str]] = defaultdict(dict)
    for timeframe, days in checked.items():
        needs: dict[str, set[date]] = {s: set() for s in keys}
        for day in days:
            state = lakeio.read_day(home, source.venue, timeframe, day)
            for symbol in keys:
                why = state.needs_fetch(symbol, options.refetch_missing)
                if why:
                    needs[symbol].add(day)
                    reasons[(timeframe, day)][symbol] = why
            if not reasons.get((timeframe, day)) and state.exists:
                report.held[(timeframe.name, day.isoformat())] = _held_summary(state)
        needed_days = sorted(set().union(*needs.values())) if needs else []
        spans[timeframe] = plan.windows(
            needed_days, lambda d, tf=timeframe: source.window_end(tf, d)
        )
        requests = plan.requests_for(needs, keys, spans[timeframe])
        report.windows[timeframe.name] = len(spans[timeframe])
        work.extend((timeframe, r) for r in requests)
    report.requests_planned = len(work)
    say(
        f"{source.venue}: {len(work)} requests for {len(keys)} symbols "
        f"({', '.join(f'{tf}: {n} windows' for tf, n in report.windows.items())})"
    )

    # --- fetch and write window by window ------------------------------------------------------
    pending: dict[tuple[Timeframe, int], int] = defaultdict(int)
    for timeframe, r in work:
        pending[(timeframe, r.window)] += 1
    got: dict[tuple[Timeframe, int], list[tuple[plan.Request, pl.DataFrame]]] = defaultdict(list)
    errors: dict[tuple[Timeframe, int], list[tuple[plan.Request, str]]] = defaultdict(list)
    fatal: BaseException | None = None
    show = options.progress if options.progress is not None else sys.stderr.isatty()

    empty = lakeio.empty_frame()

    def flush(timeframe: Timeframe, window: int) -> None:
        ok = got.pop((timeframe, window), [])
        bad = errors.pop((timeframe, window), [])
        lo, hi = spans[timeframe][window]
        frames = [f for _, f in ok if f.height]
        combined = pl.concat(frames) if frames else empty
        # IST calendar day of each candle start, as days since 1970 (IST is UTC+05:30, no DST)
        ist_day = (pl.col("timestamp").dt.epoch("ms") + _IST_OFFSET_MS) // _DAY_MS
        parts = {
            date.fromordinal(_EPOCH_ORDINAL + int(key[0])): frame.drop("_day")
            for key, frame in combined.with_columns(ist_day.alias("_day"))
            .partition_by("_day", as_dict=True)
            .items()
        }
        report.candles_fetched += combined.height
        used = 0
        for day in [d for d in checked[timeframe] if lo <= d <= hi]:
            why = reasons.get((timeframe, day), {})
            names = [r.symbol for r, _ in ok if r.symbol in why and r.first <= day <= r.last]
            failed = {r.symbol: e for r, e in bad if r.symbol in why and r.first <= day <= r.last}
            if not names:
                # nothing new to store: the failures are reported and refetched next run
                if failed:
                    report.unwritten[(timeframe.name, day.isoformat())] = failed
                continue
            rows = parts.get(day, empty)
            if rows.height and len(names) < len(ok):  # a held day inside another's window
                rows = rows.filter(pl.col("symbol").is_in(names))
            used += rows.height
            writes.append(
                writer.submit(
                    lakeio.write_day, home, source.venue, timeframe, day, rows, names, failed,
                    keys, why, fetched_at=clock(), source=source.describe(), listed=len(listed),
                )
            )  # fmt: skip
        report.rows_outside_needed_days += combined.height - used
        say(f"{source.venue} {timeframe.name} {lo}..{hi}: {len(ok)} ok, {len(bad)} failed")

    bar = tqdm(total=len(work), desc=f"{source.venue} candles", unit="req", disable=not show)
    # Day partitions are written by their own threads while later windows are fetched; each
    # (timeframe, day) is written at most once per run, so writes never race on a partition.
    writer = ThreadPoolExecutor(max_workers=options.writers, thread_name_prefix="candles-write")
    writes: list[Future[lakeio.DayReport]] = []
    try:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="candles") as pool:
            futures: dict[Future, tuple[Timeframe, plan.Request]] = {
                pool.submit(_fetch_one, source, tf, r): (tf, r) for tf, r in work
            }
            for future in as_completed(futures):
                timeframe, r = futures[future]
                slot = (timeframe, r.window)
                try:
                    table = future.result()
                except CancelledError:
                    errors[slot].append((r, f"not fetched: the run stopped ({fatal})"))
                except CandleAuthError as exc:
                    errors[slot].append((r, str(exc)))
                    if fatal is None:
                        fatal = exc
                        for other in futures:
                            other.cancel()
                except SymbolFetchError as exc:
                    errors[slot].append((r, str(exc)))
                else:
                    got[slot].append((r, table))
                bar.update(1)
                pending[slot] -= 1
                if pending[slot] == 0:
                    flush(timeframe, r.window)
    finally:
        bar.close()
        writer.shutdown(wait=True)
    for done in writes:
        day_report = done.result()  # a lake write error is fatal: raise it here
        report.days[(day_report.timeframe, day_report.day)] = day_report
    report.elapsed_s = time.monotonic() - started
    report.http = source.http.stats.as_dict()
    report.limiter = source.http.limiter.stats()
    if fatal is not None:
        raise fatal
    return report


def now_utc() -> datetime:
    return datetime.now(UTC)
