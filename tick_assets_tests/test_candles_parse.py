"""Candle responses to Arrow: the fast parser equals the json.loads reference, and bad bodies
are refused with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tick_assets.candles.parse import (
    CANDLE_SCHEMA,
    MalformedCandlesError,
    parse_candles,
    parse_candles_reference,
)

IST_OFFSET = timedelta(hours=5, minutes=30)


def _body(rows, *, kite=False, indent=None, extra=None) -> bytes:
    doc = {"status": "success", "data": {"candles": rows, **(extra or {})}}
    text = json.dumps(doc, indent=indent, separators=None if indent else (",", ":"))
    if kite:
        text = text.replace("+05:30", "+0530")
    return text.encode()


candle = st.tuples(
    st.integers(0, 200_000),  # minutes after an anchor
    st.floats(0.05, 1e6, allow_nan=False, allow_infinity=False),
    st.floats(0.05, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(0, 2**40),
    st.one_of(st.none(), st.integers(0, 2**31)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(candle, max_size=40), st.booleans(), st.booleans(), st.booleans())
def test_fast_parser_matches_reference(items, kite, pretty, with_oi):
    anchor = datetime(2025, 1, 1, 9, 15)
    rows = []
    for minutes, a, b, volume, oi in items:
        ts = (anchor + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S+05:30")
        row = [ts, a, max(a, b), min(a, b), b, volume]
        if with_oi:
            row.append(oi if oi is not None else 0)
        rows.append(row)
    rows.sort(key=lambda r: r[0], reverse=True)  # the venues send newest first
    body = _body(rows, kite=kite, indent=2 if pretty else None)
    fast = parse_candles(body)
    assert fast.schema == CANDLE_SCHEMA
    assert fast.equals(parse_candles_reference(body))


def test_ist_stamps_become_utc_and_rows_ascend():
    rows = [
        ["2023-10-19T15:15:00+05:30", 2305.3, 2307.05, 2301, 2304.65, 559982, 0],
        ["2023-10-19T14:45:00+05:30", 2309.1, 2310.75, 2305.25, 2305.3, 740124, 0],
    ]
    table = parse_candles(_body(rows))
    stamps = table.column("timestamp").to_pylist()
    assert stamps == [
        datetime(2023, 10, 19, 9, 15, tzinfo=UTC),
        datetime(2023, 10, 19, 9, 45, tzinfo=UTC),
    ]
    assert table.column("high").to_pylist() == [2310.75, 2307.05]
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")


def test_kite_rows_without_oi_get_null_oi():
    body = b'{"status":"success","data":{"candles":[["2017-12-15T09:15:00+0530",1704.5,1705,1699.25,1702.8,2499]]}}'
    table = parse_candles(body)
    assert table.column("oi").to_pylist() == [None]
    assert table.column("timestamp").to_pylist()[0] == datetime(2017, 12, 15, 3, 45, tzinfo=UTC)


def test_empty_candle_array_is_an_empty_table():
    assert parse_candles(_body([])).num_rows == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"<html>502 Bad Gateway</html>", "no 'candles'"),
        (
            b'{"status":"error","errors":[{"errorCode":"UDAPI1148"}],"candles":[]}',
            "status is 'error'",
        ),
        (b'{"status":"success","data":{"candles":[["oops"', "never closed"),
        (b'{"status":"success","data":{"candles":[["a"]]', "not valid JSON"),
        (b'{"status":"success","data":{"candles":[["x",1,2,3,4,5,6]]}}', "do not parse"),
        (b'{"status":"success","data":{"candles":[[1,2,3]]}}', "3 fields"),
        (b'{"status":"success","data":{"candles":{"a":1}}}', "not followed by an array"),
        (b'{"status":"success","data":{"candles":[1,2]}}', "array of arrays"),
        (
            b'{"status":"success","data":{"candles":[["2025-01-01T09:15:00+05:30",1,2,3,4,5,6],'
            b'["2025-01-01T09:16:00+05:30",1,2,3]]}}',
            "do not parse",
        ),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body, reason):
    with pytest.raises(MalformedCandlesError, match=reason):
        parse_candles(body)
