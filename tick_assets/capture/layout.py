"""Where one shard's capture of one day lives under TICK_ASSETS_HOME.

    staging/<venue>/<day>/<shard>/journal-r0001-p0001.arrows   decoded ticks (Arrow IPC stream)
                                  gaps.jsonl                    the gap ledger
                                  latency.jsonl                 percentiles per minute
                                  counters-r0001.json           per-run counters (each flush)
                                  live.arrow                    latest tick per instrument
                                  spill-r0001.bin               queue overflow (while it lasts)
    raw/<venue>/<day>/<shard>/raw-r0001-p0001.zst               every message, zstd

Each process run of a shard gets the next run number, so a rerun of the same day appends new
files and never touches an old one; `p` counts segments within a run. A lock file keeps two
processes from capturing the same shard and day at once.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_RUN = re.compile(r"-r(\d{4,})(?:-p\d+)?\.")


def check_name(kind: str, value: str) -> str:
    """Names become directory names: lower-case letters, digits, '_', '.', '-' only."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise ValueError(
            f"{kind} name {value!r} is not allowed: use 1-64 lower-case letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return value


class ShardBusy(RuntimeError):
    """Another process is capturing this shard and day."""


@dataclass(frozen=True)
class ShardPaths:
    home: Path
    venue: str
    day: date
    shard: str

    def __post_init__(self) -> None:
        check_name("venue", self.venue)
        check_name("shard", self.shard)

    @property
    def staging(self) -> Path:
        return self.home / "staging" / self.venue / self.day.isoformat() / self.shard

    @property
    def raw(self) -> Path:
        return self.home / "raw" / self.venue / self.day.isoformat() / self.shard

    @property
    def gaps(self) -> Path:
        return self.staging / "gaps.jsonl"

    @property
    def latency(self) -> Path:
        return self.staging / "latency.jsonl"

    @property
    def live(self) -> Path:
        return self.staging / "live.arrow"

    def journal_segment(self, run: int, part: int) -> Path:
        return self.staging / f"journal-r{run:04d}-p{part:04d}.arrows"

    def raw_segment(self, run: int, part: int) -> Path:
        return self.raw / f"raw-r{run:04d}-p{part:04d}.zst"

    def counters(self, run: int) -> Path:
        return self.staging / f"counters-r{run:04d}.json"

    def spill(self, run: int) -> Path:
        return self.staging / f"spill-r{run:04d}.bin"

    def runs(self) -> list[int]:
        """Run numbers that left any file, oldest first."""
        found: set[int] = set()
        for directory in (self.staging, self.raw):
            if directory.is_dir():
                for path in directory.iterdir():
                    if m := _RUN.search(path.name):
                        found.add(int(m.group(1)))
        return sorted(found)

    def journal_segments(self, run: int | None = None) -> list[Path]:
        pattern = "journal-r*.arrows" if run is None else f"journal-r{run:04d}-p*.arrows"
        return sorted(self.staging.glob(pattern))

    def raw_segments(self, run: int | None = None) -> list[Path]:
        pattern = "raw-r*.zst" if run is None else f"raw-r{run:04d}-p*.zst"
        return sorted(self.raw.glob(pattern))

    def lock(self) -> int:
        """Take the shard/day lock (held until the returned fd is closed or the process dies)."""
        self.staging.mkdir(parents=True, exist_ok=True)
        self.raw.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.staging / "capture.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ShardBusy(
                f"shard {self.shard!r} of {self.venue} {self.day} is already being captured by "
                "another process; stop that one first"
            ) from None
        return fd
