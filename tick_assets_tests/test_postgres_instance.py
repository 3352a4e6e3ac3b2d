"""A materialization on a Dagster instance backed by PostgreSQL (deploy/postgres/dagster.yaml).

Uses the PostgreSQL on 127.0.0.1:5432 (URL from TICK_ASSETS_TEST_PG_URL, default the trust-auth
postgres role), in a fresh database created for this run and dropped afterwards. Without a
reachable server the test skips and says why, unless TICK_ASSETS_REQUIRE_POSTGRES=1 or CI=true,
where a skip would hide a broken deployment: then it fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg2

from tick_assets.definitions import defs
from tick_assets.store import lake

REPO_ROOT = Path(__file__).resolve().parents[1]
DAY = "2025-03-13"

def test_materialization_on_postgres_backed_instance(
    postgres_url, tmp_path, monkeypatch, tick_home
):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "postgres" / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; dagster-postgres ships psycopg2.
    dagster_url = postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    monkeypatch.setenv("TICK_ASSETS_DAGSTER_PG_URL", dagster_url)

    loaded = defs()
    assets_and_checks = [
        *[a for a in loaded.assets if isinstance(a, dg.AssetsDefinition)],
        *loaded.asset_checks,
    ]
    key = dg.AssetKey(["kite", "instruments"])
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = dg.materialize(
            assets_and_checks,
            resources=loaded.resources,
            partition_key=DAY,
            instance=instance,
            selection=dg.AssetSelection.assets(key),
        )
        assert result.success
        event = instance.get_latest_materialization_event(key)
        assert event is not None
        assert event.asset_materialization.partition == DAY
        rows = event.asset_materialization.metadata["dagster/row_count"].value

    manifest = lake.verify_partition(tick_home, "kite", "instruments", {"date": DAY})
    assert rows == manifest.rows > 0

    # The run and its events really are in PostgreSQL, not in a local SQLite file.
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone()[0] == 1
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (result.run_id, "ASSET_MATERIALIZATION"),
        )
        assert cur.fetchone()[0] == 1
    assert not (dagster_home / "history").exists()
