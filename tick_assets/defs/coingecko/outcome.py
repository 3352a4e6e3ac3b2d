"""Ending a run that covered several partitions, some of which may have failed.

Every partition is attempted; one that fails writes nothing (the lake write comes last) and
does not stop the others. If all succeed, each gets its metadata and the run returns one
MaterializeResult. If some fail, the good ones are still recorded as materialized (one
AssetMaterialization each) and the step fails naming the bad ones, so Dagster shows exactly
which partitions failed and a re-run (or retry) redoes only what is missing.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg


def finish(
    context: dg.AssetExecutionContext,
    done: Mapping[str, Mapping[str, Any]],
    failed: Mapping[str, str],
    what: str,
) -> dg.MaterializeResult:
    """Record ``done`` (partition -> metadata); raise dg.Failure if anything ``failed``."""
    if not failed:
        for key, metadata in done.items():
            context.add_asset_metadata(dict(metadata), partition_key=key)
        return dg.MaterializeResult()
    for key, metadata in done.items():
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key, partition=key, metadata=dict(metadata)
            )
        )
    lines = "\n".join(f"- {key}: {why}" for key, why in failed.items())
    raise dg.Failure(
        description=(
            f"{what}: {len(failed)} of {len(failed) + len(done)} partition(s) failed and wrote "
            f"nothing (the others were written):\n{lines}"
        ),
        metadata={"failed": dg.MetadataValue.json(dict(failed)), "written": sorted(done)},
    )
