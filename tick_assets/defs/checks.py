"""Partitioned asset checks: evaluate every partition of the run, report all problems at once.

A check run can cover many partitions (a backfill range); each is read back from the lake and
judged on its own, so one result names every failing partition instead of stopping at the
first. A partition missing from the lake is a problem, not a crash.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from tick_assets.store import lake

#: `evaluate(partition_key)` -> (the problem or None, metadata to show either way)
Evaluate = Callable[[str], tuple[str | None, dict[str, Any]]]


def check_partitions(
    context: dg.AssetCheckExecutionContext,
    evaluate: Evaluate,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    problems: dict[str, str] = {}
    details: dict[str, Any] = {}
    for key in context.partition_keys:
        try:
            problem, info = evaluate(key)
        except lake.LakeError as exc:
            problem, info = str(exc), {}
        details.update(info)
        if problem:
            problems[key] = problem
    name = context.check_specs[0].name if context.check_specs else "check"
    verdict = "FAILED: " + "; ".join(problems.values()) if problems else "passed"
    (context.log.warning if problems else context.log.info)(
        f"{name} on {', '.join(context.partition_keys)}: {verdict}"
    )
    metadata: dict[str, Any] = {"partitions_checked": len(context.partition_keys), **details}
    if problems:
        metadata["problems"] = dg.MetadataValue.json(problems)
    return dg.AssetCheckResult(
        passed=not problems,
        severity=severity,
        metadata=metadata,
        description="; ".join(f"{key}: {p}" for key, p in problems.items()) or None,
    )
