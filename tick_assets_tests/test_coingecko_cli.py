"""The real `dagster asset materialize` command in sim mode, in fresh TICK_ASSETS_HOME and
DAGSTER_HOME directories: a day of coingecko/rankings, and a klines backfill of one symbol
over several months as one partition-range run (both commands run side by side)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl

from tick_assets.store import lake

REPO_ROOT = Path(__file__).resolve().parents[1]
DAY = "2025-03-10"


def _command(venv_bin: Path, home: Path, dagster_home: Path, *args: str) -> subprocess.Popen:
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TICK_ASSETS_MODE": "sim",
        "TICK_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
    }
    return subprocess.Popen(
        [str(venv_bin / "dagster"), "asset", "materialize", "-m", "tick_assets.definitions", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_dagster_cli_materializes_rankings_and_a_klines_backfill(tmp_path, venv_bin):
    home = tmp_path / "tick_home"
    klines_home = tmp_path / "dagster_klines"
    klines_home.mkdir()
    with dg.DagsterInstance.from_config(str(klines_home)) as instance:
        instance.add_dynamic_partitions("binance_symbols", ["BTCUSDT"])  # as the sensor does

    rankings = _command(
        venv_bin, home, tmp_path / "dagster_rankings",
        "--select", "coingecko/rankings", "--partition", DAY,
    )  # fmt: skip
    klines = _command(
        venv_bin, home, klines_home, "--select", "binance/klines_1m",
        "--partition-range", "2024-12-01|BTCUSDT...2025-02-01|BTCUSDT",
    )  # fmt: skip
    out_r, _ = rankings.communicate(timeout=300)
    out_k, _ = klines.communicate(timeout=300)
    assert rankings.returncode == 0, out_r[-4000:]
    assert klines.returncode == 0, out_k[-4000:]

    manifest = lake.verify_partition(home, "coingecko", "rankings", {"date": DAY})
    assert manifest.rows == 100 and manifest.extra["snapshot_at"] == f"{DAY}T23:59:59+00:00"
    ranking = pl.from_arrow(lake.read_partition(home, "coingecko", "rankings", {"date": DAY}))
    assert ranking["rank"].to_list() == list(range(1, 101)) and ranking["id"][0] == "bitcoin"
    assert "rankings_consistent" in out_r and "RUN_SUCCESS" in out_r

    months = sorted(
        p["month"] for p in lake.list_partitions(home, "binance", "klines_1m")
        if p["symbol"] == "BTCUSDT"
    )  # fmt: skip
    assert months == ["2024-12", "2025-01", "2025-02"]
    for month in months:
        m = lake.verify_partition(
            home, "binance", "klines_1m", {"symbol": "BTCUSDT", "month": month}
        )
        assert m.rows > 39_000 and m.extra["watermark"].startswith(month)
    with dg.DagsterInstance.from_config(str(klines_home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey(["binance", "klines_1m"])) == {
            "2024-12-01|BTCUSDT",
            "2025-01-01|BTCUSDT",
            "2025-02-01|BTCUSDT",
        }
