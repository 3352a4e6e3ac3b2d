"""Re-decode a shard's raw archive through the same pipeline that wrote its journal.

The raw archive keeps every received message with its receipt time, and what was sent and when
each connection began, so replaying it gives the journal's rows again: the proof that the
journal is exactly the decoded archive (and the way to rebuild it with a better decoder).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa

from tick_assets.capture.counters import ShardCounters
from tick_assets.capture.pipeline import Batch, TickPipeline
from tick_assets.capture.venue import VenueAdapter
from tick_assets.store.raw_archive import BINARY, SENT, TEXT, RawReport, iter_raw

_CHUNK = 20_000


def redecode(
    paths: Iterable[Path],
    adapter: VenueAdapter,
    shard: str,
    instruments: Sequence[int] = (),
) -> tuple[pa.Table, ShardCounters, list[RawReport]]:
    """Journal rows rebuilt from raw archive files (in order), their counters, and the reports."""
    counters = ShardCounters()
    pipeline = TickPipeline(adapter, counters, instruments)
    tables: list[pa.Table] = []
    reports: list[RawReport] = []
    batch = Batch([], [], [], [], [])

    def flush() -> None:
        nonlocal batch
        if batch.messages or batch.subscribes:
            counters.messages_written += len(batch.messages)
            rows = pipeline.process(batch, shard)
            counters.rows_journaled += rows.table.num_rows
            tables.append(rows.table)
        batch = Batch([], [], [], [], [])

    for path in paths:
        for record in iter_raw(path):
            if isinstance(record, RawReport):
                reports.append(record)
                continue
            kind = record.kind
            if kind in (BINARY, TEXT):
                batch.messages.append(record.message)  # type: ignore[arg-type]
                batch.received_ns.append(record.received_ns)
                batch.monotonic_ns.append(0)
                batch.connections.append(record.connection)
                if len(batch.messages) >= _CHUNK:
                    flush()
            elif kind == SENT:
                instruments_sent = adapter.subscribed_instruments(record.payload.decode())
                if instruments_sent is not None:
                    batch.subscribes.append((len(batch.messages), instruments_sent))
        flush()
    table = pa.concat_tables(tables) if tables else adapter.schema.empty_table()
    return table, counters, reports
