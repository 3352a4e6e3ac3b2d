"""The Upstox instruments (BOD) file: gzipped JSON records, and symbol -> instrument_key.

``GET https://assets.upstox.com/market-quote/instruments/exchange/NSE.json.gz`` lists one JSON
object per instrument (segment, name, exchange, isin, instrument_type, instrument_key,
exchange_token, trading_symbol, lot_size, tick_size in paise, expiry in epoch ms, ...). Files
are per exchange; the segment (NSE_EQ, NSE_INDEX, NSE_FO, ...) is a field. Unknown keys are
ignored so a new field in the file does not break parsing.

Symbols in our lists are NSE tradingsymbols (``INFY``) or index names as Kite spells them
(``NIFTY 50``); a full instrument key (``NSE_EQ|INE009A01021``) is accepted as it is.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence

import polars as pl

COLUMNS: dict[str, pl.DataType] = {
    "instrument_key": pl.String(),
    "trading_symbol": pl.String(),
    "name": pl.String(),
    "segment": pl.String(),
    "exchange": pl.String(),
    "instrument_type": pl.String(),
    "isin": pl.String(),
    "exchange_token": pl.String(),
    "lot_size": pl.Int64(),
    "tick_size": pl.Float64(),
    "expiry": pl.Int64(),
}
#: Segments searched, in order, for a plain symbol on each exchange.
SEGMENTS_BY_EXCHANGE = {
    "NSE": ("NSE_EQ", "NSE_INDEX", "NSE_FO"),
    "BSE": ("BSE_EQ", "BSE_INDEX", "BSE_FO"),
    "MCX": ("MCX_FO",),
}
_GZIP_MAGIC = b"\x1f\x8b"


class UpstoxInstrumentsError(ValueError):
    """The bytes are not an Upstox instruments file."""


def parse_instruments(data: bytes) -> pl.DataFrame:
    """Parse the (gzipped) JSON instruments file into a frame with COLUMNS."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UpstoxInstrumentsError(f"instruments file is corrupt gzip ({exc})") from None
    try:
        records = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpstoxInstrumentsError(f"instruments file is not JSON ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UpstoxInstrumentsError("instruments file is not a JSON array of objects")
    missing = [r for r in records[:1000] if "instrument_key" not in r or "segment" not in r]
    if missing:
        raise UpstoxInstrumentsError(
            "instruments file records lack instrument_key/segment; is it the JSON BOD file?"
        )
    cols = {name: [r.get(name) for r in records] for name in COLUMNS}
    cols["exchange_token"] = [None if v is None else str(v) for v in cols["exchange_token"]]
    return pl.DataFrame(cols, schema=COLUMNS, strict=False)


def resolve(
    instruments: pl.DataFrame, symbols: Sequence[str], exchange: str = "NSE"
) -> tuple[dict[str, str], list[str]]:
    """({symbol: instrument_key}, [symbols not found]) for ``symbols`` on ``exchange``."""
    keys = set(instruments["instrument_key"].to_list())
    by_symbol: dict[str, str] = {}
    segments = SEGMENTS_BY_EXCHANGE.get(exchange, ())
    for segment in reversed(segments):  # earlier segments win
        part = instruments.filter(pl.col("segment") == segment)
        for sym, name, key in zip(
            part["trading_symbol"].to_list(),
            part["name"].to_list(),
            part["instrument_key"].to_list(),
            strict=True,
        ):
            if segment.endswith("_INDEX") and name:
                by_symbol[name.upper()] = key
            if sym:
                by_symbol[sym.upper()] = key
    found: dict[str, str] = {}
    unknown: list[str] = []
    for symbol in symbols:
        key = (
            (symbol if symbol in keys else None) if "|" in symbol else by_symbol.get(symbol.upper())
        )
        if key is None:
            unknown.append(symbol)
        else:
            found[symbol] = key
    return found, unknown
