"""The capture journal (Arrow IPC stream segments): append, fsync, read back, torn tails."""

from __future__ import annotations

import os
import random

import numpy as np
import pyarrow as pa
import pytest

from tick_assets.sources.kite.codec import decode_frames
from tick_assets.sources.kite.schema import TICK_SCHEMA
from tick_assets.store.journal import JournalWriter, iter_segment, read_journal, read_segments
from tick_assets_tests.kite_frames import random_frame


def _rows(n: int, seed: int = 0, connection: str = "s#1.1") -> pa.Table:
    rng = random.Random(seed)
    ticks = decode_frames([random_frame(rng, 50, (184,)) for _ in range(n // 50)]).ticks
    received = pa.array(np.arange(ticks.num_rows, dtype=np.int64) + 1_795_000_000_000_000_000).cast(
        pa.timestamp("ns", tz="UTC")
    )
    conn = pa.array([connection] * ticks.num_rows)
    return pa.Table.from_arrays([*ticks.columns, received, conn], schema=TICK_SCHEMA)


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_batches_written_and_synced_read_back_equal(tmp_path, compression):
    path = tmp_path / "journal-r0001-p0001.arrows"
    writer = JournalWriter(path, TICK_SCHEMA, compression)
    batches = [_rows(300, seed=i) for i in range(3)]
    for b in batches:
        writer.append(b)
        writer.sync()
    writer.close()
    table, reports = read_journal(tmp_path, TICK_SCHEMA)
    assert table.equals(pa.concat_tables(batches))
    assert reports[0].complete and not reports[0].torn and reports[0].rows == 900


def test_a_segment_is_never_overwritten(tmp_path):
    path = tmp_path / "journal-r0001-p0001.arrows"
    JournalWriter(path, TICK_SCHEMA).close()
    with pytest.raises(FileExistsError):
        JournalWriter(path, TICK_SCHEMA)


def test_torn_tail_is_detected_reported_and_skipped(tmp_path):
    """A crash mid-write: every batch synced before it reads back; the torn one is skipped."""
    path = tmp_path / "journal-r0001-p0001.arrows"
    writer = JournalWriter(path, TICK_SCHEMA, "lz4")
    first, second = _rows(500, seed=1), _rows(500, seed=2)
    writer.append(first)
    writer.sync()
    synced = path.stat().st_size
    writer.append(second)
    writer.sync()
    full = path.stat().st_size
    # the process dies while the second batch is half on disk (no close, no end-of-stream)
    os.truncate(path, synced + (full - synced) // 2)
    table, reports = read_segments([path], TICK_SCHEMA)
    assert table.equals(first)
    (report,) = reports
    assert report.torn and not report.complete and report.rows == 500
    assert "torn tail after 1 batches" in report.detail
    # a later segment of the same journal still reads
    later = JournalWriter(tmp_path / "journal-r0002-p0001.arrows", TICK_SCHEMA)
    later.append(second)
    later.close()
    table, reports = read_journal(tmp_path, TICK_SCHEMA)
    assert table.num_rows == 1000 and [r.torn for r in reports] == [True, False]


def test_a_writer_killed_between_batches_leaves_a_readable_segment(tmp_path):
    path = tmp_path / "journal-r0001-p0001.arrows"
    writer = JournalWriter(path, TICK_SCHEMA)
    writer.append(_rows(200))
    writer.sync()  # and then nothing: no close (kill -9)
    table, (report,) = read_segments([path])
    assert table.num_rows == 200
    assert not report.torn and not report.complete and "did not close" in report.detail


def test_empty_or_schema_only_segments(tmp_path):
    empty = tmp_path / "journal-r0001-p0001.arrows"
    empty.write_bytes(b"")
    items = list(iter_segment(empty))
    assert len(items) == 1 and items[0].torn and items[0].rows == 0
    JournalWriter(tmp_path / "journal-r0002-p0001.arrows", TICK_SCHEMA).close()
    table, reports = read_journal(tmp_path, TICK_SCHEMA)
    assert table.num_rows == 0 and reports[1].complete


def test_rows_in_another_schema_are_refused(tmp_path):
    writer = JournalWriter(tmp_path / "j.arrows", TICK_SCHEMA)
    with pytest.raises(ValueError, match="do not match its schema"):
        writer.append(pa.table({"x": [1]}))
    writer.close()
    other = JournalWriter(tmp_path / "k.arrows", pa.schema([("x", pa.int64())]))
    other.append(pa.table({"x": [1]}))
    other.close()
    with pytest.raises(ValueError, match="different schema"):
        read_journal(tmp_path)
