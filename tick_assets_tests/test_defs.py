"""The Dagster code location: loading, partitions, and kite/instruments end to end in sim mode."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tick_assets.config import SettingsError
from tick_assets.definitions import defs
from tick_assets.defs.kite import assets as kite_assets
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.defs.partitions import build_nse_trading_days, crypto_utc_days
from tick_assets.sources.kite.instruments import INSTRUMENT_COLUMNS, INSTRUMENT_SCHEMA
from tick_assets.store import lake

REPO_ROOT = Path(__file__).resolve().parents[1]

INSTRUMENTS = dg.AssetKey(["kite", "instruments"])
CHECK_NAMES = {
    "instruments_not_empty",
    "instruments_unique_tokens",
    "instruments_expected_columns",
    "instruments_lake_integrity",
}
DAY = "2025-03-13"  # a Thursday; 2025-03-14 is Holi, then a weekend
NEXT_DAY = "2025-03-17"


# ---------------------------------------------------------------- loading


def test_definitions_load_and_validate():
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    graph = loaded.resolve_asset_graph()
    assert INSTRUMENTS in graph.get_all_asset_keys()
    check_names = {key.name for key in graph.asset_check_keys if key.asset_key == INSTRUMENTS}
    assert check_names == CHECK_NAMES
    assert {"kite", "settings"} <= set(loaded.resources)
    spec = graph.get(INSTRUMENTS)
    assert spec.partitions_def == build_nse_trading_days()
    assert spec.backfill_policy == dg.BackfillPolicy.single_run()


def test_dagster_definitions_validate_cli(venv_bin):
    proc = subprocess.run(
        [str(venv_bin / "dagster"), "definitions", "validate", "-m", "tick_assets.definitions"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- partitions


def test_trading_day_partitions_skip_holidays_and_weekends():
    days = build_nse_trading_days()
    assert days.timezone == "Asia/Kolkata"
    assert days.has_partition_key("2025-03-13")  # Thursday
    assert not days.has_partition_key("2025-03-14")  # Holi
    assert not days.has_partition_key("2025-03-15")  # Saturday
    assert not days.has_partition_key("2025-03-16")  # Sunday
    assert not days.has_partition_key("2024-01-26")  # Republic Day, a Friday
    assert days.has_partition_key("2024-01-01")
    keys = days.get_partition_keys_in_range(dg.PartitionKeyRange("2025-03-13", "2025-03-17"))
    assert keys == ["2025-03-13", "2025-03-17"]
    assert all(date.fromisoformat(k).weekday() < 5 for k in days.get_partition_keys())


def test_holiday_override_file_removes_the_partition(tmp_path, monkeypatch):
    override = tmp_path / "holidays.csv"
    override.write_text("date,description,action\n2025-03-13,Test closure,add\n")
    monkeypatch.setenv("TICK_ASSETS_HOLIDAYS_FILE", str(override))
    assert not build_nse_trading_days().has_partition_key("2025-03-13")


def test_crypto_days_are_plain_utc_days():
    assert crypto_utc_days.timezone == "UTC"
    assert crypto_utc_days.has_partition_key("2025-03-15")  # a Saturday trades
    assert crypto_utc_days.has_partition_key("2025-03-14")


# ---------------------------------------------------------------- kite/instruments


def _materialize(*, partition_key=None, tags=None, raise_on_error=True, instance=None):
    loaded = defs()
    assets_and_checks = [
        *[a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)],
        *loaded.asset_checks,
    ]
    return dg.materialize(
        assets_and_checks,
        resources=loaded.resources,
        partition_key=partition_key,
        tags=tags,
        raise_on_error=raise_on_error,
        instance=instance,
        selection=dg.AssetSelection.assets(INSTRUMENTS),
    )


def _check_evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_instruments_materialize_writes_the_lake_snapshot(tick_home):
    with dg.instance_for_test() as instance:
        result = _materialize(partition_key=DAY, instance=instance)
    assert result.success

    directory = tick_home / "lake" / "kite" / "instruments" / f"date={DAY}"
    assert sorted(p.name for p in directory.iterdir()) == ["_manifest.json", "part-0.parquet"]
    manifest = lake.verify_partition(tick_home, "kite", "instruments", {"date": DAY})
    assert manifest.rows > 500  # NIFTY 500 equities + indices + futures + options
    assert manifest.accounting["received"] == manifest.rows == manifest.accounting["written"]
    assert [name for name, _ in manifest.columns] == list(INSTRUMENT_COLUMNS)
    assert manifest.source.startswith("kite sim GET http://127.0.0.1:")
    assert manifest.source.endswith(f"(simulated day {DAY}, seed 42)")

    frame = pl.from_arrow(lake.read_partition(tick_home, "kite", "instruments", {"date": DAY}))
    assert frame["instrument_token"].is_unique().all()
    symbols = set(frame["tradingsymbol"].to_list())
    assert {"M&M", "BAJAJ-AUTO", "RELIANCE"} <= symbols

    (event,) = result.asset_materializations_for_node("kite__instruments")
    assert event.partition == DAY
    md = event.metadata
    assert md["dagster/row_count"].value == manifest.rows
    assert md["sha256"].value == manifest.files[0].sha256
    assert md["lake_path"].value == str(directory)
    segments = md["segments"].value
    assert sum(segments.values()) == manifest.rows
    assert segments == dict(frame.group_by("segment").len().iter_rows())
    assert {"NSE", "INDICES", "NFO-FUT", "NFO-OPT"} <= set(segments)

    evaluations = _check_evaluations(result)
    assert set(evaluations) == CHECK_NAMES
    assert all(e.passed for e in evaluations.values()), {
        n: e.description for n, e in evaluations.items() if not e.passed
    }


def test_instruments_rematerialize_replaces_the_partition(tick_home):
    with dg.instance_for_test() as instance:
        _materialize(partition_key=DAY, instance=instance)
        first = lake.read_manifest(tick_home, "kite", "instruments", {"date": DAY})
        _materialize(partition_key=DAY, instance=instance)
    second = lake.verify_partition(tick_home, "kite", "instruments", {"date": DAY})
    assert second.rows == first.rows
    assert second.created_at > first.created_at
    parent = tick_home / "lake" / "kite" / "instruments"
    assert [p.name for p in parent.iterdir()] == [f"date={DAY}"]


def test_partition_range_materializes_in_one_run(tick_home):
    tags = {
        "dagster/asset_partition_range_start": DAY,
        "dagster/asset_partition_range_end": NEXT_DAY,
    }
    with dg.instance_for_test() as instance:
        result = _materialize(tags=tags, instance=instance)
        assert result.success
        runs = instance.get_runs()
    assert len(runs) == 1
    events = result.asset_materializations_for_node("kite__instruments")
    assert sorted(e.partition for e in events) == [DAY, NEXT_DAY]  # Holi and weekend skipped
    for event in events:
        manifest = lake.verify_partition(
            tick_home, "kite", "instruments", {"date": event.partition}
        )
        assert event.metadata["dagster/row_count"].value == manifest.rows
        assert event.metadata["sha256"].value == manifest.files[0].sha256
        assert event.metadata["lake_path"].value.endswith(f"date={event.partition}")
    assert lake.list_partitions(tick_home, "kite", "instruments") == [
        {"date": DAY},
        {"date": NEXT_DAY},
    ]
    assert all(e.passed for e in _check_evaluations(result).values())


def test_sim_snapshots_are_point_in_time_across_an_expiry(tick_home):
    """Each day's snapshot is the dump as Kite served it that day: the March 2025 NIFTY future
    is listed before its expiry and gone after it (whichever weekday rule the expiry used)."""
    tags = {
        "dagster/asset_partition_range_start": "2025-03-24",
        "dagster/asset_partition_range_end": "2025-03-28",
    }
    with dg.instance_for_test() as instance:
        assert _materialize(tags=tags, instance=instance).success

    def nearest_nifty_future(day: str) -> date:
        frame = pl.from_arrow(lake.read_partition(tick_home, "kite", "instruments", {"date": day}))
        futures = frame.filter((pl.col("name") == "NIFTY") & (pl.col("instrument_type") == "FUT"))
        return futures["expiry"].min()

    assert [p["date"] for p in lake.list_partitions(tick_home, "kite", "instruments")] == [
        "2025-03-24",
        "2025-03-25",
        "2025-03-26",
        "2025-03-27",
        "2025-03-28",
    ]
    assert nearest_nifty_future("2025-03-24").month == 3
    assert nearest_nifty_future("2025-03-28").month == 4
    for p in lake.list_partitions(tick_home, "kite", "instruments"):
        assert nearest_nifty_future(p["date"]) >= date.fromisoformat(p["date"])


def test_settings_resource_reloads_the_same_settings(tick_home):
    from tick_assets.config import load_settings
    from tick_assets.defs.resources import SettingsResource

    resource = SettingsResource.from_settings(load_settings())
    assert resource.home_path == tick_home
    settings = resource.load()
    assert settings.home == tick_home and settings.mode == "sim"
    assert set(settings.kite_apps) == {"indices", "nifty500"}


def _duplicating_download(real):
    def download(*args, **kwargs):
        csv_bytes = real(*args, **kwargs)
        lines = csv_bytes.splitlines(keepends=True)
        return b"".join([*lines, lines[1]])  # first instrument listed twice

    return download


def test_duplicate_tokens_fail_the_blocking_check(tick_home, monkeypatch):
    monkeypatch.setattr(
        kite_assets,
        "download_instruments_dump",
        _duplicating_download(kite_assets.download_instruments_dump),
    )
    with dg.instance_for_test() as instance:
        result = _materialize(partition_key=DAY, instance=instance, raise_on_error=False)
    evaluations = _check_evaluations(result)
    unique = evaluations["instruments_unique_tokens"]
    assert not unique.passed
    assert "appear more than once" in unique.description
    assert evaluations["instruments_not_empty"].passed


def _run_checks(instance, day: str, *names: str):
    """A checks-only run of one partition (as "Execute checks" in the UI). dagster's
    partition_key= argument insists on a selected asset, so the partition goes in as a tag."""
    loaded = defs()
    result = dg.materialize(
        [*[a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)], *loaded.asset_checks],
        resources=loaded.resources,
        instance=instance,
        selection=dg.AssetSelection.checks(*[dg.AssetCheckKey(INSTRUMENTS, n) for n in names]),
        tags={"dagster/partition": day},
        raise_on_error=False,
    )
    assert result.asset_materializations_for_node("kite__instruments") == []
    return result


def test_wrong_columns_and_empty_snapshot_fail_their_checks(tick_home):
    good = pl.DataFrame(schema=INSTRUMENT_SCHEMA)
    lake.write_partition(tick_home, "kite", "instruments", {"date": DAY}, good, {"received": 0})
    lake.write_partition(
        tick_home,
        "kite",
        "instruments",
        {"date": NEXT_DAY},
        good.drop("lot_size"),
        {"received": 0},
    )
    retyped = good.with_columns(pl.col("strike").cast(pl.Utf8))
    lake.write_partition(tick_home, "kite", "instruments", {"date": "2025-03-18"}, retyped, {})
    with dg.instance_for_test() as instance:
        empty = _check_evaluations(
            _run_checks(instance, DAY, "instruments_not_empty", "instruments_expected_columns")
        )
        wrong = _check_evaluations(_run_checks(instance, NEXT_DAY, "instruments_expected_columns"))
        typed = _check_evaluations(
            _run_checks(instance, "2025-03-18", "instruments_expected_columns")
        )
    assert not empty["instruments_not_empty"].passed
    assert "no rows" in empty["instruments_not_empty"].description
    assert empty["instruments_expected_columns"].passed
    assert not wrong["instruments_expected_columns"].passed
    assert "missing columns ['lot_size']" in wrong["instruments_expected_columns"].description
    assert not typed["instruments_expected_columns"].passed
    assert "'strike': 'large_string (expected double)'" in (
        typed["instruments_expected_columns"].description
    )


def test_tampered_lake_file_fails_the_integrity_check(tick_home):
    with dg.instance_for_test() as instance:
        _materialize(partition_key=DAY, instance=instance)
        data_file = tick_home / f"lake/kite/instruments/date={DAY}/part-0.parquet"
        raw = bytearray(data_file.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        data_file.write_bytes(bytes(raw))
        result = _run_checks(instance, DAY, "instruments_lake_integrity")
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "part-0.parquet: sha256" in evaluation.description


def test_live_mode_refuses_a_past_day(tick_home):
    loaded = defs()
    live = KiteResource(mode="live", app_names=["indices"])
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [kite_assets.instruments],
            resources={**loaded.resources, "kite": live},
            partition_key=DAY,
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = result.failure_data_for_node("kite__instruments")
    assert "publishes only the current day's dump" in str(failure.error.message) + str(
        failure.user_failure_data.description if failure.user_failure_data else ""
    )
    assert not (tick_home / "lake").exists()


def test_sim_kite_client_is_unmodified_kiteconnect_against_the_simulator():
    kite = KiteResource(app_names=["indices", "nifty500"])
    client = kite.client("nifty500", day=date(2025, 3, 13))
    assert client.root == kite.endpoints(date(2025, 3, 13))["kite_rest"]
    assert kite.endpoints(date(2025, 3, 13)) == kite.endpoints(date(2025, 3, 13))  # one sim/day
    assert kite.endpoints(date(2025, 3, 13)) != kite.endpoints(date(2025, 3, 17))
    rows = client.instruments()  # kiteconnect's own request + CSV parse
    assert len(rows) > 500 and {"M&M", "BAJAJ-AUTO"} <= {r["tradingsymbol"] for r in rows}
    creds = kite.credentials("nifty500")
    assert creds.api_secret.get_secret_value() not in repr(creds)
    with pytest.raises(SettingsError, match="Kite app 'other' is not configured"):
        kite.credentials("other")


def test_live_credentials_come_from_env_vars_at_launch(monkeypatch):
    values = {
        "KITE_INDICES_API_KEY": "live-key-1",
        "KITE_INDICES_API_SECRET": "live-secret-1",
        "KITE_INDICES_USER_ID": "AB1234",
        "KITE_INDICES_PASSWORD": "pw-1",
        "KITE_INDICES_TOTP_SEED": "JBSWY3DPEHPK3PXP",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    live = KiteResource(
        mode="live",
        app_names=["indices"],
        apps={
            "indices": {
                "api_key": dg.EnvVar("KITE_INDICES_API_KEY"),
                "api_secret": dg.EnvVar("KITE_INDICES_API_SECRET"),
                "user_id": dg.EnvVar("KITE_INDICES_USER_ID"),
                "password": dg.EnvVar("KITE_INDICES_PASSWORD"),
                "totp_seed": dg.EnvVar("KITE_INDICES_TOTP_SEED"),
            }
        },
    )
    seen = {}

    @dg.asset
    def probe(kite: KiteResource) -> None:
        creds = kite.credentials("indices")
        seen["api_key"] = creds.api_key
        seen["secret"] = creds.api_secret.get_secret_value()
        seen["repr"] = repr(creds)
        seen["root"] = kite.client("indices").root

    assert dg.materialize([probe], resources={"kite": live}).success
    assert seen["api_key"] == "live-key-1" and seen["secret"] == "live-secret-1"
    assert "live-secret-1" not in seen["repr"] and "pw-1" not in seen["repr"]
    assert seen["root"] == "https://api.kite.trade"


def test_embedded_and_postgres_instance_configs_are_valid(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.run_monitoring_enabled
        config = instance.get_concurrency_config()
        assert config.pool_config.pool_granularity.value == "run"
        assert config.pool_config.default_pool_limit == 6
        assert not instance.telemetry_enabled
    assert (home / "history").is_dir()  # sqlite files under DAGSTER_HOME

    from dagster._core.instance.config import dagster_instance_config

    pg_config, _ = dagster_instance_config(str(REPO_ROOT / "deploy" / "postgres"))
    assert pg_config["storage"]["postgres"]["postgres_url"] == {"env": "TICK_ASSETS_DAGSTER_PG_URL"}
    assert pg_config["run_monitoring"]["enabled"] is True
    assert pg_config["concurrency"] == json.loads(json.dumps(pg_config["concurrency"]))
    assert pg_config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 6}
