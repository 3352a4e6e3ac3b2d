"""`tick-assets sim` (tick_assets.sim.cli): endpoints first, options honoured, clean shutdown."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys

import pytest
import requests

CLI = [sys.executable, "-m", "tick_assets.sim.cli"]


def _first_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=timeout):
        pytest.fail(f"simulator printed nothing within {timeout}s (exit {proc.poll()})")
    return proc.stdout.readline()


def test_prints_endpoints_then_serves_until_sigint():
    args = ["--port", "0", "--seed", "11", "--rate", "50", "--speed", "30", "--day", "2026-11-20",
            "--start", "10:00"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        endpoints = json.loads(_first_line(proc))
        assert {"kite_rest", "kite_ws", "kite_login", "kite_control"} <= set(endpoints)
        assert all(url.split("//")[1].startswith("127.0.0.1:") for url in endpoints.values())
        clock = requests.get(endpoints["kite_control"] + "/clock", timeout=10).json()
        assert clock["day"] == "2026-11-20" and clock["seed"] == 11 and clock["speed"] == 30
        assert clock["rate"] == 50 and clock["time"].startswith("2026-11-20T10:0")
        assert requests.get(endpoints["sim_health"], timeout=10).json()["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--day", "2026-11-21"], "not an NSE trading day"),
        (["--speed", "0"], "--speed"),
    ],
)
def test_bad_options_fail_before_serving(args, message):
    proc = subprocess.run(CLI + args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message in proc.stderr
