"""PostgreSQL sink: one trading day of archived ticks into one table partitioned by day.

The "main database" of a classic recorder, done properly: one parent table partitioned by
RANGE on `trade_date` (one partition `<table>_YYYYMMDD` per trading day), loaded with COPY in a
single transaction that first empties the day's partition, so a re-run replaces that day and
touches no other, and a failed load leaves the day's previous rows in place.

Rows go as binary COPY built with numpy from the Arrow buffers, which is exact by construction
and about three times as fast as COPY of pyarrow-written CSV: floats travel as their IEEE bits
(NaN, infinities and -0.0 included), integers as integers, text as its UTF-8 bytes, NULL as
PostgreSQL's length -1 (so an empty string stays distinct from NULL), and timestamps as integer
microseconds since 2000-01-01 UTC, i.e. as instants. PostgreSQL keeps microseconds, so nanosecond timestamps are
floored to the microsecond (a tick at ...123456789 ns is stored as ...123456 µs).

Every identifier (schema, table, column) is checked against `IDENTIFIER_PATTERN` before any
connection is made and reaches SQL only through `psycopg2.sql.Identifier`. The DSN may hold a
password: it never appears in a log line or an exception message; errors name where the DSN came
from (`dsn_source`) instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import psycopg2
import pyarrow as pa
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

log = logging.getLogger(__name__)

IDENTIFIER_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DAY_COLUMN = "trade_date"
#: `<table>_YYYYMMDD` must fit PostgreSQL's 63-byte names (longer ones are silently truncated).
MAX_TABLE_NAME = 63 - len("_YYYYMMDD")
#: Rows per COPY chunk: bounds the memory of one encoded chunk (~35 MB for the tick schema).
CHUNK_ROWS = 65_536
#: Bytes of one chunk's text columns, padded to their longest value; wider chunks are split.
MAX_TEXT_BYTES = 1 << 26
#: Bytes handed to libpq per read by COPY.
COPY_READ_SIZE = 1 << 20
CONNECT_TIMEOUT_S = 10


class SqlSinkError(Exception):
    """Base of every error raised by the SQL sink."""


class InvalidIdentifierError(SqlSinkError, ValueError):
    """A schema, table or column name that may not be used as a PostgreSQL identifier."""


class UnsupportedTypeError(SqlSinkError, TypeError):
    """An Arrow column type the sink has no exact PostgreSQL type for."""


class SchemaMismatchError(SqlSinkError, ValueError):
    """The batches do not match the schema given, or the schema cannot be stored as is."""


class TableMismatchError(SqlSinkError):
    """The existing table or partition differs from what this load needs."""


class PostgresUnreachableError(SqlSinkError, ConnectionError):
    """No connection to PostgreSQL could be made."""


class LoadFailedError(SqlSinkError):
    """The load was rolled back; the day's previous rows are unchanged."""


@dataclass(frozen=True)
class SinkReport:
    """What one `load_day` did."""

    rows: int
    table: str  # schema-qualified parent, e.g. "public.kite_ticks"
    partition: str  # the day's partition, e.g. "kite_ticks_20250313"
    seconds: float
    bytes_sent: int
    created_table: bool
    created_partition: bool


@dataclass(frozen=True)
class DaySummary:
    """Rows of one day and the range of its time column (None when the day is empty)."""

    rows: int
    min_time: dt.datetime | None
    max_time: dt.datetime | None


# ---------------------------------------------------------------------------------------------
# Validation and type mapping (no SQL, no connection)


def validate_identifier(name: str, what: str) -> str:
    """Return `name` if it is a safe lower-case identifier; otherwise say which input is bad."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.fullmatch(name):
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a safe SQL identifier: use 1-63 characters of lower-case "
            f"a-z, 0-9 and _, not starting with a digit (pattern {IDENTIFIER_PATTERN.pattern})"
        )
    return name


def _validate_table(table: str) -> str:
    validate_identifier(table, "table")
    if len(table) > MAX_TABLE_NAME:
        raise InvalidIdentifierError(
            f"table {table!r} is {len(table)} characters; at most {MAX_TABLE_NAME} so that the "
            f"partition name {table}_YYYYMMDD fits PostgreSQL's 63-character limit"
        )
    return table


def _validate_day(day: dt.date) -> dt.date:
    if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
        raise TypeError(f"day must be a datetime.date (the trading day), got {day!r}")
    return day


def partition_name(table: str, day: dt.date) -> str:
    """The day's partition: `<table>_YYYYMMDD`."""
    return f"{_validate_table(table)}_{_validate_day(day):%Y%m%d}"


def pg_type(arrow_type: pa.DataType) -> str | None:
    """PostgreSQL type (as `format_type` spells it) holding every value of `arrow_type` exactly.

    None when there is none: unsigned 64-bit, naive timestamps (not an instant), binary, decimal,
    nested types. Timestamps with a time zone become `timestamp with time zone`, floored to
    PostgreSQL's microsecond precision.
    """
    if pa.types.is_dictionary(arrow_type):
        return pg_type(arrow_type.value_type)
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if (
        pa.types.is_int8(arrow_type)
        or pa.types.is_int16(arrow_type)
        or pa.types.is_uint8(arrow_type)
    ):
        return "smallint"
    if pa.types.is_int32(arrow_type) or pa.types.is_uint16(arrow_type):
        return "integer"
    if pa.types.is_int64(arrow_type) or pa.types.is_uint32(arrow_type):
        return "bigint"
    if pa.types.is_float32(arrow_type):
        return "real"
    if pa.types.is_float64(arrow_type):
        return "double precision"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return "timestamp with time zone"
    if pa.types.is_date(arrow_type):
        return "date"
    return None


def column_types(schema: pa.Schema) -> dict[str, str]:
    """The PostgreSQL column of each Arrow field, in order; raises naming every bad column."""
    if len(schema) == 0:
        raise SchemaMismatchError("schema has no columns; pass the Arrow schema of the batches")
    names = list(schema.names)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SchemaMismatchError(f"schema has duplicate column names {dupes}")
    if DAY_COLUMN in names:
        raise SchemaMismatchError(
            f"schema already has a column {DAY_COLUMN!r}; the sink adds it (the partition key), "
            "drop it from the batches"
        )
    for name in names:
        validate_identifier(name, "column")
    unmapped = {f.name: str(f.type) for f in schema if pg_type(f.type) is None}
    if unmapped:
        raise UnsupportedTypeError(
            f"no exact PostgreSQL type for column(s) {unmapped}; supported: integers up to "
            "uint32/int64, float32/float64, bool, string, date, timestamps with a time zone "
            "(cast naive timestamps to UTC, uint64 to int64 if the values fit)"
        )
    return {f.name: pg_type(f.type) for f in schema}  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Connection


def _endpoint(params: dict[str, str]) -> str:
    """`host:port` of parsed DSN parameters, for messages (never the password)."""
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    return f"{host}:{params.get('port') or 5432}"


def _scrub(message: str, dsn: str, password: str | None) -> str:
    """First line of `message` with the DSN and the password (plain or URL-encoded) masked."""
    text = (message.strip().splitlines() or [""])[0]
    for secret in (dsn, password, quote(password or "", safe="")):
        if secret:
            text = text.replace(secret, "***")
    return text


def _describe(dsn_source: str | None) -> tuple[str, str]:
    """(what the DSN is, how to fix it) for messages that must not show the DSN itself."""
    if dsn_source:
        return f"the PostgreSQL DSN from {dsn_source}", f"set {dsn_source} to a reachable server"
    return "the configured PostgreSQL DSN", "point the configured DSN at a reachable server"


def connect(dsn: str, *, dsn_source: str | None = None) -> psycopg2.extensions.connection:
    """A connection with UTC session time zone and UTF-8; errors say where, never the password.

    The errors are raised outside the `except` blocks so that no exception carrying libpq's
    text (which can quote the DSN) stays attached as `__context__`.
    """
    what, fix = _describe(dsn_source)
    params: dict[str, str] | None = None
    if isinstance(dsn, str):
        try:
            params = parse_dsn(dsn)
        except psycopg2.Error:
            params = None
    if params is None:
        raise PostgresUnreachableError(
            f"{what} could not be parsed; expected postgresql://user@host:port/dbname or "
            "key=value pairs"
        )
    extra = {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT_S}
    reason = None
    try:
        conn = psycopg2.connect(dsn, application_name="tick_assets.sql_sink", **extra)
    except psycopg2.Error as exc:
        reason = _scrub(str(exc), dsn, params.get("password"))
    if reason is not None:
        raise PostgresUnreachableError(
            f"PostgreSQL at {_endpoint(params)} unreachable with {what}: {reason}; is it running "
            f"and accepting connections? otherwise {fix}"
        )
    conn.set_client_encoding("UTF8")
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


# ---------------------------------------------------------------------------------------------
# Catalog checks and DDL


def _relation(cur, pg_schema: str, name: str) -> tuple[int, str] | None:
    """(oid, relkind) of `pg_schema.name`, or None."""
    cur.execute(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (pg_schema, name),
    )
    row = cur.fetchone()
    return (row[0], row[1]) if row else None


def _columns(cur, oid: int) -> dict[str, str]:
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    )
    return dict(cur.fetchall())


def _check_parent(cur, pg_schema: str, table: str, oid: int, relkind: str, want: dict) -> None:
    qualified = f"{pg_schema}.{table}"
    if relkind != "p":
        raise TableMismatchError(
            f"{qualified} exists but is not a partitioned table (relkind {relkind!r}); "
            f"the sink needs PARTITION BY RANGE ({DAY_COLUMN}): use another table name or "
            "migrate it by hand"
        )
    cur.execute("SELECT pg_get_partkeydef(%s)", (oid,))
    key = cur.fetchone()[0]
    if key != f"RANGE ({DAY_COLUMN})":
        raise TableMismatchError(
            f"{qualified} is partitioned by {key}, the sink needs RANGE ({DAY_COLUMN}); "
            "use another table name"
        )
    have = _columns(cur, oid)
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    retyped = {
        c: f"{have[c]} in table, {want[c]} in batches"
        for c in want
        if c in have and have[c] != want[c]
    }
    if missing or extra or retyped:
        parts = []
        if missing:
            parts.append(f"missing in the table: {missing}")
        if extra:
            parts.append(f"only in the table: {extra}")
        if retyped:
            parts.append(f"different types: {retyped}")
        raise TableMismatchError(
            f"{qualified} has different columns than the batches ({'; '.join(parts)}); the sink "
            "never alters a table: migrate it by hand or load into a new table"
        )


def _ensure_tables(
    cur, pg_schema: str, table: str, day: dt.date, want: dict, schema: pa.Schema
) -> tuple[bool, bool]:
    """Create the parent and the day's partition if missing; check them if present.

    A new parent gets NOT NULL on the columns the Arrow schema declares non-nullable. An existing
    one is compared on column names and types only (nullability is left to PostgreSQL to
    enforce), so a schema read back with relaxed nullability still loads.
    """
    part = partition_name(table, day)
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,))
    if cur.fetchone() is None:
        raise TableMismatchError(
            f"schema {pg_schema!r} does not exist in this database; create it "
            f"(CREATE SCHEMA {pg_schema}) or pass another pg_schema"
        )
    # Serialises concurrent first loads, whose CREATE ... IF NOT EXISTS could otherwise collide.
    cur.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tick_assets.sql_sink:{pg_schema}.{table}",)
    )
    parent_ident = sql.Identifier(pg_schema, table)
    created_table = created_partition = False

    found = _relation(cur, pg_schema, table)
    if found is None:
        columns = [sql.SQL("{} date NOT NULL").format(sql.Identifier(DAY_COLUMN))]
        columns += [
            sql.SQL("{} {}{}").format(
                sql.Identifier(name),
                sql.SQL(pgtype),
                sql.SQL("" if schema.field(name).nullable else " NOT NULL"),
            )
            for name, pgtype in want.items()
        ]
        cur.execute(
            sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE ({})").format(
                parent_ident, sql.SQL(", ").join(columns), sql.Identifier(DAY_COLUMN)
            )
        )
        created_table = True
        found = _relation(cur, pg_schema, table)
    else:
        _check_parent(cur, pg_schema, table, *found, {DAY_COLUMN: "date", **want})
    parent_oid = found[0]

    next_day = day + dt.timedelta(days=1)
    bound = f"FOR VALUES FROM ('{day.isoformat()}') TO ('{next_day.isoformat()}')"
    found_part = _relation(cur, pg_schema, part)
    if found_part is None:
        cur.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(pg_schema, part),
                parent_ident,
                sql.Literal(day),
                sql.Literal(next_day),
            )
        )
        created_partition = True
    else:
        cur.execute(
            "SELECT i.inhparent, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
            " LEFT JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.oid = %s",
            (found_part[0],),
        )
        have_parent, have_bound = cur.fetchone()
        if have_parent != parent_oid or have_bound != bound:
            actual = f"its bound is {have_bound}" if have_parent == parent_oid else "it is not"
            raise TableMismatchError(
                f"{pg_schema}.{part} exists but is not the partition of {pg_schema}.{table} "
                f"{bound} ({actual}); rename or drop it by hand"
            )
    return created_table, created_partition


# ---------------------------------------------------------------------------------------------
# Binary COPY encoding

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
COPY_TRAILER = b"\xff\xff"  # field count -1
PG_EPOCH_DAYS = 10_957  # 1970-01-01 to 2000-01-01, PostgreSQL's epoch for date and timestamp
PG_EPOCH_US = PG_EPOCH_DAYS * 86_400 * 1_000_000
#: The binary wire form of each fixed-width PostgreSQL type (network byte order).
WIRE_DTYPE = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "u1",
    "date": ">i4",
    "timestamp with time zone": ">i8",
}
US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _fixed_values(column: pa.Array) -> np.ndarray:
    """The column's values as numbers in PostgreSQL's terms (null slots hold anything)."""
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.uint8())
    elif pa.types.is_date64(column.type):
        column = column.cast(pa.date32())
    n, data = len(column), column.buffers()[1]
    if pa.types.is_timestamp(column.type):
        raw = np.frombuffer(data, np.int64, count=n, offset=column.offset * 8)
        if column.type.unit == "ns":
            return raw // 1000 - PG_EPOCH_US  # floor division: floored to the microsecond
        return raw * US_PER_UNIT[column.type.unit] - PG_EPOCH_US
    if pa.types.is_date32(column.type):
        return np.frombuffer(data, np.int32, count=n, offset=column.offset * 4) - PG_EPOCH_DAYS
    dtype = np.dtype(column.type.to_pandas_dtype())
    return np.frombuffer(data, dtype, count=n, offset=column.offset * dtype.itemsize)


def _text_values(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, UTF-8 bytes) of a string column."""
    _, offsets, data = column.buffers()
    dtype = np.dtype(np.int64 if pa.types.is_large_string(column.type) else np.int32)
    offsets = np.frombuffer(
        offsets, dtype, count=len(column) + 1, offset=column.offset * dtype.itemsize
    )
    return offsets, np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)


def encode_binary(batch: pa.RecordBatch, pg_types: list[str]) -> bytes:
    """The rows of `batch` in COPY BINARY tuple format (no header or trailer).

    Every row is first laid out at a fixed width (a numpy structured array: field count, then
    length + value per column, text padded to the chunk's longest value), then the bytes of
    NULL values and of text padding are dropped with one boolean mask.
    """
    n = batch.num_rows
    layout: list[tuple] = [("count", ">i2")]
    columns = []
    text_bytes = 0
    for i, (column, pg_type) in enumerate(zip(batch.columns, pg_types, strict=True)):
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
        layout.append((f"l{i}", ">i4"))
        if pg_type == "text":
            offsets, data = _text_values(column)
            lengths = np.diff(offsets)
            width = int(lengths.max()) if n else 0
            text_bytes += n * width
            if width:
                layout.append((f"v{i}", "u1", (width,)))
            columns.append((valid, (offsets, lengths, data), width))
        else:
            layout.append((f"v{i}", WIRE_DTYPE[pg_type]))
            columns.append((valid, _fixed_values(column), np.dtype(WIRE_DTYPE[pg_type]).itemsize))
    if text_bytes > MAX_TEXT_BYTES and n > 1:
        half = n // 2
        return encode_binary(batch.slice(0, half), pg_types) + encode_binary(
            batch.slice(half), pg_types
        )

    dtype = np.dtype(layout)
    rows = np.zeros(n, dtype)
    rows["count"] = len(pg_types)
    keep = np.ones((n, dtype.itemsize), bool)
    dropped = False
    for i, (valid, values, width) in enumerate(columns):
        start = dtype.fields[f"v{i}"][1] if width else 0
        if isinstance(values, tuple):  # text: length, bytes, then drop the padding
            offsets, lengths, data = values
            sent = lengths if valid is None else np.where(valid, lengths, 0)
            rows[f"l{i}"] = lengths if valid is None else np.where(valid, lengths, -1)
            if width:
                # Row-major fill: row r's bytes are data[offsets[r]:offsets[r + 1]], in order.
                rows[f"v{i}"][np.arange(width) < lengths[:, None]] = data[offsets[0] : offsets[-1]]
                padding = np.arange(width) >= sent[:, None]
                keep[:, start : start + width] &= ~padding
                dropped = dropped or bool(padding.any())
        else:
            rows[f"v{i}"] = values
            rows[f"l{i}"] = width if valid is None else np.where(valid, width, -1)
            if valid is not None:
                keep[~valid, start : start + width] = False
                dropped = True
    raw = rows.view(np.uint8).reshape(n, dtype.itemsize)
    return raw[keep].tobytes() if dropped else raw.tobytes()


def _same_columns(got: pa.Schema, want: pa.Schema) -> bool:
    return got.names == want.names and all(a.type == b.type for a, b in zip(got, want, strict=True))


def _schema_difference(got: pa.Schema, want: pa.Schema) -> str:
    want_types = {f.name: f.type for f in want}
    got_types = {f.name: f.type for f in got}
    diffs = [
        f"{n}: {got_types.get(n, 'missing')} (expected {t})"
        for n, t in want_types.items()
        if got_types.get(n) != t
    ]
    diffs += [f"{n}: not expected (not in the schema)" for n in got_types if n not in want_types]
    if not diffs:
        diffs = [f"column order {got.names}"]
    return "; ".join(diffs)


def _batches(
    data: pa.Table | Iterable[pa.RecordBatch], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    if isinstance(data, pa.Table):
        if not _same_columns(data.schema, schema):
            raise SchemaMismatchError(
                f"the table does not match the schema ({_schema_difference(data.schema, schema)})"
            )
        data = data.to_batches(max_chunksize=CHUNK_ROWS)
    for index, batch in enumerate(data):
        if not isinstance(batch, pa.RecordBatch):
            raise SchemaMismatchError(
                f"batch {index} is a {type(batch).__name__}, expected a pyarrow.RecordBatch"
            )
        if not _same_columns(batch.schema, schema):
            raise SchemaMismatchError(
                f"batch {index} does not match the schema ({_schema_difference(batch.schema, schema)})"
            )
        for offset in range(0, batch.num_rows, CHUNK_ROWS):
            yield batch.slice(offset, CHUNK_ROWS)


class _CopyStream:
    """File-like `read()` over the binary COPY of the batches, for `copy_expert`.

    Counts rows and bytes. An exception from the batches is kept in `error`: psycopg2 replaces
    it with a generic QueryCanceled, and the caller wants to see the original.
    """

    def __init__(self, batches: Iterator[pa.RecordBatch], pg_types: list[str]) -> None:
        self._batches = batches
        self._pg_types = pg_types
        self._buffer = memoryview(COPY_HEADER)
        self._finished = False
        self.rows = 0
        self.bytes_sent = 0
        self.error: BaseException | None = None

    def _next_chunk(self) -> bool:
        for batch in self._batches:
            if batch.num_rows == 0:
                continue
            self._buffer = memoryview(encode_binary(batch, self._pg_types))
            self.rows += batch.num_rows
            return True
        if self._finished:
            return False
        self._finished = True
        self._buffer = memoryview(COPY_TRAILER)
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            if not self._buffer and not self._next_chunk():
                return b""
        except BaseException as exc:
            self.error = exc
            raise
        size = len(self._buffer) if size is None or size < 0 else size
        out = bytes(self._buffer[:size])
        self._buffer = self._buffer[size:]
        self.bytes_sent += len(out)
        return out


# ---------------------------------------------------------------------------------------------
# Public API


def load_day(
    dsn: str,
    table: str,
    day: dt.date,
    batches: pa.Table | Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    pg_schema: str = "public",
    dsn_source: str | None = None,
) -> SinkReport:
    """Replace trading day `day` of `pg_schema.table` with `batches`; returns what was loaded.

    Creates the parent (`trade_date date NOT NULL` + the Arrow columns, PARTITION BY RANGE
    (trade_date)) and the partition `<table>_YYYYMMDD` FOR VALUES FROM (day) TO (day + 1) when
    missing; refuses an existing parent whose columns differ (never alters it). Then, in one
    transaction: TRUNCATE the partition, COPY every row, check the count, commit; any failure
    (including one raised by the batches) rolls back to the day's previous rows.

    Timestamps arrive as UTC instants; nanoseconds are floored to PostgreSQL's microseconds.
    Batches are consumed one at a time, so an 11M-row day need not be in memory. `dsn_source`
    (e.g. the env var holding the DSN) is what error messages name instead of the DSN.
    """
    validate_identifier(pg_schema, "pg_schema")
    part = partition_name(table, day)
    want = column_types(schema)
    if isinstance(batches, pa.Table) and not _same_columns(batches.schema, schema):
        raise SchemaMismatchError(
            f"the table does not match the schema ({_schema_difference(batches.schema, schema)})"
        )
    started = time.perf_counter()

    conn = connect(dsn, dsn_source=dsn_source)
    try:
        with conn.cursor() as cur:
            created_table, created_partition = _ensure_tables(
                cur, pg_schema, table, day, want, schema
            )
        conn.commit()

        stream = _CopyStream(_batches(batches, schema), list(want.values()))
        part_ident = sql.Identifier(pg_schema, part)
        copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary, FREEZE true)").format(
            part_ident, sql.SQL(", ").join(map(sql.Identifier, want))
        )
        try:
            with conn.cursor() as cur:
                # The partition's own default fills trade_date, so the rows need not repeat it.
                cur.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                        part_ident, sql.Identifier(DAY_COLUMN), sql.Literal(day)
                    )
                )
                cur.execute(sql.SQL("TRUNCATE {}").format(part_ident))
                cur.copy_expert(copy.as_string(conn), stream, size=COPY_READ_SIZE)
                if cur.rowcount != stream.rows:
                    raise LoadFailedError(
                        f"COPY into {pg_schema}.{part} stored {cur.rowcount} rows, "
                        f"{stream.rows} were sent"
                    )
            conn.commit()
        except BaseException as exc:
            try:
                conn.rollback()
            except psycopg2.Error as rollback_error:
                # A lost connection: the server discards the open transaction by itself.
                exc.add_note(f"rollback failed too ({type(rollback_error).__name__})")
            rolled_back = (
                f"loading {day} into {pg_schema}.{part} stopped after {stream.rows} rows and was "
                "rolled back; the day's previous rows are unchanged"
            )
            if stream.error is not None:
                # The batches failed (psycopg2 reports only QueryCanceled): re-raise their error.
                stream.error.add_note(rolled_back)
                raise stream.error from None
            if isinstance(exc, SqlSinkError | KeyboardInterrupt | SystemExit):
                exc.add_note(rolled_back)
                raise
            raise LoadFailedError(f"{rolled_back}. Cause: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()

    seconds = time.perf_counter() - started
    log.info(
        "loaded %d rows (%d bytes) into %s.%s in %.2f s",
        stream.rows,
        stream.bytes_sent,
        pg_schema,
        part,
        seconds,
    )
    return SinkReport(
        rows=stream.rows,
        table=f"{pg_schema}.{table}",
        partition=part,
        seconds=seconds,
        bytes_sent=stream.bytes_sent,
        created_table=created_table,
        created_partition=created_partition,
    )


def _require_table(cur, pg_schema: str, table: str) -> None:
    if _relation(cur, pg_schema, table) is None:
        raise TableMismatchError(
            f"table {pg_schema}.{table} does not exist; nothing has been loaded into it"
        )


def count_day(
    dsn: str,
    table: str,
    day: dt.date,
    pg_schema: str = "public",
    *,
    dsn_source: str | None = None,
) -> int:
    """Rows stored for `day` (0 if the day was never loaded)."""
    return day_summary(dsn, table, day, pg_schema, time_column=None, dsn_source=dsn_source).rows


def day_summary(
    dsn: str,
    table: str,
    day: dt.date,
    pg_schema: str = "public",
    *,
    time_column: str | None = "exchange_timestamp",
    dsn_source: str | None = None,
) -> DaySummary:
    """Rows of `day` and min/max of `time_column` as UTC datetimes, to verify a load."""
    validate_identifier(pg_schema, "pg_schema")
    _validate_table(table)
    _validate_day(day)
    if time_column is not None:
        validate_identifier(time_column, "time_column")
    parent = sql.Identifier(pg_schema, table)
    if time_column is None:
        query = sql.SQL("SELECT count(*), NULL, NULL FROM {} WHERE {} = %s")
        query = query.format(parent, sql.Identifier(DAY_COLUMN))
    else:
        query = sql.SQL("SELECT count(*), min({t}), max({t}) FROM {p} WHERE {d} = %s").format(
            t=sql.Identifier(time_column), p=parent, d=sql.Identifier(DAY_COLUMN)
        )
    conn = connect(dsn, dsn_source=dsn_source)
    try:
        with conn.cursor() as cur:
            _require_table(cur, pg_schema, table)
            cur.execute(query, (day,))
            rows, low, high = cur.fetchone()
        conn.rollback()
    finally:
        conn.close()
    utc = dt.UTC
    return DaySummary(
        rows=rows,
        min_time=low.astimezone(utc) if low is not None else None,
        max_time=high.astimezone(utc) if high is not None else None,
    )
