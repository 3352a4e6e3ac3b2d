"""kite/ticks[day]: the live capture of one trading day, and the sensor that launches it.

A capture run streams one or more shards of the day's kite/instrument_lookup (a shard is one
websocket of one app) through tick_assets.capture until [capture].stop_at (15:35 IST on the
venue's clock), then materializes kite/ticks[day] with what it took: the counts per shard
(received, decoded, journaled), the accounting chain, the gap ledger and latency percentiles.
The ticks themselves are in staging (journals) and raw/ (every message); kite/ticks_archive
turns them into the lake partition after the close.

The sensor launches one run per shard per trading day (run_key day:shard) between
[capture].start_at and stop_at, once today's access token of the shard's app and today's
lookup exist, and says why when it does not. A rerun of a day appends (the capture numbers
each process run of a shard); terminating a run from the UI stops the engine, which flushes
and closes every journal before the run ends (try/finally around the engine's thread).
"""

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from tick_assets.calendars import IST, CalendarError, is_trading_day
from tick_assets.capture import archive as day_archive
from tick_assets.capture.engine import (
    CaptureEngine,
    CaptureReport,
    CaptureSettings,
    Shard,
    run_capture,
)
from tick_assets.capture.notify import LogNotifier, Notifier, WebhookNotifier
from tick_assets.config import CaptureConfig
from tick_assets.defs.kite.assets import VENUE, refuse_future_days
from tick_assets.defs.kite.lookup import ASSET as LOOKUP_ASSET
from tick_assets.defs.kite.lookup import instrument_lookup
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite.stream import KiteCredentials, KiteStream
from tick_assets.store import lake
from tick_assets.store.tokens import TokenStoreError

log = logging.getLogger(__name__)

ASSET = "ticks"
OP_NAME = f"{VENUE}__{ASSET}"
POOL = "kite_capture"
SHARD_TAG = "tick_assets/shard"
MAX_GAPS_IN_METADATA = 200
#: A backstop for run monitoring: a capture run stops itself at stop_at, long before this.
MAX_RUNTIME_S = 8 * 3600


class CaptureRunConfig(dg.Config):
    shards: list[str] = Field(
        default=[],
        description="Shards (e.g. indices-0) of the day's kite/instrument_lookup to capture; "
        "empty: every shard, all in this run.",
    )
    stop_at: str = Field(
        default="",
        description="IST time (HH:MM[:SS]) at which the run stops itself on the venue's clock; "
        "empty: [capture].stop_at of tick_assets.toml (15:35).",
    )


@dataclass(frozen=True)
class ShardPlan:
    name: str
    app: str
    tokens: tuple[int, ...]


class CaptureDayError(ValueError):
    """The day cannot be captured as asked; the message says what to do."""


def read_lookup(home: str, day: str) -> pl.DataFrame:
    try:
        return pl.from_arrow(lake.read_partition(home, VENUE, LOOKUP_ASSET, {"date": day}))  # type: ignore[return-value]
    except lake.PartitionNotFoundError:
        raise CaptureDayError(
            f"kite/instrument_lookup[{day}] is not in the lake; materialize kite/instruments and "
            f"kite/instrument_lookup for {day} first"
        ) from None


def shard_plans(lookup: pl.DataFrame) -> dict[str, ShardPlan]:
    """Every shard of a lookup with its app and instrument tokens (resolved rows only)."""
    rows = (
        lookup.filter(pl.col("resolved") & pl.col("shard").is_not_null())
        .group_by("shard", "app", maintain_order=True)
        .agg(pl.col("instrument_token").unique(maintain_order=True))
        .sort("shard")
    )
    return {
        shard: ShardPlan(shard, app, tuple(int(t) for t in tokens))
        for shard, app, tokens in rows.iter_rows()
    }


def select_shards(
    plans: Mapping[str, ShardPlan], wanted: Sequence[str], day: str
) -> list[ShardPlan]:
    if not plans:
        raise CaptureDayError(
            f"kite/instrument_lookup[{day}] has no resolved instrument on any shard; check the "
            "universe files and the lookup's unresolved_symbols"
        )
    unknown = [name for name in wanted if name not in plans]
    if unknown:
        raise CaptureDayError(
            f"shards {unknown} are not in kite/instrument_lookup[{day}] (its shards: "
            f"{', '.join(plans)}); fix the run config's shards"
        )
    return [plans[name] for name in (wanted or plans)]


def ist_instant(day: date, hhmmss: str) -> datetime:
    """``day`` at IST time ``HH:MM[:SS]`` (validated by the settings or here)."""
    try:
        when = time.fromisoformat(hhmmss)
    except ValueError:
        raise CaptureDayError(
            f"stop_at {hhmmss!r} is not an IST time of day; write HH:MM or HH:MM:SS, e.g. 15:35"
        ) from None
    return datetime.combine(day, when, tzinfo=IST)


def engine_settings(
    capture: CaptureConfig, home: str, day: date, stop_at: datetime
) -> CaptureSettings:
    return CaptureSettings(
        home=Path(home),
        day=day,
        flush_interval_s=capture.flush_interval_ms / 1000,
        stall_timeout_s=capture.stall_timeout_s,
        backoff_cap_s=capture.backoff_cap_s,
        queue_max_bytes=capture.queue_max_mb << 20,
        down_alert_s=capture.down_alert_s,
        no_ticks_alert_s=capture.no_ticks_alert_s,
        stop_at_ns=int(stop_at.timestamp() * 1e9),
    )


def notifiers(capture: CaptureConfig, log: Any, environ: Mapping[str, str]) -> list[Notifier]:
    """Alerts go to the run's log, and to the webhook when [capture].webhook_url_env is set."""
    found: list[Notifier] = [LogNotifier(log)]
    if capture.webhook_url_env:
        url = environ.get(capture.webhook_url_env, "").strip()
        if not url:
            raise CaptureDayError(
                f"[capture].webhook_url_env names {capture.webhook_url_env}, which is not set; "
                "set it to the webhook URL or remove the setting"
            )
        found.append(WebhookNotifier(url))
    return found


def run_engine(engine: CaptureEngine) -> CaptureReport:
    """Run the engine on its own thread until it stops; an interrupt stops it cleanly.

    Dagster turns a terminate (SIGTERM/SIGINT) into an exception in this, the step's main
    thread. The finally asks the engine to stop and waits, so every writer drains, fsyncs and
    closes its journal before the exception ends the run. It waits on the result future, not
    on Thread.join: an exception inside join() marks a running thread as stopped (CPython 3.11).
    """
    result: Future[CaptureReport] = Future()

    def main() -> None:
        try:
            result.set_result(run_capture(engine))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, re-raised
            result.set_exception(exc)

    threading.Thread(target=main, name="kite-capture-engine", daemon=True).start()
    try:
        while not result.done():
            futures.wait([result], timeout=0.5)
    finally:
        while not result.done():  # stop() is a no-op until the engine's loop runs: repeat
            try:
                engine.stop("the Dagster run was terminated")
                futures.wait([result], timeout=0.2)
            except BaseException as exc:  # noqa: BLE001 - a repeated interrupt must not cut the drain
                log.warning("%s while the capture drains its journals", type(exc).__name__)
    return result.result()


def _shard_row(shard: Any) -> dict[str, Any]:
    c = shard.counters
    return {
        "run": shard.run,
        "state": shard.state,
        "failure": shard.failure,
        "messages_received": c["messages_received"],
        "heartbeats": c["heartbeats"],
        "data_frames": c["data_frames"],
        "packets_decoded": c["packets_decoded"],
        "rows_journaled": c["rows_journaled"],
        "cached_superseded": c["cached_superseded"],
        "duplicates": c["duplicates"],
        "rejected_frames": c["rejected_frames"],
        "rejected_packets": c["rejected_packets"],
        "connects": c["connects"],
        "disconnects": c["disconnects"],
        "stalls": c["stalls"],
        "spilled_messages": c["spilled_messages"],
    }


def day_summary(home: Path, venue: str, day: date) -> dict[str, dict[str, Any]]:
    """Every shard's runs of the day so far (this run and the others, e.g. other shards' runs
    or an earlier run of this one): state and journaled rows per run."""
    return {
        shard: {
            str(run): {"state": c["state"], "rows_journaled": c.get("rows_journaled", 0)}
            for run, c in entry["runs"].items()
        }
        for shard, entry in day_archive.day_runs(home, venue, day).items()
    }


def report_metadata(report: CaptureReport, stop_at: datetime) -> dict[str, Any]:
    """What kite/ticks[day] shows for one capture run: counts, chain, gaps, latency, alerts."""
    shards = {s.shard: _shard_row(s) for s in report.shards}
    gaps = [g for s in report.shards for g in s.gaps]
    gap_seconds = sum(float(g.get("seconds") or 0) for g in gaps)
    first = report.shards[0].paths
    return {
        "shards": dg.MetadataValue.json(shards),
        "messages_received": sum(r["messages_received"] for r in shards.values()),
        "packets_decoded": sum(r["packets_decoded"] for r in shards.values()),
        "rows_journaled": sum(r["rows_journaled"] for r in shards.values()),
        "accounting": dg.MetadataValue.json({s.shard: s.accounting for s in report.shards}),
        "accounting_ok": all(all(s.accounting.values()) for s in report.shards),
        "gap_count": len(gaps),
        "gap_seconds": round(gap_seconds, 3),
        "gaps": dg.MetadataValue.json(gaps[:MAX_GAPS_IN_METADATA]),
        "latency_ms": dg.MetadataValue.json({s.shard: s.latency for s in report.shards}),
        "alerts": dg.MetadataValue.json([a.to_json() for a in report.alerts]),
        "stop_reason": report.stop_reason,
        "stop_at": stop_at.isoformat(),
        "day_so_far": dg.MetadataValue.json(day_summary(first.home, report.venue, report.day)),
        "staging_path": dg.MetadataValue.path(str(first.staging.parent)),
        "raw_path": dg.MetadataValue.path(str(first.raw.parent)),
    }


def check_capture_day(kite: KiteResource, day: str, now: datetime | None = None) -> None:
    """Live Kite streams only today; the simulator plays any trading day."""
    if kite.mode != "live":
        return
    today = (now or datetime.now(IST)).astimezone(IST).date().isoformat()
    if day != today:
        raise CaptureDayError(
            f"kite/ticks[{day}]: live capture streams the market as it is now ({today} IST); "
            "a past day cannot be captured. Materialize today's partition."
        )


def build_shards(kite: KiteResource, plans: Sequence[ShardPlan]) -> list[Shard]:
    shards = []
    for plan in plans:
        try:
            token = kite.access_token(plan.app)
        except TokenStoreError as exc:
            raise CaptureDayError(f"shard {plan.name}: {exc}") from None
        creds = kite.credentials(plan.app)
        shards.append(Shard(plan.name, plan.tokens, KiteCredentials(creds.api_key, token)))
    return shards


@dg.asset(
    key_prefix=[VENUE],
    name=ASSET,
    group_name="kite",
    deps=[instrument_lookup],
    partitions_def=nse_trading_days,
    pool=POOL,
    kinds={"python", "arrow"},
    description=(
        "The day's live ticks: a capture run streams the shards of kite/instrument_lookup over "
        "Kite's websocket into journals (staging/kite/DAY/) and the raw archive (raw/kite/DAY/) "
        "until the close, then materializes this partition with the counts per shard, the "
        "accounting chain, the gap ledger and latency percentiles. kite/ticks_archive makes "
        "the lake partition from it after the close."
    ),
)
def ticks(
    context: dg.AssetExecutionContext,
    config: CaptureRunConfig,
    kite: KiteResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    day_key = context.partition_key
    refuse_future_days("kite/ticks", [day_key])
    day = date.fromisoformat(day_key)
    full = settings.load()
    try:
        check_capture_day(kite, day_key)
        plans = select_shards(
            shard_plans(read_lookup(settings.home, day_key)), config.shards, day_key
        )
        shards = build_shards(kite, plans)
        stop_at = ist_instant(day, config.stop_at or full.capture.stop_at)
        engine = CaptureEngine(
            KiteStream(kite.endpoints(day)["kite_ws"], full.capture.mode),
            shards,
            engine_settings(full.capture, settings.home, day, stop_at),
            clock=kite.venue_clock(day),
            notifiers=notifiers(full.capture, context.log, os.environ),
        )
    except (CaptureDayError, ValueError) as exc:
        raise dg.Failure(description=str(exc)) from None
    context.log.info(
        f"kite/ticks[{day_key}]: capturing shards "
        + ", ".join(f"{p.name} ({len(p.tokens)} instruments, app {p.app})" for p in plans)
        + f" in {full.capture.mode} mode until {stop_at.isoformat()}"
    )
    if kite.mode == "sim":  # the simulated session starts as the capture connects
        kite.sim_rewind_to_open(day)
    report = run_engine(engine)
    metadata = report_metadata(report, stop_at)
    failed = [s for s in report.shards if s.state != "stopped"]
    broken = [s.shard for s in report.shards if not all(s.accounting.values())]
    context.log.info(
        f"kite/ticks[{day_key}]: {metadata['rows_journaled']} rows journaled from "
        f"{metadata['messages_received']} messages, {metadata['gap_count']} gaps; "
        f"stopped: {report.stop_reason}"
    )
    if failed or broken:
        problems = [f"shard {s.shard}: {s.failure}" for s in failed]
        problems += [f"shard {name}: the accounting chain does not add up" for name in broken]
        raise dg.Failure(
            description=f"kite/ticks[{day_key}]: "
            + "; ".join(problems)
            + ". What was captured is kept in staging and raw/.",
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


kite_capture_job = dg.define_asset_job(
    "kite_capture",
    selection=dg.AssetSelection.assets(ticks),
    tags={"dagster/max_runtime": str(MAX_RUNTIME_S)},
    description="Capture one trading day's ticks (kite/ticks); one run per shard from the sensor.",
)


def plan_capture_runs(
    now: datetime, kite: KiteResource, home: str, capture: CaptureConfig
) -> tuple[list[dg.RunRequest], list[str]]:
    """The capture runs to request now, and why anything was skipped (an empty list of runs
    with reasons is a skip)."""
    now = now.astimezone(IST)
    day = now.date()
    try:
        if not is_trading_day(day):
            return [], [f"{day} is not an NSE trading day (weekend or exchange holiday)"]
    except CalendarError as exc:
        return [], [f"{day}: {exc}"]
    start, stop = ist_instant(day, capture.start_at), ist_instant(day, capture.stop_at)
    if now < start:
        return [], [f"before {capture.start_at} IST ([capture].start_at); capture starts then"]
    if now >= stop:
        return [], [f"after {capture.stop_at} IST ([capture].stop_at): today's session is over"]
    try:
        plans = shard_plans(read_lookup(home, day.isoformat()))
    except CaptureDayError as exc:
        return [], [str(exc)]
    if not plans:
        return [], [f"kite/instrument_lookup[{day}] has no resolved instrument on any shard"]
    requests, reasons = [], []
    for app in sorted({p.app for p in plans.values()}):
        try:
            kite.token_record(app)
        except TokenStoreError as exc:
            reasons.append(f"app {app}: {exc}")
            continue
        for plan in (p for p in plans.values() if p.app == app):
            requests.append(
                dg.RunRequest(
                    run_key=f"{day.isoformat()}:{plan.name}",
                    partition_key=day.isoformat(),
                    run_config={"ops": {OP_NAME: {"config": {"shards": [plan.name]}}}},
                    tags={SHARD_TAG: plan.name},
                )
            )
    return requests, reasons


@dg.sensor(
    name="kite_capture_sensor",
    job=kite_capture_job,
    minimum_interval_seconds=60,
    description=(
        "On NSE trading days between [capture].start_at and stop_at (09:00-15:35 IST): one "
        "kite_capture run per shard of today's kite/instrument_lookup (run_key day:shard), "
        "once the shard's app has today's access token."
    ),
)
def kite_capture_sensor(
    context: dg.SensorEvaluationContext, kite: KiteResource, settings: SettingsResource
) -> dg.SensorResult | dg.SkipReason:
    capture = settings.load().capture
    requests, reasons = plan_capture_runs(datetime.now(IST), kite, settings.home, capture)
    for reason in reasons if requests else ():
        context.log.warning(f"not launched: {reason}")
    if not requests:
        return dg.SkipReason("; ".join(reasons))
    return dg.SensorResult(run_requests=requests)
