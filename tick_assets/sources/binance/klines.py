"""Binance spot 1-minute klines: the 12-field wire row, its lake schema, units and gaps.

The same 12 fields arrive as archive CSV lines (no header on spot) and as REST JSON arrays:
open time, open, high, low, close, volume, close time, quote volume, trades, taker buy base,
taker buy quote, ignore. Since 2025-01-01 the spot archive prints open/close times in
microseconds, before that in milliseconds, and REST answers in either (X-MBX-TIME-UNIT). The
unit is decided per value by magnitude, never by the file's date: 1e15 µs is 2001-09 while
1e15 ms is the year 33658, so the two ranges cannot overlap (and seconds or nanoseconds are
recognised too, and refused or scaled, rather than silently read 1000x off).

In the lake a kline is one row with UTC µs timestamps; ``close_time`` is the candle's last
microsecond (open + 59.999999 s) whatever unit the source printed, so rows from the archive
and from REST agree; the ``ignore`` field is dropped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl

WIRE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "trades", "taker_buy_base_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
_WIRE_TYPES = {
    "open_time": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64, "close_time": pl.Int64,
    "quote_volume": pl.Float64, "trades": pl.Int64, "taker_buy_base_volume": pl.Float64,
    "taker_buy_quote_volume": pl.Float64, "ignore": pl.String,
}  # fmt: skip
UTC_US = pl.Datetime("us", "UTC")
LAKE_SCHEMA = {
    "open_time": UTC_US, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64, "close_time": UTC_US,
    "quote_volume": pl.Float64, "trades": pl.Int64, "taker_buy_base_volume": pl.Float64,
    "taker_buy_quote_volume": pl.Float64,
}  # fmt: skip
LAKE_COLUMNS = tuple(LAKE_SCHEMA)
MINUTE_US = 60_000_000

# Magnitude bands of an epoch timestamp (any date from 1973 to 5138 falls in exactly one).
_MS_FROM, _US_FROM, _NS_FROM = 10**11, 10**15, 10**18


class KlinesFormatError(ValueError):
    """Kline data that cannot be read as Binance's 12 fields; the message names the source."""


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=LAKE_SCHEMA)


def _to_utc_us(name: str) -> pl.Expr:
    """Epoch integer in s/ms/µs/ns (decided per value) -> µs, null where out of every band."""
    col = pl.col(name)
    return (
        pl.when(col >= _NS_FROM)
        .then(col // 1000)
        .when(col >= _US_FROM)
        .then(col)
        .when(col >= _MS_FROM)
        .then(col * 1000)
        .otherwise(None)
    )


def unit_counts(frame: pl.DataFrame, column: str = "open_time") -> dict[str, int]:
    """How many raw values of ``column`` were ms, µs (or ns), before conversion."""
    col = frame[column]
    return {
        "ms": int(((col >= _MS_FROM) & (col < _US_FROM)).sum()),
        "us": int(((col >= _US_FROM) & (col < _NS_FROM)).sum()),
        "ns": int((col >= _NS_FROM).sum()),
    }


def wire_to_lake(raw: pl.DataFrame, origin: str) -> pl.DataFrame:
    """Typed wire columns -> the lake schema (UTC µs timestamps, no ``ignore``).

    Raises KlinesFormatError naming ``origin`` if a timestamp is in no known unit or a close
    time precedes its open time.
    """
    if raw.height == 0:
        return empty_frame()
    out = raw.with_columns(
        _to_utc_us("open_time").alias("open_time"), _to_utc_us("close_time").alias("close_time")
    )
    bad = raw.filter(_to_utc_us("open_time").is_null() | _to_utc_us("close_time").is_null())
    if bad.height:
        row = bad.row(0)
        raise KlinesFormatError(
            f"{origin}: {bad.height} kline(s) have a timestamp in no known unit (first: open "
            f"{row[0]}, close {row[6]}); expected epoch ms (13 digits) or µs (16 digits)"
        )
    span = pl.col("close_time") - pl.col("open_time")
    odd = out.filter((span < 0) | (span >= MINUTE_US)).height
    if odd:
        raise KlinesFormatError(
            f"{origin}: {odd} kline(s) do not close within their minute; not 1m klines"
        )
    return out.select(
        pl.col("open_time").cast(UTC_US),
        *[pl.col(c) for c in ("open", "high", "low", "close", "volume")],
        # the candle's last µs: ms sources say open+59999 ms, µs sources open+59999999 µs
        (pl.col("open_time") + (MINUTE_US - 1)).cast(UTC_US).alias("close_time"),
        *[
            pl.col(c)
            for c in ("quote_volume", "trades", "taker_buy_base_volume", "taker_buy_quote_volume")
        ],  # fmt: skip
    )


def parse_csv(data: bytes, origin: str) -> tuple[pl.DataFrame, dict[str, int]]:
    """An archive CSV (spot: no header; a header line is detected and skipped) -> lake frame.

    Returns (frame, unit counts of the raw open times).
    """
    if not data.strip():
        return empty_frame(), {"ms": 0, "us": 0, "ns": 0}
    has_header = not data.lstrip()[:1].isdigit()
    try:
        raw = pl.read_csv(
            io.BytesIO(data),
            has_header=has_header,
            new_columns=list(WIRE_COLUMNS),
            schema_overrides=_WIRE_TYPES,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.SchemaError) as exc:
        raise KlinesFormatError(f"{origin}: not Binance kline CSV ({exc})") from None
    if raw.width != len(WIRE_COLUMNS):
        raise KlinesFormatError(
            f"{origin}: {raw.width} columns per line, expected {len(WIRE_COLUMNS)}"
        )
    return wire_to_lake(raw, origin), unit_counts(raw)


def parse_rest_rows(rows: Sequence[Sequence], origin: str) -> tuple[pl.DataFrame, dict[str, int]]:
    """REST /api/v3/klines rows (numbers as JSON numbers or strings) -> lake frame."""
    if not rows:
        return empty_frame(), {"ms": 0, "us": 0, "ns": 0}
    bad = next((r for r in rows if len(r) < 11), None)
    if bad is not None:
        raise KlinesFormatError(f"{origin}: a kline row has {len(bad)} fields, expected 12")
    columns = list(zip(*(r[:11] for r in rows), strict=True))
    try:
        raw = pl.DataFrame(
            {
                name: pl.Series(name, values, strict=False).cast(_WIRE_TYPES[name], strict=True)
                for name, values in zip(WIRE_COLUMNS[:11], columns, strict=True)
            }
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise KlinesFormatError(f"{origin}: kline fields are not numbers ({exc})") from None
    return wire_to_lake(raw, origin), unit_counts(raw)


def merge(frames: Sequence[pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    """Concatenate, sort by open time and keep the first row per open time.

    Returns (frame, duplicates dropped). Earlier frames win, so pass stored rows first.
    """
    frames = [f for f in frames if f.height]
    if not frames:
        return empty_frame(), 0
    both = pl.concat(frames, how="vertical")
    unique = both.unique(subset="open_time", keep="first", maintain_order=True).sort("open_time")
    return unique, both.height - unique.height


def gaps(frame: pl.DataFrame) -> list[dict[str, object]]:
    """Runs of missing minutes between the first and the last stored candle.

    Each gap: {"start": first missing open time, "end": last missing open time, "minutes": n}
    (ISO-8601 UTC). The frame must be sorted by open_time with unique open times.
    """
    if frame.height < 2:
        return []
    t = pl.col("open_time")
    holes = frame.select(
        (t.shift(1) + pl.duration(microseconds=MINUTE_US)).alias("start"),
        (t - pl.duration(microseconds=MINUTE_US)).alias("end"),
        (t.diff().dt.total_microseconds() // MINUTE_US - 1).alias("minutes"),
    ).filter(pl.col("minutes") > 0)
    return [
        {"start": s.isoformat(), "end": e.isoformat(), "minutes": int(n)}
        for s, e, n in holes.iter_rows()
    ]


def missing_minutes(frame: pl.DataFrame) -> int:
    """Minutes missing strictly inside [first, last] stored open time."""
    if frame.height < 2:
        return 0
    span = (frame["open_time"].max() - frame["open_time"].min()).total_seconds() // 60 + 1
    return int(span) - frame.height
