"""The Kite morning in Dagster: kite/access_token, kite/instrument_lookup, their checks,
schedules and partitions, in sim mode (in-process, and through the `dagster` CLI)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context

from tick_assets.calendars import IST
from tick_assets.config import KiteAppSecrets
from tick_assets.definitions import defs
from tick_assets.defs import partitions
from tick_assets.defs.kite import assets as kite_assets
from tick_assets.defs.kite import schedules
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.sim.accounts import SIM_APPS
from tick_assets.sources.kite.login import CHROMEDRIVER
from tick_assets.store import lake
from tick_assets.store.tokens import TokenStore

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCESS_TOKEN = dg.AssetKey(["kite", "access_token"])
INSTRUMENTS = dg.AssetKey(["kite", "instruments"])
LOOKUP = dg.AssetKey(["kite", "instrument_lookup"])
DAY = "2025-03-13"
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})

needs_browser = pytest.mark.skipif(
    not Path(CHROMEDRIVER).exists() and not os.environ.get("CI"),
    reason=f"{CHROMEDRIVER} is not installed; under CI this test runs and fails instead",
)


def write_config(tmp_path: Path, monkeypatch, *, method: str | None = None, universes=None) -> Path:
    """A copy of the example config (absolute universe paths), optionally changed."""
    text = (REPO_ROOT / "tick_assets.toml").read_text()
    text = text.replace('"config/universes/', f'"{REPO_ROOT}/config/universes/')
    if method:
        text = text.replace('login_method = "selenium"', f'login_method = "{method}"')
    for name, path in (universes or {}).items():
        start = text.index(f"\n{name} = ", text.index("[universes]"))
        end = text.index("\n", start + 1)
        text = text[:start] + f'\n{name} = "{path}"' + text[end:]
    path = tmp_path / "tick_assets.toml"
    path.write_text(text)
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(path))
    return path


def materialize(*keys: dg.AssetKey, partition_key=None, tags=None, raise_on_error=True):
    loaded = defs()
    everything = [
        *[a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)],
        *loaded.asset_checks,
    ]
    with dg.instance_for_test() as instance:
        return dg.materialize(
            everything,
            resources=loaded.resources,
            partition_key=partition_key,
            tags=tags,
            instance=instance,
            raise_on_error=raise_on_error,
            selection=dg.AssetSelection.assets(*keys),
        )


def checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def all_log_text(result) -> str:
    return "\n".join(str(e) for e in result.all_events)


# ---------------------------------------------------------------- definitions and partitions


def test_definitions_hold_the_morning_assets_checks_and_schedules():
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    assert {ACCESS_TOKEN, INSTRUMENTS, LOOKUP} <= set(graph.get_all_asset_keys())
    assert graph.get(ACCESS_TOKEN).partitions_def.get_partition_keys() == ["indices", "nifty500"]
    assert graph.get(LOOKUP).partitions_def == partitions.build_nse_trading_days()
    assert graph.get(LOOKUP).parent_keys == {INSTRUMENTS}
    by_asset: dict[dg.AssetKey, set[str]] = {}
    for key in graph.asset_check_keys:
        by_asset.setdefault(key.asset_key, set()).add(key.name)
    assert by_asset[ACCESS_TOKEN] == {"access_token_accepted"}
    assert by_asset[LOOKUP] == {
        "instrument_lookup_all_resolved",
        "instrument_lookup_unique_tables",
        "instrument_lookup_shards_within_limits",
    }
    reference_job = loaded.resolve_job_def("kite_reference_data").asset_layer.asset_graph
    assert reference_job.get_all_asset_keys() == {INSTRUMENTS, LOOKUP}
    assert {k.name for k in reference_job.asset_check_keys} >= by_asset[LOOKUP]  # checks run too
    tokens = loaded.get_schedule_def("kite_access_token_0745_ist")
    reference = loaded.get_schedule_def("kite_reference_data_0830_ist")
    assert (tokens.cron_schedule, tokens.execution_timezone) == ("45 7 * * 1-5", "Asia/Kolkata")
    assert (reference.cron_schedule, reference.execution_timezone) == (
        "30 8 * * 1-5",
        "Asia/Kolkata",
    )


def _last_key(now: str) -> str:
    with partition_loading_context(effective_dt=datetime.fromisoformat(now)):
        return partitions.build_nse_trading_days().get_last_partition_key()


def test_todays_trading_day_partition_exists_on_the_day():
    assert _last_key("2025-03-13T00:05:00+05:30") == "2025-03-13"
    assert _last_key("2025-03-13T08:30:00+05:30") == "2025-03-13"
    assert _last_key("2025-03-17T09:00:00+05:30") == "2025-03-17"
    # dagster#33551: on a holiday/weekend the NEXT trading day is listed early (Holi, Fri
    # 2025-03-14, shows Monday's key); the schedules and assets never rely on "the last key"
    assert _last_key("2025-03-15T10:00:00+05:30") == "2025-03-17"
    now = datetime(2025, 3, 15, 10, 0, tzinfo=IST)
    assert partitions.today_ist(now) == date(2025, 3, 15)
    assert partitions.future_days(["2025-03-13", "2025-03-17"], now) == ["2025-03-17"]


def test_a_future_day_is_refused(monkeypatch, tick_home):
    saturday = datetime(2025, 3, 15, 10, 0, tzinfo=IST)
    monkeypatch.setattr(
        kite_assets, "future_days", lambda days: partitions.future_days(days, saturday)
    )
    result = materialize(INSTRUMENTS, partition_key="2025-03-17", raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("kite__instruments")
    assert "that day is still in the future (today is" in failure.user_failure_data.description
    assert not (tick_home / "lake").exists()


# ---------------------------------------------------------------- schedules


def _evaluate(schedule, when: datetime):
    """Call the schedule's function as the daemon would at ``when``: (run requests, skip)."""
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        out = schedule(context)
    items = list(out) if not isinstance(out, (dg.RunRequest, dg.SkipReason)) else [out]
    requests = [i for i in items if isinstance(i, dg.RunRequest)]
    skips = [i.skip_message for i in items if isinstance(i, dg.SkipReason)]
    return requests, (skips[0] if skips else None)


def test_morning_schedules_run_today_on_trading_days_and_skip_holidays():
    trading = datetime(2025, 3, 13, 7, 45, tzinfo=IST)
    requests, skip = _evaluate(schedules.kite_access_token_schedule, trading)
    assert skip is None
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("indices", "2025-03-13:indices"),
        ("nifty500", "2025-03-13:nifty500"),
    ]
    holi = datetime(2025, 3, 14, 7, 45, tzinfo=IST)  # a Friday, NSE holiday
    requests, skip = _evaluate(schedules.kite_access_token_schedule, holi)
    assert requests == [] and "2025-03-14 is not an NSE trading day" in skip

    requests, skip = _evaluate(
        schedules.kite_reference_data_schedule, datetime(2025, 3, 13, 8, 30, tzinfo=IST)
    )
    assert skip is None and [(r.partition_key, r.run_key) for r in requests] == [
        ("2025-03-13", "2025-03-13")
    ]
    requests, skip = _evaluate(
        schedules.kite_reference_data_schedule, datetime(2025, 3, 14, 8, 30, tzinfo=IST)
    )
    assert requests == [] and "not an NSE trading day" in skip
    requests, skip = _evaluate(
        schedules.kite_reference_data_schedule, datetime(2031, 3, 14, 8, 30, tzinfo=IST)
    )
    assert requests == [] and "no NSE holiday data for 2031-03-14" in skip

    archive = schedules.kite_archive_schedule
    assert (archive.cron_schedule, archive.execution_timezone) == ("45 15 * * 1-5", "Asia/Kolkata")
    requests, skip = _evaluate(archive, datetime(2025, 3, 13, 15, 45, tzinfo=IST))
    assert skip is None and [(r.partition_key, r.run_key) for r in requests] == [
        ("2025-03-13", "2025-03-13")
    ]
    requests, skip = _evaluate(archive, datetime(2025, 3, 14, 15, 45, tzinfo=IST))
    assert requests == [] and "not an NSE trading day" in skip


# ---------------------------------------------------------------- kite/access_token


def _token_run(app: str, raise_on_error=True):
    return materialize(ACCESS_TOKEN, partition_key=app, raise_on_error=raise_on_error)


def _assert_token_materialized(result, app: str, method: str, tick_home: Path) -> None:
    assert result.success
    (event,) = result.asset_materializations_for_node("kite__access_token")
    assert set(event.metadata) == {"app", "login_time", "expires_at", "method"}
    assert event.metadata["app"].value == app and event.metadata["method"].value == method
    assert event.metadata["expires_at"].value.endswith("06:00 IST")
    token = TokenStore(tick_home, "sim").get_valid_token(app)
    assert token not in all_log_text(result)  # never logged, never in metadata
    assert checks(result)["access_token_accepted"].passed
    kite = KiteResource(app_names=["indices", "nifty500"], home=str(tick_home))
    assert kite.access_token(app) == token
    assert (
        kite.kite_connect(app, day=date(2025, 3, 13)).profile()["user_id"] == SIM_APPS[app].user_id
    )


def test_access_token_over_http(tmp_path, monkeypatch, tick_home):
    write_config(tmp_path, monkeypatch, method="http")
    _assert_token_materialized(_token_run("indices"), "indices", "http", tick_home)


@needs_browser
def test_access_token_with_real_chromium(tick_home):
    _assert_token_materialized(_token_run("nifty500"), "nifty500", "selenium", tick_home)


def test_failed_login_names_app_and_step_and_stores_nothing(tmp_path, monkeypatch, tick_home):
    write_config(tmp_path, monkeypatch, method="http")
    real = KiteResource.credentials

    def wrong_password(self, app):
        good = real(self, app)
        return KiteAppSecrets(**{**good.model_dump(), "password": "not-the-password"})

    monkeypatch.setattr(KiteResource, "credentials", wrong_password)
    result = _token_run("nifty500", raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("kite__access_token")
    text = failure.user_failure_data.description
    assert "Kite login for app 'nifty500' failed at step 'password (api/login)'" in text
    assert failure.user_failure_data.metadata["step"].value == "password (api/login)"
    everything = all_log_text(result)
    for secret in (
        "not-the-password",
        SIM_APPS["nifty500"].api_secret,
        SIM_APPS["nifty500"].totp_seed,
    ):
        assert secret not in everything
    assert TokenStore(tick_home, "sim").load("nifty500") is None


# ---------------------------------------------------------------- kite/instrument_lookup


def _lookup_frame(tick_home: Path, day: str) -> pl.DataFrame:
    return pl.from_arrow(lake.read_partition(tick_home, "kite", "instrument_lookup", {"date": day}))


def test_instruments_and_lookup_for_a_day(tick_home):
    result = materialize(INSTRUMENTS, LOOKUP, partition_key=DAY)
    assert result.success
    manifest = lake.verify_partition(tick_home, "kite", "instrument_lookup", {"date": DAY})
    assert (tick_home / f"lake/kite/instrument_lookup/date={DAY}/_manifest.json").is_file()
    frame = _lookup_frame(tick_home, DAY)
    assert frame.height == manifest.rows == 504 and frame["resolved"].all()
    (event,) = result.asset_materializations_for_node("kite__instrument_lookup")
    md = event.metadata
    assert md["unresolved"].value == 0 and md["resolved"].value == 504
    assert md["shards"].value == {"indices-0": 54, "nifty500-0": 450}
    assert md["current_futures"].value["NIFTYFUT"].startswith("NIFTY25MARFUT (expiry 2025-03-27")
    assert set(md["universe_files"].value) == {"indices", "nifty500"}
    assert md["sha256"].value == manifest.files[0].sha256
    evaluations = checks(result)
    lookup_checks = {n for n in evaluations if n.startswith("instrument_lookup")}
    assert len(lookup_checks) == 3
    assert all(e.passed for e in evaluations.values())


def test_lookup_backfill_range_carries_shards_and_rolls_the_future(tick_home):
    tags = {
        "dagster/asset_partition_range_start": "2025-03-27",
        "dagster/asset_partition_range_end": "2025-03-28",
    }
    result = materialize(INSTRUMENTS, LOOKUP, tags=tags)
    assert result.success
    events = {
        e.partition: e for e in result.asset_materializations_for_node("kite__instrument_lookup")
    }
    assert set(events) == {"2025-03-27", "2025-03-28"}
    assert events["2025-03-28"].metadata["previous_lookup"].value == "2025-03-27"
    assert events["2025-03-28"].metadata["moved_since_previous"].value == 0
    futures = {
        day: _lookup_frame(tick_home, day).filter(pl.col("table_name") == "NIFTYFUT")[
            "tradingsymbol"
        ][0]
        for day in events
    }
    assert futures == {"2025-03-27": "NIFTY25MARFUT", "2025-03-28": "NIFTY25APRFUT"}


def test_unresolved_and_duplicate_symbols_fail_their_checks(tmp_path, monkeypatch, tick_home):
    indices = tmp_path / "indices.csv"
    indices.write_text("symbol,type\nNIFTY,FUT\nRELIANCE,\nOLDNAME,\n")
    others = tmp_path / "others.csv"
    others.write_text("symbol\nINFY\nRELIANCE\n")
    write_config(tmp_path, monkeypatch, universes={"indices": indices, "nifty500": others})
    result = materialize(INSTRUMENTS, LOOKUP, partition_key=DAY, raise_on_error=False)
    assert result.asset_materializations_for_node("kite__instrument_lookup")  # still written
    evaluations = checks(result)
    resolved = evaluations["instrument_lookup_all_resolved"]
    assert not resolved.passed and resolved.severity == dg.AssetCheckSeverity.WARN
    assert "1 universe symbol(s) unresolved" in resolved.description
    assert "'OLDNAME' is not in the NSE instruments of 2025-03-13" in resolved.description
    listed = resolved.metadata[f"unresolved {DAY}"].value
    assert [r["symbol"] for r in listed] == ["OLDNAME"] and listed[0]["source"].endswith(":4")
    unique = evaluations["instrument_lookup_unique_tables"]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert "RELIANCE <- indices: RELIANCE" in unique.description
    assert evaluations["instrument_lookup_shards_within_limits"].passed


def test_lookup_needs_the_days_instruments(tick_home):
    result = materialize(LOOKUP, partition_key=DAY, raise_on_error=False)
    assert not result.success
    text = result.failure_data_for_node("kite__instrument_lookup").user_failure_data.description
    assert f"materialize kite/instruments for {DAY} first" in text


def test_a_broken_universe_file_fails_with_its_name(tmp_path, monkeypatch, tick_home):
    bad = tmp_path / "bad.csv"
    bad.write_text("ticker\nINFY\n")
    write_config(tmp_path, monkeypatch, universes={"nifty500": bad})
    result = materialize(INSTRUMENTS, LOOKUP, partition_key=DAY, raise_on_error=False)
    text = result.failure_data_for_node("kite__instrument_lookup").user_failure_data.description
    assert "universe of Kite app 'nifty500'" in text and "bad.csv" in text
    assert "no 'symbol' column" in text


# ---------------------------------------------------------------- the dagster CLI


def _cli(venv_bin: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TICK_ASSETS_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return subprocess.run(
        [str(venv_bin / "dagster"), "asset", "materialize", "-m", "tick_assets.definitions",
         "--config-json", IN_PROCESS, *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_cli_materializes_the_chain_for_a_day_and_a_range(venv_bin, tmp_path):
    home = tmp_path / "home"
    proc = _cli(venv_bin, tmp_path, "--select", "kite/instruments,kite/instrument_lookup",
                "--partition", DAY)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for asset in ("instruments", "instrument_lookup"):
        lake.verify_partition(home, "kite", asset, {"date": DAY})
    assert "504 of 504 symbols resolved" in proc.stderr

    proc = _cli(venv_bin, tmp_path, "--select", "kite/instruments,kite/instrument_lookup",
                "--partition-range", "2025-03-13...2025-03-18")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    days = ["2025-03-13", "2025-03-17", "2025-03-18"]  # Holi and the weekend are no partitions
    for asset in ("instruments", "instrument_lookup"):
        assert [p["date"] for p in lake.list_partitions(home, "kite", asset)] == days
    assert proc.stderr.count("RUN_SUCCESS") == 1  # one run for the whole range


def test_cli_materializes_an_access_token(venv_bin, tmp_path):
    proc = _cli(venv_bin, tmp_path, "--select", "kite/access_token", "--partition", "indices")
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = TokenStore(tmp_path / "home", "sim")
    token = store.get_valid_token("indices")
    assert token not in proc.stdout + proc.stderr
    assert "Asset check 'access_token_accepted' on 'kite/access_token' passed" in proc.stderr
