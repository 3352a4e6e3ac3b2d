"""Instrument lookup: universe files -> one day's instrument tokens, table names and shards.

Universe files are what recorders keep as "instrumentsLookup" spreadsheets: a CSV, or an XLSX
whose every sheet is one group (the sheet name is the group). Columns (header names are
case-insensitive; only ``symbol`` is required):

  symbol    NSE tradingsymbol (RELIANCE, M&M), index (NIFTY 50), or an underlying (NIFTY,
            BANKNIFTY) for its current-month future
  type      optional: EQ, INDEX or FUT. FUT means "the current future of this underlying".
            Empty: the symbol as listed on the exchange, else, if none is, the current
            future of an underlying of that name
  exchange  optional, default NSE (NFO for FUT)
  table     optional table name; default derived from the symbol (M&M -> M_M,
            BAJAJ-AUTO -> BAJAJ_AUTO, NIFTY 50 -> NIFTY_50, future of NIFTY -> NIFTYFUT)
  group     optional (CSV); in XLSX the sheet name

Resolution is point-in-time: against one day's instruments snapshot. A future resolves to the
nearest expiry on or after the day read from the dump's ``expiry`` column, never a weekday
rule, so the day after an expiry picks the next month and the 2025 Thursday -> Tuesday move
needs nothing special. A symbol that does not resolve stays in the lookup with its reason
(``resolved`` false) so a rename or delisting is visible, never silent.

Shards: each app's resolved instruments go onto websocket connections of at most
MAX_INSTRUMENTS_PER_CONNECTION, at most MAX_CONNECTIONS_PER_API_KEY per app. Instruments keep
the connection they had in the previous day's lookup (by table name); new ones fill the
lowest connection with room, in table-name order. So an unchanged universe gives the same
assignment every day. What does not fit goes to connections beyond the limit, which
``shard_problems`` reports (the Dagster check fails) rather than dropping instruments.
Pure polars; no Dagster.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from zipfile import BadZipFile

import polars as pl

from tick_assets.sources.kite.limits import (
    MAX_CONNECTIONS_PER_API_KEY,
    MAX_INSTRUMENTS_PER_CONNECTION,
)

KINDS = ("EQ", "INDEX", "FUT")
FUTURE_SUFFIX = "FUT"
MAX_TABLE_NAME = 63  # PostgreSQL's identifier length
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: SQL words a bare table name must not be (a suffix _T is added to a derived name).
_RESERVED = frozenset((
    "ALL", "AND", "ANY", "AS", "ASC", "BETWEEN", "BY", "CASE", "CAST", "CHECK", "COLUMN",
    "CONSTRAINT", "CREATE", "CROSS", "DEFAULT", "DELETE", "DESC", "DISTINCT", "DROP", "ELSE",
    "END", "EXCEPT", "FALSE", "FETCH", "FOR", "FOREIGN", "FROM", "FULL", "GRANT", "GROUP",
    "HAVING", "IN", "INNER", "INSERT", "INTERSECT", "INTO", "IS", "JOIN", "KEY", "LEFT", "LIKE",
    "LIMIT", "NOT", "NULL", "OFFSET", "ON", "OR", "ORDER", "OUTER", "PRIMARY", "REFERENCES",
    "RIGHT", "SELECT", "SET", "TABLE", "THEN", "TO", "TRUE", "UNION", "UNIQUE", "UPDATE",
    "USER", "USING", "VALUES", "WHEN", "WHERE", "WITH",
))  # fmt: skip
_HEADER_ALIASES = {
    "symbol": "symbol",
    "tradingsymbol": "symbol",
    "type": "type",
    "instrument_type": "type",
    "kind": "type",
    "exchange": "exchange",
    "table": "table",
    "table_name": "table",
    "group": "group",
}

UNIVERSE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "type": pl.String(),
    "exchange": pl.String(),
    "table": pl.String(),
    "group": pl.String(),
    "source": pl.String(),  # file:line or file[sheet]:row, for error messages
}

LOOKUP_SCHEMA: dict[str, pl.DataType] = {
    "app": pl.String(),
    "universe": pl.String(),
    "group": pl.String(),
    "symbol": pl.String(),
    "kind": pl.String(),
    "table_name": pl.String(),
    "resolved": pl.Boolean(),
    "problem": pl.String(),
    "instrument_token": pl.Int64(),
    "exchange_token": pl.Int64(),
    "tradingsymbol": pl.String(),
    "name": pl.String(),
    "exchange": pl.String(),
    "segment": pl.String(),
    "instrument_type": pl.String(),
    "expiry": pl.Date(),
    "lot_size": pl.Int64(),
    "tick_size": pl.Float64(),
    "connection": pl.Int64(),
    "shard": pl.String(),
    "source": pl.String(),
}
LOOKUP_COLUMNS = tuple(LOOKUP_SCHEMA)


class UniverseError(ValueError):
    """A universe file is missing or malformed; the message names the file, row and fix."""


# --- table names ------------------------------------------------------------------------------


def safe_table_name(text: str) -> str:
    """An identifier from a symbol: upper case, runs of other characters -> one ``_``.

    M&M -> M_M, BAJAJ-AUTO -> BAJAJ_AUTO, NIFTY 50 -> NIFTY_50, 3MINDIA -> _3MINDIA,
    a reserved SQL word gets a _T suffix (ORDER -> ORDER_T).
    """
    name = re.sub(r"[^A-Z0-9]+", "_", text.strip().upper()).strip("_")
    if not name:
        raise UniverseError(f"symbol {text!r} has no letters or digits to name a table with")
    if name[0].isdigit():
        name = "_" + name
    if name in _RESERVED:
        name += "_T"
    return name[:MAX_TABLE_NAME]


def check_table_name(name: str, source: str) -> str:
    if not TABLE_NAME_RE.match(name) or name.upper() in _RESERVED:
        raise UniverseError(
            f"{source}: table {name!r} is not a safe identifier; use letters, digits and _ "
            f"(not starting with a digit, at most {MAX_TABLE_NAME} characters, not an SQL "
            f"word), e.g. {safe_table_name(name) if re.search('[A-Za-z0-9]', name) else 'T1'}"
        )
    return name


# --- universe files ---------------------------------------------------------------------------


def _header(cells: Sequence[object], source: str) -> list[str | None]:
    names = [_HEADER_ALIASES.get(str(c or "").strip().lower()) for c in cells]
    if "symbol" not in names:
        shown = [str(c) for c in cells if c is not None]
        raise UniverseError(
            f"{source}: no 'symbol' column in the header {shown}; the first row must name the "
            "columns, e.g. symbol,type,table (type and table optional)"
        )
    return names


def _record(names: list[str | None], cells: Sequence[object], source: str) -> dict | None:
    row: dict[str, str | None] = {k: None for k in UNIVERSE_SCHEMA}
    for name, cell in zip(names, cells, strict=False):
        if name is None or cell is None:
            continue
        text = str(cell).strip()
        if isinstance(cell, float) and cell.is_integer():
            text = str(int(cell))
        row[name] = text or None
    if not row["symbol"] or row["symbol"].startswith("#"):
        return None
    kind = (row["type"] or "").upper() or None
    if kind is not None and kind not in KINDS:
        raise UniverseError(
            f"{source}: type {row['type']!r} is not one of {', '.join(KINDS)} (or empty)"
        )
    row["type"] = kind
    row["exchange"] = row["exchange"].upper() if row["exchange"] else None
    if row["table"]:
        check_table_name(row["table"], source)
    row["source"] = source
    return row


def _read_csv(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UniverseError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    import csv

    rows: list[dict] = []
    reader = csv.reader(text.splitlines())
    names: list[str | None] | None = None
    for cells in reader:
        if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        source = f"{path}:{reader.line_num}"
        if names is None:
            names = _header(cells, source)
            continue
        record = _record(names, cells, source)
        if record is not None:
            rows.append(record)
    if names is None:
        raise UniverseError(f"{path}: empty; the first row must name the columns (symbol, ...)")
    return rows


def _read_xlsx(path: Path) -> list[dict]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, BadZipFile, OSError, KeyError, ValueError) as exc:
        raise UniverseError(
            f"{path}: not a readable .xlsx workbook ({type(exc).__name__}); save it from Excel "
            "or LibreOffice as .xlsx"
        ) from None
    rows: list[dict] = []
    try:
        for sheet in book.worksheets:
            names: list[str | None] | None = None
            for index, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                if not any(c is not None and str(c).strip() for c in cells):
                    continue
                source = f"{path}[{sheet.title}]:{index}"
                if names is None:
                    names = _header(cells, source)
                    continue
                record = _record(names, cells, source)
                if record is not None:
                    record["group"] = record["group"] or sheet.title
                    rows.append(record)
    finally:
        book.close()
    return rows


def read_universe(path: Path | str) -> pl.DataFrame:
    """The rows of a universe file (.csv or .xlsx) as a frame with UNIVERSE_SCHEMA."""
    path = Path(path)
    if not path.is_file():
        raise UniverseError(f"universe file {path} does not exist; create it or fix the path")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".xlsx":
        rows = _read_xlsx(path)
    else:
        raise UniverseError(f"{path}: a universe file must be .csv or .xlsx")
    if not rows:
        raise UniverseError(f"{path}: lists no symbols; add one symbol per row under the header")
    return pl.DataFrame(rows, schema=UNIVERSE_SCHEMA)


# --- resolution -------------------------------------------------------------------------------

_DUMP_FIELDS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "exchange",
    "segment",
    "instrument_type",
    "expiry",
    "lot_size",
    "tick_size",
)


def _kind_of(dump_row: Mapping) -> str:
    if dump_row["segment"] == "INDICES":
        return "INDEX"
    return str(dump_row["instrument_type"])


def current_future(instruments: pl.DataFrame, underlying: str, day: date) -> pl.DataFrame:
    """The underlying's futures with the nearest expiry on or after ``day`` (normally one row)."""
    futures = instruments.filter(
        (pl.col("instrument_type") == "FUT")
        & (pl.col("name") == underlying)
        & (pl.col("expiry") >= day)
    )
    if futures.height == 0:
        return futures
    return futures.filter(pl.col("expiry") == futures["expiry"].min())


class _Candidates:
    """The dump rows a universe can refer to, indexed once (not one scan per symbol)."""

    def __init__(self, instruments: pl.DataFrame, symbols: list[str], day: date) -> None:
        self.day = day
        self.listed: dict[tuple[str, str], list[dict]] = {}
        for row in instruments.filter(pl.col("tradingsymbol").is_in(symbols)).iter_rows(named=True):
            self.listed.setdefault((row["exchange"], row["tradingsymbol"]), []).append(row)
        self.futures: dict[tuple[str, str], list[dict]] = {}
        futures = instruments.filter(
            (pl.col("instrument_type") == "FUT")
            & pl.col("name").is_in(symbols)
            & (pl.col("expiry") >= day)
        )
        for row in futures.iter_rows(named=True):
            self.futures.setdefault((row["exchange"], row["name"]), []).append(row)

    def current_futures(self, exchange: str, underlying: str) -> list[dict]:
        rows = self.futures.get((exchange, underlying), [])
        if not rows:
            return []
        nearest = min(r["expiry"] for r in rows)
        return [r for r in rows if r["expiry"] == nearest]


def _kind_matches(dump_row: Mapping, kind: str) -> bool:
    if kind == "INDEX":
        return dump_row["segment"] == "INDICES"
    return dump_row["segment"] != "INDICES" and dump_row["instrument_type"] == kind


def _resolve_one(row: Mapping, found: _Candidates) -> tuple[dict | None, str]:
    """(dump row, kind) or (None, problem) for one universe row."""
    symbol, kind, day = row["symbol"], row["type"], found.day
    if kind != "FUT":
        exchange = row["exchange"] or "NSE"
        listed = found.listed.get((exchange, symbol), [])
        if kind is not None:
            listed = [r for r in listed if _kind_matches(r, kind)]
        if len(listed) == 1:
            return listed[0], _kind_of(listed[0])
        if len(listed) > 1:
            tokens = ", ".join(str(r["instrument_token"]) for r in listed)
            return None, (
                f"{symbol!r} matches {len(listed)} instruments on {exchange} ({tokens}); "
                "set type or exchange in the universe file"
            )
        if kind is not None:
            return None, (
                f"{symbol!r} ({kind}) is not in the {exchange} instruments of {day} "
                "(renamed or delisted?)"
            )
    exchange = row["exchange"] or "NFO"
    future = found.current_futures(exchange, symbol)
    if len(future) == 1:
        return future[0], "FUT"
    if len(future) > 1:
        names = ", ".join(r["tradingsymbol"] for r in future)
        return None, f"{symbol!r}: several current futures on {exchange} ({names})"
    if kind == "FUT":
        return None, (
            f"no {exchange} future of {symbol!r} expiring on or after {day} in the "
            "instruments dump (wrong underlying name?)"
        )
    return None, (
        f"{symbol!r} is not in the {row['exchange'] or 'NSE'} instruments of {day}, nor an "
        "underlying with a current future (renamed or delisted?)"
    )


def resolve_universe(
    universe: pl.DataFrame, instruments: pl.DataFrame, day: date, app: str, universe_name: str
) -> pl.DataFrame:
    """Resolve every universe row against ``day``'s instruments (LOOKUP_SCHEMA without shards,
    plus ``_explicit``: the table name came from the file)."""
    out: list[dict] = []
    found = _Candidates(instruments, universe["symbol"].unique().to_list(), day)
    for row in universe.iter_rows(named=True):
        dump, kind_or_problem = _resolve_one(row, found)
        record: dict = {c: None for c in LOOKUP_SCHEMA}
        record.update(
            app=app,
            universe=universe_name,
            group=row["group"],
            symbol=row["symbol"],
            source=row["source"],
            resolved=dump is not None,
        )
        if dump is None:
            record["problem"] = kind_or_problem
            record["kind"] = row["type"]
        else:
            record.update({f: dump[f] for f in _DUMP_FIELDS})
            record["kind"] = kind_or_problem
        record["_explicit"] = bool(row["table"])
        if row["table"]:
            record["table_name"] = row["table"]
        elif record["kind"] == "FUT":
            record["table_name"] = safe_table_name(row["symbol"]) + FUTURE_SUFFIX
        else:
            record["table_name"] = safe_table_name(row["symbol"])
        out.append(record)
    return pl.DataFrame(out, schema={**LOOKUP_SCHEMA, "_explicit": pl.Boolean()})


def _disambiguate(lookup: pl.DataFrame) -> pl.DataFrame:
    """Derived table names of DIFFERENT instruments that coincide (M&M, M-M) get _2, _3...

    The same instrument listed twice keeps one name: that is a universe mistake the
    duplicate-table check reports. Explicit names from the universe file are never changed.
    """
    identity = pl.coalesce(
        pl.col("instrument_token").cast(pl.String()),
        pl.concat_str(pl.lit("?"), pl.col("symbol"), pl.col("kind").fill_null("")),
    )
    frame = lookup.with_row_index("_row").with_columns(_identity=identity)
    derived = frame.filter(~pl.col("_explicit"))
    names = dict(zip(frame["_row"].to_list(), frame["table_name"].to_list(), strict=True))
    taken = set(frame.filter(pl.col("_explicit"))["table_name"].to_list())
    clashing = (
        derived.group_by("table_name")
        .agg(pl.col("_identity").n_unique().alias("n"))
        .filter(pl.col("n") > 1)["table_name"]
    )
    derived = derived.filter(pl.col("table_name").is_in(clashing.to_list()))
    for (table,), group in derived.group_by("table_name", maintain_order=True):
        first_symbol: dict[str, str] = {}
        for ident, symbol in group.select("_identity", "symbol").iter_rows():
            first_symbol[ident] = min(symbol, first_symbol.get(ident, symbol))
        if len(first_symbol) < 2:
            continue
        # the instrument whose symbol sorts first keeps the name; the others get _2, _3...
        ranked = sorted(first_symbol, key=lambda k: (first_symbol[k], k))
        suffix = 2
        for ident in ranked[1:]:
            while f"{table}_{suffix}" in taken or f"{table}_{suffix}" in names.values():
                suffix += 1
            new = f"{table}_{suffix}"
            taken.add(new)
            for row in group.filter(pl.col("_identity") == ident)["_row"].to_list():
                names[row] = new
    return lookup.with_columns(
        pl.Series("table_name", [names[i] for i in range(lookup.height)], dtype=pl.String())
    )


# --- shards -----------------------------------------------------------------------------------


def shard_name(app: str, connection: int) -> str:
    return f"{app}-{connection}"


def assign_shards(
    lookup: pl.DataFrame,
    previous: pl.DataFrame | None = None,
    per_connection: int = MAX_INSTRUMENTS_PER_CONNECTION,
) -> pl.DataFrame:
    """Give every resolved row a connection (and shard), keeping yesterday's where possible."""
    carried: dict[tuple[str, str], int] = {}
    if previous is not None and previous.height:
        for app, table, connection in (
            previous.filter(pl.col("connection").is_not_null())
            .select("app", "table_name", "connection")
            .iter_rows()
        ):
            carried.setdefault((app, table), int(connection))
    connections: list[int | None] = [None] * lookup.height
    apps = lookup["app"].to_list()
    tables = lookup["table_name"].to_list()
    order = sorted(
        (i for i, ok in enumerate(lookup["resolved"].to_list()) if ok),
        key=lambda i: (apps[i], tables[i], i),
    )
    load: Counter[tuple[str, int]] = Counter()
    for i in order:  # yesterday's connection first, while it has room and is within limits
        before = carried.get((apps[i], tables[i]))
        if (
            before is not None
            and before < MAX_CONNECTIONS_PER_API_KEY
            and load[(apps[i], before)] < per_connection
        ):
            connections[i] = before
            load[(apps[i], before)] += 1
    for i in order:  # the rest: lowest connection with room (beyond the limit if none has)
        if connections[i] is None:
            c = 0
            while load[(apps[i], c)] >= per_connection:
                c += 1
            connections[i] = c
            load[(apps[i], c)] += 1
    shards = [
        None if c is None else shard_name(a, c) for a, c in zip(apps, connections, strict=True)
    ]
    return lookup.with_columns(
        pl.Series("connection", connections, dtype=pl.Int64()),
        pl.Series("shard", shards, dtype=pl.String()),
    ).sort(["app", "connection", "table_name"], nulls_last=True)


def build_lookup(
    universes: Sequence[tuple[str, str, pl.DataFrame]],
    instruments: pl.DataFrame,
    day: date,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The day's lookup for (app, universe name, universe rows) triples, shards assigned."""
    parts = [resolve_universe(rows, instruments, day, app, name) for app, name, rows in universes]
    if not parts:
        return pl.DataFrame(schema=LOOKUP_SCHEMA)
    lookup = _disambiguate(pl.concat(parts))
    return assign_shards(lookup, previous).select(LOOKUP_COLUMNS)


# --- what the checks look at ------------------------------------------------------------------


def unresolved(lookup: pl.DataFrame) -> list[dict[str, str]]:
    """Each unresolved universe row: app, symbol, where it is listed and why."""
    rows = lookup.filter(~pl.col("resolved")).select("app", "symbol", "source", "problem")
    return rows.to_dicts()


def duplicate_tables(lookup: pl.DataFrame) -> dict[str, list[str]]:
    """Table names used more than once -> where each use comes from (app: symbol @ source)."""
    dupes = lookup.filter(pl.col("table_name").is_duplicated()).sort("table_name")
    out: dict[str, list[str]] = {}
    for table, app, symbol, source in dupes.select(
        "table_name", "app", "symbol", "source"
    ).iter_rows():
        out.setdefault(table, []).append(f"{app}: {symbol} ({source})")
    return out


def shard_problems(
    lookup: pl.DataFrame,
    per_connection: int = MAX_INSTRUMENTS_PER_CONNECTION,
    per_app: int = MAX_CONNECTIONS_PER_API_KEY,
) -> list[str]:
    """Shards over Kite's limits: > per_connection instruments, or > per_app connections."""
    problems = []
    counts = (
        lookup.filter(pl.col("connection").is_not_null())
        .group_by("app", "connection")
        .len()
        .sort("app", "connection")
    )
    for app, connection, n in counts.iter_rows():
        if n > per_connection:
            problems.append(
                f"{shard_name(app, connection)}: {n} instruments on one connection "
                f"(Kite allows {per_connection})"
            )
    for app, used in counts.group_by("app").len().sort("app").iter_rows():
        if used > per_app:
            problems.append(
                f"app {app!r}: needs {used} websocket connections (Kite allows {per_app} per "
                "api_key); move symbols to another app"
            )
    return problems


def shard_counts(lookup: pl.DataFrame) -> dict[str, int]:
    counts = lookup.filter(pl.col("shard").is_not_null()).group_by("shard").len().sort("shard")
    return dict(counts.iter_rows())
