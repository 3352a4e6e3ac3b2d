"""`tick-assets sim`: serve every simulated venue on one loopback port until interrupted.

The first stdout line is one JSON object naming each endpoint (kite_rest, kite_ws, ...), so a
parent process can start the simulator and read where to connect.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, time

from tick_assets.config import load_settings
from tick_assets.sim.kite.venue import KiteSimConfig
from tick_assets.sim.server import check_loopback, run_forever


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--day {text!r} is not a date like 2026-11-20") from None


def _clock(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--start {text!r} is not a time like 09:15") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = KiteSimConfig()
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on (only loopback is allowed)",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 picks a free one)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="market seed: same seed and day, same market (default: [sim].seed in tick_assets.toml)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="ticks (packets) per second across all instruments (default: [sim].rate in tick_assets.toml)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="time acceleration (400 plays 09:15-15:30 in about a minute; 1 is real time) (default: [sim].speed in tick_assets.toml)",
    )
    parser.add_argument(
        "--day",
        type=_day,
        default=None,
        help="trading day to simulate, YYYY-MM-DD (default: today in IST, or the last trading day)",
    )
    parser.add_argument(
        "--start",
        type=_clock,
        default=defaults.start,
        help="IST time of day the simulated clock starts at (default 09:15)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        check_loopback(args.host)
        configured = load_settings().sim  # one source of defaults for the CLI and sim mode
        for name in ("seed", "rate", "speed"):
            if getattr(args, name) is None:
                setattr(args, name, getattr(configured, name))
        if args.rate < 0 or args.speed <= 0:
            raise ValueError(f"--rate must be >= 0 and --speed > 0 (got {args.rate}, {args.speed})")
        config = KiteSimConfig(
            seed=args.seed, day=args.day, rate=args.rate, speed=args.speed, start=args.start
        )
        config.resolved_day()
    except ValueError as exc:  # SettingsError is a ValueError too
        print(f"tick-assets sim: {exc}", file=sys.stderr)
        return 2
    run_forever(port=args.port, host=args.host, kite=config)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the simulator without the full `tick-assets` CLI (python -m tick_assets.sim.cli)."""
    parser = argparse.ArgumentParser(prog="tick-assets sim", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
