"""kite/ticks_archive[day] and kite/bars_1m[day]: the verified lake copy of a captured day.

After the close (15:45 IST schedule) the archive reads every shard's journals of the day,
keeps the session (09:15-15:30 IST), drops duplicates, joins the lookup (symbol, table name),
sorts by (symbol, exchange_timestamp, received_at) and writes lake/kite/ticks/date=DAY/ with
its manifest (tick_assets.capture.archive). Optionally it loads the day into PostgreSQL
([sink.postgres]). Its checks run inside the asset, before anything is deleted: instruments
without ticks (warning), the accounting chain (error), the lake (and SQL) read back (error).
Only when all of them pass is the day's staging (the journals) deleted; raw/ is always kept.
kite/bars_1m are minute bars built from the archive, reconciled against kite/candles.
"""

import os
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tick_assets.calendars import session_bounds_utc
from tick_assets.candles.reconcile import bars_from_ticks
from tick_assets.capture import archive as day_archive
from tick_assets.config import PostgresSinkConfig, load_settings
from tick_assets.defs.candles import build_bars_reconciliation_check
from tick_assets.defs.kite.assets import VENUE, refuse_future_days
from tick_assets.defs.kite.capture import read_lookup
from tick_assets.defs.kite.capture import ticks as kite_ticks
from tick_assets.defs.kite.lookup import instrument_lookup
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store import lake, sql_sink

ARCHIVE_ASSET = "ticks_archive"
LAKE_ASSET = "ticks"  # lake/kite/ticks/date=DAY/
BARS_ASSET = "bars_1m"
MAX_LISTED = 100
SINK_BATCH_ROWS = 100_000
CHECK_NO_TICKS = "every_instrument_has_ticks"
CHECK_ACCOUNTING = "accounting_chain_adds_up"
CHECK_READ_BACK = "lake_read_back_matches"


def lookup_for_archive(home: str, day: str) -> pl.DataFrame:
    """instrument_token -> symbol (Kite's tradingsymbol), table_name; one row per token."""
    frame = read_lookup(home, day).filter(pl.col("resolved"))
    return frame.select(
        "instrument_token",
        pl.col("tradingsymbol").alias("symbol"),
        "table_name",
        "shard",
    ).unique("instrument_token", keep="first", maintain_order=True)


def sink_dsn(sink: PostgresSinkConfig, environ: dict[str, str]) -> str:
    dsn = environ.get(sink.dsn_env, "").strip()
    if not dsn:
        raise dg.Failure(
            description=(
                f"[sink.postgres] is enabled but {sink.dsn_env} is not set; set it to the "
                "PostgreSQL DSN (e.g. postgresql://user@127.0.0.1:5432/ticks) or disable the sink"
            )
        )
    return dsn


def lake_batches(home: str, day: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The day's lake partition as record batches (a whole day need not fit in memory)."""
    partition = {"date": day}
    manifest = lake.read_manifest(home, VENUE, LAKE_ASSET, partition)
    directory = lake.partition_dir(home, VENUE, LAKE_ASSET, partition)
    files = [pq.ParquetFile(directory / entry.name) for entry in manifest.files]
    schema = files[0].schema_arrow
    return schema, (b for f in files for b in f.iter_batches(batch_size=SINK_BATCH_ROWS))


def load_sink(
    sink: PostgresSinkConfig, home: str, day: str, expected_rows: int
) -> tuple[dict[str, Any], str | None]:
    """Copy the lake partition into PostgreSQL; (metadata, problem or None)."""
    dsn = sink_dsn(sink, dict(os.environ))
    schema, batches = lake_batches(home, day)
    when = date.fromisoformat(day)
    try:
        report = sql_sink.load_day(
            dsn, sink.table, when, batches, schema, pg_schema=sink.pg_schema,
            dsn_source=sink.dsn_env,
        )  # fmt: skip
        counted = sql_sink.count_day(
            dsn, sink.table, when, pg_schema=sink.pg_schema, dsn_source=sink.dsn_env
        )
    except sql_sink.SqlSinkError as exc:
        return {"error": str(exc)}, f"SQL sink: {exc}"
    meta = {
        "table": report.table,
        "partition": report.partition,
        "rows": report.rows,
        "rows_counted": counted,
        "seconds": round(report.seconds, 3),
    }
    problem = None
    if counted != expected_rows:
        problem = (
            f"PostgreSQL {report.table} holds {counted} rows for {day}, the lake {expected_rows}"
        )
    return meta, problem


@dg.asset(
    key_prefix=[VENUE],
    name=ARCHIVE_ASSET,
    group_name="kite",
    deps=[kite_ticks, instrument_lookup],
    partitions_def=nse_trading_days,
    kinds={"python", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NO_TICKS,
            asset=[VENUE, ARCHIVE_ASSET],
            description="Every instrument of the day's lookup has ticks in the archive "
            "(a warning: usually a symbol change or a technical problem); lists the others.",
        ),
        dg.AssetCheckSpec(
            CHECK_ACCOUNTING,
            asset=[VENUE, ARCHIVE_ASSET],
            description="Messages received, packets decoded, rows journaled, rows dropped by "
            "rule and rows in the lake add up, link by link.",
        ),
        dg.AssetCheckSpec(
            CHECK_READ_BACK,
            asset=[VENUE, ARCHIVE_ASSET],
            description="The lake partition read back (and the SQL sink, when enabled) "
            "matches what was written: files, hashes, rows and content.",
        ),
    ],
    description=(
        "The day's ticks in the lake (lake/kite/ticks/date=DAY/): every shard's journals, "
        "09:15-15:30 IST, deduplicated, joined with the lookup (symbol, table_name), sorted by "
        "(symbol, exchange_timestamp, received_at), with a manifest of counts. Optionally "
        "loaded into PostgreSQL. The day's staging is deleted only when all checks pass."
    ),
)
def ticks_archive(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> dg.MaterializeResult:
    day = context.partition_key
    refuse_future_days("kite/ticks_archive", [day])
    full = settings.load()
    try:
        lookup = lookup_for_archive(settings.home, day)
        start, end = session_bounds_utc(date.fromisoformat(day))
        spec = day_archive.ArchiveSpec(
            home=settings.home_path,
            venue=VENUE,
            day=date.fromisoformat(day),
            session_start=start,
            session_end=end,
        )
        result = day_archive.archive_day(spec, TICK_SCHEMA, lookup.drop("shard"))
    except (day_archive.ArchiveError, ValueError) as exc:
        raise dg.Failure(description=str(exc)) from None

    empty = result.instruments_without_ticks
    no_ticks = dg.AssetCheckResult(
        check_name=CHECK_NO_TICKS,
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "instruments_without_ticks": len(empty),
            "listed": dg.MetadataValue.json(empty[:MAX_LISTED]),
        },
        description=(
            f"{len(empty)} of {lookup.height} instruments have no ticks: "
            + ", ".join(str(e.get("symbol")) for e in empty[:20])
            if empty
            else None
        ),
    )
    broken = [link for link, ok in result.chain.items() if not ok]
    accounting = dg.AssetCheckResult(
        check_name=CHECK_ACCOUNTING,
        passed=result.ok,
        metadata={
            "chain": dg.MetadataValue.json(result.chain),
            "accounting": dg.MetadataValue.json(result.accounting),
        },
        description=("does not add up: " + "; ".join(broken)) if broken else None,
    )
    read_ok, read_message = day_archive.verify_read_back(settings.home, VENUE, spec.day, result)
    sink_meta: dict[str, Any] = {}
    sink = full.sink.postgres
    if read_ok and sink.enabled:
        sink_meta, problem = load_sink(sink, settings.home, day, result.manifest.rows)
        if problem:
            read_ok, read_message = False, problem
    read_back = dg.AssetCheckResult(
        check_name=CHECK_READ_BACK,
        passed=read_ok,
        metadata={"detail": read_message, "sql_sink": dg.MetadataValue.json(sink_meta or "off")},
        description=None if read_ok else read_message,
    )
    checks = [no_ticks, accounting, read_back]
    failing = [c.check_name for c in checks if not c.passed]
    if failing:
        staging_note = f"kept: checks {', '.join(failing)} did not pass"
    else:
        freed = day_archive.delete_staging(settings.home_path, VENUE, spec.day)
        staging_note = f"deleted ({freed} bytes); raw/ kept"
    directory = lake.partition_dir(settings.home, VENUE, LAKE_ASSET, {"date": day})
    manifest = result.manifest
    context.log.info(
        f"kite/ticks_archive[{day}]: {manifest.rows} ticks -> {directory}; staging {staging_note}"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": manifest.rows,
            "accounting": dg.MetadataValue.json(result.accounting),
            "shards": dg.MetadataValue.json(result.shards),
            "ticks_per_instrument": dg.MetadataValue.json(result.ticks_per_instrument),
            "bytes": sum(f.bytes for f in manifest.files),
            "bytes_per_tick": round(
                sum(f.bytes for f in manifest.files) / max(manifest.rows, 1), 2
            ),
            "seconds": round(result.seconds, 3),
            "lake_path": dg.MetadataValue.path(str(directory)),
            "staging": staging_note,
            "sql_sink": dg.MetadataValue.json(sink_meta or "off"),
            "notes": dg.MetadataValue.json(result.notes),
        },
        check_results=checks,
    )


@dg.asset(
    key_prefix=[VENUE],
    name=BARS_ASSET,
    group_name="kite",
    deps=[ticks_archive],
    partitions_def=nse_trading_days,
    kinds={"python", "parquet"},
    description=(
        "1-minute OHLCV bars per instrument built from the day's archived ticks: OHLC of "
        "last_price, volume as the change of the day's cumulative volume_traded "
        "(lake/kite/bars_1m/date=DAY/), reconciled against kite/candles (1minute)."
    ),
)
def bars_1m(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    day = context.partition_key
    try:
        ticks = pl.from_arrow(
            lake.read_partition(
                settings.home,
                VENUE,
                LAKE_ASSET,
                {"date": day},
                columns=[
                    "instrument_token",
                    "symbol",
                    "last_price",
                    "volume_traded",
                    "exchange_timestamp",
                ],  # fmt: skip
            )
        )
    except lake.PartitionNotFoundError:
        raise dg.Failure(
            description=f"kite/bars_1m[{day}] needs kite/ticks_archive[{day}]; materialize it first"
        ) from None
    assert isinstance(ticks, pl.DataFrame)
    ticks = ticks.filter(pl.col("exchange_timestamp").is_not_null())
    symbols = ticks.select(
        pl.col("instrument_token").cast(pl.String()).alias("instrument"), "symbol"
    ).unique("instrument")
    bars = bars_from_ticks(ticks).join(symbols, on="instrument", how="left")
    manifest = lake.write_partition(
        settings.home,
        VENUE,
        BARS_ASSET,
        {"date": day},
        bars,
        {"received": bars.height, "dropped": {}},
        source=f"lake/kite/ticks date={day} ({ticks.height} ticks with an exchange timestamp)",
        time_column="timestamp",
    )
    context.log.info(f"kite/bars_1m[{day}]: {manifest.rows} bars of {symbols.height} instruments")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": manifest.rows,
            "instruments": symbols.height,
            "ticks_used": ticks.height,
            "lake_path": dg.MetadataValue.path(
                str(lake.partition_dir(settings.home, VENUE, BARS_ASSET, {"date": day}))
            ),
        }
    )


bars_match_vendor_candles = build_bars_reconciliation_check(
    bars_1m, home=lambda: str(load_settings().home)
)

kite_archive_job = dg.define_asset_job(
    "kite_archive",
    selection=dg.AssetSelection.assets(ticks_archive, bars_1m),
    description="After the close: the day's ticks into the lake (checked), then minute bars.",
)
