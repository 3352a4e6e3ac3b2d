"""Repeated ticks: a cached value resent on (re)subscribe must not become a duplicate row.

Kite answers a subscribe with one cached tick per instrument (in quote mode, its default after
subscribe) and a mode request with one more (in the requested mode); the capture resubscribes
after every reconnect. Kite otherwise sends a tick only when a field changed, so a tick equal to
the previous one of its instrument says nothing new.

Two rules, applied by the writer before rows reach the journal (cheapest: all they need is the
latest kept tick per instrument, which the writer keeps anyway for the live quotes; and safe:
the raw archive still holds every message, so a re-decode can always recover a dropped row):

1. *Superseded*: the first packet of an instrument after a subscribe is its subscribe cached
   tick; if it is not in the capture's mode it is dropped, because the mode request makes the
   venue send the same cached value again in the capture's mode.
2. *Duplicate*: a packet whose every field equals the latest kept tick of its instrument is
   dropped: after a reconnect, the cached tick of an instrument that did not change during the
   gap; or a repeat the venue sent twice.

The dedupe key is thus the whole decoded content of a tick (every field, received_at and
connection aside) per instrument, compared with the latest kept tick only: never a partial key
like (token, exchange_timestamp, price), which would merge genuine same-second ticks whose depth
differs, and never a global "seen before" set, which would drop a price returning to an earlier
state. Rows are compared through a 64-bit hash and every hash match is confirmed field by field,
so a collision can never drop a row. Both drops are counted in the accounting chain.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tick_assets.capture.live import LatestTicks
from tick_assets.sources.stream import CachedTickPolicy

_OFFSET, _PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_NULL = np.uint64(0x9E3779B97F4A7C15)


def row_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each row over all its columns (FNV-1a over 64-bit words; nulls count)."""
    h = np.full(table.num_rows, _OFFSET, dtype=np.uint64)
    for column in table.columns:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_dictionary(array.type):
            array = array.indices
        elif pa.types.is_timestamp(array.type):
            array = array.cast(pa.int64())
        elif pa.types.is_boolean(array.type):
            array = array.cast(pa.uint8())
        nulls = array.null_count
        values = array.fill_null(0).to_numpy() if nulls else array.to_numpy()
        words = values.view(np.uint64) if values.dtype.itemsize == 8 else values.astype(np.uint64)
        if nulls:
            words = np.where(array.is_valid().to_numpy(zero_copy_only=False), words, _NULL)
        h ^= words
        h *= _PRIME
    return h


class TickDeduper:
    def __init__(self, policy: CachedTickPolicy, columns: list[str]) -> None:
        self.policy = policy
        self.columns = columns  # the decoded columns: what a tick says
        self.pending = np.zeros(0, dtype=bool)  # instrument awaits its subscribe cached tick
        self.superseded = 0
        self.duplicates = 0

    def expect(self, slots: np.ndarray) -> None:
        """A subscribe for these instruments was sent: their cached ticks are coming."""
        if len(slots) and slots.max() >= len(self.pending):
            grown = np.zeros(int(slots.max()) + 1, dtype=bool)
            grown[: len(self.pending)] = self.pending
            self.pending = grown
        self.pending[slots] = True

    def keep_mask(
        self, ticks: pa.Table, slots: np.ndarray, hashes: np.ndarray, latest: LatestTicks
    ) -> np.ndarray:
        """Which rows (in arrival order) to keep; updates the pending state and the counts."""
        keep = np.ones(ticks.num_rows, dtype=bool)
        if not ticks.num_rows:
            return keep
        self._supersede(ticks, slots, keep)
        rows = np.flatnonzero(keep)
        order = rows[np.argsort(slots[rows], kind="stable")]  # by instrument, arrival order within
        s = slots[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = s[1:] != s[:-1]
        # each row's reference: the previous kept-candidate row of its instrument in this batch,
        # or, for the first, the latest kept tick (-1 - its row in latest.table)
        ref = np.empty(len(order), dtype=np.int64)
        ref[1:] = order[:-1]
        ref_hash = np.empty(len(order), dtype=np.uint64)
        ref_hash[1:] = hashes[order[:-1]]
        latest_rows = latest.rows(s[first])
        ref[first] = -1 - latest_rows
        ref_hash[first] = latest.hashes(s[first])
        has_ref = np.ones(len(order), dtype=bool)
        has_ref[first] = latest_rows >= 0
        maybe = np.flatnonzero(has_ref & (hashes[order] == ref_hash))
        if len(maybe):
            same = self._equal(ticks, order[maybe], ref[maybe], latest)
            keep[order[maybe][same]] = False
            self.duplicates += int(same.sum())
        return keep

    def _supersede(self, ticks: pa.Table, slots: np.ndarray, keep: np.ndarray) -> None:
        pending = self.pending
        inside = slots < len(pending)
        waiting = np.zeros(len(slots), dtype=bool)
        waiting[inside] = pending[slots[inside]]
        candidates = np.flatnonzero(waiting)
        if not len(candidates):
            return
        unique, first = np.unique(slots[candidates], return_index=True)
        rows = candidates[first]  # the first packet of each waiting instrument: its cached tick
        pending[unique] = False
        modes = ticks.column(self.policy.mode_column).take(pa.array(rows)).cast(pa.string())
        other = ~pc.equal(modes, self.policy.target_mode).to_numpy(zero_copy_only=False)
        keep[rows[other]] = False
        self.superseded += int(other.sum())

    def _equal(
        self, ticks: pa.Table, rows: np.ndarray, refs: np.ndarray, latest: LatestTicks
    ) -> np.ndarray:
        """Row-wise: does ticks[rows] equal its reference on every field (nulls included)?"""
        cols = self.columns
        pool = pa.concat_tables([ticks.select(cols), latest.table.select(cols)])
        positions = np.where(refs >= 0, refs, ticks.num_rows - refs - 1)
        a = ticks.select(cols).take(pa.array(rows))
        b = pool.take(pa.array(positions))
        same = np.ones(len(rows), dtype=bool)
        for name in cols:
            x, y = a.column(name), b.column(name)
            if pa.types.is_dictionary(x.type):
                x, y = x.cast(pa.string()), y.cast(pa.string())
            both_null = pc.and_(pc.is_null(x), pc.is_null(y))
            equal = pc.or_(both_null, pc.fill_null(pc.equal(x, y), False))
            same &= equal.to_numpy(zero_copy_only=False)
        return same
