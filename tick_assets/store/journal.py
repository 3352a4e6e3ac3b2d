"""The capture journal: append-only Arrow IPC stream segments, one writer per shard.

Why a stream (not a Parquet file): a stream is readable up to its last complete record batch
at any moment, so a crash loses at most the batch that was being written. The writer appends one
record batch per flush and fsyncs it; `close()` adds the end-of-stream marker. The reader takes
every complete batch of every segment, and reports (never raises on) a torn tail: a segment
that ends inside a message, or one that lacks the end-of-stream marker because its writer died.

Segments are never reopened or overwritten: a new writer always creates a new file (O_EXCL).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

SUFFIX = ".arrows"
#: The IPC end-of-stream marker: continuation token then a zero metadata length.
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_COMPRESSIONS = (None, "lz4", "zstd")


def create_exclusive(path: Path, mode: int = 0o640) -> int:
    """Open a new file for writing, failing if it exists, and make its directory entry durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return fd


def _datasync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


class JournalWriter:
    """One journal segment: `append` record batches, `sync` after each flush, `close` at the end."""

    def __init__(self, path: Path, schema: pa.Schema, compression: str | None = "lz4") -> None:
        if compression not in _COMPRESSIONS:
            raise ValueError(f"journal compression {compression!r} is not one of {_COMPRESSIONS}")
        self.path = Path(path)
        self.schema = schema
        self._fd = create_exclusive(self.path)
        self._file = os.fdopen(self._fd, "wb", buffering=1 << 20)
        options = pa.ipc.IpcWriteOptions(compression=compression)
        self._writer = pa.ipc.new_stream(self._file, schema, options=options)
        self.rows = 0
        self.batches = 0
        self.closed = False

    def append(self, table: pa.Table | pa.RecordBatch) -> None:
        """Append rows (in the journal schema) as one record batch; durable after `sync`."""
        if self.closed:
            raise RuntimeError(f"journal segment {self.path} is closed")
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema):
            raise ValueError(
                f"rows for journal {self.path.name} do not match its schema; "
                f"got columns {table.schema.names[:5]}..."
            )
        batches = (
            [table] if isinstance(table, pa.RecordBatch) else table.combine_chunks().to_batches()
        )
        for batch in batches:
            self._writer.write_batch(batch)
            self.batches += 1
        self.rows += table.num_rows

    def sync(self) -> None:
        """Push everything appended so far to the disk (flush + fdatasync)."""
        if self.closed:
            return
        self._file.flush()
        _datasync(self._fd)

    @property
    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        """Write the end-of-stream marker and sync; the segment is then complete."""
        if self.closed:
            return
        self._writer.close()
        self._file.flush()
        os.fsync(self._fd)
        self._file.close()
        self.closed = True


@dataclass(frozen=True)
class SegmentReport:
    """What reading one segment found. `torn` means rows after `rows` could not be read."""

    path: Path
    batches: int
    rows: int
    complete: bool  # ends with the end-of-stream marker: its writer closed it
    torn: bool  # ends inside a message (a crash during a write)
    detail: str = ""
    schema: pa.Schema | None = None  # None when not even the schema could be read


def segment_paths(directory: Path) -> list[Path]:
    """Journal segments in a directory, in name (= write) order."""
    return sorted(Path(directory).glob(f"*{SUFFIX}"))


def iter_segment(path: Path) -> Iterator[pa.RecordBatch | SegmentReport]:
    """Yield each complete record batch of a segment, then its SegmentReport (always last)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        complete = size >= len(_EOS) and _tail(fh, size) == _EOS
        batches = rows = 0
        try:
            reader = pa.ipc.open_stream(pa.PythonFile(fh, mode="r"))
        except (pa.ArrowInvalid, OSError) as exc:
            # Nothing readable: the writer died before its schema was on disk.
            yield SegmentReport(path, 0, 0, False, True, f"no readable schema ({exc})")
            return
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
                detail = f"torn tail after {batches} batches ({rows} rows): {exc}"
                yield SegmentReport(path, batches, rows, False, True, detail, reader.schema)
                return
            batches += 1
            rows += batch.num_rows
            yield batch
    detail = "" if complete else "no end-of-stream marker: its writer did not close it"
    yield SegmentReport(path, batches, rows, complete, False, detail, reader.schema)


def _tail(fh, size: int) -> bytes:
    fh.seek(size - len(_EOS))
    tail = fh.read(len(_EOS))
    fh.seek(0)
    return tail


def read_segments(
    paths: Iterable[Path], schema: pa.Schema | None = None
) -> tuple[pa.Table, list[SegmentReport]]:
    """All complete batches of the given segments as one table, plus one report per segment.

    A torn tail is reported and skipped; a segment whose schema is not `schema` is an error,
    because its rows would not mean what the caller expects.
    """
    batches: list[pa.RecordBatch] = []
    reports: list[SegmentReport] = []
    found = schema
    for path in paths:
        for item in iter_segment(path):
            if isinstance(item, SegmentReport):
                reports.append(item)
                if item.schema is not None:
                    if found is None:
                        found = item.schema
                    elif not item.schema.equals(found):
                        raise ValueError(
                            f"journal segment {path} has a different schema from the others; "
                            "it does not belong to this journal"
                        )
            else:
                batches.append(item)
    if found is None:
        return pa.table({}), reports
    return pa.Table.from_batches(batches, schema=found), reports


def read_journal(
    directory: Path, schema: pa.Schema | None = None
) -> tuple[pa.Table, list[SegmentReport]]:
    """Every segment of a journal directory (see `read_segments`)."""
    return read_segments(segment_paths(directory), schema)
