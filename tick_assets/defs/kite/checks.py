"""Asset checks on kite/instruments and kite/instrument_lookup, run against the lake.

Each check reads the partition(s) of the run back from the lake, so it checks what is stored,
not an in-memory copy. The instruments checks are blocking: the instrument lookup built on a
bad dump would silently stream the wrong instruments. On the lookup, duplicate table names and
shards over Kite's limits block (the capture would fail or mix instruments up); unresolved
symbols fail with WARN severity and are listed, so a renamed or delisted symbol is visible
while the rest of the universe is still captured.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg
import polars as pl

from tick_assets.defs.checks import check_partitions
from tick_assets.defs.kite.assets import VENUE, instruments
from tick_assets.defs.kite.lookup import ASSET as LOOKUP_ASSET
from tick_assets.defs.kite.lookup import instrument_lookup
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite import lookup as lk
from tick_assets.sources.kite.instruments import INSTRUMENT_COLUMNS, INSTRUMENT_SCHEMA
from tick_assets.store import lake

ASSET = "instruments"
MAX_LISTED = 20


def _per_day(
    context: dg.AssetCheckExecutionContext,
    settings: SettingsResource,
    evaluate: Callable[[str, lake.Manifest], str | None],
    ok_metadata: Callable[[str, lake.Manifest], dict[str, Any]] | None = None,
    asset: str = ASSET,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    problem_metadata: Callable[[str], dict[str, Any]] | None = None,
) -> dg.AssetCheckResult:
    """Run ``evaluate(day, manifest)`` (None = pass, else the problem) for every day in the run."""

    def on_day(day: str) -> tuple[str | None, dict[str, Any]]:
        manifest = lake.read_manifest(settings.home, VENUE, asset, {"date": day})
        problem = evaluate(day, manifest)
        if problem:
            return problem, problem_metadata(day) if problem_metadata else {}
        return None, ok_metadata(day, manifest) if ok_metadata else {}

    return check_partitions(context, on_day, severity)


@dg.asset_check(
    asset=instruments,
    partitions_def=nse_trading_days,
    blocking=True,
    description="The day's instrument snapshot has at least one row.",
)
def instruments_not_empty(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        return None if manifest.rows > 0 else "the snapshot has no rows"

    return _per_day(context, settings, evaluate, lambda day, m: {f"rows {day}": m.rows})


@dg.asset_check(
    asset=instruments,
    partitions_def=nse_trading_days,
    blocking=True,
    description="No instrument_token appears twice in the day's snapshot.",
)
def instruments_unique_tokens(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        table = lake.read_partition(
            settings.home, VENUE, ASSET, {"date": day}, columns=["instrument_token"]
        )
        tokens = pl.from_arrow(table)["instrument_token"]
        dupes = tokens.filter(tokens.is_duplicated()).unique().sort()
        if dupes.len() == 0:
            return None
        shown = ", ".join(str(t) for t in dupes.head(MAX_LISTED).to_list())
        more = f" (and {dupes.len() - MAX_LISTED} more)" if dupes.len() > MAX_LISTED else ""
        return f"{dupes.len()} instrument_token(s) appear more than once: {shown}{more}"

    return _per_day(context, settings, evaluate)


@dg.asset_check(
    asset=instruments,
    partitions_def=nse_trading_days,
    blocking=True,
    description="The snapshot has exactly Kite's instrument dump columns, in order, typed.",
)
def instruments_expected_columns(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    expected = {
        f.name: str(f.type) for f in pl.DataFrame(schema=INSTRUMENT_SCHEMA).to_arrow().schema
    }

    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        actual = dict(manifest.columns)
        if list(actual) != list(INSTRUMENT_COLUMNS):
            missing = [c for c in INSTRUMENT_COLUMNS if c not in actual]
            extra = [c for c in actual if c not in expected]
            if not missing and not extra:
                return f"columns are out of order: {list(actual)}"
            return f"missing columns {missing}, unexpected columns {extra}"
        wrong = {c: f"{actual[c]} (expected {t})" for c, t in expected.items() if actual[c] != t}
        return f"columns with unexpected types: {wrong}" if wrong else None

    return _per_day(context, settings, evaluate)


@dg.asset_check(
    asset=instruments,
    partitions_def=nse_trading_days,
    blocking=True,
    description=(
        "The lake files match their manifest (sha256, row counts) and every row the server "
        "sent is accounted for (received = written + dropped)."
    ),
)
def instruments_lake_integrity(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        try:
            lake.verify_partition(settings.home, VENUE, ASSET, {"date": day})
        except lake.LakeIntegrityError as exc:
            return str(exc)
        unaccounted = lake.unaccounted_rows(manifest.accounting)
        if unaccounted:
            return (
                f"{unaccounted} row(s) unaccounted for: accounting {manifest.accounting} "
                "(received != written + dropped)"
            )
        return None

    return _per_day(context, settings, evaluate)


# ---------------------------------------------------------------- kite/instrument_lookup


def _lookup(settings: SettingsResource, day: str) -> pl.DataFrame:
    return pl.from_arrow(lake.read_partition(settings.home, VENUE, LOOKUP_ASSET, {"date": day}))


@dg.asset_check(
    asset=instrument_lookup,
    partitions_def=nse_trading_days,
    description=(
        "Every universe symbol resolved to an instrument_token on the day. Fails (WARN) "
        "listing the unresolved ones: a renamed or delisted symbol is visible, never silent."
    ),
)
def instrument_lookup_all_resolved(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    missing: dict[str, list[dict[str, str]]] = {}

    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        rows = lk.unresolved(_lookup(settings, day))
        if not rows:
            return None
        missing[day] = rows
        shown = "; ".join(f"{r['app']}: {r['problem']}" for r in rows[:MAX_LISTED])
        more = f" (and {len(rows) - MAX_LISTED} more)" if len(rows) > MAX_LISTED else ""
        return f"{len(rows)} universe symbol(s) unresolved: {shown}{more}"

    return _per_day(
        context,
        settings,
        evaluate,
        lambda day, m: {f"resolved {day}": m.rows},
        asset=LOOKUP_ASSET,
        severity=dg.AssetCheckSeverity.WARN,
        problem_metadata=lambda day: {
            f"unresolved {day}": dg.MetadataValue.json(missing[day][: MAX_LISTED * 5])
        },
    )


@dg.asset_check(
    asset=instrument_lookup,
    partitions_def=nse_trading_days,
    blocking=True,
    description="No table name is used twice (across all apps' universes).",
)
def instrument_lookup_unique_tables(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        dupes = lk.duplicate_tables(_lookup(settings, day))
        if not dupes:
            return None
        shown = "; ".join(
            f"{t} <- {', '.join(uses)}" for t, uses in list(dupes.items())[:MAX_LISTED]
        )
        return (
            f"{len(dupes)} table name(s) used more than once: {shown}. List each instrument "
            "once, in one app's universe, or give it a distinct table"
        )

    return _per_day(context, settings, evaluate, asset=LOOKUP_ASSET)


@dg.asset_check(
    asset=instrument_lookup,
    partitions_def=nse_trading_days,
    blocking=True,
    description=(
        "No shard is over Kite's limits: at most 3000 instruments per websocket connection "
        "and 3 connections per app (api_key)."
    ),
)
def instrument_lookup_shards_within_limits(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    def evaluate(day: str, manifest: lake.Manifest) -> str | None:
        problems = lk.shard_problems(_lookup(settings, day))
        return "; ".join(problems) or None

    return _per_day(
        context,
        settings,
        evaluate,
        lambda day, m: {
            f"shards {day}": dg.MetadataValue.json(lk.shard_counts(_lookup(settings, day)))
        },
        asset=LOOKUP_ASSET,
    )
