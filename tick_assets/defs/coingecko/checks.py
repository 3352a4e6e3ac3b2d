"""Checks on coingecko/rankings, read back from the lake (blocking: the universe builds on it)."""

from typing import Any

import dagster as dg
import polars as pl

from tick_assets.defs.checks import check_partitions
from tick_assets.defs.coingecko.assets import ASSET, VENUE, rankings
from tick_assets.defs.partitions import crypto_utc_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.store import lake


def ranking_problem(frame: pl.DataFrame, top_n: int, accounting: dict[str, Any]) -> str | None:
    """Why a stored ranking is not a valid top-N snapshot, or None."""
    n = frame.height
    if n == 0:
        return "the snapshot is empty"
    if frame["rank"].to_list() != list(range(1, n + 1)):
        return "ranks are not 1..N in order"
    if frame["id"].n_unique() != n:
        return "a coin id appears twice"
    caps = frame["market_cap"]
    if caps.null_count() or (caps.diff().drop_nulls() > 0).any():
        return "market caps are missing or not in descending order"
    if n < top_n and accounting.get("dropped", {}).get("below_top_n", 0):
        return f"only {n} of the top {top_n} were kept although more coins were received"
    unaccounted = lake.unaccounted_rows(accounting)
    if unaccounted:
        return f"{unaccounted} received row(s) unaccounted for in {accounting}"
    return None


@dg.asset_check(
    asset=rankings,
    partitions_def=crypto_utc_days,
    blocking=True,
    description=(
        "The stored snapshot matches its manifest (sha256), ranks are 1..N by descending market "
        "cap with unique ids, and every received row is accounted for."
    ),
)
def rankings_consistent(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str) -> tuple[str | None, dict[str, Any]]:
        part = {"date": day}
        manifest = lake.verify_partition(settings.home, VENUE, ASSET, part)
        frame = pl.from_arrow(lake.read_partition(settings.home, VENUE, ASSET, part))
        assert isinstance(frame, pl.DataFrame)
        top_n = int(manifest.extra.get("top_n", frame.height))
        return ranking_problem(frame, top_n, manifest.accounting), {}

    return check_partitions(context, evaluate)
