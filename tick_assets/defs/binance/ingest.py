"""One binance/klines_1m partition (symbol x UTC month): plan, fetch, verify, merge, write.

Dagster-free (the asset in assets.py wraps it; the benchmark calls it directly).

The watermark of a partition is the close time of its last stored candle (manifest
``extra.watermark``); only candles after it are fetched, and the stored ones are kept (a
finished month already read to its end, or a delisted pair, is not fetched again unless
``refetch``):

- the whole month, if nothing is stored and the month is over: the monthly zip;
- otherwise each finished day after the watermark: that day's daily zip;
- a file the archive does not have (404: not published yet, or missing) falls back to the
  daily zips (for a month) or to REST klines (for a day); the running day is always REST,
  up to the last closed minute by Binance's clock. Consecutive REST ranges are merged.

Every zip is checked against its .CHECKSUM and opened (CRC); a bad file is fetched once more
and, if still bad, the partition fails with ArchiveIntegrityError before anything is written.
Stored and new rows are merged by open time (stored rows win), cut to the month, and the
partition is replaced atomically (store/lake.py) with a manifest that records the watermark,
every file's sha256 and downloads, the REST calls, the ms/µs counts of the raw timestamps, the
gaps (missing minutes between the first and last candle) and the pair's listing status.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from tick_assets.sources.binance import klines as kl
from tick_assets.sources.binance.archive import (
    ArchiveFileMissing,
    BinanceArchive,
    FetchRecord,
    check_symbol,
    daily_path,
    monthly_path,
)
from tick_assets.sources.binance.rest import BinanceRest
from tick_assets.store import lake

VENUE = "binance"
ASSET = "klines_1m"
MAX_GAPS_LISTED = 100
log = logging.getLogger(__name__)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    nxt = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    return start, nxt


def partition_of(symbol: str, month: date) -> dict[str, str]:
    return {"symbol": check_symbol(symbol), "month": f"{month.year:04d}-{month.month:02d}"}


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class Task:
    """One fetch: an archive file, or a REST range [start, end)."""

    kind: str  # "monthly" | "daily" | "rest"
    start: datetime
    end: datetime
    path: str = ""


@dataclass
class Fetched:
    frames: list[pl.DataFrame] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    rest_ranges: list[dict[str, Any]] = field(default_factory=list)
    rest_requests: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {"archive": 0, "rest": 0})
    units: dict[str, int] = field(default_factory=lambda: {"ms": 0, "us": 0, "ns": 0})


@dataclass
class IngestResult:
    symbol: str
    month: str
    manifest: lake.Manifest | None
    rows: int
    fetched_rows: int
    kept_rows: int
    watermark: str | None
    up_to_date: bool
    gaps: list[dict[str, Any]]
    missing_minutes: int
    status: str | None
    delisted: bool
    files: list[dict[str, Any]]
    missing_files: list[str]
    rest_requests: int
    units: dict[str, int]
    notes: list[str]


def _stored(
    home: Path | str, part: dict[str, str]
) -> tuple[pl.DataFrame, lake.Manifest | None, str]:
    """The partition as stored (verified against its manifest), or empty with a note."""
    try:
        table = lake.read_partition(home, VENUE, ASSET, part, verify=True)
        manifest = lake.read_manifest(home, VENUE, ASSET, part)
    except lake.PartitionNotFoundError:
        return kl.empty_frame(), None, ""
    except lake.LakeError as exc:
        return kl.empty_frame(), None, f"stored partition ignored and rebuilt: {exc}"
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(list(kl.LAKE_COLUMNS)), manifest, ""


def plan(symbol: str, month: date, start: datetime, end: datetime, now: datetime) -> list[Task]:
    """Archive files and REST ranges covering [start, end) (see the module doc)."""
    m0, m1 = month_bounds(month)
    if start >= end:
        return []
    if start == m0 and m1 <= now:
        return [Task("monthly", m0, m1, monthly_path(symbol, month.year, month.month))]
    return _daily_plan(symbol, start, end, now)


def _daily_plan(symbol: str, start: datetime, end: datetime, now: datetime) -> list[Task]:
    tasks: list[Task] = []
    day = start.date()
    while datetime(day.year, day.month, day.day, tzinfo=UTC) < end:
        d0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
        d1 = d0 + timedelta(days=1)
        lo, hi = max(start, d0), min(end, d1)
        if d1 <= now:
            tasks.append(Task("daily", lo, hi, daily_path(symbol, day)))
        else:
            tasks.append(Task("rest", lo, hi))
        day += timedelta(days=1)
    return tasks


def _merge_rest(tasks: list[Task]) -> list[Task]:
    out: list[Task] = []
    for task in tasks:
        if out and task.kind == "rest" and out[-1].kind == "rest" and out[-1].end == task.start:
            out[-1] = Task("rest", out[-1].start, task.end)
        else:
            out.append(task)
    return out


def _clip(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    return frame.filter((pl.col("open_time") >= start) & (pl.col("open_time") < end))


def _fetch_file(
    archive: BinanceArchive, task: Task
) -> tuple[Task, pl.DataFrame | None, FetchRecord | None, dict[str, int]]:
    try:
        csv_bytes, record = archive.fetch_csv(task.path)
    except ArchiveFileMissing:
        return task, None, None, {}
    frame, units = kl.parse_csv(csv_bytes, archive.url(task.path))
    return task, _clip(frame, task.start, task.end), record, units


def _fetch_rest(rest: BinanceRest, symbol: str, task: Task, out: Fetched) -> None:
    requests_before = rest.stats["requests"]
    rows = 0
    for page in rest.klines_pages(symbol, _ms(task.start), _ms(task.end)):
        frame, units = kl.parse_rest_rows(page, f"{rest.root}/api/v3/klines {symbol}")
        frame = _clip(frame, task.start, task.end)
        out.frames.append(frame)
        rows += frame.height
        for unit, n in units.items():
            out.units[unit] += n
    out.rest_requests += int(rest.stats["requests"] - requests_before)
    out.rows["rest"] += rows
    out.rest_ranges.append(
        {"start": task.start.isoformat(), "end": task.end.isoformat(), "candles": rows}
    )


def fetch(
    symbol: str,
    tasks: list[Task],
    archive: BinanceArchive,
    rest: BinanceRest,
    now: datetime,
    pool: ThreadPoolExecutor | None = None,
) -> Fetched:
    """Run the plan: archive files in parallel, then fallbacks and REST ranges in order."""
    out = Fetched()
    pending = list(tasks)
    while pending:
        files = [t for t in pending if t.kind != "rest"]
        results = (
            list(pool.map(lambda t: _fetch_file(archive, t), files))
            if pool is not None and len(files) > 1
            else [_fetch_file(archive, t) for t in files]
        )
        by_path = {task.path: (frame, record, units) for task, frame, record, units in results}
        follow_up: list[Task] = []
        for task in pending:
            if task.kind == "rest":
                follow_up.append(task)
                continue
            frame, record, units = by_path[task.path]
            if frame is None:
                out.missing_files.append(archive.url(task.path))
                if task.kind == "monthly":
                    follow_up.extend(_daily_plan(symbol, task.start, task.end, now))
                else:
                    follow_up.append(Task("rest", task.start, task.end))
                continue
            assert record is not None
            out.frames.append(frame)
            out.files.append(record.as_dict())
            out.rows["archive"] += frame.height
            for unit, n in units.items():
                out.units[unit] += n
        if any(t.kind != "rest" for t in follow_up):
            pending = follow_up  # a missing month became daily files: fetch those next
            continue
        for task in _merge_rest(follow_up):
            _fetch_rest(rest, symbol, task, out)
        pending = []
    return out


def ingest_month(
    home: Path | str,
    symbol: str,
    month: date,
    *,
    archive: BinanceArchive,
    rest: BinanceRest,
    now: datetime,
    status: str | None = None,
    refetch: bool = False,
    pool: ThreadPoolExecutor | None = None,
    source: str = "",
) -> IngestResult:
    """Bring one partition up to ``now`` (Binance's clock) and write it; see the module doc.

    ``status`` is the pair's exchangeInfo status (TRADING, BREAK, ...), None if unknown.
    """
    part = partition_of(symbol, month)
    m0, m1 = month_bounds(month)
    end = min(m1, now.replace(second=0, microsecond=0))  # candles that have closed
    notes: list[str] = []
    stored, manifest, note = (kl.empty_frame(), None, "") if refetch else _stored(home, part)
    if note:
        notes.append(note)
    stored = _clip(stored, m0, m1)
    # the watermark is the last stored close; the next candle opens on the following minute
    last_open = stored["open_time"].max() if stored.height else None
    start = m0 if last_open is None else max(m0, last_open + timedelta(minutes=1))
    previous = (manifest.extra if manifest else {}) or {}
    if manifest is not None:
        until = previous.get("fetched_until")
        if until and datetime.fromisoformat(until) >= m1:
            start = end  # the finished month was already read to its end (refetch=True redoes it)
        if previous.get("delisted") and status not in (None, "TRADING"):
            start = end  # delisted when last stored: nothing after it will come
    if manifest is not None and start >= end:
        return _unchanged(symbol, part, manifest, stored, status, notes)

    tasks = plan(symbol, month, start, end, now)
    fetched = fetch(symbol, tasks, archive, rest, now, pool)
    received_new = sum(f.height for f in fetched.frames)
    merged, duplicates = kl.merge([stored, *fetched.frames])
    inside = _clip(merged, m0, m1)
    outside = merged.height - inside.height
    gap_list = kl.gaps(inside)
    missing = kl.missing_minutes(inside)
    new_watermark = inside["close_time"].max() if inside.height else None
    delisted = status not in (None, "TRADING")
    if delisted:
        last = new_watermark.isoformat() if new_watermark else "none in this month"
        notes.append(f"{symbol} is {status} on Binance (delisted); last candle here: {last}")
    if fetched.missing_files:
        notes.append(f"{len(fetched.missing_files)} archive file(s) missing; fell back")
    if inside.height == 0:
        notes.append(
            "no candles in this month (before the listing, after a delisting, or none yet)"
        )
    refetched = [f["path"] for f in fetched.files if f["downloads"] > 1]
    if refetched:
        notes.append(f"refetched after a bad download: {', '.join(refetched)}")

    accounting = {
        "received": stored.height + received_new,
        "from_lake": stored.height,
        "from_archive": fetched.rows["archive"],
        "from_rest": fetched.rows["rest"],
        "dropped": {"duplicate_open_time": duplicates, "outside_month": outside},
    }
    extra = {
        "watermark": new_watermark.isoformat() if new_watermark else None,
        "fetched_until": end.isoformat(),
        "status": status,
        "delisted": delisted,
        "archive_files": fetched.files,
        "missing_archive_files": fetched.missing_files,
        "rest_ranges": fetched.rest_ranges,
        "rest_requests": fetched.rest_requests,
        "timestamp_units": fetched.units,
        "missing_minutes": missing,
        "gaps": gap_list[:MAX_GAPS_LISTED],
        "gaps_total": len(gap_list),
        "notes": notes,
    }
    written = lake.write_partition(
        home, VENUE, ASSET, part, inside, accounting,
        source=source or f"binance archive {archive.root} + REST {rest.root}",
        time_column="open_time", extra=extra,
    )  # fmt: skip
    return IngestResult(
        symbol=symbol,
        month=part["month"],
        manifest=written,
        rows=written.rows,
        fetched_rows=received_new,
        kept_rows=stored.height,
        watermark=extra["watermark"],
        up_to_date=False,
        gaps=gap_list,
        missing_minutes=missing,
        status=status,
        delisted=delisted,
        files=fetched.files,
        missing_files=fetched.missing_files,
        rest_requests=fetched.rest_requests,
        units=fetched.units,
        notes=notes,
    )


def _unchanged(
    symbol: str,
    part: dict[str, str],
    manifest: lake.Manifest,
    stored: pl.DataFrame,
    status: str | None,
    notes: list[str],
) -> IngestResult:
    extra = manifest.extra or {}
    notes.append("up to date: nothing after the watermark can exist yet; nothing fetched")
    return IngestResult(
        symbol=symbol,
        month=part["month"],
        manifest=manifest,
        rows=manifest.rows,
        fetched_rows=0,
        kept_rows=stored.height,
        watermark=extra.get("watermark"),
        up_to_date=True,
        gaps=list(extra.get("gaps", [])),
        missing_minutes=int(extra.get("missing_minutes", 0)),
        status=status,
        delisted=bool(extra.get("delisted")),
        files=[],
        missing_files=[],
        rest_requests=0,
        units={"ms": 0, "us": 0, "ns": 0},
        notes=notes,
    )


def symbol_watermark(home: Path | str, symbol: str) -> str | None:
    """The close time of the last stored candle of ``symbol`` across all its months."""
    root = lake.dataset_dir(home, VENUE, ASSET) / f"symbol={check_symbol(symbol)}"
    months = sorted(
        (p.name.removeprefix("month=") for p in root.glob("month=*") if p.is_dir()), reverse=True
    )
    for month in months:  # newest first: the first watermark found is the symbol's
        try:
            extra = lake.read_manifest(home, VENUE, ASSET, {"symbol": symbol, "month": month}).extra
        except lake.PartitionNotFoundError:
            continue
        if (extra or {}).get("watermark"):
            return extra["watermark"]
    return None
