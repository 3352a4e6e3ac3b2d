"""Live quotes: the latest tick per instrument, readable by any process while capture runs.

Choice: one small Arrow IPC file per shard (`live.arrow`, one row per instrument, ~1 MB for
3000 full-mode instruments), rewritten after each journal flush to a temporary name and moved
into place with an atomic rename. A reader opens whichever complete file is in place, with no
lock and no coordination: it can never see a half-written file, never blocks the writer, and
reads it zero-copy with pyarrow, polars or DuckDB. SQLite in WAL mode would also give
consistent reads, but costs a row-at-a-time upsert of ~80 columns per instrument per flush on
the capture's writer thread and a SQL layer for readers; the table is small enough that
rewriting it whole is cheaper and simpler.

The same state (`LatestTicks`) is the memory of the dedupe (`capture.dedupe`): a tick is a
duplicate when it equals the latest tick kept for its instrument.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa


class KeyIndex:
    """Stable small-integer slots for instrument keys; keys never seen before get new slots."""

    def __init__(self, keys: Iterable[int] = ()) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._slots = np.empty(0, dtype=np.int64)
        self.size = 0
        self.slots(np.fromiter(keys, dtype=np.int64))

    def slots(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.int64)
        if not len(values):
            return np.empty(0, dtype=np.int64)
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, values), len(self._keys) - 1)
            found = self._keys[pos] == values
            if found.all():
                return self._slots[pos]
            new = np.unique(values[~found])
        else:
            new = np.unique(values)
        keys = np.concatenate([self._keys, new])
        slots = np.concatenate([self._slots, np.arange(self.size, self.size + len(new))])
        order = np.argsort(keys, kind="stable")
        self._keys, self._slots = keys[order], slots[order]
        self.size += len(new)
        return self.slots(values)


def last_per_slot(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique slots, index of the last row of each) for rows in arrival order."""
    reversed_slots = slots[::-1]
    unique, first_in_reversed = np.unique(reversed_slots, return_index=True)
    return unique, len(slots) - 1 - first_in_reversed


class LatestTicks:
    """The latest kept row per slot, as one Arrow table plus a slot -> row map."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.table = schema.empty_table()
        self.row_of = np.empty(0, dtype=np.int64)  # slot -> row in table, -1 if none yet
        self.hash_of = np.zeros(0, dtype=np.uint64)  # slot -> content hash of its row
        self.dirty = False

    def rows(self, slots: np.ndarray) -> np.ndarray:
        """Row of each slot in `table`, -1 where no tick has been kept yet."""
        out = np.full(len(slots), -1, dtype=np.int64)
        inside = slots < len(self.row_of)
        out[inside] = self.row_of[slots[inside]]
        return out

    def hashes(self, slots: np.ndarray) -> np.ndarray:
        """Content hash of each slot's row (0 where there is none)."""
        out = np.zeros(len(slots), dtype=np.uint64)
        inside = slots < len(self.hash_of)
        out[inside] = self.hash_of[slots[inside]]
        return out

    def update(self, ticks: pa.Table, slots: np.ndarray, hashes: np.ndarray | None = None) -> None:
        """Take the last row of each slot in `ticks` (rows in arrival order)."""
        if not ticks.num_rows:
            return
        unique, last = last_per_slot(slots)
        if len(self.row_of) <= unique[-1]:
            size = int(unique[-1]) + 1
            grown = np.full(size, -1, dtype=np.int64)
            grown[: len(self.row_of)] = self.row_of
            self.row_of = grown
            grown_hash = np.zeros(size, dtype=np.uint64)
            grown_hash[: len(self.hash_of)] = self.hash_of
            self.hash_of = grown_hash
        if hashes is not None:
            self.hash_of[unique] = hashes[last]
        row_of = self.row_of.copy()
        row_of[unique] = self.table.num_rows + np.arange(len(unique))
        present = np.flatnonzero(row_of >= 0)
        combined = pa.concat_tables([self.table, ticks.take(pa.array(last))])
        self.table = combined.take(pa.array(row_of[present])).combine_chunks()
        self.row_of = np.full(len(row_of), -1, dtype=np.int64)
        self.row_of[present] = np.arange(len(present))
        self.dirty = True

    def write(self, path: Path) -> None:
        """Atomically replace `path` with the current table (Arrow IPC file format)."""
        write_atomic(self.table, path)
        self.dirty = False


def write_atomic(table: pa.Table, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)


def read_live_file(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def live_quote_paths(home: Path, venue: str, day: date) -> list[Path]:
    return sorted((Path(home) / "staging" / venue / day.isoformat()).glob("*/live.arrow"))


def read_live_quotes(home: Path, venue: str, day: date) -> pa.Table:
    """The latest tick per instrument over every shard of a venue's day."""
    tables = [read_live_file(p) for p in live_quote_paths(home, venue, day)]
    if not tables:
        raise FileNotFoundError(
            f"no live quotes for {venue} {day} under {home}/staging: is a capture running?"
        )
    return pa.concat_tables(tables)
