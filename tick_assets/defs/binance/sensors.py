"""The universe sensor: keeps the ``binance_symbols`` dynamic partitions in step with the
newest binance/universe snapshot and refreshes the klines of the symbols in it.

On each new universe day it adds the symbols not yet partitions, leaves the ones that left
the top N in place (their stored months stay addressable; they simply get no new runs), and
requests one binance/klines_1m run per symbol in the universe for that day's month (run key
``<day>:<symbol>``, so each is launched once). It records what changed as an observation on
binance/universe. Off until switched on (Automation in the UI).
"""

import dagster as dg
import polars as pl

from tick_assets.defs.binance.partitions import SYMBOLS_PARTITIONS_NAME, binance_symbols
from tick_assets.defs.resources import SettingsResource
from tick_assets.store import lake

klines_job = dg.define_asset_job(
    "binance_klines",
    selection=dg.AssetSelection.assets(["binance", "klines_1m"]),
    description="binance/klines_1m for the partitions a run names.",
)


def universe_changes(
    home: str, existing: list[str], cursor: str | None
) -> tuple[str, list[str], list[str], list[str]] | None:
    """(day, symbols in the newest universe, new symbols, retired symbols), or None if the
    newest universe day is not after ``cursor``."""
    try:
        days = sorted(p["date"] for p in lake.list_partitions(home, "binance", "universe"))
    except FileNotFoundError:
        return None
    if not days or (cursor is not None and days[-1] <= cursor):
        return None
    day = days[-1]
    table = lake.read_partition(
        home, "binance", "universe", {"date": day}, columns=["binance_symbol"]
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    active = sorted(frame["binance_symbol"].unique().to_list())
    new = sorted(set(active) - set(existing))
    retired = sorted(set(existing) - set(active))
    return day, active, new, retired


@dg.sensor(
    job=klines_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Adds new universe symbols as partitions and refreshes their current month.",
)
def binance_universe_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource
) -> dg.SensorResult | dg.SkipReason:
    existing = context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME)
    changes = universe_changes(settings.home, existing, context.cursor)
    if changes is None:
        return dg.SkipReason(f"no binance/universe newer than {context.cursor or 'nothing'}")
    day, active, new, retired = changes
    month = f"{day[:7]}-01"
    runs = [
        dg.RunRequest(
            run_key=f"{day}:{symbol}",
            partition_key=dg.MultiPartitionKey({"month": month, "symbol": symbol}),
        )
        for symbol in active
    ]
    context.log.info(
        f"universe {day}: {len(active)} symbols, {len(new)} new {new[:20]}, "
        f"{len(retired)} out of the top N (kept, not updated) {retired[:20]}"
    )
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[binance_symbols.build_add_request(new)] if new else [],
        cursor=day,
        asset_events=[
            dg.AssetObservation(
                asset_key=dg.AssetKey(["binance", "universe"]),
                partition=day,
                metadata={
                    "active": len(active),
                    "added": dg.MetadataValue.json(new),
                    "retired": dg.MetadataValue.json(retired),
                },
            )
        ],
    )
