"""The capture in Dagster: kite/ticks materialized by a capture run against the simulator, the
sensor's decisions, reruns that append, and a terminated run that closes its journals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tick_assets.calendars import IST
from tick_assets.config import load_settings
from tick_assets.definitions import defs
from tick_assets.defs.kite import capture
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store import lake
from tick_assets.store.journal import read_segments

DAY = "2026-11-20"  # a Friday, a trading day
TICKS = dg.AssetKey(["kite", "ticks"])
MORNING = [dg.AssetKey(["kite", "instruments"]), dg.AssetKey(["kite", "instrument_lookup"])]


def _assets(loaded: dg.Definitions) -> list:
    return [a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)]


def materialize(keys, partition_key, run_config=None, raise_on_error=True):
    loaded = defs()
    with dg.instance_for_test() as instance:
        return dg.materialize(
            _assets(loaded),
            resources=loaded.resources,
            partition_key=partition_key,
            instance=instance,
            run_config=run_config or {},
            raise_on_error=raise_on_error,
            selection=dg.AssetSelection.assets(*keys),
        )


def capture_config(**config) -> dict:
    return {"ops": {capture.OP_NAME: {"config": config}}}


@pytest.fixture(scope="module")
def morning_home(tmp_path_factory) -> Path:
    """Access tokens of both sim apps and DAY's instruments and lookup, built once."""
    home = tmp_path_factory.mktemp("morning")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TICK_ASSETS_HOME", str(home))
        mp.setenv("TICK_ASSETS_MODE", "sim")
        for app in ("indices", "nifty500"):
            materialize([dg.AssetKey(["kite", "access_token"])], app)
        materialize(MORNING, DAY)
    return home


@pytest.fixture
def home(morning_home, tick_home) -> Path:
    """This test's TICK_ASSETS_HOME, starting from the built morning."""
    shutil.copytree(morning_home, tick_home, dirs_exist_ok=True)
    return tick_home


def metadata(result) -> dict:
    event = result.get_asset_materialization_events()[0]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_capture_run_materializes_the_days_counts_and_a_rerun_appends(home):
    result = materialize([TICKS], DAY, capture_config(shards=["indices-0"], stop_at="09:40"))
    first = metadata(result)
    shard = first["shards"]["indices-0"]
    assert list(first["shards"]) == ["indices-0"]
    assert shard["state"] == "stopped" and shard["run"] == 1
    assert first["accounting_ok"] is True
    assert first["rows_journaled"] == shard["rows_journaled"] > 54  # more than one per instrument
    assert (
        shard["packets_decoded"]
        == shard["rows_journaled"] + shard["cached_superseded"] + shard["duplicates"]
    )
    assert first["stop_reason"].startswith("deadline 2026-11-20T04:10:00+00:00")
    assert set(first["latency_ms"]["indices-0"]) >= {
        "exchange_to_received_ms",
        "received_to_journaled_ms",
    }
    staging = home / "staging" / "kite" / DAY / "indices-0"
    journal, reports = read_segments(sorted(staging.glob("journal-r0001-*.arrows")), TICK_SCHEMA)
    assert journal.num_rows == shard["rows_journaled"]
    assert all(r.complete and not r.torn for r in reports)
    before = {p.name: p.stat().st_size for p in staging.glob("journal-r0001-*")}

    again = metadata(
        materialize([TICKS], DAY, capture_config(shards=["indices-0"], stop_at="09:30"))
    )
    assert again["shards"]["indices-0"]["run"] == 2
    assert again["day_so_far"] == {
        "indices-0": {
            "1": {"state": "stopped", "rows_journaled": shard["rows_journaled"]},
            "2": {"state": "stopped", "rows_journaled": again["rows_journaled"]},
        }
    }
    assert {p.name: p.stat().st_size for p in staging.glob("journal-r0001-*")} == before
    assert list(staging.glob("journal-r0002-*.arrows"))
    assert (home / "raw" / "kite" / DAY / "indices-0").is_dir()


def test_a_shard_without_a_token_fails_naming_kite_access_token(home):
    (home / "secrets").rename(home / "secrets-gone")
    result = materialize(
        [TICKS], DAY, capture_config(shards=["nifty500-0"], stop_at="09:20"), raise_on_error=False
    )
    assert not result.success
    text = result.failure_data_for_node(capture.OP_NAME).user_failure_data.description
    assert "shard nifty500-0" in text and "kite/access_token" in text


def test_an_unknown_shard_is_refused_with_the_days_shards(home):
    result = materialize(
        [TICKS], DAY, capture_config(shards=["nope-7"], stop_at="09:20"), raise_on_error=False
    )
    text = result.failure_data_for_node(capture.OP_NAME).user_failure_data.description
    assert "['nope-7']" in text and "indices-0" in text and "nifty500-0" in text


def _plan(home: Path, now: datetime):
    settings = load_settings()
    return capture.plan_capture_runs(
        now, KiteResource.from_settings(settings), str(home), settings.capture
    )


def test_the_sensor_launches_one_run_per_shard_in_the_window_and_says_why_not(home):
    at = lambda hhmm: datetime.fromisoformat(f"{DAY}T{hhmm}:00+05:30")  # noqa: E731
    runs, reasons = _plan(home, at("10:00"))
    assert reasons == []
    assert {r.run_key for r in runs} == {f"{DAY}:indices-0", f"{DAY}:nifty500-0"}
    request = next(r for r in runs if r.run_key.endswith("indices-0"))
    assert request.partition_key == DAY
    assert request.run_config == capture_config(shards=["indices-0"])

    assert _plan(home, at("08:59")) == (
        [],
        ["before 09:00 IST ([capture].start_at); capture starts then"],
    )
    runs, reasons = _plan(home, at("15:35"))
    assert runs == [] and "session is over" in reasons[0]
    runs, reasons = _plan(home, datetime(2026, 11, 21, 10, 0, tzinfo=IST))  # Saturday
    assert runs == [] and "not an NSE trading day" in reasons[0]
    runs, reasons = _plan(home, datetime(2026, 11, 19, 10, 0, tzinfo=IST))  # no lookup that day
    assert runs == [] and "kite/instrument_lookup[2026-11-19]" in reasons[0]

    (home / "secrets").rename(home / "secrets-gone")
    runs, reasons = _plan(home, at("10:00"))
    assert runs == [] and any("app indices" in r and "kite/access_token" in r for r in reasons)

    loaded = defs()
    sensor = loaded.resolve_sensor_def("kite_capture_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=loaded.resources)
        outcome = sensor(context)
    now_runs, now_reasons = _plan(home, datetime.now(IST))
    if now_runs:
        assert {r.run_key for r in outcome.run_requests} == {r.run_key for r in now_runs}
    else:
        assert isinstance(outcome, dg.SkipReason) and outcome.skip_message == "; ".join(now_reasons)


def test_terminating_a_capture_run_flushes_and_closes_its_journals(home, venv_bin, tmp_path):
    """SIGTERM is what Dagster's run launcher sends when a run is terminated from the UI."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    command = [
        str(venv_bin / "dagster"), "asset", "materialize", "-m", "tick_assets.definitions",
        "--select", "kite/ticks", "--partition", DAY,
        "--config-json", json.dumps(capture_config(shards=["indices-0"])),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    staging = home / "staging" / "kite" / DAY / "indices-0"
    deadline = time.monotonic() + 120
    while not any(staging.glob("journal-r0001-*.arrows")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    time.sleep(2)  # let it journal a few flushes
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode != 0  # the run ends as failed (interrupted), not as materialized
    counters = json.loads((staging / "counters-r0001.json").read_text())
    assert counters["state"] == "stopped", output[-3000:]
    c = counters["counters"]
    assert c["messages_received"] == c["messages_written"] > 0
    assert c["packets_decoded"] == c["rows_journaled"] + c["cached_superseded"] + c["duplicates"]
    journal, reports = read_segments(sorted(staging.glob("journal-r0001-*.arrows")), TICK_SCHEMA)
    assert all(r.complete and not r.torn for r in reports)
    assert journal.num_rows == c["rows_journaled"] > 0
    assert not (staging / "capture.lock").exists() or _unlocked(staging / "capture.lock")


def _unlocked(path: Path) -> bool:
    import fcntl

    with open(path, "rb+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True


ARCHIVE = dg.AssetKey(["kite", "ticks_archive"])
BARS = dg.AssetKey(["kite", "bars_1m"])


def materialize_with_checks(keys, partition_key):
    loaded = defs()
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [*_assets(loaded), *loaded.asset_checks],
            resources=loaded.resources,
            partition_key=partition_key,
            instance=instance,
            selection=dg.AssetSelection.assets(*keys),
        )


def checks_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_after_the_close_the_day_is_archived_checked_loaded_and_its_staging_deleted(
    home, postgres_url, tmp_path, monkeypatch
):
    config = Path(os.environ["TICK_ASSETS_CONFIG"]).read_text()
    config = config.replace('"config/', f'"{Path(__file__).resolve().parents[1]}/config/')
    config = config.replace("[sink.postgres]\nenabled = false", "[sink.postgres]\nenabled = true")
    (tmp_path / "tick_assets.toml").write_text(config)
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(tmp_path / "tick_assets.toml"))
    monkeypatch.setenv("TICK_ASSETS_POSTGRES_DSN", postgres_url)
    captured = metadata(materialize([TICKS], DAY, capture_config(stop_at="10:30")))

    result = materialize_with_checks([ARCHIVE, BARS], DAY)
    found = checks_of(result)
    assert {name: e.passed for name, e in found.items() if name != "bars_match_vendor_candles"} == {
        "every_instrument_has_ticks": True,
        "accounting_chain_adds_up": True,
        "lake_read_back_matches": True,
    }
    events = {e.asset_key: e for e in result.get_asset_materialization_events()}
    archived = {k: v.value for k, v in events[ARCHIVE].materialization.metadata.items()}
    rows = archived["dagster/row_count"]
    assert archived["accounting"]["rows_journaled"] == captured["rows_journaled"]
    assert archived["accounting"]["received"] == rows + sum(
        archived["accounting"]["dropped"].values()
    )
    assert archived["staging"].startswith("deleted") and archived["notes"] == []
    assert not (home / "staging" / "kite" / DAY).exists()
    assert (home / "raw" / "kite" / DAY / "indices-0").is_dir()
    assert archived["sql_sink"]["rows_counted"] == rows > 0
    lake_ticks = pl.from_arrow(lake.read_partition(home, "kite", "ticks", {"date": DAY}))
    assert lake_ticks.height == rows
    assert lake_ticks["symbol"].is_sorted()  # sorted by symbol first
    bars = pl.from_arrow(lake.read_partition(home, "kite", "bars_1m", {"date": DAY}))
    assert bars["instrument"].n_unique() == lake_ticks["instrument_token"].n_unique() == 504
    assert set(bars["symbol"]) == set(lake_ticks["symbol"])
    assert bars["timestamp"].dt.convert_time_zone("Asia/Kolkata").dt.hour().min() == 9


def test_an_instrument_without_ticks_warns_with_its_name_and_keeps_the_staging(home):
    materialize([TICKS], DAY, capture_config(shards=["indices-0"], stop_at="09:25"))
    found = checks_of(materialize_with_checks([ARCHIVE], DAY))
    silent = found["every_instrument_has_ticks"]
    assert not silent.passed and silent.severity == dg.AssetCheckSeverity.WARN
    listed = silent.metadata["listed"].value
    assert silent.metadata["instruments_without_ticks"].value == 450  # the nifty500-0 shard
    assert {"symbol", "table_name", "instrument_token"} <= set(listed[0])
    assert found["accounting_chain_adds_up"].passed and found["lake_read_back_matches"].passed
    assert (home / "staging" / "kite" / DAY / "indices-0").is_dir()  # kept: a check failed


def test_minute_bars_are_reconciled_with_kite_candles_naming_the_worst_symbols(home):
    materialize([TICKS], DAY, capture_config(shards=["indices-0"], stop_at="10:15"))
    materialize_with_checks([ARCHIVE], DAY)
    materialize([dg.AssetKey(["kite", "candles"])], f"{DAY}|1minute")
    found = checks_of(materialize_with_checks([BARS], DAY))
    check = found["bars_match_vendor_candles"]
    compared = check.metadata[f"symbols {DAY}"].value
    worst = check.metadata[f"worst {DAY}"].value
    assert compared >= 40  # the NIFTY 50 stocks of the indices-0 shard that kite/candles lists
    assert worst and {"symbol", "max_close_drift", "max_volume_drift"} <= set(worst[0])
    lookup = pl.from_arrow(lake.read_partition(home, "kite", "instrument_lookup", {"date": DAY}))
    assert {w["symbol"] for w in worst} <= set(lookup["tradingsymbol"])
