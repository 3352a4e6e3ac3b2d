"""Kite reference-data assets. kite/instruments: the daily instrument dump as a lake snapshot.

Kite publishes one instrument dump per day and tokens get reassigned after expiries, so each
trading day's dump is kept as its own partition (point-in-time history: what a token meant on
any past day). Written with tick_assets.store.lake: zstd Parquet + _manifest.json.
"""

import gzip
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import dagster as dg
import polars as pl
import requests

from tick_assets.calendars import IST
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.defs.partitions import future_days, nse_trading_days
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite.instruments import parse_instruments
from tick_assets.store import lake

VENUE = "kite"
INSTRUMENTS_PATH = "/instruments"
KITE_VERSION_HEADER = {"X-Kite-Version": "3"}


class InstrumentsDownloadError(RuntimeError):
    """The instruments dump could not be fetched; the message names the URL and the cause."""


def download_instruments_dump(rest_root: str, timeout: float = 60) -> bytes:
    """GET <rest_root>/instruments as kiteconnect does; return the CSV bytes (un-gzipped).

    Kite serves the dump without authentication, so no credential is sent.
    """
    url = rest_root.rstrip("/") + INSTRUMENTS_PATH
    try:
        response = requests.get(url, headers=KITE_VERSION_HEADER, timeout=timeout)
    except requests.RequestException as exc:
        raise InstrumentsDownloadError(
            f"GET {url} failed: {type(exc).__name__}; is the Kite endpoint reachable?"
        ) from None
    if response.status_code != 200:
        detail = response.text[:300]
        if "json" in response.headers.get("content-type", ""):
            body = response.json()
            detail = f"{body.get('error_type', 'error')}: {body.get('message', '')}"
        raise InstrumentsDownloadError(f"GET {url} returned HTTP {response.status_code} ({detail})")
    body = response.content
    if body[:2] == b"\x1f\x8b":  # served as a gzip file rather than with Content-Encoding
        body = gzip.decompress(body)
    return body


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if column not in frame.columns:
        return {}
    counts = frame.group_by(column).len().sort(["len", column], descending=[True, False])
    return {str(value): int(n) for value, n in counts.iter_rows()}


def _csv_data_lines(csv_bytes: bytes) -> int:
    """Non-empty lines after the header: what the server sent, counted independently of parsing."""
    lines = [line for line in csv_bytes.splitlines() if line.strip()]
    return max(len(lines) - 1, 0)


def _column_schema(manifest: lake.Manifest) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in manifest.columns])


def refuse_future_days(asset: str, days: list[str]) -> None:
    """A trading day after today (IST) has no dump yet. Dagster lists the next trading day's
    partition early on weekends and holidays (dagster#33551, see defs/partitions.py)."""
    future = future_days(days)
    if future:
        raise dg.Failure(
            description=(
                f"{asset} for {', '.join(future)}: that day is still in the future (today is "
                f"{datetime.now(IST).date()} IST); Dagster lists the next trading day's "
                "partition early on weekends and holidays. Materialize it on the day itself."
            )
        )


def _check_live_day(kite: KiteResource, days: list[str]) -> None:
    """Kite serves only the current dump: a past day's snapshot cannot be downloaded later."""
    if kite.mode != "live":
        return
    today = datetime.now(IST).date().isoformat()
    past = [day for day in days if day != today]
    if past:
        raise dg.Failure(
            description=(
                f"kite/instruments for {', '.join(past)}: Kite publishes only the current "
                f"day's dump ({today} IST); a past day's snapshot exists only if it was "
                "materialized on that day. Materialize today's partition instead."
            )
        )


def materialize_day(
    kite: KiteResource, home: str, day: str, csv_bytes: bytes, source: str
) -> tuple[lake.Manifest, dict[str, Any]]:
    """Parse one day's dump, write it to the lake and return (manifest, metadata)."""
    frame = parse_instruments(csv_bytes)
    received = _csv_data_lines(csv_bytes)
    manifest = lake.write_partition(
        home,
        VENUE,
        "instruments",
        {"date": day},
        frame,
        {"received": received, "dropped": {}},
        source=source,
    )
    directory = lake.partition_dir(home, VENUE, "instruments", {"date": day})
    metadata: dict[str, Any] = {
        "dagster/row_count": manifest.rows,
        "dagster/partition_row_count": manifest.rows,
        "dagster/column_schema": _column_schema(manifest),
        "segments": dg.MetadataValue.json(_counts(frame, "segment")),
        "exchanges": dg.MetadataValue.json(_counts(frame, "exchange")),
        "instrument_types": dg.MetadataValue.json(_counts(frame, "instrument_type")),
        "sha256": dg.MetadataValue.text(
            manifest.files[0].sha256 if len(manifest.files) == 1 else repr(manifest.sha256)
        ),
        "lake_path": dg.MetadataValue.path(str(directory)),
        "accounting": dg.MetadataValue.json(manifest.accounting),
        "download_bytes": len(csv_bytes),
        "source": source,
        "mode": kite.mode,
    }
    return manifest, metadata


@dg.asset(
    key_prefix=[VENUE],
    name="instruments",
    group_name="kite",
    partitions_def=nse_trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "parquet"},
    code_version="1",
    description=(
        "Kite's instrument dump for one trading day, kept as that day's snapshot in the lake "
        "(lake/kite/instruments/date=DAY/): point-in-time history of what each "
        "instrument_token meant."
    ),
)
def instruments(
    context: dg.AssetExecutionContext, kite: KiteResource, settings: SettingsResource
) -> dg.MaterializeResult:
    days = list(context.partition_keys)
    refuse_future_days("kite/instruments", days)
    _check_live_day(kite, days)
    summary: dict[str, int] = {}
    for day in days:
        # sim: that day's simulated Kite (point-in-time dump); live: today's real dump
        rest_root = kite.endpoints(date.fromisoformat(day))["kite_rest"]
        source = f"kite {kite.mode} GET {rest_root}{INSTRUMENTS_PATH}"
        if kite.mode == "sim":
            source += f" (simulated day {day}, seed {kite.sim_seed})"
        csv_bytes = download_instruments_dump(rest_root, timeout=kite.timeout_seconds)
        manifest, metadata = materialize_day(kite, settings.home, day, csv_bytes, source)
        context.add_asset_metadata(metadata, partition_key=day)
        summary[day] = manifest.rows
        context.log.info(
            f"kite/instruments[{day}]: {manifest.rows} rows -> {metadata['lake_path'].value}"
        )
    return dg.MaterializeResult(metadata=_run_metadata(summary))


def _run_metadata(summary: Mapping[str, int]) -> dict[str, Any]:
    if len(summary) == 1:
        return {}
    return {"rows_by_day": dg.MetadataValue.json(dict(summary))}
