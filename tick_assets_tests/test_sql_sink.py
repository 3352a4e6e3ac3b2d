"""The PostgreSQL tick sink: one table partitioned by day, COPY, idempotent, safe identifiers.

Runs against the PostgreSQL of `postgres_url` (conftest: a fresh database per test; skipped when
the server is unreachable unless TICK_ASSETS_REQUIRE_POSTGRES=1 or CI=true). Each test also uses
its own table name and drops it afterwards.
"""

from __future__ import annotations

import logging
import math
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg2
import pyarrow as pa
import pytest
from psycopg2 import sql

from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store import sql_sink

DAY = date(2026, 11, 20)
NEXT = date(2026, 11, 23)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1
AWKWARD_FLOATS = [
    0.1,
    -0.0,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    123456789.12345679,
    float("nan"),
    float("inf"),
    float("-inf"),
    2.05,
]
AWKWARD_TEXT = ['a,"b"', "line\nbreak", "", "back\\slash", "\\.", "₹ NIFTY", "ws-0#shard.1"]


def ticks(day: date, n: int, *, start: int = 0, price: float = 1234.55) -> pa.Table:
    """n rows in TICK_SCHEMA: nulls where Kite leaves fields out, ns timestamps, edge values.

    received_at is unique per row (1 ms apart, with a sub-microsecond part) so rows can be
    matched after the sink floors nanoseconds.
    """
    open_ns = int(
        (datetime(day.year, day.month, day.day, 3, 45, tzinfo=UTC) - EPOCH).total_seconds()
    )
    open_ns *= 1_000_000_000
    columns = {}
    for field in TICK_SCHEMA:
        name, kind = field.name, field.type
        rows = range(start, start + n)
        if name == "instrument_token":
            values = [(256265, 4_294_967_295, 1)[i % 3] for i in rows]
        elif name == "mode":
            values = [("ltp", "quote", "full")[i % 3] for i in rows]
        elif name == "connection":
            values = [AWKWARD_TEXT[i % len(AWKWARD_TEXT)] for i in rows]
        elif name == "received_at":
            values = [open_ns + i * 1_000_000 + 789 for i in rows]
        elif pa.types.is_boolean(kind):
            values = [i % 2 == 0 for i in rows]
        elif name == "last_price":
            values = [AWKWARD_FLOATS[i % len(AWKWARD_FLOATS)] for i in rows]
        elif pa.types.is_floating(kind):
            values = [price + i * 0.05 if i % 7 else None for i in rows]
        elif pa.types.is_timestamp(kind):
            values = [open_ns + i * 1_000_123_457 if i % 5 else None for i in rows]
        elif kind == pa.uint16():
            values = [65_535 if i % 4 == 0 else (i % 60_000 if i % 3 else None) for i in rows]
        else:  # uint32 quantities
            values = [4_294_967_295 if i % 4 == 0 else (i if i % 3 else None) for i in rows]
        if pa.types.is_dictionary(kind):
            columns[name] = pa.array(values).dictionary_encode().cast(kind)
        elif pa.types.is_timestamp(kind):
            columns[name] = pa.array(values, pa.int64()).cast(kind)
        else:
            columns[name] = pa.array(values, kind)
    return pa.table(columns, schema=TICK_SCHEMA)


def expected_rows(table: pa.Table) -> list[dict]:
    """The rows as PostgreSQL must return them: timestamps floored to µs, computed here."""
    out: dict[str, list] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            ticks_ = column.cast(pa.int64()).to_pylist()
            to_us = {"ns": lambda v: v // 1000, "us": int, "ms": lambda v: v * 1000}.get(
                column.type.unit, lambda v: v * 1_000_000
            )
            out[name] = [
                None if v is None else EPOCH + timedelta(microseconds=to_us(v)) for v in ticks_
            ]
        else:
            out[name] = column.to_pylist()
    return [dict(zip(out, values, strict=True)) for values in zip(*out.values(), strict=True)]


def same(got, want) -> bool:
    if isinstance(want, float) and want is not None:
        if math.isnan(want):
            return isinstance(got, float) and math.isnan(got)
        return got == want and math.copysign(1, got) == math.copysign(1, want)
    if isinstance(want, datetime):
        return got == want and got.utcoffset() is not None
    return got == want and type(got) is type(want)


def select_day(url: str, table: str, day: date, time_zone: str = "UTC") -> list[dict]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT set_config('TimeZone', %s, false)", (time_zone,))
        cur.execute(
            sql.SQL("SELECT * FROM {} WHERE trade_date = %s ORDER BY received_at").format(
                sql.Identifier(table)
            ),
            (day,),
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def fingerprint(url: str, relation: str) -> tuple[int, str]:
    """(rows, md5 of every row in order) of one partition: proves it was not touched."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.received_at), ''))"
                " FROM {} t"
            ).format(sql.Identifier(relation))
        )
        return cur.fetchone()


def query(url: str, text: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(text, params)
        return cur.fetchall()


def in_batches(table: pa.Table, sizes: list[int]) -> Iterator[pa.RecordBatch]:
    offset = 0
    for size in sizes:
        yield from table.slice(offset, size).to_batches()
        offset += size
    yield from table.slice(offset).to_batches()


@pytest.fixture
def table(postgres_url) -> Iterator[str]:
    """A table name used by this test only; dropped (with its partitions) afterwards."""
    name = f"ticks_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_a_day_reads_back_exactly(postgres_url, table):
    data = ticks(DAY, 70)
    report = sql_sink.load_day(postgres_url, table, DAY, data, TICK_SCHEMA)
    assert (report.rows, report.partition, report.table) == (
        70,
        f"{table}_20261120",
        f"public.{table}",
    )
    assert report.created_table and report.created_partition and report.bytes_sent > 0

    want = expected_rows(data)
    for time_zone in ("UTC", "Asia/Kolkata"):  # instants, whatever the reader's session zone
        got = select_day(postgres_url, table, DAY, time_zone)
        assert len(got) == len(want) == 70
        for got_row, want_row in zip(got, want, strict=True):
            assert got_row.pop("trade_date") == DAY
            assert list(got_row) == TICK_SCHEMA.names
            bad = {k: (got_row[k], v) for k, v in want_row.items() if not same(got_row[k], v)}
            assert not bad, bad
    # The nanoseconds really were there (789 ns: floored, where rounding would add 1 µs)...
    assert data["received_at"].cast(pa.int64())[0].as_py() % 1000 == 789
    # ... and so are nulls and the extremes of uint32 / uint16 (bigint / integer columns).
    assert {None, 4_294_967_295} <= {r["bid_quantity_1"] for r in want}
    assert {None, 65_535} <= {r["bid_orders_1"] for r in want}
    assert {r["connection"] for r in got} == set(AWKWARD_TEXT)

    types = dict(
        query(
            postgres_url,
            "SELECT column_name, data_type || ' ' || is_nullable FROM information_schema.columns"
            " WHERE table_name = %s",
            (table,),
        )
    )
    assert types["trade_date"] == "date NO"
    assert types["instrument_token"] == "bigint NO"
    assert types["mode"] == "text NO"
    assert types["last_price"] == "double precision NO"
    assert types["volume_traded"] == "bigint YES"
    assert types["bid_orders_1"] == "integer YES"
    assert types["exchange_timestamp"] == "timestamp with time zone YES"
    assert types["received_at"] == "timestamp with time zone NO"

    summary = sql_sink.day_summary(postgres_url, table, DAY)
    stamps = [r["exchange_timestamp"] for r in want if r["exchange_timestamp"] is not None]
    assert (summary.rows, summary.min_time, summary.max_time) == (70, min(stamps), max(stamps))
    assert summary.min_time.tzinfo is UTC
    assert sql_sink.count_day(postgres_url, table, NEXT) == 0  # never loaded: no partition


def test_every_supported_arrow_type_round_trips(postgres_url, table, monkeypatch):
    """Beyond the tick schema: signed ints, float32, dates, other units and zones, long text."""
    ns = [-1, 0, 946_684_800_000_000_999, None, 1_763_617_500_123_456_789]
    schema = pa.schema(
        [
            ("i8", pa.int8()),
            ("i16", pa.int16()),
            ("i32", pa.int32()),
            ("i64", pa.int64()),
            ("u8", pa.uint8()),
            ("f32", pa.float32()),
            ("flag", pa.bool_()),
            ("day", pa.date32()),
            ("ts_ns", pa.timestamp("ns", tz="UTC")),
            ("ts_ms_ist", pa.timestamp("ms", tz="Asia/Kolkata")),
            ("ts_s", pa.timestamp("s", tz="UTC")),
            ("note", pa.large_string()),
            ("code", pa.dictionary(pa.int8(), pa.int32())),
        ]
    )
    data = pa.table(
        [
            pa.array([-128, 127, None, 0, -1], pa.int8()),
            pa.array([-32768, 32767, 1, None, -2], pa.int16()),
            pa.array([-(2**31), 2**31 - 1, None, 3, 4], pa.int32()),
            pa.array([-(2**63), 2**63 - 1, 5, None, 6], pa.int64()),
            pa.array([0, 255, None, 7, 8], pa.uint8()),
            pa.array([0.1, -0.0, None, float("nan"), 3.4028234663852886e38], pa.float32()),
            pa.array([True, False, None, True, False]),
            pa.array([date(1969, 12, 31), date(2000, 1, 1), None, date(9999, 12, 31), DAY]),
            pa.array(ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            pa.array([0, -1, 1_763_617_500_123, None, 946_684_799_999], pa.int64()).cast(
                pa.timestamp("ms", tz="Asia/Kolkata")
            ),
            pa.array([0, None, 1_763_617_500, -86_400, 1], pa.int64()).cast(
                pa.timestamp("s", tz="UTC")
            ),
            pa.array(["x" * 5000, None, "", "é" * 3, "tail"], pa.large_string()),
            pa.array([70_000, None, 70_000, -5, 0], pa.int32()).dictionary_encode(),
        ],
        schema=schema,
    )
    # Force the encoder to split chunks on their padded text size, down to single rows.
    monkeypatch.setattr(sql_sink, "MAX_TEXT_BYTES", 6000)
    reader = pa.RecordBatchReader.from_batches(schema, data.to_batches(max_chunksize=3))
    assert sql_sink.load_day(postgres_url, table, DAY, reader, schema).rows == 5

    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        # real -> float8 is exact, and shows the float32 bits as Python sees them.
        columns = [
            sql.SQL("{}::float8" if name == "f32" else "{}").format(sql.Identifier(name))
            for name in schema.names
        ]
        cur.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY i32 NULLS LAST").format(
                sql.SQL(", ").join(columns), sql.Identifier(table)
            )
        )
        got = cur.fetchall()
    want = expected_rows(data)
    want.sort(key=lambda r: (r["i32"] is None, r["i32"]))
    for got_row, want_row in zip(got, want, strict=True):
        bad = {
            k: (g, w) for (k, w), g in zip(want_row.items(), got_row, strict=True) if not same(g, w)
        }
        assert not bad, bad
    # -1 ns is floored to -1 µs (1969-12-31 23:59:59.999999), not truncated towards 1970.
    assert datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) in [r[8] for r in got]


def test_days_are_partitions_and_a_rerun_replaces_only_its_day(postgres_url, table):
    first = ticks(DAY, 60)
    report = sql_sink.load_day(postgres_url, table, DAY, in_batches(first, [7, 0, 30]), TICK_SCHEMA)
    assert report.rows == 60
    sql_sink.load_day(postgres_url, table, NEXT, ticks(NEXT, 40).to_batches(), TICK_SCHEMA)

    tree = query(
        postgres_url,
        "SELECT t.relid::text, t.isleaf, pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid ORDER BY 1",
        (table,),
    )
    assert tree == [
        (table, False, None),
        (f"{table}_20261120", True, "FOR VALUES FROM ('2026-11-20') TO ('2026-11-21')"),
        (f"{table}_20261123", True, "FOR VALUES FROM ('2026-11-23') TO ('2026-11-24')"),
    ]
    strategy = query(
        postgres_url, "SELECT pg_get_partkeydef(%s::regclass)", (table,)
    )  # fmt: skip
    assert strategy == [("RANGE (trade_date)",)]
    next_before = fingerprint(postgres_url, f"{table}_20261123")
    assert next_before[0] == 40

    again = sql_sink.load_day(postgres_url, table, DAY, ticks(DAY, 25, start=500), TICK_SCHEMA)
    assert (again.rows, again.created_table, again.created_partition) == (25, False, False)
    assert sql_sink.count_day(postgres_url, table, DAY) == 25
    got = select_day(postgres_url, table, DAY)
    assert [r["received_at"] for r in got] == [
        r["received_at"] for r in expected_rows(ticks(DAY, 25, start=500))
    ]
    assert fingerprint(postgres_url, f"{table}_20261123") == next_before

    # The same day twice in a row: same contents, same count (idempotent).
    sql_sink.load_day(postgres_url, table, DAY, ticks(DAY, 25, start=500), TICK_SCHEMA)
    assert sql_sink.count_day(postgres_url, table, DAY) == 25
    assert (
        len(
            query(
                postgres_url, "SELECT 1 FROM pg_inherits WHERE inhparent = %s::regclass", (table,)
            )
        )
        == 2
    )


def test_a_load_that_fails_midway_leaves_the_day_as_it_was(postgres_url, table):
    sql_sink.load_day(postgres_url, table, DAY, ticks(DAY, 40), TICK_SCHEMA)
    sql_sink.load_day(postgres_url, table, NEXT, ticks(NEXT, 10), TICK_SCHEMA)
    before = fingerprint(postgres_url, f"{table}_20261120")
    next_before = fingerprint(postgres_url, f"{table}_20261123")

    def breaking():
        yield from ticks(DAY, 40_000, start=1000).to_batches(max_chunksize=10_000)
        raise OSError("journal unreadable")

    with pytest.raises(OSError, match="journal unreadable") as caught:
        sql_sink.load_day(postgres_url, table, DAY, breaking(), TICK_SCHEMA)
    assert any("rolled back" in note for note in caught.value.__notes__)
    assert "after 40000 rows" in " ".join(caught.value.__notes__)  # rows had been sent
    assert fingerprint(postgres_url, f"{table}_20261120") == before

    other = pa.schema([pa.field("x", pa.int64())])
    wrong = [*ticks(DAY, 5).to_batches(), pa.record_batch([pa.array([1])], schema=other)]
    with pytest.raises(sql_sink.SchemaMismatchError, match=r"batch 1 .*x: not expected") as caught:
        sql_sink.load_day(postgres_url, table, DAY, iter(wrong), TICK_SCHEMA)
    assert "instrument_token: missing (expected uint32)" in str(caught.value)
    assert fingerprint(postgres_url, f"{table}_20261120") == before

    # A failure inside PostgreSQL: a null in a NOT NULL column, after good rows.
    broken = ticks(DAY, 3, start=9000)
    nulls = pa.array([1, None, 2], pa.uint32())
    broken = broken.set_column(0, TICK_SCHEMA.field(0), nulls)
    with pytest.raises(sql_sink.LoadFailedError, match="rolled back.*NotNullViolation"):
        sql_sink.load_day(postgres_url, table, DAY, broken, TICK_SCHEMA)
    assert fingerprint(postgres_url, f"{table}_20261120") == before
    assert fingerprint(postgres_url, f"{table}_20261123") == next_before

    # A failed first load of a new day leaves that day empty, not half-loaded.
    fresh = date(2026, 11, 24)
    with pytest.raises(OSError):
        sql_sink.load_day(postgres_url, table, fresh, breaking(), TICK_SCHEMA)
    assert sql_sink.count_day(postgres_url, table, fresh) == 0


def test_bad_identifiers_and_types_are_refused_before_any_sql():
    """UNREACHABLE proves no connection was attempted: that would raise PostgresUnreachable."""
    one = ticks(DAY, 1)
    for bad in ("Ticks", "ticks; drop table x", "1ticks", 'a"b', "", "t" * 64, "ticks.x"):
        with pytest.raises(sql_sink.InvalidIdentifierError, match="not a safe SQL identifier") as e:
            sql_sink.load_day(UNREACHABLE, bad, DAY, one, TICK_SCHEMA)
        assert repr(bad) in str(e.value)
    with pytest.raises(sql_sink.InvalidIdentifierError, match="55 characters"):
        sql_sink.load_day(UNREACHABLE, "t" * 55, DAY, one, TICK_SCHEMA)
    for bad_schema in ("Public", "public; drop", "public.x"):
        with pytest.raises(sql_sink.InvalidIdentifierError, match=r"pg_schema .*not a safe"):
            sql_sink.load_day(UNREACHABLE, "ticks", DAY, one, TICK_SCHEMA, pg_schema=bad_schema)
    spaced = pa.schema([pa.field("Bid Price", pa.float64())])
    with pytest.raises(sql_sink.InvalidIdentifierError, match="column 'Bid Price'"):
        sql_sink.load_day(UNREACHABLE, "ticks", DAY, [], spaced)
    with pytest.raises(sql_sink.InvalidIdentifierError, match="time_column"):
        sql_sink.day_summary(UNREACHABLE, "ticks", DAY, time_column="exchange timestamp")

    unmappable = pa.schema(
        [
            pa.field("ok", pa.int64()),
            pa.field("big", pa.uint64()),
            pa.field("naive", pa.timestamp("ns")),
        ]
    )
    with pytest.raises(sql_sink.UnsupportedTypeError, match=r"'big': 'uint64'.*'naive'"):
        sql_sink.load_day(UNREACHABLE, "ticks", DAY, [], unmappable)
    with pytest.raises(sql_sink.SchemaMismatchError, match="trade_date"):
        sql_sink.load_day(UNREACHABLE, "ticks", DAY, [], pa.schema([("trade_date", pa.date32())]))
    with pytest.raises(sql_sink.SchemaMismatchError, match="connection: missing"):
        sql_sink.load_day(UNREACHABLE, "ticks", DAY, one.drop_columns(["connection"]), TICK_SCHEMA)
    with pytest.raises(TypeError, match="datetime.date"):
        sql_sink.load_day(
            UNREACHABLE, "ticks", datetime(2026, 11, 20, tzinfo=UTC), one, TICK_SCHEMA
        )


def test_a_table_with_different_columns_is_refused(postgres_url, table):
    fields = [f for f in TICK_SCHEMA if f.name != "connection"]
    fields = [pa.field("last_price", pa.float32()) if f.name == "last_price" else f for f in fields]
    older = pa.schema([*fields, pa.field("note", pa.string())])
    sql_sink.load_day(postgres_url, table, DAY, [], older)
    with pytest.raises(sql_sink.TableMismatchError, match="different columns") as caught:
        sql_sink.load_day(postgres_url, table, NEXT, ticks(NEXT, 3), TICK_SCHEMA)
    message = str(caught.value)
    assert "missing in the table: ['connection']" in message
    assert "only in the table: ['note']" in message
    assert "'last_price': 'real in table, double precision in batches'" in message
    # Refused before anything was created or altered.
    assert query(postgres_url, "SELECT to_regclass(%s)", (f"{table}_20261123",)) == [(None,)]
    assert query(
        postgres_url,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = %s",
        (table,),
    ) == [(len(older) + 1,)]

    plain = f"{table}_plain"
    try:
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(plain)))
        with pytest.raises(sql_sink.TableMismatchError, match="not a partitioned table"):
            sql_sink.load_day(postgres_url, plain, DAY, ticks(DAY, 1), TICK_SCHEMA)
        # A stray table with the partition's name is not taken for the partition.
        stray = f"{table}_20261125"
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(stray)))
        with pytest.raises(sql_sink.TableMismatchError, match="is not the partition"):
            sql_sink.load_day(postgres_url, table, date(2026, 11, 25), [], older)
    finally:
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
                    sql.Identifier(plain), sql.Identifier(f"{table}_20261125")
                )
            )
    with pytest.raises(sql_sink.TableMismatchError, match="schema 'nowhere' does not exist"):
        sql_sink.load_day(postgres_url, table, DAY, [], older, pg_schema="nowhere")
    with pytest.raises(sql_sink.TableMismatchError, match="does not exist"):
        sql_sink.count_day(postgres_url, "no_such_table", DAY)


def all_text(exc: BaseException) -> str:
    """Message, notes, repr and the whole printed chain of an exception."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def test_the_password_never_appears_in_an_error(postgres_url, table, caplog):
    secret = "s3cret-Pw"
    caplog.set_level(logging.DEBUG)
    for dsn in (
        f"postgresql://tick:{secret}@127.0.0.1:1/ticks",
        f"host=127.0.0.1 port=1 user=tick password={secret} dbname=ticks",
    ):
        with pytest.raises(sql_sink.PostgresUnreachableError) as caught:
            sql_sink.load_day(
                dsn, table, DAY, ticks(DAY, 1), TICK_SCHEMA, dsn_source="TICK_ASSETS_POSTGRES_DSN"
            )
        text = all_text(caught.value)
        assert secret not in text
        assert "PostgreSQL at 127.0.0.1:1 unreachable" in str(caught.value)
        assert "TICK_ASSETS_POSTGRES_DSN" in str(caught.value)
        assert "Connection refused" in str(caught.value)

    # libpq quotes an unparsable DSN back, password and all: the sink does not.
    with pytest.raises(sql_sink.PostgresUnreachableError, match="could not be parsed") as caught:
        sql_sink.count_day(f"host=127.0.0.1 password={secret} oops", table, DAY)
    assert secret not in all_text(caught.value)
    assert "the configured PostgreSQL DSN" in str(caught.value)

    # A reachable server (trust auth ignores the password) and a load that fails inside it.
    with_password = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in with_password
    sql_sink.load_day(with_password, table, DAY, ticks(DAY, 3), TICK_SCHEMA)
    broken = ticks(DAY, 2).set_column(0, TICK_SCHEMA.field(0), pa.array([None, 1], pa.uint32()))
    with pytest.raises(sql_sink.LoadFailedError) as caught:
        sql_sink.load_day(with_password, table, DAY, broken, TICK_SCHEMA)
    assert secret not in all_text(caught.value)
    assert sql_sink.count_day(with_password, table, DAY) == 3
    assert caplog.records and not any(secret in r.getMessage() for r in caplog.records)
