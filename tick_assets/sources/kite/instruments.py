"""The Kite instruments dump: its columns and a polars parser for the (gzipped) CSV.

Kite serves `GET /instruments` as CSV with HTTP gzip content-encoding; HTTP clients usually
inflate it already, so `parse_instruments` accepts either the gzip bytes or the plain CSV.
Types follow kiteconnect's own `_parse_instruments` (ints for token and lot size, floats for
prices, a date for expiry) but every text column stays text: tradingsymbols such as `3MINDIA`
or `M&M` must never be reinterpreted.
"""

from __future__ import annotations

import gzip
import io

import polars as pl

INSTRUMENT_COLUMNS: tuple[str, ...] = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)

#: Column types after parsing; `expiry` is null for instruments that do not expire.
INSTRUMENT_SCHEMA: dict[str, pl.DataType] = {
    "instrument_token": pl.Int64(),
    "exchange_token": pl.Int64(),
    "tradingsymbol": pl.String(),
    "name": pl.String(),
    "last_price": pl.Float64(),
    "expiry": pl.Date(),
    "strike": pl.Float64(),
    "tick_size": pl.Float64(),
    "lot_size": pl.Int64(),
    "instrument_type": pl.String(),
    "segment": pl.String(),
    "exchange": pl.String(),
}

_GZIP_MAGIC = b"\x1f\x8b"


class InstrumentsError(ValueError):
    """The bytes are not a Kite instruments dump."""


def parse_instruments(data: bytes) -> pl.DataFrame:
    """Parse the dump (gzip or plain CSV bytes) into a DataFrame with INSTRUMENT_SCHEMA."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InstrumentsError(
                f"instruments dump is truncated or corrupt gzip ({exc})"
            ) from None
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
    missing = [c for c in INSTRUMENT_COLUMNS if c not in header]
    if missing:
        raise InstrumentsError(
            f"instruments CSV lacks columns {missing}; its header is {header[:12]!r}. "
            "Download it again from GET /instruments"
        )
    frame = pl.read_csv(
        io.BytesIO(data),
        schema_overrides={c: pl.String() for c in header},
        infer_schema=False,
    )
    frame = frame.select(INSTRUMENT_COLUMNS)
    try:
        return frame.with_columns(
            pl.col("expiry").replace("", None).str.to_date("%Y-%m-%d"),
            *(
                pl.col(c).cast(t)
                for c, t in INSTRUMENT_SCHEMA.items()
                if c != "expiry" and t != pl.String()
            ),
        )
    except pl.exceptions.InvalidOperationError as exc:
        raise InstrumentsError(f"instruments CSV has a malformed value: {exc}") from None


def to_csv_bytes(frame: pl.DataFrame) -> bytes:
    """Write instruments in Kite's column order (dates as YYYY-MM-DD, no expiry -> empty)."""
    out = frame.select(INSTRUMENT_COLUMNS).with_columns(pl.col("expiry").dt.strftime("%Y-%m-%d"))
    return out.write_csv().encode("utf-8")
