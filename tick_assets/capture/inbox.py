"""The hand-off from a shard's receive loop to its writer thread: bounded memory, then disk.

The receive loop only stamps a message and calls `put`; it never decodes or waits for the disk.
Messages queue in memory up to `max_bytes`; past that bound they are appended to a spill file
instead of being dropped, and the writer drains the spill file (in order, after what was
already in memory) until it has caught up, when memory takes over again. Connection events and
sent requests travel the same way, so the writer sees everything in the order it happened.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tick_assets.store.raw_archive import BINARY, EVENT, SENT, TEXT


@dataclass(frozen=True)
class Sent:
    """A request the client sent on the connection (subscribe, mode)."""

    text: str


@dataclass(frozen=True)
class Event:
    """A connection event: started, connected, disconnected, connect_failed, stopping."""

    name: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"event": self.name, **self.detail}).encode()


#: (receipt ns on the venue clock, receipt ns on the monotonic clock, connection, payload)
Item = tuple[int, int, int, "bytes | str | Sent | Event"]

_SPILL = struct.Struct("<BIqqI")  # kind, connection, received ns, monotonic ns, length
_MAX_SPILL_READ = 64 << 20


def encode_payload(payload: bytes | str | Sent | Event) -> tuple[int, bytes]:
    if type(payload) is bytes:
        return BINARY, payload
    if isinstance(payload, str):
        return TEXT, payload.encode()
    if isinstance(payload, Sent):
        return SENT, payload.text.encode()
    return EVENT, payload.to_json()


def decode_payload(kind: int, data: bytes) -> bytes | str | Sent | Event:
    if kind == BINARY:
        return data
    if kind == TEXT:
        return data.decode()
    if kind == SENT:
        return Sent(data.decode())
    detail = json.loads(data)
    return Event(detail.pop("event"), detail)


def _size(payload: object) -> int:
    """Bytes a queued item counts against the memory bound (events count a nominal 64)."""
    return len(payload) if type(payload) is bytes or type(payload) is str else 64  # type: ignore[arg-type]


class Inbox:
    """Bounded in-memory queue with an on-disk overflow, one producer and one consumer thread."""

    def __init__(self, spill_path: Path, max_bytes: int = 128 << 20) -> None:
        if max_bytes < 1:
            raise ValueError(f"queue bound max_bytes={max_bytes} must be >= 1")
        self.spill_path = Path(spill_path)
        self.max_bytes = max_bytes
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self.spilling = False
        self._spill_fd: int | None = None
        self._spill_written = 0  # bytes in the spill file (producer, under the lock)
        self._spill_read = 0  # bytes consumed from it (consumer)
        # each counter has one writer thread, so no lock is needed to update it
        self.put_messages = 0
        self.put_bytes = 0
        self.memory_in = 0
        self.memory_out = 0
        self.spilled_items = 0
        self.spilled_bytes = 0
        self.drained_spill_items = 0

    # --- producer (the receive loop) ------------------------------------------------------

    def put(self, item: Item) -> None:
        size = _size(item[3])
        if not self.spilling and self.memory_in - self.memory_out + size <= self.max_bytes:
            self.memory_in += size
            self._items.append(item)
            return
        self._spill(item)

    def _spill(self, item: Item) -> None:
        received, mono, connection, payload = item
        kind, data = encode_payload(payload)
        record = _SPILL.pack(kind, connection, received, mono, len(data)) + data
        with self._lock:
            if self._spill_fd is None:
                self.spill_path.parent.mkdir(parents=True, exist_ok=True)
                self._spill_fd = os.open(
                    self.spill_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640
                )
            self.spilling = True
            os.pwrite(self._spill_fd, record, self._spill_written)
            self._spill_written += len(record)
        self.spilled_items += 1
        self.spilled_bytes += len(record)

    # --- consumer (the writer thread) -------------------------------------------------------

    def drain(self) -> list[Item]:
        """Everything queued so far, in arrival order (memory first, then the spill file)."""
        spilling = self.spilling  # read first: once True, memory receives nothing more
        items = self._items
        # Not spilling: take what is there now (more may arrive meanwhile, for next time).
        # Spilling: memory gets nothing new, so empty it, then read the spill file after it.
        out = [items.popleft() for _ in range(len(items))]
        while spilling and items:
            out.append(items.popleft())
        freed = sum(_size(item[3]) for item in out)
        self.memory_out += freed
        if spilling:
            out.extend(self._read_spill())
        return out

    def _read_spill(self) -> list[Item]:
        with self._lock:
            end = self._spill_written
        fd = self._spill_fd
        assert fd is not None
        size = min(end - self._spill_read, _MAX_SPILL_READ)
        data = os.pread(fd, size, self._spill_read) if size else b""
        out: list[Item] = []
        pos = 0
        while pos + _SPILL.size <= len(data):
            kind, connection, received, mono, length = _SPILL.unpack_from(data, pos)
            if pos + _SPILL.size + length > len(data):
                break  # the rest comes next time (only with a read cut at _MAX_SPILL_READ)
            start = pos + _SPILL.size
            out.append(
                (received, mono, connection, decode_payload(kind, data[start : start + length]))
            )
            pos = start + length
        self._spill_read += pos
        self.drained_spill_items += len(out)
        with self._lock:
            if self._spill_read == self._spill_written:  # caught up: back to memory
                os.ftruncate(fd, 0)
                self._spill_read = self._spill_written = 0
                self.spilling = False
        return out

    @property
    def pending(self) -> int:
        """Items waiting (memory + spill file), approximately."""
        return len(self._items) + (self.spilled_items - self.drained_spill_items)

    def close(self, remove: bool = True) -> None:
        """Close (and remove, once drained) the spill file."""
        with self._lock:
            if self._spill_fd is not None:
                os.close(self._spill_fd)
                self._spill_fd = None
                if remove and self._spill_read == self._spill_written:
                    self.spill_path.unlink(missing_ok=True)
