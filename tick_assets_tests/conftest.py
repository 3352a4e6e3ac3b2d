"""Shared test fixtures: every test runs in sim mode against a temporary data root.

The repo's own ./data and a developer's .env must never leak into a test: TICK_ASSETS_MODE is
forced to sim and TICK_ASSETS_HOME points at a per-test temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
