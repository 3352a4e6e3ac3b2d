"""kite/instrument_lookup[day]: the universe files resolved against that day's instruments.

Point-in-time: each day reads its own kite/instruments snapshot from the lake, so a backfill
of past days resolves symbols (and the current futures) as they were then. Each row of
lake/kite/instrument_lookup/date=DAY/ is one universe entry: app, symbol, table name,
instrument_token (null with a ``problem`` when it does not resolve), and the websocket shard
(app-connection) the capture subscribes it on. Shards carry over from the previous day's
lookup in the lake, so they stay put while the universe is unchanged
(tick_assets.sources.kite.lookup has the rules).
"""

from collections.abc import Mapping
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from tick_assets.config import SettingsError
from tick_assets.config import resolve_universe as universe_path
from tick_assets.defs.kite.assets import VENUE, instruments, refuse_future_days
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite import lookup as lk
from tick_assets.store import lake

ASSET = "instrument_lookup"
MAX_LISTED = 50


def read_universes(settings: SettingsResource) -> tuple[list[tuple[str, str, pl.DataFrame]], dict]:
    """(app, universe name, rows) for every configured app, and what each file was."""
    full = settings.load()
    if not full.kite_apps:
        raise dg.Failure(
            description="no Kite app is configured; add [kite.apps.<name>] tables with a "
            "universe each to tick_assets.toml"
        )
    universes, files = [], {}
    for app, config in full.kite_apps.items():
        try:
            path = universe_path(full, config.universe)
            rows = lk.read_universe(path)
        except (SettingsError, lk.UniverseError) as exc:
            raise dg.Failure(description=f"universe of Kite app {app!r}: {exc}") from None
        universes.append((app, config.universe, rows))
        files[config.universe] = {
            "path": str(path),
            "sha256": lake.sha256_file(path),
            "symbols": rows.height,
        }
    return universes, files


def previous_lookup(home: str, day: str) -> tuple[str | None, pl.DataFrame | None]:
    """The newest lookup in the lake from before ``day`` (for shard carry-over)."""
    earlier = [p["date"] for p in lake.list_partitions(home, VENUE, ASSET) if p["date"] < day]
    if not earlier:
        return None, None
    before = max(earlier)
    table = lake.read_partition(home, VENUE, ASSET, {"date": before})
    return before, pl.from_arrow(table)


def _moved(today: pl.DataFrame, before: pl.DataFrame | None) -> int:
    """Instruments (by app and table name) on a different connection than the previous day."""
    if before is None:
        return 0
    keys = ["app", "table_name"]
    joined = today.filter(pl.col("connection").is_not_null()).join(
        before.filter(pl.col("connection").is_not_null()).select(*keys, "connection"),
        on=keys,
        suffix="_before",
    )
    return joined.filter(pl.col("connection") != pl.col("connection_before")).height


def day_metadata(
    frame: pl.DataFrame,
    manifest: lake.Manifest,
    directory: str,
    before_day: str | None,
    moved: int,
    files: Mapping[str, Any],
) -> dict[str, Any]:
    missing = lk.unresolved(frame)
    futures = frame.filter((pl.col("kind") == "FUT") & pl.col("resolved"))
    return {
        "dagster/row_count": manifest.rows,
        "resolved": int(frame["resolved"].sum()),
        "unresolved": len(missing),
        "unresolved_symbols": dg.MetadataValue.json(missing[:MAX_LISTED]),
        "current_futures": dg.MetadataValue.json(
            {
                table: f"{symbol} (expiry {expiry}, token {token})"
                for table, symbol, expiry, token in futures.select(
                    "table_name", "tradingsymbol", "expiry", "instrument_token"
                ).iter_rows()
            }
        ),
        "shards": dg.MetadataValue.json(lk.shard_counts(frame)),
        "moved_since_previous": moved,
        "previous_lookup": before_day or "none",
        "universe_files": dg.MetadataValue.json(dict(files)),
        "sha256": dg.MetadataValue.text(manifest.files[0].sha256 if manifest.files else ""),
        "lake_path": dg.MetadataValue.path(directory),
    }


@dg.asset(
    key_prefix=[VENUE],
    name=ASSET,
    group_name="kite",
    deps=[instruments],
    partitions_def=nse_trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    description=(
        "The universe files (CSV/XLSX, [universes] of tick_assets.toml) resolved against the "
        "day's kite/instruments snapshot: instrument_token, a safe table name (M&M -> M_M), the "
        "current NIFTY/BANKNIFTY futures (NIFTYFUT, BANKNIFTYFUT) and each instrument's "
        "websocket shard (app x connection, Kite's 3000 x 3 limits). Unresolved symbols stay "
        "listed with the reason. lake/kite/instrument_lookup/date=DAY/."
    ),
)
def instrument_lookup(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> dg.MaterializeResult:
    days = sorted(context.partition_keys)
    refuse_future_days("kite/instrument_lookup", days)
    universes, files = read_universes(settings)
    received = sum(rows.height for _, _, rows in universes)
    summary: dict[str, dict[str, int]] = {}
    for day in days:  # in date order: each day carries over the previous day's shards
        try:
            dump = pl.from_arrow(
                lake.read_partition(settings.home, VENUE, "instruments", {"date": day})
            )
        except lake.PartitionNotFoundError:
            raise dg.Failure(
                description=(
                    f"kite/instrument_lookup[{day}] needs that day's instruments snapshot, which "
                    f"is not in the lake; materialize kite/instruments for {day} first (or both "
                    "in one run: --select kite/instruments,kite/instrument_lookup)"
                )
            ) from None
        before_day, before = previous_lookup(settings.home, day)
        frame = lk.build_lookup(universes, dump, date.fromisoformat(day), before)
        manifest = lake.write_partition(
            settings.home,
            VENUE,
            ASSET,
            {"date": day},
            frame,
            {"received": received, "dropped": {}},
            source=(
                f"universes {', '.join(sorted(files))} resolved against kite/instruments date={day}"
            ),
        )
        directory = str(lake.partition_dir(settings.home, VENUE, ASSET, {"date": day}))
        metadata = day_metadata(
            frame, manifest, directory, before_day, _moved(frame, before), files
        )
        context.add_asset_metadata(metadata, partition_key=day)
        summary[day] = {"rows": manifest.rows, "unresolved": metadata["unresolved"]}
        note = f", {metadata['unresolved']} UNRESOLVED" if metadata["unresolved"] else ""
        context.log.info(
            f"kite/instrument_lookup[{day}]: {metadata['resolved']} of {manifest.rows} symbols "
            f"resolved{note}; shards {lk.shard_counts(frame)} -> {directory}"
        )
    if len(summary) == 1:
        return dg.MaterializeResult()
    return dg.MaterializeResult(metadata={"by_day": dg.MetadataValue.json(summary)})
