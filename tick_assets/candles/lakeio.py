"""Candles in the lake: one partition per (timeframe, trading day), all symbols in it.

``lake/<venue>/candles/timeframe=<tf>/date=<YYYY-MM-DD>/`` holds ``symbol, instrument,
timestamp (UTC, candle start), open, high, low, close, volume, oi``, sorted by (symbol,
timestamp) and unique on it. The manifest's ``extra`` records, per symbol, what the engine
knows: ``complete`` (every candle of the session grid is there), ``missing`` (fetched after
the close and the venue has no candle for the listed times: a halt, no trade, a holiday the
calendar did not know; never filled with a made-up flat candle), ``partial`` (fetched while the
day was in progress), ``failed`` (the fetch failed; any rows held before are kept). The next
run refetches failed, partial and absent symbols, and *holes*: grid candles that are neither in
the data nor recorded as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tick_assets.candles.timeframes import Timeframe
from tick_assets.store import lake

ASSET = "candles"
LAKE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "instrument": pl.String(),
    "timestamp": pl.Datetime("ms", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "oi": pl.Int64(),
}
#: A day's candles are final this long after the 15:30 close.
SETTLE = timedelta(minutes=5)
COMPLETE, MISSING, PARTIAL, FAILED = "complete", "missing", "partial", "failed"


def partition(timeframe: Timeframe, day: date) -> dict[str, str]:
    return {"timeframe": timeframe.name, "date": day.isoformat()}


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=LAKE_SCHEMA)


def _ms(values: np.ndarray) -> np.ndarray:
    return values.astype("datetime64[ms]").astype(np.int64)


def _ranges(ms: np.ndarray, step_ms: int) -> list[list[str]]:
    """Sorted epoch-ms candle starts -> [[first, last], ...] runs of consecutive grid steps."""
    if len(ms) == 0:
        return []
    cuts = np.flatnonzero(np.diff(ms) != step_ms) + 1
    out = []
    for run in np.split(ms, cuts):
        lo = datetime.fromtimestamp(int(run[0]) / 1000, UTC).isoformat()
        hi = datetime.fromtimestamp(int(run[-1]) / 1000, UTC).isoformat()
        out.append([lo, hi])
    return out


def _expand(ranges: list[list[str]], step_ms: int) -> np.ndarray:
    parts = []
    for lo, hi in ranges:
        a = int(datetime.fromisoformat(lo).timestamp() * 1000)
        b = int(datetime.fromisoformat(hi).timestamp() * 1000)
        parts.append(np.arange(a, b + 1, step_ms, dtype=np.int64))
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _step_ms(timeframe: Timeframe) -> int:
    return max(timeframe.minutes, 1) * 60_000


@dataclass
class Ledger:
    """What a partition's manifest (``extra``) records beyond its rows, per symbol.

    Only symbols that are *not* complete are listed (missing with the candle ranges the venue
    does not have, partial, failed with the error): a complete symbol is simply one whose rows
    cover the session grid, so the manifest stays small for hundreds of symbols.
    """

    status: dict[str, str] = field(default_factory=dict)
    fetched_at: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[list[str]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    off_grid: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Ledger:
        return cls(
            status=dict(extra.get("status", {})),
            fetched_at=dict(extra.get("fetched_at", {})),
            missing={s: [list(r) for r in v] for s, v in extra.get("missing", {}).items()},
            errors=dict(extra.get("errors", {})),
            off_grid=dict(extra.get("off_grid", {})),
        )

    def record(
        self,
        symbol: str,
        status: str,
        at: str,
        *,
        missing: list[list[str]] | None = None,
        error: str | None = None,
        off_grid: int = 0,
    ) -> None:
        for table in (self.status, self.fetched_at, self.missing, self.errors, self.off_grid):
            table.pop(symbol, None)
        if status != COMPLETE:
            self.status[symbol] = status
            self.fetched_at[symbol] = at
        if missing:
            self.missing[symbol] = missing
        if error:
            self.errors[symbol] = error
        if off_grid:
            self.off_grid[symbol] = off_grid

    def to_extra(self, timeframe: Timeframe, expected: int, written_at: str) -> dict[str, Any]:
        return {
            "timeframe": timeframe.name,
            "expected_per_symbol": expected,
            "written_at": written_at,
            "status": dict(sorted(self.status.items())),  # symbols not complete, and why
            "fetched_at": dict(sorted(self.fetched_at.items())),
            "missing": dict(sorted(self.missing.items())),
            "errors": dict(sorted(self.errors.items())),
            "off_grid": dict(sorted(self.off_grid.items())),
        }


@dataclass
class DayState:
    """What the lake holds for one (timeframe, day): per-symbol status and candle times."""

    timeframe: Timeframe
    day: date
    exists: bool
    ledger: Ledger = field(default_factory=Ledger)
    present: dict[str, np.ndarray] = field(default_factory=dict)  # symbol -> epoch ms

    def holes(self, symbol: str) -> np.ndarray:
        """Grid candles of ``symbol`` neither held nor recorded as missing (epoch ms)."""
        grid = _ms(self.timeframe.expected_utc(self.day))
        have = self.present.get(symbol, np.empty(0, np.int64))
        known_missing = _expand(self.ledger.missing.get(symbol, []), _step_ms(self.timeframe))
        return np.setdiff1d(grid, np.union1d(have, known_missing))

    def needs_fetch(self, symbol: str, refetch_missing: bool = False) -> str | None:
        """Why ``symbol`` must be fetched for this day, or None when the lake has it all."""
        if not self.exists:
            return "absent"
        status = self.ledger.status.get(symbol)
        if status in (FAILED, PARTIAL):
            return status
        if status == MISSING and refetch_missing:
            return MISSING
        if status is None and symbol not in self.present:
            return "absent"
        if len(self.holes(symbol)):
            return "hole"
        return None

    def complete(self) -> list[str]:
        """Symbols whose rows cover the whole session grid."""
        return sorted(
            s for s in self.present if s not in self.ledger.status and not len(self.holes(s))
        )


def read_day(home: Path | str, venue: str, timeframe: Timeframe, day: date) -> DayState:
    part = partition(timeframe, day)
    try:
        manifest = lake.read_manifest(home, venue, ASSET, part)
    except lake.PartitionNotFoundError:
        return DayState(timeframe, day, exists=False)
    table = lake.read_partition(home, venue, ASSET, part, columns=["symbol", "timestamp"])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    present = {}
    for (symbol,), group in frame.group_by("symbol"):
        present[str(symbol)] = group["timestamp"].dt.epoch("ms").to_numpy()
    ledger = Ledger.from_extra(manifest.extra)
    return DayState(timeframe, day, exists=True, ledger=ledger, present=present)


def _previous(home: Path | str, venue: str, part: dict[str, str]) -> tuple[Ledger, pl.DataFrame]:
    """(ledger, rows) of a partition's current version; empty if there is none."""
    try:
        manifest = lake.read_manifest(home, venue, ASSET, part)
    except lake.PartitionNotFoundError:
        return Ledger(), empty_frame()
    old = pl.from_arrow(lake.read_partition(home, venue, ASSET, part))
    assert isinstance(old, pl.DataFrame)
    base = old.select(list(LAKE_SCHEMA)).cast(LAKE_SCHEMA)  # type: ignore[arg-type]
    return Ledger.from_extra(manifest.extra), base


@dataclass
class DayReport:
    """What one write of a (timeframe, day) partition did."""

    timeframe: str
    day: str
    rows: int
    listed: int
    complete: list[str]
    missing: dict[str, int]  # symbol -> candles the venue does not have
    partial: list[str]
    failed: dict[str, str]  # symbol -> error
    refetched: dict[str, str]  # symbol -> why it was fetched
    kept: int  # rows carried over from the lake's previous version
    fetched: int  # rows received for this day in this run
    duplicates: int
    path: str


def _coverage(
    frame: pl.DataFrame, grid_ms: np.ndarray, step: int
) -> dict[str, tuple[int, int, int]]:
    """symbol -> (rows, grid candles present, off-grid rows), computed in one pass."""
    if frame.height == 0:
        return {}
    ms = pl.col("timestamp").dt.epoch("ms")
    offset = ms - int(grid_ms[0])
    on = (offset % step == 0) & (offset >= 0) & (offset < len(grid_ms) * step)
    per = frame.group_by("symbol").agg(
        pl.len().alias("rows"), on.sum().alias("on"), (~on).sum().alias("off")
    )
    return {s: (int(r), int(o), int(f)) for s, r, o, f in per.iter_rows()}


def write_day(
    home: Path | str,
    venue: str,
    timeframe: Timeframe,
    day: date,
    fetched: pl.DataFrame,
    fetched_symbols: Sequence[str],
    failed: Mapping[str, str],
    keys: Mapping[str, str],
    reasons: Mapping[str, str],
    *,
    fetched_at: datetime,
    source: str,
    listed: int,
) -> DayReport:
    """Merge this run's candles of ``day`` into its partition and rewrite it with a manifest.

    ``fetched`` holds this run's rows of the day (LAKE_SCHEMA) for ``fetched_symbols`` (a
    fetched symbol may have no rows); ``failed`` maps symbols whose fetch failed to the error.
    Rows of other symbols, and of failed ones, are carried over from the partition's previous
    version; a refetched symbol's rows replace its old ones.
    """
    part = partition(timeframe, day)
    names = list(fetched_symbols)
    ledger, base = _previous(home, venue, part)
    replaced = base.filter(pl.col("symbol").is_in(names)) if base.height else base
    kept = base.filter(~pl.col("symbol").is_in(names)) if base.height else base
    fresh = fetched.select(list(LAKE_SCHEMA))
    received = kept.height + fresh.height
    merged = pl.concat([kept, fresh], how="vertical") if kept.height else fresh
    # a stable sort puts duplicates side by side in arrival order; keep the last (newest) one
    ordered = merged.sort(["symbol", "timestamp"], maintain_order=True)
    same_as_next = (pl.col("symbol") == pl.col("symbol").shift(-1)) & (
        pl.col("timestamp") == pl.col("timestamp").shift(-1)
    )
    unique = ordered.filter(~same_as_next.fill_null(False))
    duplicates = merged.height - unique.height

    closed = fetched_at >= timeframe.day_closed_at(day) + SETTLE
    grid = _ms(timeframe.expected_utc(day))
    step = _step_ms(timeframe)
    cover = _coverage(
        unique.filter(pl.col("symbol").is_in(names)) if names else unique.clear(), grid, step
    )
    stamp = fetched_at.astimezone(UTC).isoformat()
    complete, partial, missing_counts = [], [], {}
    for symbol in names:
        rows, on, off = cover.get(symbol, (0, 0, 0))
        if on == len(grid):
            ledger.record(symbol, COMPLETE, stamp, off_grid=off)
            complete.append(symbol)
            continue
        have = unique.filter(pl.col("symbol") == symbol)["timestamp"].dt.epoch("ms").to_numpy()
        gone = np.setdiff1d(grid, have)
        if closed:
            ledger.record(symbol, MISSING, stamp, missing=_ranges(gone, step), off_grid=off)
            missing_counts[symbol] = int(len(gone))
        else:
            ledger.record(symbol, PARTIAL, stamp, off_grid=off)
            partial.append(symbol)
    for symbol, error in failed.items():
        ledger.record(symbol, FAILED, stamp, error=error[:500])

    written = lake.write_partition(
        home,
        venue,
        ASSET,
        part,
        unique,
        {
            "received": received + replaced.height,
            "kept": kept.height,
            "fetched": received - kept.height,
            "dropped": {"replaced_by_refetch": replaced.height, "duplicate": duplicates},
        },
        source=source,
        time_column="timestamp",
        extra=ledger.to_extra(timeframe, len(grid), stamp),
    )
    return DayReport(
        timeframe=timeframe.name,
        day=day.isoformat(),
        rows=written.rows,
        listed=listed,
        complete=sorted(complete),
        missing=missing_counts,
        partial=sorted(partial),
        failed=dict(failed),
        refetched={s: reasons.get(s, "") for s in [*names, *failed]},
        kept=kept.height,
        fetched=received - kept.height,
        duplicates=duplicates,
        path=str(lake.partition_dir(home, venue, ASSET, part)),
    )
