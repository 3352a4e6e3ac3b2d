"""Messages -> journal rows: decode, stamp receipt and connection, drop cached repeats.

This is the pure part of the writer, shared with `capture.replay`, so re-decoding a raw
archive goes through exactly the code that made the journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tick_assets.capture.counters import ShardCounters, reason_key
from tick_assets.capture.dedupe import TickDeduper, row_hashes
from tick_assets.capture.live import KeyIndex, LatestTicks
from tick_assets.capture.venue import VenueAdapter

_UTC_NS = pa.timestamp("ns", tz="UTC")
#: A connection id is run * CONNECTIONS_PER_RUN + n, so ids stay unique across runs of a day.
CONNECTIONS_PER_RUN = 100_000


def connection_name(shard: str, connection: int) -> str:
    """The journal's `connection` value: shard#run.n."""
    run, n = divmod(connection, CONNECTIONS_PER_RUN)
    return f"{shard}#{run}.{n}"


@dataclass
class Batch:
    """One flush worth of received messages, in order, with what was sent between them."""

    messages: list[bytes | str]
    received_ns: list[int]
    monotonic_ns: list[int]
    connections: list[int]  # connection id per message (see `connection_name`)
    #: (index of the first message after it, instruments a sent subscribe covers)
    subscribes: list[tuple[int, Sequence[int]]]


@dataclass
class Rows:
    """Rows for the journal, and per row what latency needs."""

    table: pa.Table
    received_ns: np.ndarray
    monotonic_ns: np.ndarray
    event_ns: np.ndarray  # the venue's own timestamp, -1 where the packet has none


class TickPipeline:
    def __init__(self, adapter: VenueAdapter, counters: ShardCounters, instruments: Sequence[int]):
        self.adapter = adapter
        self.counters = counters
        self.index = KeyIndex(instruments)
        self.latest = LatestTicks(adapter.schema)
        decoded = [n for n in adapter.schema.names if n not in ("received_at", "connection")]
        self.decoded_columns = decoded
        policy = adapter.cached_ticks
        self.dedupe = TickDeduper(policy, decoded) if policy else None

    def seed(self, table: pa.Table) -> None:
        """Remember earlier rows (e.g. the last run's live quotes) as the latest kept ticks."""
        if table.num_rows:
            table = table.select(self.adapter.schema.names)
            keys = table.column(self.adapter.key_column).to_numpy(zero_copy_only=False)
            hashes = row_hashes(table.select(self.decoded_columns))
            self.latest.update(table, self.index.slots(keys), hashes)

    def process(self, batch: Batch, shard: str) -> Rows:
        c = self.counters
        adapter = self.adapter
        decoded = adapter.decode(batch.messages)
        binary = sum(1 for m in batch.messages if type(m) is bytes)
        c.binary_frames += binary
        c.text_messages += len(batch.messages) - binary
        c.heartbeats += decoded.heartbeats
        c.data_frames += binary - decoded.heartbeats
        c.packets_decoded += decoded.ticks.num_rows
        for text in decoded.texts:
            c.texts_by_type[str(text.get("type"))] += 1
        for r in decoded.rejected:
            if r.packet_index is None:
                c.rejected_frames += 1
            else:
                c.rejected_packets += 1
            c.rejected_reasons[reason_key(r.reason)] += 1

        ticks = decoded.ticks
        frame = np.asarray(decoded.frame_index, dtype=np.int64)
        received = np.asarray(batch.received_ns, dtype=np.int64)
        monotonic = np.asarray(batch.monotonic_ns, dtype=np.int64)
        table = self._stamp(ticks, frame, received, batch.connections, shard)
        keys = ticks.column(adapter.key_column).to_numpy(zero_copy_only=False)
        slots = self.index.slots(keys)

        keep = np.ones(ticks.num_rows, dtype=bool)
        # Rows between two sent subscribes form a segment; cached ticks follow a subscribe.
        dedupe = self.dedupe
        cuts = [(int(np.searchsorted(frame, at)), list(instruments))
                for at, instruments in batch.subscribes]  # fmt: skip
        bounds = [0] + [at for at, _ in cuts] + [ticks.num_rows]
        for k in range(len(bounds) - 1):
            if k > 0 and dedupe is not None:
                dedupe.expect(self.index.slots(np.asarray(cuts[k - 1][1], dtype=np.int64)))
            lo, hi = bounds[k], bounds[k + 1]
            if lo == hi:
                continue
            seg, kept = slice(lo, hi), table.slice(lo, hi - lo)
            hashes = None
            if dedupe is not None:
                part = ticks.slice(lo, hi - lo)
                hashes = row_hashes(part)
                keep[seg] = dedupe.keep_mask(part, slots[seg], hashes, self.latest)
                hashes = hashes[keep[seg]]
                if not keep[seg].all():
                    kept = kept.filter(pa.array(keep[seg]))
            self.latest.update(kept, slots[seg][keep[seg]], hashes)
        if dedupe is not None:
            c.cached_superseded = dedupe.superseded
            c.duplicates = dedupe.duplicates

        if not keep.all():
            table = table.filter(pa.array(keep))
            frame = frame[keep]
        event = ticks.column(adapter.event_time_column)
        if not keep.all():
            event = event.filter(pa.array(keep))
        event_ns = event.cast(pa.int64()).fill_null(-1).to_numpy()
        return Rows(table, received[frame], monotonic[frame], event_ns)

    def _stamp(
        self,
        ticks: pa.Table,
        frame: np.ndarray,
        received: np.ndarray,
        connections: list[int],
        shard: str,
    ) -> pa.Table:
        """Add received_at and connection (both per message, spread to its rows)."""
        received_at = pa.array(received[frame]).cast(_UTC_NS)
        ids, code = np.unique(np.asarray(connections, dtype=np.int64), return_inverse=True)
        names = pa.array([connection_name(shard, int(i)) for i in ids], pa.string())
        indices = pa.array(code[frame].astype(np.int32))
        connection = pa.DictionaryArray.from_arrays(indices, names)
        columns = [*ticks.columns, received_at, connection.cast(pa.string())]
        return pa.Table.from_arrays(columns, schema=self.adapter.schema)
