"""The `tick-assets` command: version, sim (endpoints line first), calendar and lake helpers."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
import urllib.request
from importlib.metadata import version

import pyarrow as pa
import pytest

from tick_assets.cli import main
from tick_assets.store import lake

SIM_START_TIMEOUT = 60


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"tick-assets {version('tick-assets')}"


def _read_first_line(proc: subprocess.Popen, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    pytest.fail(f"`tick-assets sim` printed no line within {timeout}s (exit {proc.poll()})")


def test_sim_prints_endpoints_json_first_and_serves_them(venv_bin):
    proc = subprocess.Popen(
        [str(venv_bin / "tick-assets"), "sim"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        first = _read_first_line(proc, SIM_START_TIMEOUT)
        endpoints = json.loads(first)
        assert {"kite_rest", "kite_ws", "kite_login"} <= set(endpoints)
        for name, url in endpoints.items():
            assert "127.0.0.1" in url, f"{name} is not loopback: {url}"
        with urllib.request.urlopen(endpoints["kite_rest"] + "/instruments", timeout=30) as resp:
            assert resp.status == 200
            assert len(resp.read()) > 1000
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.parametrize(
    "now,expected",
    [
        ("2025-03-17T10:00:00+05:30", "2025-03-13"),  # Monday after Holi (Fri) + weekend
        ("2025-03-13T23:59:00+05:30", "2025-03-12"),  # the day is not over yet
        ("2025-03-13T18:31:00+00:00", "2025-03-13"),  # 00:01 IST on the 14th
    ],
)
def test_calendar_latest_day(capsys, now, expected):
    assert main(["calendar", "latest-day", "--now", now]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_calendar_is_trading_day(capsys):
    assert main(["calendar", "is-trading-day", "2025-03-14"]) == 1
    assert "not a trading day" in capsys.readouterr().out
    assert main(["calendar", "is-trading-day", "2025-03-13"]) == 0


def test_calendar_outside_holiday_data_is_a_clear_error(capsys):
    assert main(["calendar", "is-trading-day", "2031-01-02"]) == 2
    assert "no NSE holiday data" in capsys.readouterr().err


def test_lake_show_summarises_and_verifies(tick_home, capsys):
    table = pa.table({"segment": ["NSE", "NSE", "NFO-FUT"], "instrument_token": [1, 2, 3]})
    manifest = lake.write_partition(
        tick_home, "kite", "instruments", {"date": "2025-03-13"}, table, {"received": 3}
    )
    code = main(
        [
            "lake",
            "show",
            "kite",
            "instruments",
            "date=2025-03-13",
            "--count-by",
            "segment",
            "--verify",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "rows        3" in out
    assert "segments    NSE 2, NFO-FUT 1" in out
    assert manifest.files[0].sha256 in out
    assert str(tick_home / "lake/kite/instruments/date=2025-03-13") in out

    data_file = tick_home / "lake/kite/instruments/date=2025-03-13/part-0.parquet"
    data_file.write_bytes(data_file.read_bytes()[:-10] + b"0123456789")
    assert main(["lake", "show", "kite", "instruments", "date=2025-03-13", "--verify"]) == 1
    assert "part-0.parquet: sha256" in capsys.readouterr().err


def test_lake_show_missing_partition(tick_home, capsys):
    assert main(["lake", "show", "kite", "instruments", "date=2025-03-13"]) == 1
    assert "materialize it first" in capsys.readouterr().err
