"""Symbol lists for historical candles: ``[candles.symbol_lists]`` names CSV files.

A list is a CSV with a ``symbol`` column (other columns are notes); blank cells are skipped and
a symbol listed twice (in one list or across lists) is fetched once. Paths are relative to the
config file. A missing file or column raises SettingsError naming the list and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from tick_assets.config import Settings, SettingsError


def list_path(settings: Settings, name: str) -> Path:
    lists = settings.candles.symbol_lists
    if name not in lists:
        known = ", ".join(lists) or "none"
        raise SettingsError(
            f"symbol list {name!r} is not under [candles.symbol_lists] in "
            f"{settings.config_path.name} (known: {known}); add it there or fix the name"
        )
    path = Path(lists[name]).expanduser()
    return path if path.is_absolute() else settings.config_path.parent / path


def read_list(path: Path, name: str = "") -> list[str]:
    """The symbols of one CSV list, in file order, without blanks or repeats."""
    label = f"symbol list {name!r} ({path})" if name else str(path)
    if not path.is_file():
        raise SettingsError(f"{label} does not exist; create it (CSV with a 'symbol' column)")
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise SettingsError(f"{label} is not a readable CSV ({exc})") from None
    if "symbol" not in frame.columns:
        raise SettingsError(f"{label} has no 'symbol' column (columns: {frame.columns}); add one")
    values = [s.strip() for s in frame["symbol"].to_list() if s and s.strip()]
    return list(dict.fromkeys(values))


def symbols_for(settings: Settings, names: Sequence[str]) -> list[str]:
    """The union of the named lists, first occurrence first."""
    out: list[str] = []
    for name in names:
        out.extend(read_list(list_path(settings, name), name))
    return list(dict.fromkeys(out))
