"""The raw archive: every message with its receipt time, zstd frames, torn-tail tolerant."""

from __future__ import annotations

import os
import random

import pytest
import zstandard

from tick_assets.store.raw_archive import (
    BINARY,
    EVENT,
    MAGIC,
    SENT,
    TEXT,
    RawArchiveWriter,
    RawRecord,
    encode_record,
    read_raw,
)
from tick_assets_tests.kite_frames import random_frame


def _records(n: int, seed: int = 0) -> list[RawRecord]:
    rng = random.Random(seed)
    fixed = {
        TEXT: b'{"type": "message", "data": "hello"}',
        SENT: b'{"a": "subscribe", "v": [408065]}',
        EVENT: b'{"event": "connected", "connection": 100001}',
    }
    out = []
    for i in range(n):
        kind = rng.choice([BINARY, BINARY, BINARY, TEXT, SENT, EVENT])
        if kind != BINARY:
            payload = fixed[kind]
        elif i % 7:
            payload = random_frame(rng, rng.randrange(1, 20), (184, 44, 8))
        else:
            payload = b"\x00"  # a heartbeat
        out.append(
            RawRecord(kind, 100_001 + i // 50, 1_795_000_000_000_000_000 + i * 1000, payload)
        )
    return out


def _write(path, records, per_sync=100):
    writer = RawArchiveWriter(path)
    for i, r in enumerate(records, 1):
        writer.add(*r)
        if i % per_sync == 0:
            writer.sync()
    return writer


def test_round_trip_keeps_every_message_and_its_receipt_time(tmp_path):
    records = _records(1000)
    path = tmp_path / "raw-r0001-p0001.zst"
    _write(path, records).close()
    back, report = read_raw(path)
    assert back == records
    assert not report.torn and report.records == 1000 and report.frames == 10
    # a plain .zst: any zstd reader gets the record stream back
    with open(path, "rb") as fh:
        plain = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    assert plain == MAGIC + b"".join(encode_record(*r) for r in records)


def test_messages_decode_to_what_the_client_saw(tmp_path):
    path = tmp_path / "raw.zst"
    writer = RawArchiveWriter(path)
    writer.add(BINARY, 1, 5, b"\x00")
    writer.add(TEXT, 1, 6, b'{"type":"error","data":"x"}')
    writer.add(EVENT, 1, 7, b'{"event":"connected"}')
    writer.close()
    records, _ = read_raw(path)
    assert [r.message for r in records] == [
        b"\x00",
        '{"type":"error","data":"x"}',
        {"event": "connected"},
    ]


def test_torn_tail_is_reported_and_every_synced_frame_reads(tmp_path):
    records = _records(600, seed=3)
    path = tmp_path / "raw.zst"
    writer = _write(path, records[:500])  # 5 frames synced
    synced = path.stat().st_size
    for r in records[500:]:
        writer.add(*r)
    writer.sync()
    full = path.stat().st_size
    os.truncate(path, synced + (full - synced) // 3)  # killed while writing the 6th frame
    back, report = read_raw(path)
    assert back == records[:500]
    assert report.torn and report.frames == 5 and "incomplete zstd frame" in report.detail


def test_garbage_and_foreign_files(tmp_path):
    path = tmp_path / "raw.zst"
    _write(path, _records(100)).close()
    with open(path, "ab") as fh:
        fh.write(b"not zstd at all, a disk error")
    back, report = read_raw(path)
    assert len(back) == 100 and report.torn and "not zstd data" in report.detail
    foreign = tmp_path / "other.zst"
    foreign.write_bytes(zstandard.ZstdCompressor().compress(b"hello world, not ours"))
    with pytest.raises(ValueError, match="not a tick_assets raw archive"):
        read_raw(foreign)
    empty = tmp_path / "empty.zst"  # created, then killed before the first sync
    empty.write_bytes(b"")
    records, report = read_raw(empty)
    assert records == [] and not report.torn and report.frames == 0


def test_never_overwrites(tmp_path):
    path = tmp_path / "raw.zst"
    RawArchiveWriter(path).close()
    with pytest.raises(FileExistsError):
        RawArchiveWriter(path)


def test_compresses_full_mode_ticks(tmp_path):
    rng = random.Random(1)
    frames = [random_frame(rng, 100, (184,)) for _ in range(50)]
    path = tmp_path / "raw.zst"
    writer = RawArchiveWriter(path)
    for i, f in enumerate(frames):
        writer.add(BINARY, 1, i, f)
    writer.close()
    assert read_raw(path)[0][7].payload == frames[7]
    assert writer.bytes_out < writer.bytes_in  # random depth compresses little; real ticks do more
