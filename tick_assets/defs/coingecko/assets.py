"""coingecko/rankings[UTC day]: the top N coins by market cap, as that day's snapshot.

CoinGecko has no history of its rankings, so each UTC day's top N (rank, id, symbol, market
cap, volume, price, and whether CoinGecko lists the coin as a stablecoin or a wrapped/staked
token that day) is kept as its own lake partition, lake/coingecko/rankings/date=DAY/: the
point-in-time universe a backtest needs (survivorship-free). One snapshot costs four calls:
the top N (one page of 250), and the stablecoins, wrapped-tokens and liquid-staking-tokens
categories.
"""

from typing import Any

import dagster as dg
import polars as pl

from tick_assets.defs.coingecko.outcome import finish
from tick_assets.defs.coingecko.resources import CoinGeckoResource
from tick_assets.defs.partitions import crypto_utc_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.coingecko.client import CoinGeckoError
from tick_assets.sources.coingecko.rankings import (
    STABLECOIN_CATEGORY,
    WRAPPED_CATEGORIES,
    RankingError,
    build_ranking,
)
from tick_assets.store import lake

VENUE = "coingecko"
ASSET = "rankings"


def _markdown(frame: pl.DataFrame, limit: int = 10) -> str:
    lines = [
        "| rank | id | symbol | market cap (USD) | volume 24h (USD) |",
        "|---|---|---|---|---|",
    ]
    for row in frame.head(limit).iter_rows(named=True):
        volume = row["total_volume"]
        lines.append(
            f"| {row['rank']} | {row['id']} | {row['symbol']} | {row['market_cap']:,.0f} | "
            f"{'' if volume is None else f'{volume:,.0f}'} |"
        )
    return "\n".join(lines)


def snapshot_day(
    coingecko: CoinGeckoResource, home: str, day: str
) -> tuple[lake.Manifest, dict[str, Any]]:
    """Take and store one day's ranking; returns (manifest, metadata)."""
    snapshot_at = coingecko.snapshot_time(day)
    client = coingecko.client(home, day)
    rows = client.top_markets(coingecko.top_n, coingecko.per_page)
    stable = client.category_ids(STABLECOIN_CATEGORY)
    wrapped = set().union(*(client.category_ids(c) for c in WRAPPED_CATEGORIES))
    frame, dropped = build_ranking(rows, coingecko.top_n, snapshot_at, stable, wrapped)
    manifest = lake.write_partition(
        home, VENUE, ASSET, {"date": day}, frame, {"received": len(rows), "dropped": dropped},
        source=f"coingecko {coingecko.mode} GET {client.root}/coins/markets",
        time_column="snapshot_at",
        extra={"top_n": coingecko.top_n, "snapshot_at": snapshot_at.isoformat(),
               "categories": {"stablecoins": len(stable), "wrapped_or_staked": len(wrapped)},
               "client": dict(client.stats)},
    )  # fmt: skip
    path = lake.partition_dir(home, VENUE, ASSET, {"date": day})
    metadata: dict[str, Any] = {
        "dagster/row_count": manifest.rows,
        "dagster/partition_row_count": manifest.rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(n, t) for n, t in manifest.columns]
        ),
        "top": dg.MetadataValue.md(_markdown(frame)),
        "snapshot_at": snapshot_at.isoformat(),
        "stablecoins_in_top": int(frame["stablecoin"].sum()),
        "wrapped_in_top": int(frame["wrapped"].sum()),
        "smallest_market_cap": float(frame["market_cap"].min()),
        "accounting": dg.MetadataValue.json(manifest.accounting),
        "coingecko_calls": int(client.stats["calls"]),
        "cache_hits": int(client.stats["cache_hits"]),
        "http_429": int(client.stats["http_429"]),
        "sha256": manifest.files[0].sha256,
        "lake_path": dg.MetadataValue.path(str(path)),
        "mode": coingecko.mode,
    }
    return manifest, metadata


@dg.asset(
    key_prefix=[VENUE],
    name=ASSET,
    group_name="crypto",
    partitions_def=crypto_utc_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    code_version="1",
    description=(
        "CoinGecko's top N coins by market cap for one UTC day (rank, id, symbol, market cap, "
        "volume; stablecoin/wrapped flags), kept as that day's point-in-time snapshot in "
        "lake/coingecko/rankings/date=DAY/."
    ),
)
def rankings(
    context: dg.AssetExecutionContext, coingecko: CoinGeckoResource, settings: SettingsResource
) -> dg.MaterializeResult:
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for day in context.partition_keys:
        try:
            manifest, metadata = snapshot_day(coingecko, settings.home, day)
        except (CoinGeckoError, RankingError) as exc:
            failed[day] = str(exc)
            context.log.error(f"coingecko/rankings[{day}] failed: {exc}")
            continue
        done[day] = metadata
        context.log.info(
            f"coingecko/rankings[{day}]: top {manifest.rows} at {metadata['snapshot_at']} -> "
            f"{metadata['lake_path'].value}"
        )
    return finish(context, done, failed, "coingecko/rankings")
