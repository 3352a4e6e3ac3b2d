"""Shared test fixtures: every test runs in sim mode against a temporary data root.

The repo's own ./data and a developer's .env must never leak into a test: TICK_ASSETS_MODE is
forced to sim and TICK_ASSETS_HOME points at a per-test temporary directory.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the interpreter running pytest: .venv/bin


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Sim mode, a fresh TICK_ASSETS_HOME, the repo's example config, no inherited DAGSTER_HOME."""
    home = tmp_path_factory.mktemp("tick_home")
    monkeypatch.setenv("TICK_ASSETS_MODE", "sim")
    monkeypatch.setenv("TICK_ASSETS_HOME", str(home))
    monkeypatch.setenv("TICK_ASSETS_CONFIG", str(REPO_ROOT / "tick_assets.toml"))
    monkeypatch.delenv("TICK_ASSETS_HOLIDAYS_FILE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return home


@pytest.fixture
def tick_home(_isolated_settings) -> Path:
    """The TICK_ASSETS_HOME of this test (a temporary directory)."""
    return _isolated_settings


@pytest.fixture
def venv_bin() -> Path:
    """bin/ of the project's virtual environment (dagster, tick-assets, python)."""
    if not (VENV_BIN / "dagster").exists():
        pytest.fail(f"{VENV_BIN}/dagster not found; run `make setup` first")
    return VENV_BIN


# ---------------------------------------------------------------- PostgreSQL

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_required() -> bool:
    return os.environ.get("TICK_ASSETS_REQUIRE_POSTGRES") == "1" or (
        os.environ.get("CI", "").lower() == "true"
    )


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def postgres_url():
    """URL of a fresh, empty database; dropped after the test."""
    admin_url = os.environ.get("TICK_ASSETS_TEST_PG_URL", DEFAULT_URL)
    try:
        admin = psycopg2.connect(admin_url, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = (
            f"PostgreSQL not reachable at {urlsplit(admin_url).hostname}:"
            f"{urlsplit(admin_url).port or 5432} ({str(exc).strip().splitlines()[0]}); "
            "set TICK_ASSETS_TEST_PG_URL or start PostgreSQL"
        )
        if _postgres_required():
            pytest.fail(f"{reason} — required here (TICK_ASSETS_REQUIRE_POSTGRES=1 or CI=true)")
        pytest.skip(reason)
    admin.autocommit = True
    database = f"tick_assets_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        yield _with_database(admin_url, database)
    finally:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
        admin.close()
