"""upstox/candles and kite/candles in Dagster (sim mode): partitions, one-run ranges, metadata,
the failure threshold, token errors, and the `dagster asset materialize --partition-range` CLI."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tick_assets.config import load_settings
from tick_assets.defs.candles import candle_partitions, sim_day_for
from tick_assets.defs.partitions import nse_trading_days
from tick_assets.defs.resources import sim_endpoints
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sim.testing import access_token
from tick_assets.store import lake
from tick_assets.store.tokens import TokenRecord, TokenStore

REPO_ROOT = Path(__file__).resolve().parents[1]
UPSTOX = dg.AssetKey(["upstox", "candles"])
KITE = dg.AssetKey(["kite", "candles"])
DAYS = ["2026-11-16", "2026-11-17", "2026-11-18"]


def write_config(tmp_path: Path, symbols: list[str], threshold: float) -> Path:
    """The repo's config with its [candles] section replaced by a small test one."""
    text = (REPO_ROOT / "tick_assets.toml").read_text()
    text = text.split("# --- Historical candles")[0].replace(
        '= "config/', f'= "{REPO_ROOT}/config/'
    )
    (tmp_path / "small.csv").write_text("symbol\n" + "\n".join(symbols) + "\n")
    text += f"""
[candles]
timeframes = {load_settings().candles.timeframes!r}
max_failed_fraction = {threshold}
progress = "never"
[candles.symbol_lists]
small = "small.csv"
[candles.upstox]
symbols = ["small"]
workers = 4
[candles.kite]
symbols = ["small"]
app = "indices"
workers = 1
"""
    path = tmp_path / "tick_assets.toml"
    path.write_text(text.replace("'", '"'))
    return path


def materialize(key: dg.AssetKey, *, start: str, end: str, raise_on_error=True):
    from tick_assets.definitions import defs

    loaded = defs()
    tags = {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)],
            resources=loaded.resources,
            selection=dg.AssetSelection.assets(key),
            tags=tags,
            instance=instance,
            raise_on_error=raise_on_error,
        )
        runs = len(instance.get_runs())
    return result, runs


def save_sim_kite_token(home: Path, days: list[str]) -> None:
    """What kite/access_token does: log in on the simulator and keep the token encrypted."""
    from datetime import date

    settings = load_settings()
    endpoints = sim_endpoints(
        sim_day_for([date.fromisoformat(d) for d in days]),
        seed=settings.sim.seed, rate=float(settings.sim.rate), speed=float(settings.sim.speed),
    )  # fmt: skip
    token = access_token(endpoints, SIM_APPS["indices"])
    now = datetime.now(UTC)
    TokenStore(home, "sim").save(
        TokenRecord("indices", token, now, now + timedelta(hours=12), "http")
    )


def test_both_assets_share_one_two_dimensional_partitioning():
    from tick_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    up, kite = graph.get(UPSTOX), graph.get(KITE)
    assert up.partitions_def == kite.partitions_def == candle_partitions
    dims = {d.name: d.partitions_def for d in candle_partitions.partitions_defs}
    assert dims["date"] == nse_trading_days
    assert dims["timeframe"].get_partition_keys() == load_settings().candles.timeframes
    assert up.backfill_policy == kite.backfill_policy == dg.BackfillPolicy.single_run()


def test_upstox_range_runs_once_with_per_partition_metadata(tmp_path, monkeypatch, tick_home):
    config = write_config(tmp_path, ["INFY", "NIFTY 50", "NOPE"], threshold=0.5)
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(config))
    result, runs = materialize(UPSTOX, start=f"{DAYS[0]}|1minute", end=f"{DAYS[-1]}|5minute")
    assert result.success and runs == 1
    events = {
        e.partition: e.metadata for e in result.asset_materializations_for_node("upstox__candles")
    }
    assert sorted(events) == sorted(f"{d}|{tf}" for d in DAYS for tf in ("1minute", "5minute"))
    md = events[f"{DAYS[1]}|5minute"]
    assert md["dagster/row_count"].value == 2 * 75
    assert md["symbols_complete"].value == 2 and md["symbols_failed"].value == 1
    assert "NOPE" in md["failed"].value and md["unknown_symbols"].value == ["NOPE"]
    assert md["lake_path"].value.endswith(f"upstox/candles/timeframe=5minute/date={DAYS[1]}")
    manifest = lake.verify_partition(
        tick_home, "upstox", "candles", {"timeframe": "1minute", "date": DAYS[0]}
    )
    assert manifest.rows == 2 * 375
    # run-level figures ride along on each partition's event: 2 symbols x 2 timeframes, one
    # request each for the three days, none refused
    assert md["requests_planned"].value == 4 and md["http_429"].value == 0
    assert md["rate_limiter"].value["acquired"] == 4


def test_failures_past_the_threshold_fail_the_partition_but_keep_the_data(
    tmp_path, monkeypatch, tick_home
):
    config = write_config(tmp_path, ["INFY", "NOPE1", "NOPE2"], threshold=0.5)
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(config))
    result, _ = materialize(
        UPSTOX, start=f"{DAYS[0]}|day", end=f"{DAYS[0]}|day", raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "max_failed_fraction = 0.5" in failure.description
    assert f"{DAYS[0]}|day: 2/3 symbols failed" in failure.description
    kept = pl.from_arrow(
        lake.read_partition(tick_home, "upstox", "candles", {"timeframe": "day", "date": DAYS[0]})
    )
    assert kept["symbol"].to_list() == ["INFY"]


def test_reversed_range_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(write_config(tmp_path, ["INFY"], 0.2)))
    result, _ = materialize(
        UPSTOX, start=f"{DAYS[-1]}|day", end=f"{DAYS[0]}|day", raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert f"reversed: {DAYS[-1]} is after {DAYS[0]}" in failure.description


def test_kite_candles_need_kite_access_token(tmp_path, monkeypatch, tick_home):
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(write_config(tmp_path, ["INFY", "TCS"], 0.2)))
    result, _ = materialize(
        KITE, start=f"{DAYS[0]}|day", end=f"{DAYS[0]}|day", raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "kite/access_token" in failure.description and "'indices'" in failure.description

    save_sim_kite_token(tick_home, DAYS)
    result, _ = materialize(KITE, start=f"{DAYS[0]}|15minute", end=f"{DAYS[-1]}|day")
    assert result.success
    md = {e.partition: e.metadata for e in result.asset_materializations_for_node("kite__candles")}
    assert md[f"{DAYS[2]}|15minute"]["dagster/row_count"].value == 2 * 25
    assert md[f"{DAYS[2]}|day"]["dagster/row_count"].value == 2


def test_cli_partition_range_backfills_both_venues_in_one_run(tmp_path, tick_home, venv_bin):
    config = write_config(tmp_path, ["INFY", "NIFTY 50"], 0.2)
    env = {**os.environ, "TICK_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    save_sim_kite_token(tick_home, DAYS)
    proc = subprocess.run(
        [
            str(venv_bin / "dagster"), "asset", "materialize", "-m", "tick_assets.definitions",
            "--select", "upstox/candles,kite/candles",
            "--partition-range", f"{DAYS[0]}|5minute...{DAYS[-1]}|15minute",
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for venue in ("upstox", "kite"):
        for day in DAYS:
            for tf, rows in (("5minute", 75), ("15minute", 25)):
                m = lake.verify_partition(
                    tick_home, venue, "candles", {"timeframe": tf, "date": day}
                )
                assert m.rows == 2 * rows, (venue, day, tf)
    # the two venues' lakes hold the same candles (same simulated market)
    up = pl.from_arrow(
        lake.read_partition(
            tick_home, "upstox", "candles", {"timeframe": "5minute", "date": DAYS[1]}
        )
    )
    ki = pl.from_arrow(
        lake.read_partition(tick_home, "kite", "candles", {"timeframe": "5minute", "date": DAYS[1]})
    )
    cols = ["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    assert up.select(cols).equals(ki.select(cols))


@pytest.mark.parametrize("bad", [["2minute"], [], ["day", "day"]])
def test_bad_timeframes_in_config_are_named(tmp_path, monkeypatch, bad):
    from tick_assets.config import SettingsError

    text = (
        (REPO_ROOT / "tick_assets.toml")
        .read_text()
        .replace(
            'timeframes = ["1minute", "5minute", "15minute", "day"]',
            f"timeframes = {bad!r}".replace("'", '"'),
        )
    )
    path = tmp_path / "tick_assets.toml"
    path.write_text(text.replace('= "config/', f'= "{REPO_ROOT}/config/'))
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(path))
    with pytest.raises(SettingsError, match=r"\[candles\]\.timeframes"):
        load_settings()
