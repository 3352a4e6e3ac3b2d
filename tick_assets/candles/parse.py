"""Candle responses (Kite and Upstox share one shape) to Arrow, without a Python loop per row.

Both venues answer ``{"status": "success", "data": {"candles": [[ts, o, h, l, c, v(, oi)],
...]}}`` with ISO-8601 timestamps carrying the IST offset (Upstox ``+05:30``, Kite ``+0530``).
A year of 1-minute candles for a few hundred symbols is tens of millions of rows, so the rows
are never built as Python objects: the envelope is checked with ``json`` on the body with the
candle array cut out, and the array itself is rewritten in C (bytes.replace/translate) into CSV
lines that Arrow's multithreaded CSV reader types and converts to UTC in one pass.
``parse_candles_reference`` is the straightforward json.loads version: the oracle for tests and
the baseline for the benchmark.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

TS_TYPE = pa.timestamp("ms", tz="UTC")
#: Columns of one candle as the venues send it, and their Arrow types.
WIRE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "oi")
WIRE_TYPES: dict[str, pa.DataType] = {
    "timestamp": TS_TYPE,
    "open": pa.float64(),
    "high": pa.float64(),
    "low": pa.float64(),
    "close": pa.float64(),
    "volume": pa.int64(),
    "oi": pa.int64(),
}
CANDLE_SCHEMA = pa.schema([(name, WIRE_TYPES[name]) for name in WIRE_COLUMNS])
_KEY = b'"candles"'
_WHITESPACE = b" \t\r\n"
_DROP = _WHITESPACE + b'"'


class MalformedCandlesError(ValueError):
    """The body is not a candle response; the caller adds the URL and the symbol."""


def empty_candles() -> pa.Table:
    return CANDLE_SCHEMA.empty_table()


def _envelope(body: bytes, start: int, end: int) -> None:
    """Check everything but the candle rows with json: status success, data.candles a list."""
    try:
        skeleton = json.loads(body[:start] + b"[]" + body[end + 1 :])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedCandlesError(f"not valid JSON around the candle array ({exc})") from None
    if not isinstance(skeleton, dict) or skeleton.get("status") != "success":
        status = skeleton.get("status") if isinstance(skeleton, dict) else type(skeleton).__name__
        raise MalformedCandlesError(f"status is {status!r}, not 'success'")
    data = skeleton.get("data")
    if not isinstance(data, dict) or data.get("candles") != []:
        raise MalformedCandlesError("data.candles is missing or not the only candle array")


def _locate(body: bytes) -> tuple[int, int]:
    """Byte offsets of the '[' and ']' enclosing data.candles (it is the body's last array)."""
    key = body.find(_KEY)
    if key < 0:
        raise MalformedCandlesError("no 'candles' field in the response")
    start = body.find(b"[", key + len(_KEY))
    end = body.rfind(b"]")
    if start < 0 or body[key + len(_KEY) : start].strip(_WHITESPACE) != b":":
        raise MalformedCandlesError("'candles' is not followed by an array")
    if end < start:
        raise MalformedCandlesError("the candle array is never closed (a truncated body?)")
    return start, end


def parse_candles(body: bytes) -> pa.Table:
    """A candle response body -> Arrow table (CANDLE_SCHEMA), ascending by timestamp.

    Rows without open interest (Kite without ``oi=1``) get a null ``oi``. Raises
    MalformedCandlesError saying what is wrong; an empty array gives an empty table.
    """
    if not body or not body.strip(_WHITESPACE):
        raise MalformedCandlesError("the response body is empty")
    start, end = _locate(body)
    _envelope(body, start, end)
    # one pass drops whitespace and quotes, one turns row boundaries into newlines
    inner = body[start + 1 : end].translate(None, _DROP)
    if not inner:
        return empty_candles()
    if not (inner.startswith(b"[") and inner.endswith(b"]")):
        raise MalformedCandlesError("data.candles is not an array of arrays")
    text = inner[1:-1].replace(b"],[", b"\n")
    cut = text.find(b"\n")
    first = text[:cut] if cut >= 0 else text
    if b"+0530" in first:  # Kite writes the offset without a colon; Arrow wants +05:30
        text = text.replace(b"+0530", b"+05:30")
    width = first.count(b",") + 1
    if width not in (6, 7):
        raise MalformedCandlesError(
            f"a candle has {width} fields; expected [timestamp, open, high, low, close, volume"
            "(, oi)]"
        )
    names = list(WIRE_COLUMNS[:width])
    try:
        table = pcsv.read_csv(
            io.BytesIO(text),
            read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 22),
            parse_options=pcsv.ParseOptions(newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                column_types={n: WIRE_TYPES[n] for n in names},
                null_values=["null"],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        detail = str(exc).splitlines()[0][:300]
        raise MalformedCandlesError(f"candle rows do not parse: {detail}") from None
    if width == 6:
        table = table.append_column("oi", pa.nulls(table.num_rows, pa.int64()))
    return ascending(table)


def ascending(table: pa.Table) -> pa.Table:
    """Rows sorted by timestamp (the venues send newest first: usually one reversal)."""
    if table.num_rows < 2:
        return table
    ts = table.column("timestamp").combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    steps = np.diff(ts)
    if (steps >= 0).all():
        return table
    if (steps < 0).all():  # strictly newest first: one reversal keeps ties out of it
        return table.take(pa.array(np.arange(table.num_rows - 1, -1, -1)))
    return table.take(pc.sort_indices(table, [("timestamp", "ascending")]))


def parse_candles_reference(body: bytes) -> pa.Table:
    """The obvious version (json.loads, one dict per candle): test oracle and baseline."""
    try:
        doc: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedCandlesError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise MalformedCandlesError("status is not 'success'")
    rows = []
    for c in doc["data"]["candles"]:
        ts = c[0].replace("+0530", "+05:30")
        rows.append(
            {
                "timestamp": datetime.fromisoformat(ts).astimezone(UTC),
                "open": float(c[1]),
                "high": float(c[2]),
                "low": float(c[3]),
                "close": float(c[4]),
                "volume": int(c[5]),
                "oi": int(c[6]) if len(c) > 6 and c[6] is not None else None,
            }
        )
    rows.sort(key=lambda r: r["timestamp"])
    return pa.Table.from_pylist(rows, schema=CANDLE_SCHEMA)
