"""Checks on binance/klines_1m and binance/universe, read back from the lake.

klines_lake_integrity (blocking): files match the manifest and every row is accounted for.
klines_no_missing_minutes (warning): no minute is missing between the first and the last
candle of the partition; exchange maintenance leaves real holes, so it warns, naming them.
universe_not_empty (blocking): a day whose universe maps no pair would stop every update.
"""

from typing import Any

import dagster as dg
import polars as pl

from tick_assets.defs.binance.assets import klines_1m, universe
from tick_assets.defs.binance.partitions import klines_partitions
from tick_assets.defs.checks import check_partitions
from tick_assets.defs.partitions import crypto_utc_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.binance import klines as kl
from tick_assets.store import lake


def _part(key: str) -> dict[str, str]:
    dims = klines_partitions.get_partition_key_from_str(key).keys_by_dimension
    return {"symbol": dims["symbol"], "month": dims["month"][:7]}


@dg.asset_check(
    asset=klines_1m,
    partitions_def=klines_partitions,
    blocking=True,
    description="Files match the manifest (sha256, rows) and received = written + dropped.",
)
def klines_lake_integrity(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(key: str) -> tuple[str | None, dict[str, Any]]:
        try:
            manifest = lake.verify_partition(settings.home, "binance", "klines_1m", _part(key))
        except lake.LakeIntegrityError as exc:
            return str(exc), {}
        unaccounted = lake.unaccounted_rows(manifest.accounting)
        if unaccounted:
            return f"{unaccounted} row(s) unaccounted for: {manifest.accounting}", {}
        return None, {}

    return check_partitions(context, evaluate)


@dg.asset_check(
    asset=klines_1m,
    partitions_def=klines_partitions,
    description="No minute missing between the partition's first and last stored candle.",
)
def klines_no_missing_minutes(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(key: str) -> tuple[str | None, dict[str, Any]]:
        table = lake.read_partition(
            settings.home, "binance", "klines_1m", _part(key), columns=["open_time"]
        )
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.sort("open_time")
        holes = kl.gaps(frame)
        missing = sum(int(h["minutes"]) for h in holes)
        info = {f"missing_minutes {key}": missing}
        if not holes:
            return None, info
        shown = ", ".join(f"{h['start']}..{h['end']} ({h['minutes']})" for h in holes[:5])
        return f"{missing} minute(s) missing in {len(holes)} gap(s): {shown}", info

    return check_partitions(context, evaluate, dg.AssetCheckSeverity.WARN)


@dg.asset_check(
    asset=universe,
    partitions_def=crypto_utc_days,
    blocking=True,
    description="The day's universe maps at least one Binance pair.",
)
def universe_not_empty(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str) -> tuple[str | None, dict[str, Any]]:
        manifest = lake.read_manifest(settings.home, "binance", "universe", {"date": day})
        if manifest.rows == 0:
            return "no coin of the ranking maps to a TRADING pair", {}
        return None, {f"pairs {day}": manifest.rows}

    return check_partitions(context, evaluate)
