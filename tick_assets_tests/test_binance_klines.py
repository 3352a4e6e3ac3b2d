"""Kline parsing: ms/µs decided per value, bad units refused, gaps and merges."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from tick_assets.sources.binance import klines as kl

JAN_MS = 1735689600000  # 2025-01-01T00:00Z
DEC_LAST_MS = JAN_MS - 60_000


def _line(open_time: int, close_time: int, price: str = "1.50000000") -> str:
    return f"{open_time},{price},2.0,0.5,{price},10.0,{close_time},15.0,3,4.0,6.0,0"


def test_units_are_decided_per_value_not_per_file():
    # one file mixing both units (the 2024/2025 boundary), out of order
    data = "\n".join(
        [
            _line(JAN_MS * 1000, JAN_MS * 1000 + 59_999_999),
            _line(DEC_LAST_MS, DEC_LAST_MS + 59_999),
            _line((JAN_MS + 60_000) * 1000, (JAN_MS + 60_000) * 1000 + 59_999_999),
        ]
    ).encode()
    frame, units = kl.parse_csv(data, "mixed.csv")
    assert units == {"ms": 1, "us": 2, "ns": 0}
    opens = sorted(frame["open_time"].to_list())
    assert opens == [
        datetime(2024, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 1, tzinfo=UTC),
    ]
    assert frame.schema["open_time"] == pl.Datetime("us", "UTC")
    closes = frame.sort("open_time")["close_time"].to_list()
    assert closes[0] == datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_a_timestamp_in_no_known_unit_is_refused_naming_the_source():
    data = _line(1735689600, 1735689659).encode()  # seconds
    with pytest.raises(kl.KlinesFormatError, match=r"seconds\.csv.*no known unit"):
        kl.parse_csv(data, "seconds.csv")


def test_nanoseconds_are_scaled_not_misread():
    data = _line(JAN_MS * 1_000_000, JAN_MS * 1_000_000 + 59_999_999_999).encode()
    frame, units = kl.parse_csv(data, "ns.csv")
    assert units["ns"] == 1 and frame["open_time"][0] == datetime(2025, 1, 1, tzinfo=UTC)


def test_a_candle_that_does_not_close_in_its_minute_is_refused():
    with pytest.raises(kl.KlinesFormatError, match="within their minute"):
        kl.parse_csv(_line(JAN_MS, JAN_MS + 120_000).encode(), "odd.csv")


def test_header_line_of_futures_style_files_is_skipped():
    header = ",".join(kl.WIRE_COLUMNS)
    frame, _ = kl.parse_csv(f"{header}\n{_line(JAN_MS, JAN_MS + 59_999)}\n".encode(), "h.csv")
    assert frame.height == 1


def test_garbage_is_a_format_error():
    with pytest.raises(kl.KlinesFormatError, match="garbage.csv"):
        kl.parse_csv(b"1735689600000,1,2\n", "garbage.csv")


def test_rest_rows_parse_like_archive_lines():
    row = [
        JAN_MS,
        "1.5",
        "2.0",
        "0.5",
        "1.5",
        "10.0",
        JAN_MS + 59_999,
        "15.0",
        3,
        "4.0",
        "6.0",
        "0",
    ]
    rest, units = kl.parse_rest_rows([row], "rest")
    csv, _ = kl.parse_csv(_line(JAN_MS, JAN_MS + 59_999).encode(), "csv")
    assert units["ms"] == 1
    assert rest.equals(csv)
    with pytest.raises(kl.KlinesFormatError, match="not numbers"):
        kl.parse_rest_rows([[JAN_MS, "x", *row[2:]]], "rest")


def test_merge_keeps_the_first_row_per_minute_and_gaps_are_listed():
    a, _ = kl.parse_csv(
        "\n".join(
            _line(JAN_MS + i * 60_000, JAN_MS + i * 60_000 + 59_999) for i in (0, 1, 5)
        ).encode(),
        "a",
    )
    b, _ = kl.parse_csv(
        "\n".join(
            _line(JAN_MS + i * 60_000, JAN_MS + i * 60_000 + 59_999, "9.00000000") for i in (1, 2)
        ).encode(),
        "b",
    )
    merged, duplicates = kl.merge([a, b])
    assert duplicates == 1 and merged.height == 4
    assert (
        merged.filter(pl.col("open_time") == datetime(2025, 1, 1, 0, 1, tzinfo=UTC))["open"][0]
        == 1.5
    )
    assert kl.missing_minutes(merged) == 2
    assert kl.gaps(merged) == [
        {"start": "2025-01-01T00:03:00+00:00", "end": "2025-01-01T00:04:00+00:00", "minutes": 2}
    ]
