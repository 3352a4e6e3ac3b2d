"""The ``tick-assets`` command: the simulator, calendar and lake helpers, the version.

Dagster work (materializations, backfills, the UI) goes through the ``dagster`` command;
this one holds what runs without a Dagster instance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    try:
        return version("tick-assets")
    except PackageNotFoundError:
        return "unknown (package not installed; run `make setup`)"


# ---------------------------------------------------------------- version


def _run_version(args: argparse.Namespace) -> int:
    print(f"tick-assets {_version()}")
    return 0


# ---------------------------------------------------------------- sim


def _add_sim(sub: argparse._SubParsersAction) -> None:
    from tick_assets.sim import cli as sim_cli

    parser = sub.add_parser(
        "sim",
        help="serve every simulated venue on one loopback port",
        description="Serve every simulated venue on one loopback port. The first stdout line "
        "is one JSON object naming each endpoint (kite_rest, kite_ws, kite_login, ...).",
    )
    sim_cli.add_arguments(parser)
    parser.set_defaults(func=sim_cli.run)


# ---------------------------------------------------------------- calendar


def _run_latest_day(args: argparse.Namespace) -> int:
    from tick_assets.calendars import IST, previous_trading_day

    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    if now.tzinfo is None:
        raise SystemExit(f"--now {args.now!r} needs a UTC offset, e.g. 2025-03-17T10:00:00+05:30")
    print(previous_trading_day(now.astimezone(IST).date()).isoformat())
    return 0


def _run_is_trading_day(args: argparse.Namespace) -> int:
    from tick_assets.calendars import is_trading_day

    day = _parse_date(args.day)
    trading = is_trading_day(day)
    print(f"{day.isoformat()} {'trading day' if trading else 'not a trading day'}")
    return 0 if trading else 1


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"{text!r} is not a date; write it as YYYY-MM-DD") from None


def _add_calendar(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("calendar", help="NSE trading calendar")
    cal = parser.add_subparsers(dest="calendar_command", required=True)
    latest = cal.add_parser(
        "latest-day",
        help="the newest NSE trading day that has ended",
    )
    latest.add_argument("--now", help="reference time, ISO-8601 with offset (default: now)")
    latest.set_defaults(func=_run_latest_day)
    check = cal.add_parser("is-trading-day", help="exit 0 if DAY is an NSE trading day, else 1")
    check.add_argument("day", help="YYYY-MM-DD")
    check.set_defaults(func=_run_is_trading_day)


# ---------------------------------------------------------------- lake


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _parse_partition(items: Sequence[str]) -> dict[str, str]:
    partition = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"partition {item!r} must be COLUMN=VALUE, e.g. date=2025-01-02")
        partition[key] = value
    return partition


def _run_lake_show(args: argparse.Namespace) -> int:
    import polars as pl

    from tick_assets.config import load_settings
    from tick_assets.store import lake

    home = Path(args.home) if args.home else load_settings().home
    partition = _parse_partition(args.partition)
    try:
        manifest = (
            lake.verify_partition(home, args.venue, args.asset, partition)
            if args.verify
            else lake.read_manifest(home, args.venue, args.asset, partition)
        )
    except (lake.LakeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    directory = lake.partition_dir(home, args.venue, args.asset, partition)
    if args.json:
        print(manifest.to_json(), end="")
        return 0
    label = " ".join(f"{k}={v}" for k, v in partition.items())
    print(f"{args.venue}/{args.asset} {label}")
    print(f"  rows        {manifest.rows}")
    for entry in manifest.files:
        print(
            f"  file        {entry.name} ({_human_bytes(entry.bytes)}, {entry.rows} rows, "
            f"sha256 {entry.sha256})"
        )
    if manifest.time_range:
        tr = manifest.time_range
        print(f"  time range  {tr.column}: {tr.min} .. {tr.max}")
    print(f"  accounting  {json.dumps(manifest.accounting, sort_keys=True)}")
    for column in args.count_by or []:
        table = lake.read_partition(home, args.venue, args.asset, partition, columns=[column])
        counts = (
            pl.from_arrow(table)
            .group_by(column)
            .len()
            .sort(["len", column], descending=[True, False])
        )
        shown = ", ".join(f"{row[0]} {row[1]}" for row in counts.iter_rows())
        print(f"  {column + 's' if not column.endswith('s') else column:<11} {shown}")
    print(f"  created     {manifest.created_at}")
    print(f"  source      {manifest.source}")
    print(f"  verified    {'yes (sha256 and row counts match)' if args.verify else 'not checked'}")
    print(f"  path        {directory}")
    return 0


def _add_lake(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lake", help="inspect lake partitions")
    lake_sub = parser.add_subparsers(dest="lake_command", required=True)
    show = lake_sub.add_parser("show", help="summarise one partition from its manifest")
    show.add_argument("venue", help="e.g. kite")
    show.add_argument("asset", help="e.g. instruments")
    show.add_argument("partition", nargs="*", help="COLUMN=VALUE ..., e.g. date=2025-01-02")
    show.add_argument("--count-by", action="append", metavar="COLUMN", help="count rows by COLUMN")
    show.add_argument("--verify", action="store_true", help="re-hash the files first")
    show.add_argument("--json", action="store_true", help="print the manifest as JSON")
    show.add_argument("--home", help="data root (default: TICK_ASSETS_HOME or ./data)")
    show.set_defaults(func=_run_lake_show)


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tick-assets",
        description="tick_assets command line (Dagster work goes through `dagster`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sim(sub)
    _add_calendar(sub)
    _add_lake(sub)
    version_parser = sub.add_parser("version", help="print the tick_assets version")
    version_parser.set_defaults(func=_run_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tick_assets.calendars import CalendarError
    from tick_assets.config import SettingsError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, CalendarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
