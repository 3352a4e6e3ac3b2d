"""The tick_assets code location: everything under tick_assets/defs/, autoloaded.

Loaded by `dagster dev` (workspace.yaml or [tool.dagster] in pyproject.toml), by
`dagster asset materialize -m tick_assets.definitions` and by the tests (`defs()`).
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
