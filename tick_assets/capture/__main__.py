"""Run a capture from a JSON spec: `python -m tick_assets.capture SPEC.json`.

For a capture outside Dagster (and the crash tests, which kill this process). Secrets are never
in the spec: each shard names the environment variable holding its access token. The spec:

    {"venue": "kite", "ws_root": "wss://ws.kite.trade", "mode": "full",
     "home": "/data/tick_assets", "day": "2026-11-20",
     "clock": {"url": "http://127.0.0.1:PORT/sim/control/kite/clock"},   (optional)
     "settings": {"flush_interval_s": 0.2, "stop_at": "2026-11-20T15:35:00+05:30", ...},
     "webhook_url_env": "CAPTURE_WEBHOOK_URL",                            (optional)
     "shards": [{"name": "indices-0", "api_key": "...", "access_token_env": "KITE_ACCESS_TOKEN",
                 "instruments": [256265, 260105]}]}

SIGTERM or SIGINT stop it cleanly; the last stdout line is the report as JSON. An optional clock
URL must answer {"epoch": seconds, "speed": s, "realtime_after": seconds or null} (the
simulator's clock), so a time-accelerated simulator and the capture agree on "now", also after
the simulator's switch to real time at the close.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from datetime import date, datetime
from pathlib import Path

import requests

from tick_assets.capture.clock import Clock, LinearClock, wall_clock
from tick_assets.capture.engine import CaptureEngine, CaptureSettings, Shard, run_capture
from tick_assets.capture.notify import LogNotifier, Notifier, WebhookNotifier
from tick_assets.sources.kite.stream import KiteCredentials, KiteStream


class SpecError(ValueError):
    """The capture spec is unusable (the message names the field)."""


def _clock(spec: dict) -> Clock:
    if "clock" not in spec:
        return wall_clock
    url = spec["clock"].get("url", "")
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise SpecError("clock.url must be a loopback http:// URL serving {epoch, speed}")
    body = requests.get(url, timeout=10).json()
    after = body.get("realtime_after")
    return LinearClock(
        int(float(body["epoch"]) * 1e9),
        float(body["speed"]),
        None if after is None else int(float(after) * 1e9),
    )


def build(spec: dict) -> CaptureEngine:
    if spec.get("venue") != "kite":
        raise SpecError(f"venue {spec.get('venue')!r} is not supported here (only 'kite')")
    adapter = KiteStream(spec["ws_root"], spec.get("mode", "full"))
    options = dict(spec.get("settings", {}))
    stop_at = options.pop("stop_at", None)
    fields = {f.name for f in dataclasses.fields(CaptureSettings)}
    unknown = set(options) - fields
    if unknown:
        raise SpecError(f"unknown settings {sorted(unknown)}; known: {sorted(fields)}")
    if stop_at is not None:
        when = datetime.fromisoformat(stop_at)
        if when.tzinfo is None:
            raise SpecError("settings.stop_at needs a UTC offset, e.g. 2026-11-20T15:35:00+05:30")
        options["stop_at_ns"] = int(when.timestamp() * 1e9)
    settings = CaptureSettings(
        home=Path(spec["home"]), day=date.fromisoformat(spec["day"]), **options
    )
    shards = []
    for item in spec["shards"]:
        env = item["access_token_env"]
        token = os.environ.get(env)
        if not token:
            raise SpecError(f"shard {item['name']!r}: environment variable {env} is not set")
        credentials = KiteCredentials(item["api_key"], token)
        shards.append(Shard(item["name"], tuple(int(t) for t in item["instruments"]), credentials))
    notifiers: list[Notifier] = [LogNotifier()]
    if hook_env := spec.get("webhook_url_env"):
        url = os.environ.get(hook_env)
        if not url:
            raise SpecError(f"webhook_url_env names {hook_env}, which is not set")
        notifiers.append(WebhookNotifier(url))
    return CaptureEngine(adapter, shards, settings, clock=_clock(spec), notifiers=notifiers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tick_assets.capture", description=__doc__)
    parser.add_argument("spec", type=Path, help="capture spec (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        engine = build(json.loads(args.spec.read_text()))
    except (OSError, KeyError, ValueError) as exc:
        print(f"capture: bad spec {args.spec}: {exc!r}", file=sys.stderr)
        return 2
    report = run_capture(engine)
    print(json.dumps({
        "stop_reason": report.stop_reason,
        "shards": [{"shard": s.shard, "run": s.run, "state": s.state, "failure": s.failure,
                    "counters": s.counters, "accounting": s.accounting} for s in report.shards],
    }), flush=True)  # fmt: skip
    return 0 if all(s.state == "stopped" for s in report.shards) else 1


if __name__ == "__main__":
    raise SystemExit(main())
