"""The raw archive: every websocket message exactly as received, with its receipt time, zstd.

It is the ground truth behind the journal: re-decoding it must give the journal's rows, and the
simulator can replay it. Besides received messages it keeps what the client sent (subscribe and
mode requests) and connection events, so a replay knows where each connection began.

File format: a plain `.zst` file (concatenated zstd frames; `zstd -dc` reads it). The
decompressed stream starts with `MAGIC`, then records, each a little-endian header
(kind u8, connection u32, received_at ns i64, payload length u32) and the payload. Each `sync()`
writes the pending records as one whole zstd frame and fsyncs, so a crash leaves at most one
incomplete frame at the end, which the reader reports and skips.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import zstandard

from tick_assets.store.journal import create_exclusive

SUFFIX = ".zst"
MAGIC = b"TARAW01\n"
HEADER = struct.Struct("<BIqI")

#: Record kinds.
BINARY, TEXT, SENT, EVENT = 0, 1, 2, 3
KIND_NAMES = {BINARY: "binary", TEXT: "text", SENT: "sent", EVENT: "event"}
_READ_CHUNK = 4 << 20


class RawRecord(NamedTuple):
    kind: int
    connection: int
    received_ns: int
    payload: bytes

    @property
    def message(self) -> bytes | str | dict:
        """The message as a websocket client saw it: bytes (binary), str (text/sent), dict (event)."""
        if self.kind == BINARY:
            return self.payload
        if self.kind == EVENT:
            return json.loads(self.payload)
        return self.payload.decode("utf-8")


def encode_record(kind: int, connection: int, received_ns: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, connection, received_ns, len(payload)) + payload


class RawArchiveWriter:
    """One raw archive file; `add` records, `sync` at each flush, `close` at the end."""

    def __init__(self, path: Path, level: int = 1) -> None:
        self.path = Path(path)
        self._fd = create_exclusive(self.path)
        self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._pending: list[bytes] = [MAGIC]
        self.records = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.closed = False

    def add(self, kind: int, connection: int, received_ns: int, payload: bytes) -> None:
        self._pending.append(HEADER.pack(kind, connection, received_ns, len(payload)))
        self._pending.append(payload)
        self.records += 1

    def sync(self) -> None:
        """Write what was added since the last sync as one zstd frame and fdatasync it."""
        if self.closed or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        frame = self._compressor.compress(data)
        view = memoryview(frame)
        while view:
            view = view[os.write(self._fd, view) :]
        (getattr(os, "fdatasync", None) or os.fsync)(self._fd)
        self.bytes_in += len(data)
        self.bytes_out += len(frame)

    def close(self) -> None:
        if self.closed:
            return
        self.sync()
        os.fsync(self._fd)
        os.close(self._fd)
        self.closed = True


@dataclass(frozen=True)
class RawReport:
    path: Path
    frames: int
    records: int
    torn: bool
    detail: str = ""


def iter_raw(path: Path) -> Iterator[RawRecord | RawReport]:
    """Yield every record of every complete frame, then a RawReport (always last).

    An incomplete last frame (the writer died mid-write) is reported as a torn tail; bytes that
    are not zstd at all, or a frame whose records do not parse, stop the reading with the reason.
    """
    path = Path(path)
    decompressor = zstandard.ZstdDecompressor()
    frames = records = 0
    dobj = decompressor.decompressobj()
    out: list[bytes] = []
    fed = 0  # compressed bytes given to the frame being decoded
    with open(path, "rb") as fh:
        chunk = fh.read(_READ_CHUNK)
        while chunk:
            try:
                out.append(dobj.decompress(chunk))
            except zstandard.ZstdError as exc:
                detail = f"not zstd data after {frames} frames: {exc}"
                yield RawReport(path, frames, records, True, detail)
                return
            rest = dobj.unused_data if dobj.eof else b""
            fed += len(chunk) - len(rest)
            if not dobj.eof:
                chunk = fh.read(_READ_CHUNK)
                continue
            data = b"".join(out)
            if frames == 0:
                if not data.startswith(MAGIC):
                    raise ValueError(f"{path} is not a tick_assets raw archive (bad magic)")
                data = data[len(MAGIC) :]
            try:
                for record in _parse(data):
                    records += 1
                    yield record
            except ValueError as exc:
                yield RawReport(path, frames, records, True, f"frame {frames + 1}: {exc}")
                return
            frames += 1
            out, fed = [], 0
            dobj = decompressor.decompressobj()
            chunk = rest or fh.read(_READ_CHUNK)
    if fed:
        detail = f"torn tail: an incomplete zstd frame of {fed} bytes after {frames} frames"
        yield RawReport(path, frames, records, True, detail)
        return
    yield RawReport(path, frames, records, False)


def _parse(data: bytes) -> Iterator[RawRecord]:
    pos, end, size = 0, len(data), HEADER.size
    unpack = HEADER.unpack_from
    while pos < end:
        if pos + size > end:
            raise ValueError(f"record header cut at byte {pos} of {end}")
        kind, connection, received_ns, length = unpack(data, pos)
        pos += size
        if kind not in KIND_NAMES or pos + length > end:
            raise ValueError(f"bad record at byte {pos - size}: kind {kind}, length {length}")
        yield RawRecord(kind, connection, received_ns, data[pos : pos + length])
        pos += length


def read_raw(path: Path) -> tuple[list[RawRecord], RawReport]:
    """Every readable record of one archive file and the report of reading it."""
    records: list[RawRecord] = []
    report: RawReport | None = None
    for item in iter_raw(path):
        if isinstance(item, RawReport):
            report = item
        else:
            records.append(item)
    assert report is not None
    return records, report


def archive_paths(directory: Path) -> list[Path]:
    """Raw archive files of a directory in name (= write) order."""
    return sorted(Path(directory).glob(f"*{SUFFIX}"))
