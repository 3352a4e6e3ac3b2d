"""The gap ledger: every stretch of time a shard was not receiving, with its cause.

A gap opens when a connection is lost (dropped, closed, or cut by the watchdog after a silent
stall), when a connect fails, or when a new run starts after an earlier run of the same day; it
starts at the receipt time of the last message before it. It closes at the receipt time of the
first message on the next connection. Each closed gap is one JSON line, fsynced. A gap still
open at a clean stop is closed at the stop time and marked `open_at_stop`; one still open at a
crash is covered by the `restart` gap the next run opens from the last message of the crashed
run.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

GapKind = Literal["disconnect", "stall", "connect_failed", "token_rejected", "restart"]


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


@dataclass
class Gap:
    shard: str
    kind: GapKind
    cause: str
    start_ns: int
    detected_ns: int
    connection_before: str | None = None
    connection_after: str | None = None
    end_ns: int | None = None
    reconnect_attempts: int = 0
    open_at_stop: bool = False

    def to_json(self) -> dict:
        out = asdict(self)
        out["start"] = iso(self.start_ns)
        out["end"] = iso(self.end_ns)
        out["detected_at"] = iso(self.detected_ns)
        out["duration_s"] = None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e9
        return out


class GapLedger:
    """The open gap of one shard and the JSON-lines file of closed ones (writer thread only)."""

    def __init__(self, path: Path | None, shard: str) -> None:
        self.path = path
        self.shard = shard
        self.current: Gap | None = None
        self.closed: list[Gap] = []

    def open(
        self,
        kind: GapKind,
        cause: str,
        start_ns: int,
        detected_ns: int,
        connection_before: str | None = None,
    ) -> Gap:
        """Open a gap, or note a further failure on the one already open."""
        gap = self.current
        if gap is None:
            gap = self.current = Gap(self.shard, kind, cause, start_ns, detected_ns,
                                     connection_before)  # fmt: skip
        elif kind == "token_rejected":  # the outage is now terminal: say so
            gap.kind, gap.cause = kind, f"{gap.cause}; then {cause}"
        return gap

    def attempt(self) -> None:
        if self.current is not None:
            self.current.reconnect_attempts += 1

    def close(self, end_ns: int, connection_after: str | None, at_stop: bool = False) -> Gap | None:
        gap, self.current = self.current, None
        if gap is None:
            return None
        gap.end_ns = max(end_ns, gap.start_ns)
        gap.connection_after = connection_after
        gap.open_at_stop = at_stop
        self.closed.append(gap)
        if self.path is not None:
            line = json.dumps(gap.to_json()) + "\n"
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        return gap


def read_gaps(path: Path) -> list[dict]:
    """The closed gaps of a ledger file (a torn last line, from a crash mid-write, is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number < len(lines):
                raise ValueError(f"gap ledger {path} line {number} is not JSON: {exc}") from None
            log.warning("gap ledger %s: skipped a torn last line (crash mid-append)", path)
    return out
