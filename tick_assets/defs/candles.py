"""What upstox/candles and kite/candles share: partitions, the run body, metadata, threshold.

Partitions: trading day x timeframe, one ``MultiPartitionsDefinition`` object for both assets.
Dagster allows two dimensions; the day and the timeframe use them because both name a lake
partition (``timeframe=5minute/date=DAY``) and both are what a user backfills or repairs
("5-minute candles for March"). Symbols are *not* a dimension: hundreds of symbols x years of
days x timeframes would be millions of partitions, and the symbol list is config that changes;
every partition fetches every listed symbol instead, and reports per symbol in its metadata.
Both assets use the same definition object and ``BackfillPolicy.single_run()``, so
``dagster asset materialize --select upstox/candles,kite/candles --partition-range
'2025-01-01|1minute...2025-12-31|day'`` runs a year of every timeframe in one run, where the
engine turns it into the fewest requests each venue's span allows.
"""

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from tick_assets.candles import backfill as engine
from tick_assets.candles import reconcile
from tick_assets.candles.errors import CandleAuthError, CandleRangeError
from tick_assets.candles.source import CandleSource
from tick_assets.candles.timeframes import Timeframe, TimeframeError, parse_timeframe
from tick_assets.config import CandlesConfig, SettingsError, load_settings
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.sim.kite import sessions
from tick_assets.store import lake

MAX_LISTED = 20


def build_candle_partitions(timeframes: Sequence[str]) -> dg.MultiPartitionsDefinition:
    """(date: NSE trading day) x (timeframe: the configured timeframes)."""
    return dg.MultiPartitionsDefinition(
        {"date": nse_trading_days, "timeframe": dg.StaticPartitionsDefinition(list(timeframes))}
    )


candle_partitions = build_candle_partitions(load_settings().candles.timeframes)


def jobs_of(context: dg.AssetExecutionContext) -> dict[Timeframe, list[date]]:
    """The run's partitions as {timeframe: [days]}; a reversed range is a clear Failure."""
    if context.has_partition_key_range:
        bounds = context.partition_key_range
        lo = candle_partitions.get_partition_key_from_str(bounds.start).keys_by_dimension
        hi = candle_partitions.get_partition_key_from_str(bounds.end).keys_by_dimension
        try:
            engine.check_range(date.fromisoformat(lo["date"]), date.fromisoformat(hi["date"]))
        except CandleRangeError as exc:
            raise dg.Failure(description=str(exc)) from None
    jobs: dict[Timeframe, list[date]] = defaultdict(list)
    for key in context.partition_keys:
        dims = candle_partitions.get_partition_key_from_str(key).keys_by_dimension
        jobs[parse_timeframe(dims["timeframe"])].append(date.fromisoformat(dims["date"]))
    if not jobs:
        raise dg.Failure(
            description="the run selects no partitions; is the range reversed or outside the "
            "trading days? Use --partition-range 'FIRST|tf...LAST|tf' with FIRST <= LAST"
        )
    return dict(jobs)


def sim_day_for(days: Sequence[date]) -> date:
    """The simulated day to fetch history from: after every requested day, but not past the
    simulator's default day (today, or the last trading day), as live history behaves."""
    last = max(days)
    after = last + timedelta(days=1)
    while not sessions.is_session_day(after):
        after += timedelta(days=1)
    return max(last, min(after, sessions.default_day()))


def key_of(timeframe: str, day: str) -> str:
    return dg.MultiPartitionKey({"date": day, "timeframe": timeframe})


def _listing(items: Mapping[str, Any] | Sequence[str]) -> dict[str, Any] | list[str]:
    if isinstance(items, Mapping):
        shown = dict(list(items.items())[:MAX_LISTED])
        if len(items) > MAX_LISTED:
            shown["..."] = f"{len(items) - MAX_LISTED} more"
        return shown
    return list(items[:MAX_LISTED]) + (
        [f"... {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else []
    )


def partition_metadata(report: engine.BackfillReport, timeframe: str, day: str) -> dict[str, Any]:
    """Dagster metadata of one (day, timeframe) partition after a run."""
    failed = report.failed_symbols(timeframe, day)
    written = report.days.get((timeframe, day))
    held = report.held.get((timeframe, day))
    md: dict[str, Any] = {
        "symbols_listed": report.listed,
        "symbols_failed": len(failed),
        "failed_fraction": round(len(failed) / report.listed, 4) if report.listed else 0.0,
        "failed": dg.MetadataValue.json(_listing(failed)),
        "unknown_symbols": dg.MetadataValue.json(_listing(sorted(report.unknown))),
    }
    if written is not None:
        md |= {
            "dagster/row_count": written.rows,
            "written": True,
            "symbols_complete": len(written.complete),
            "symbols_fetched": len(written.refetched),
            "refetched_why": dg.MetadataValue.json(_listing(written.refetched)),
            "missing_candles": dg.MetadataValue.json(_listing(written.missing)),
            "missing_candles_total": sum(written.missing.values()),
            "partial_symbols": dg.MetadataValue.json(_listing(written.partial)),
            "rows_fetched": written.fetched,
            "rows_kept": written.kept,
            "duplicates_dropped": written.duplicates,
            "lake_path": dg.MetadataValue.path(written.path),
        }
    elif held is not None:
        md |= {
            "dagster/row_count": held["rows"],
            "written": False,
            "note": "already complete in the lake; nothing fetched",
            "symbols_complete": len(held["complete"]),
            "missing_candles": dg.MetadataValue.json(_listing(held["missing"])),
            "missing_candles_total": sum(held["missing"].values()),
        }
    else:
        md |= {"written": False, "note": "nothing could be fetched for this partition"}
    return md


def run_metadata(report: engine.BackfillReport) -> dict[str, Any]:
    elapsed = max(report.elapsed_s, 1e-9)
    return {
        "requests_planned": report.requests_planned,
        "windows": dg.MetadataValue.json(report.windows),
        "http": dg.MetadataValue.json(report.http),
        "http_429": report.http.get("http_429", 0),
        "requests_per_second": round(report.http.get("requests", 0) / elapsed, 3),
        "rate_limiter": dg.MetadataValue.json(report.limiter),
        "candles_fetched": report.candles_fetched,
        "partitions_written": len(report.days),
        "partitions_already_complete": len(report.held),
        "unknown_symbols": dg.MetadataValue.json(report.unknown),
        "elapsed_s": round(report.elapsed_s, 3),
    }


def run_candles(
    context: dg.AssetExecutionContext,
    source_factory: Callable[[list[date]], CandleSource],
    home: str,
    config: CandlesConfig,
    symbols: list[str],
    workers: int,
) -> dg.MaterializeResult:
    """Fetch and store every partition of the run; fail past the configured threshold."""
    jobs = jobs_of(context)
    all_days = sorted({d for days in jobs.values() for d in days})
    source = source_factory(all_days)
    progress = {"auto": None, "always": True, "never": False}[config.progress]
    options = engine.EngineOptions(workers, progress, config.refetch_missing)
    try:
        report = engine.backfill(source, home, symbols, jobs, options, log=context.log.info)
    except (CandleRangeError, CandleAuthError, TimeframeError, SettingsError) as exc:
        raise dg.Failure(description=str(exc)) from None
    over: dict[str, str] = {}
    for timeframe, days in jobs.items():
        for day in days:
            tf, d = timeframe.name, day.isoformat()
            md = partition_metadata(report, tf, d)
            context.add_asset_metadata(md, partition_key=key_of(tf, d))
            if md["failed_fraction"] > config.max_failed_fraction:
                over[f"{d}|{tf}"] = f"{md['symbols_failed']}/{report.listed} symbols failed"
    result = run_metadata(report)
    context.log.info(
        f"{source.venue}/candles: {report.http.get('requests', 0)} requests "
        f"({report.http.get('http_429', 0)} x 429), {report.candles_fetched} candles, "
        f"{len(report.days)} partitions written, {len(report.held)} already complete"
    )
    if over:
        raise dg.Failure(
            description=(
                f"{len(over)} partition(s) have more failed symbols than "
                f"[candles].max_failed_fraction = {config.max_failed_fraction}: "
                + "; ".join(f"{k}: {v}" for k, v in list(over.items())[:MAX_LISTED])
                + ". What was fetched is in the lake; fix the cause and re-run (only the "
                "failed symbols are fetched again)."
            ),
            metadata={**result, "over_threshold": dg.MetadataValue.json(over)},
        )
    return dg.MaterializeResult(metadata=result)


# --- reconciliation: minute bars from captured ticks vs the vendor's 1-minute candles ----------


def read_lake_bars(home: str, day: str) -> pl.DataFrame:
    """kite/bars_1m of one day from lake/kite/bars_1m/date=DAY (columns: instrument or
    instrument_token, timestamp = minute start UTC, open, high, low, close, volume)."""
    frame = pl.from_arrow(lake.read_partition(home, "kite", "bars_1m", {"date": day}))
    assert isinstance(frame, pl.DataFrame)
    if "instrument" not in frame.columns and "instrument_token" in frame.columns:
        frame = frame.rename({"instrument_token": "instrument"})
    return frame


def build_bars_reconciliation_check(
    bars_asset: dg.AssetKey | dg.AssetsDefinition,
    home: Callable[[], str],
    load_bars: Callable[[str, str], pl.DataFrame] = read_lake_bars,
    *,
    venue: str = "kite",
    name: str = "bars_match_vendor_candles",
    price_tolerance: float = reconcile.PRICE_TOLERANCE,
    volume_tolerance: float = reconcile.VOLUME_TOLERANCE,
) -> dg.AssetChecksDefinition:
    """An asset check on ``bars_asset`` (minute bars from ticks) against ``<venue>/candles``.

    Per trading day it joins the bars with the vendor's 1-minute candles from the lake and
    reports OHLC and volume drift per symbol, naming the worst offenders. It fails when a
    symbol drifts past the tolerances, and warns when the vendor candles are not there yet.
    """

    @dg.asset_check(
        asset=bars_asset,
        name=name,
        partitions_def=nse_trading_days,
        description=(
            f"Minute bars built from captured ticks agree with {venue}/candles (1minute): OHLC "
            f"within {price_tolerance:.2%}, volume within {volume_tolerance:.0%}; names the "
            "worst offenders."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        problems: dict[str, Any] = {}
        details: dict[str, Any] = {}
        missing_candles: list[str] = []
        for day in context.partition_keys:
            try:
                result = reconcile.reconcile_day(
                    home(), venue, day, load_bars(home(), day),
                    price_tolerance=price_tolerance, volume_tolerance=volume_tolerance,
                )  # fmt: skip
            except reconcile.NoVendorCandlesError as exc:
                missing_candles.append(str(exc))
                continue
            details[f"worst {day}"] = dg.MetadataValue.json(result.worst)
            details[f"symbols {day}"] = result.symbols
            if not result.passed:
                problems[day] = result.summary()
        if missing_candles and not problems and not details:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description="; ".join(missing_candles),
            )
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={**details, "problems": dg.MetadataValue.json(problems)},
            description="; ".join(f"{d}: {p}" for d, p in problems.items()) or None,
        )

    return _check
