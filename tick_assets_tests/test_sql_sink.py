"""The PostgreSQL tick sink: one table partitioned by day, COPY, idempotent, safe identifiers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg2
import pyarrow as pa
import pytest
from psycopg2 import sql

from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store import sql_sink

DAY = date(2026, 11, 20)
NEXT = date(2026, 11, 23)


def ticks(day: date, n: int, price: float = 1234.55) -> pa.Table:
    """n full-mode rows in the journal schema, with nulls where Kite leaves fields out."""
    base = int(datetime(day.year, day.month, day.day, 3, 45, tzinfo=UTC).timestamp() * 1e9)
    columns = {}
    for field in TICK_SCHEMA:
        t = field.type
        if field.name == "instrument_token":
            values = [256265 + i % 3 for i in range(n)]
        elif field.name == "mode":
            values = ["full"] * n
        elif pa.types.is_boolean(t):
            values = [i % 2 == 0 for i in range(n)]
        elif pa.types.is_floating(t):
            values = [price + i * 0.05 if i % 7 else None for i in range(n)]
        elif pa.types.is_timestamp(t):
            values = [base + i * 1_000_123_456 if i % 5 else None for i in range(n)]
        elif pa.types.is_integer(t):
            values = [4_000_000_000 - i if field.name == "volume_traded" else i for i in range(n)]
        else:
            values = [f"indices-0#1.{i % 2}" for i in range(n)]
        columns[field.name] = (
            pa.array(values).cast(t)
            if field.name != "mode"
            else pa.array(values).dictionary_encode().cast(t)
        )
    return pa.table(columns, schema=TICK_SCHEMA)


def rows_of(url: str, table: str, day: date) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        query = sql.SQL(
            "SELECT * FROM {} WHERE trade_date = %s "
            "ORDER BY received_at NULLS FIRST, instrument_token, volume_traded"
        ).format(sql.Identifier(table))
        cur.execute(query, (day,))
        return cur.fetchall()


def test_a_day_loads_exactly_and_a_rerun_replaces_only_that_day(postgres_url):
    first = ticks(DAY, 50)
    report = sql_sink.load_day(postgres_url, "kite_ticks", DAY, first, TICK_SCHEMA)
    assert (report.rows, report.partition) == (50, "kite_ticks_20261120")
    sql_sink.load_day(postgres_url, "kite_ticks", NEXT, ticks(NEXT, 30), TICK_SCHEMA)

    loaded = rows_of(postgres_url, "kite_ticks", DAY)
    assert len(loaded) == 50
    micro = [  # timestamptz keeps microseconds: the sink truncates the nanoseconds
        c.cast(pa.timestamp("us", "UTC"), safe=False) if pa.types.is_timestamp(c.type) else c
        for c in first.columns
    ]
    expected = pa.table(micro, names=first.column_names).to_pylist()
    by_key = {(r["received_at"], r["instrument_token"], r["volume_traded"]): r for r in expected}
    names = ["trade_date", *TICK_SCHEMA.names]
    for values in loaded:
        got = dict(zip(names, values, strict=True))
        assert got.pop("trade_date") == DAY
        want = by_key[(got["received_at"], got["instrument_token"], got["volume_traded"])]
        for name, value in got.items():
            wanted = want[name]
            assert value == wanted, name
            if isinstance(wanted, datetime):
                assert value.utcoffset() is not None

    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'kite_ticks' ORDER BY 1"
        )
        assert [r[0] for r in cur.fetchall()] == ["kite_ticks_20261120", "kite_ticks_20261123"]

    sql_sink.load_day(postgres_url, "kite_ticks", DAY, ticks(DAY, 20, 99.5), TICK_SCHEMA)
    assert sql_sink.count_day(postgres_url, "kite_ticks", DAY) == 20
    assert sql_sink.count_day(postgres_url, "kite_ticks", NEXT) == 30


def test_a_load_that_fails_midway_leaves_the_day_as_it_was(postgres_url):
    sql_sink.load_day(postgres_url, "kite_ticks", DAY, ticks(DAY, 40), TICK_SCHEMA)

    def breaking():
        yield from ticks(DAY, 10).to_batches()
        raise OSError("journal unreadable")

    with pytest.raises(OSError, match="journal unreadable"):
        sql_sink.load_day(postgres_url, "kite_ticks", DAY, breaking(), TICK_SCHEMA)
    assert sql_sink.count_day(postgres_url, "kite_ticks", DAY) == 40

    other = pa.schema([pa.field("x", pa.int64())])
    with pytest.raises(sql_sink.SqlSinkError, match="expected"):
        sql_sink.load_day(
            postgres_url, "kite_ticks", DAY, [pa.record_batch([pa.array([1])], schema=other)],
            TICK_SCHEMA,
        )  # fmt: skip
    assert sql_sink.count_day(postgres_url, "kite_ticks", DAY) == 40


def test_bad_identifiers_and_a_different_table_are_refused(postgres_url):
    for bad in ("Ticks", "ticks; drop table x", "1ticks", 'a"b'):
        with pytest.raises(sql_sink.SqlSinkError, match="not a safe SQL identifier"):
            sql_sink.load_day(postgres_url, bad, DAY, ticks(DAY, 1), TICK_SCHEMA)
    with pytest.raises(sql_sink.SqlSinkError, match="not a safe SQL identifier"):
        sql_sink.load_day(postgres_url, "t", DAY, ticks(DAY, 1), TICK_SCHEMA, pg_schema="Public")

    narrow = pa.schema([pa.field("instrument_token", pa.int64()), pa.field("note", pa.string())])
    sql_sink.load_day(
        postgres_url, "kite_ticks", DAY, pa.table({"instrument_token": [1], "note": ["x"]},
                                                  schema=narrow), narrow,
    )  # fmt: skip
    with pytest.raises(sql_sink.SqlSinkError, match="different columns") as caught:
        sql_sink.load_day(postgres_url, "kite_ticks", DAY, ticks(DAY, 1), TICK_SCHEMA)
    assert "note" in str(caught.value) and "last_price" in str(caught.value)


def test_an_unreachable_server_is_named_and_the_password_is_not():
    dsn = "postgresql://tick:s3cret-Pw@127.0.0.1:1/ticks"
    with pytest.raises(sql_sink.SqlSinkError) as caught:
        sql_sink.load_day(dsn, "kite_ticks", DAY, ticks(DAY, 1), TICK_SCHEMA)
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret-Pw" not in str(caught.value)
