"""The crypto assets in Dagster (sim mode): rankings -> universe -> sensor -> klines backfills,
a partition that fails inside a range run, and the live-mode guard on past rankings."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tick_assets.config import load_settings
from tick_assets.definitions import defs
from tick_assets.defs.binance.partitions import SYMBOLS_PARTITIONS_NAME, klines_partitions
from tick_assets.defs.binance.resources import BinanceResource
from tick_assets.defs.binance.sensors import binance_universe_sensor
from tick_assets.defs.coingecko.resources import CoinGeckoResource
from tick_assets.defs.resources import SettingsResource
from tick_assets.sim.binance.testing import control, reset
from tick_assets.sources.binance.archive import monthly_path
from tick_assets.store import lake

REPO_ROOT = Path(__file__).resolve().parents[1]
RANKINGS = dg.AssetKey(["coingecko", "rankings"])
UNIVERSE = dg.AssetKey(["binance", "universe"])
KLINES = dg.AssetKey(["binance", "klines_1m"])
DAY, LATER_DAY = "2025-03-10", "2025-09-20"


@pytest.fixture
def crypto_config(tmp_path, monkeypatch) -> Path:
    """The repo config with CoinGecko paced for tests (the simulator allows 30 calls/min)."""
    text = (REPO_ROOT / "tick_assets.toml").read_text()
    section = re.search(r"\[venues\.coingecko\][^\[]*", text)
    assert section, "tick_assets.toml has no [venues.coingecko] section"
    patched = re.sub(r"calls_per_minute = \d+", "calls_per_minute = 30", section.group(0))
    patched = re.sub(r"backoff_seconds = \d+", "backoff_seconds = 1", patched)
    path = tmp_path / "tick_assets.toml"
    path.write_text(text.replace(section.group(0), patched))
    # the override file is found relative to the config file
    (tmp_path / "config" / "crypto").mkdir(parents=True)
    (tmp_path / "config" / "crypto" / "binance_overrides.toml").write_text(
        (REPO_ROOT / "config" / "crypto" / "binance_overrides.toml").read_text()
    )
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(path))
    return path


@pytest.fixture
def endpoints(crypto_config) -> dict[str, str]:
    eps = BinanceResource.from_settings(load_settings()).endpoints()  # the defs' own simulator
    reset(eps)
    yield eps
    reset(eps)


def _run(selection, *, partition_key=None, tags=None, instance, raise_on_error=True):
    loaded = defs()
    return dg.materialize(
        [*[a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)], *loaded.asset_checks],
        resources=loaded.resources,
        selection=selection,
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def _range_tags(start: str, end: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }


def test_crypto_definitions_load():
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    assert {RANKINGS, UNIVERSE, KLINES} <= set(graph.get_all_asset_keys())
    assert graph.get(KLINES).partitions_def == klines_partitions
    assert graph.get(UNIVERSE).parent_keys == {RANKINGS}
    checks = {k.name for k in graph.asset_check_keys}
    assert {"rankings_consistent", "universe_not_empty", "klines_lake_integrity",
            "klines_no_missing_minutes"} <= checks  # fmt: skip
    assert loaded.get_sensor_def("binance_universe_sensor")
    assert loaded.get_schedule_def("crypto_universe_schedule")
    assert {"binance", "coingecko", "settings"} <= set(loaded.resources)


def test_rankings_universe_and_the_sensor(tick_home, endpoints):
    with dg.instance_for_test() as instance:
        result = _run(
            dg.AssetSelection.assets(RANKINGS, UNIVERSE), partition_key=DAY, instance=instance
        )
        assert result.success
        meta = {
            e.asset_key: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert meta[RANKINGS]["dagster/row_count"].value == 100
        assert meta[RANKINGS]["snapshot_at"].value == f"{DAY}T23:59:59+00:00"
        reasons = meta[UNIVERSE]["unmapped_by_reason"].value
        assert {"stablecoin", "wrapped", "no_pair", "not_trading", "duplicate_symbol"} <= set(
            reasons
        )
        assert "BTTCUSDT" in meta[UNIVERSE]["overridden"].value
        unmapped = meta[UNIVERSE]["unmapped"].value
        assert "tether" in unmapped and "XMRUSDT status is BREAK" in unmapped
        assert "NEIROUSDT goes to first-neiro-on-ethereum" in unmapped
        symbols = meta[UNIVERSE]["symbols"].value
        assert "BTCUSDT" in symbols and "USDCUSDT" not in symbols and "WBTCUSDT" not in symbols
        assert all(c.passed for c in result.get_asset_check_evaluations())

        settings = SettingsResource.from_settings(load_settings())
        context = dg.build_sensor_context(instance=instance, resources={"settings": settings})
        first = binance_universe_sensor(context)
        assert isinstance(first, dg.SensorResult)
        (added,) = first.dynamic_partitions_requests
        assert sorted(added.partition_keys) == sorted(symbols)
        assert {r.partition_key for r in first.run_requests} == {f"2025-03-01|{s}" for s in symbols}
        assert first.cursor == DAY
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, list(added.partition_keys))
        again = binance_universe_sensor(
            dg.build_sensor_context(instance=instance, cursor=DAY, resources={"settings": settings})
        )
        assert isinstance(again, dg.SkipReason)

        assert _run(
            dg.AssetSelection.assets(RANKINGS, UNIVERSE), partition_key=LATER_DAY, instance=instance
        ).success
        later = binance_universe_sensor(
            dg.build_sensor_context(instance=instance, cursor=DAY, resources={"settings": settings})
        )
        later_symbols = pl.from_arrow(
            lake.read_partition(tick_home, "binance", "universe", {"date": LATER_DAY})
        )["binance_symbol"].to_list()
        retired = set(symbols) - set(later_symbols)
        new = set(later_symbols) - set(symbols)
        assert retired and new  # the top 100 moved over six months
        requested = {r.partition_key.split("|")[1] for r in later.run_requests}
        assert requested == set(later_symbols) and not retired & requested  # retired: no updates
        added_later = later.dynamic_partitions_requests[0].partition_keys
        assert set(added_later) == new  # only additions: retired symbols keep their partitions
        assert later.asset_events[0].metadata["retired"].value == sorted(retired)


def test_a_klines_backfill_over_several_months(tick_home, endpoints):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["ETHUSDT"])
        result = _run(
            dg.AssetSelection.assets(KLINES),
            tags=_range_tags("2024-11-01|ETHUSDT", "2025-02-01|ETHUSDT"),
            instance=instance,
        )
        assert result.success
        events = {
            e.partition: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert sorted(events) == [f"{m}|ETHUSDT" for m in
                                  ("2024-11-01", "2024-12-01", "2025-01-01", "2025-02-01")]  # fmt: skip
        assert events["2024-12-01|ETHUSDT"]["timestamp_units"].value["ms"] > 0
        assert events["2025-01-01|ETHUSDT"]["timestamp_units"].value["us"] > 0
        assert (
            events["2025-02-01|ETHUSDT"]["symbol_watermark"].value
            == "2025-02-28T23:59:59.999999+00:00"
        )
        frames = [
            pl.from_arrow(
                lake.read_partition(
                    tick_home, "binance", "klines_1m", {"symbol": "ETHUSDT", "month": m}
                )
            )  # fmt: skip
            for m in ("2024-11", "2024-12", "2025-01", "2025-02")
        ]
        series = pl.concat(frames)
        assert series["open_time"].is_sorted() and series["open_time"].is_unique().all()
        expected_gaps = sum(events[k]["missing_minutes"].value for k in events)
        span = (series["open_time"].max() - series["open_time"].min()).total_seconds() / 60 + 1
        assert series.height == span - expected_gaps  # only the reported gaps are missing
        assert all(c.passed for c in result.get_asset_check_evaluations()
                   if c.check_name == "klines_lake_integrity")  # fmt: skip

        now = datetime.now(UTC)
        current = f"{now:%Y-%m}-01|ETHUSDT"
        run = _run(dg.AssetSelection.assets(KLINES), partition_key=current, instance=instance)
        meta = run.get_asset_materialization_events()[0].materialization.metadata
        assert meta["rest_requests"].value >= 1 or now.strftime("%H:%M") == "00:00"  # today: REST
        assert meta["watermark"].value.startswith(f"{now:%Y-%m}")


def test_a_bad_month_in_a_range_fails_alone(tick_home, endpoints):
    control(endpoints, "binance", "faults",
            {"action": "corrupt_zip", "path": monthly_path("XRPUSDT", 2025, 1), "times": 2})  # fmt: skip
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SYMBOLS_PARTITIONS_NAME, ["XRPUSDT"])
        result = _run(
            dg.AssetSelection.assets(KLINES),
            tags=_range_tags("2024-12-01|XRPUSDT", "2025-02-01|XRPUSDT"),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "XRPUSDT-1m-2025-01.zip" in str(failure.event_specific_data.error)
        assert instance.get_materialized_partitions(KLINES) == {
            "2024-12-01|XRPUSDT",
            "2025-02-01|XRPUSDT",
        }
    months = {p["month"] for p in lake.list_partitions(tick_home, "binance", "klines_1m")}
    assert months == {"2024-12", "2025-02"}  # nothing at all for the bad month


def test_live_rankings_refuse_a_past_day():
    live = CoinGeckoResource(mode="live")
    with pytest.raises(dg.Failure, match="only the current market"):
        live.snapshot_time("2025-03-10", now=datetime(2025, 3, 20, tzinfo=UTC))
    assert live.snapshot_time("2025-03-10", now=datetime(2025, 3, 11, 0, 15, tzinfo=UTC))
