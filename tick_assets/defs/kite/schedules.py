"""A Kite trading day's schedules: logins at 07:45 IST, reference data at 08:30 IST, and the
archive at 15:45 IST (after the capture runs, which the capture sensor launches, stop at 15:35).

All schedules fire Monday to Friday and check the NSE calendar themselves, skipping with the
reason on a holiday. They name today's IST date explicitly instead of taking "the last
partition" (with end_offset=1 Dagster lists the next trading day's key early on excluded days,
dagster#33551; see defs/partitions.py). Run keys make a re-evaluated tick idempotent.
"""

from collections.abc import Iterator
from datetime import date, datetime

import dagster as dg

from tick_assets.calendars import IST, CalendarError, is_trading_day
from tick_assets.defs.kite.archive import kite_archive_job
from tick_assets.defs.kite.assets import instruments
from tick_assets.defs.kite.lookup import instrument_lookup
from tick_assets.defs.kite.partitions import kite_apps
from tick_assets.defs.kite.tokens import access_token
from tick_assets.defs.partitions import nse_trading_days, today_ist

TIMEZONE = "Asia/Kolkata"

kite_access_token_job = dg.define_asset_job(
    "kite_access_token",
    selection=dg.AssetSelection.assets(access_token),
    description="Log one Kite app in (partition = app) and store its access token.",
)

kite_reference_data_job = dg.define_asset_job(
    "kite_reference_data",
    selection=dg.AssetSelection.assets(instruments, instrument_lookup),
    description="The day's instrument dump, then the instrument lookup built on it.",
)


def _day(context: dg.ScheduleEvaluationContext) -> date:
    when = context.scheduled_execution_time or datetime.now(IST)
    return today_ist(when)


def _not_trading(day: date) -> dg.SkipReason | None:
    try:
        if is_trading_day(day):
            return None
    except CalendarError as exc:  # no holiday data for the year: refuse to guess, say why
        return dg.SkipReason(f"{day}: {exc}")
    return dg.SkipReason(f"{day} is not an NSE trading day (weekend or exchange holiday)")


@dg.schedule(
    name="kite_access_token_0745_ist",
    job=kite_access_token_job,
    cron_schedule="45 7 * * 1-5",
    execution_timezone=TIMEZONE,
    description="07:45 IST on NSE trading days: log every Kite app in (one run per app).",
)
def kite_access_token_schedule(
    context: dg.ScheduleEvaluationContext,
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    day = _day(context)
    skip = _not_trading(day)
    if skip is not None:
        yield skip
        return
    apps = kite_apps.get_partition_keys()
    if not apps:
        yield dg.SkipReason("no Kite app is configured ([kite.apps.<name>] in tick_assets.toml)")
        return
    for app in apps:
        yield dg.RunRequest(
            run_key=f"{day.isoformat()}:{app}",
            partition_key=app,
            tags={"tick_assets/trading_day": day.isoformat()},
        )


@dg.schedule(
    name="kite_reference_data_0830_ist",
    job=kite_reference_data_job,
    cron_schedule="30 8 * * 1-5",
    execution_timezone=TIMEZONE,
    description=(
        "08:30 IST on NSE trading days (after the 07:45 logins, once Kite has published the "
        "day's dump): kite/instruments then kite/instrument_lookup for today."
    ),
)
def kite_reference_data_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    return _todays_partition(context)


def _todays_partition(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """A run of today's trading-day partition (run_key = the day), or why not."""
    day = _day(context)
    skip = _not_trading(day)
    if skip is not None:
        return skip
    key = day.isoformat()
    if not nse_trading_days.has_partition_key(key):
        return dg.SkipReason(
            f"{key} is a trading day but not a partition of the trading-day calendar "
            "(holiday data changed since the code location loaded?); reload the code location"
        )
    return dg.RunRequest(run_key=key, partition_key=key)


@dg.schedule(
    name="kite_archive_1545_ist",
    job=kite_archive_job,
    cron_schedule="45 15 * * 1-5",
    execution_timezone=TIMEZONE,
    description=(
        "15:45 IST on NSE trading days, after the capture runs stop at 15:35: "
        "kite/ticks_archive (lake partition, checks, staging cleanup) then kite/bars_1m."
    ),
)
def kite_archive_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    return _todays_partition(context)
