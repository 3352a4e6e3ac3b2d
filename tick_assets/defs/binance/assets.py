"""Binance assets: binance/universe[UTC day] and binance/klines_1m[month x symbol].

binance/universe maps the day's CoinGecko ranking to TRADING spot USDT pairs (rules in
tick_assets/sources/binance/universe.py; exceptions in the override file) and keeps the
mapped pairs in lake/binance/universe/date=DAY/, with every unmapped coin and its reason in
the manifest and the metadata. The universe sensor turns it into dynamic partitions.

binance/klines_1m keeps one month of one symbol's 1-minute candles per partition
(lake/binance/klines_1m/symbol=SYM/month=YYYY-MM/), from the bulk archive (checksummed
monthly zips, daily zips for the running month) plus the REST tail, fetched after the
partition's watermark only (tick_assets/defs/binance/ingest.py). Backfill a symbol's history
with a partition range, e.g. ``--partition-range "2024-11-01|BTCUSDT...2025-02-01|BTCUSDT"``.
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import polars as pl

from tick_assets.defs.binance.ingest import IngestResult, ingest_month, symbol_watermark
from tick_assets.defs.binance.partitions import klines_partitions
from tick_assets.defs.binance.resources import BinanceResource
from tick_assets.defs.coingecko.assets import rankings
from tick_assets.defs.coingecko.outcome import finish
from tick_assets.defs.partitions import crypto_utc_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.binance.archive import SYMBOL_RE, ArchiveError
from tick_assets.sources.binance.klines import KlinesFormatError
from tick_assets.sources.binance.rest import BinanceRestError
from tick_assets.sources.binance.universe import (
    REASONS,
    OverridesError,
    map_universe,
)
from tick_assets.store import lake

VENUE = "binance"
MAX_LISTED = 20


# ---------------------------------------------------------------- binance/universe


def _unmapped_markdown(unmapped: pl.DataFrame) -> str:
    lines = ["| rank | id | symbol | reason | detail |", "|---|---|---|---|---|"]
    for row in unmapped.iter_rows(named=True):
        lines.append(
            f"| {row['rank']} | {row['id']} | {row['symbol']} | {row['reason']} | {row['detail']} |"
        )
    return "\n".join(lines)


def map_day(
    binance: BinanceResource, home: str, day: str, exchange_info: dict
) -> tuple[lake.Manifest, dict[str, Any]]:
    """Map one day's stored ranking to Binance pairs and store the universe."""
    ranking = pl.from_arrow(lake.read_partition(home, "coingecko", "rankings", {"date": day}))
    assert isinstance(ranking, pl.DataFrame)
    overrides = binance.overrides()
    mapped, unmapped = map_universe(ranking, exchange_info, overrides, binance.quote_asset)
    by_reason = {r: int((unmapped["reason"] == r).sum()) for r in REASONS}
    info_at = datetime.fromtimestamp(exchange_info.get("serverTime", 0) / 1000, UTC)
    manifest = lake.write_partition(
        home, VENUE, "universe", {"date": day}, mapped,
        {"received": ranking.height, "dropped": {k: v for k, v in by_reason.items() if v}},
        source=f"coingecko/rankings[{day}] x binance {binance.mode} exchangeInfo",
        extra={"unmapped": unmapped.to_dicts(), "exchange_info_at": info_at.isoformat(),
               "overrides_file": overrides.source, "quote_asset": binance.quote_asset},
    )  # fmt: skip
    metadata: dict[str, Any] = {
        "dagster/row_count": manifest.rows,
        "dagster/partition_row_count": manifest.rows,
        "symbols": dg.MetadataValue.json(mapped["binance_symbol"].to_list()),
        "unmapped": dg.MetadataValue.md(_unmapped_markdown(unmapped)),
        "unmapped_count": unmapped.height,
        "unmapped_by_reason": dg.MetadataValue.json({k: v for k, v in by_reason.items() if v}),
        "overridden": dg.MetadataValue.json(
            mapped.filter(pl.col("override"))["binance_symbol"].to_list()
        ),
        "exchange_info_at": info_at.isoformat(),
        "accounting": dg.MetadataValue.json(manifest.accounting),
        "lake_path": dg.MetadataValue.path(
            str(lake.partition_dir(home, VENUE, "universe", {"date": day}))
        ),
    }
    return manifest, metadata


@dg.asset(
    key_prefix=[VENUE],
    name="universe",
    group_name="crypto",
    partitions_def=crypto_utc_days,
    deps=[rankings],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    code_version="1",
    description=(
        "The day's CoinGecko top N mapped to Binance spot USDT pairs listed TRADING (no "
        "stablecoins or wrapped tokens; duplicate symbols go to the larger market cap; "
        "override file for exceptions); unmapped coins with reasons in the metadata."
    ),
)
def universe(
    context: dg.AssetExecutionContext, binance: BinanceResource, settings: SettingsResource
) -> dg.MaterializeResult:
    try:
        binance.overrides()
    except OverridesError as exc:
        raise dg.Failure(description=str(exc)) from None
    exchange_info = binance.rest().exchange_info()
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for day in context.partition_keys:
        try:
            manifest, metadata = map_day(binance, settings.home, day, exchange_info)
        except lake.PartitionNotFoundError:
            failed[day] = f"coingecko/rankings[{day}] is not in the lake; materialize it first"
            continue
        done[day] = metadata
        context.log.info(
            f"binance/universe[{day}]: {manifest.rows} pairs, {metadata['unmapped_count']} "
            f"unmapped {metadata['unmapped_by_reason'].value}"
        )
    return finish(context, done, failed, "binance/universe")


# ---------------------------------------------------------------- binance/klines_1m


class KlinesConfig(dg.Config):
    """refetch: ignore what is stored and rebuild the partition from the archive and REST."""

    refetch: bool = False


def _klines_metadata(result: IngestResult, home: str, symbol: str) -> dict[str, Any]:
    part = {"symbol": symbol, "month": result.month}
    manifest = result.manifest
    assert manifest is not None
    refetched = [f["path"] for f in result.files if f["downloads"] > 1]
    return {
        "dagster/row_count": result.rows,
        "dagster/partition_row_count": result.rows,
        "watermark": result.watermark or "none",
        "symbol_watermark": symbol_watermark(home, symbol) or "none",
        "up_to_date": result.up_to_date,
        "fetched_rows": result.fetched_rows,
        "kept_rows": result.kept_rows,
        "missing_minutes": result.missing_minutes,
        "gaps": dg.MetadataValue.json(result.gaps[:MAX_LISTED]),
        "archive_files": len(result.files),
        "refetched_files": dg.MetadataValue.json(refetched),
        "missing_archive_files": dg.MetadataValue.json(result.missing_files[:MAX_LISTED]),
        "rest_requests": result.rest_requests,
        "timestamp_units": dg.MetadataValue.json(result.units),
        "status": result.status or "unknown",
        "delisted": result.delisted,
        "notes": dg.MetadataValue.json(result.notes),
        "accounting": dg.MetadataValue.json(manifest.accounting),
        "time_range": dg.MetadataValue.json(
            {"min": manifest.time_range.min, "max": manifest.time_range.max}
            if manifest.time_range
            else {}
        ),
        "lake_path": dg.MetadataValue.path(str(lake.partition_dir(home, VENUE, "klines_1m", part))),
    }


@dg.asset(
    key_prefix=[VENUE],
    name="klines_1m",
    group_name="crypto",
    partitions_def=klines_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    code_version="1",
    description=(
        "1-minute spot klines of one symbol for one UTC month: checksummed bulk-archive zips "
        "(monthly, daily for the running month) plus the REST tail after the stored "
        "watermark; gaps and delistings reported per partition."
    ),
)
def klines_1m(
    context: dg.AssetExecutionContext,
    config: KlinesConfig,
    binance: BinanceResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    rest = binance.rest()
    archive = binance.archive()
    now = datetime.fromtimestamp(rest.server_time_ms() / 1000, UTC)
    statuses: dict[str, str | None] = {}
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(binance.download_workers, thread_name_prefix="binance-archive") as pool:
        for key in context.partition_keys:
            dims = klines_partitions.get_partition_key_from_str(key).keys_by_dimension
            symbol, month = dims["symbol"], date.fromisoformat(dims["month"])
            if not SYMBOL_RE.match(symbol):
                failed[key] = f"{symbol!r} is not a Binance symbol (capitals and digits)"
                continue
            if datetime(month.year, month.month, 1, tzinfo=UTC) > now:
                failed[key] = f"{dims['month']} has not started (Binance time {now:%Y-%m-%d %H:%M})"
                continue
            try:
                if symbol not in statuses:
                    info = rest.symbol_info(symbol)
                    if info is None:
                        raise BinanceRestError(
                            f"Binance does not list {symbol}; remove the partition or fix the name"
                        )
                    statuses[symbol] = info.get("status")
                result = ingest_month(
                    settings.home, symbol, month, archive=archive, rest=rest, now=now,
                    status=statuses[symbol], refetch=config.refetch, pool=pool,
                    source=f"binance {binance.mode}: archive {archive.root}, REST {rest.root}",
                )  # fmt: skip
            except (ArchiveError, BinanceRestError, KlinesFormatError) as exc:
                failed[key] = str(exc)
                context.log.error(f"binance/klines_1m[{key}] failed: {exc}")
                continue
            done[key] = _klines_metadata(result, settings.home, symbol)
            context.log.info(
                f"binance/klines_1m[{key}]: {result.rows} candles (fetched {result.fetched_rows}, "
                f"kept {result.kept_rows}), watermark {result.watermark}, "
                f"{result.missing_minutes} missing minute(s)"
                + (f"; {'; '.join(result.notes)}" if result.notes else "")
            )
    context.log.info(f"binance REST usage this run: {rest.stats}")
    return finish(context, done, failed, "binance/klines_1m")
