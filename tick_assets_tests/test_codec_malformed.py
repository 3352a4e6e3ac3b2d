"""Bad input never raises out of the decoder: each bad frame is counted with its reason."""

from __future__ import annotations

import json
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tick_assets.sources.kite.codec import decode_frames
from tick_assets.sources.kite.schema import DECODED_TICK_SCHEMA
from tick_assets_tests.kite_frames import frame, kiteconnect_rows, our_rows, random_packet

RNG = random.Random(11)
GOOD = frame([random_packet(RNG, 184, 408065) for _ in range(3)])


def reasons(frames: list) -> list[str]:
    result = decode_frames([GOOD, *frames, GOOD])
    assert result.packets == 6, "the good frames around the bad ones still decode"
    assert result.ticks.column("instrument_token").to_pylist() == [408065] * 6
    return [r.reason for r in result.rejected]


def test_truncated_frame() -> None:
    (reason,) = reasons([GOOD[:-10]])
    assert "overrunning" in reason and "184" in reason


def test_length_header_missing() -> None:
    two_packets_declared = struct.pack(">HH", 2, 8) + random_packet(RNG, 8) + b"\x00"
    (reason,) = reasons([two_packets_declared])
    assert reason.startswith("truncated: packet 2 of 2 has no length header")


def test_declared_count_larger_than_frame() -> None:
    (reason,) = reasons([struct.pack(">H", 500) + GOOD[2:]])
    assert "declares 500 packets" in reason


def test_zero_count() -> None:
    (reason,) = reasons([b"\x00\x00" + b"\x00" * 10])
    assert "zero packets" in reason


def test_trailing_bytes() -> None:
    (reason,) = reasons([GOOD + b"\x01\x02\x03"])
    assert "3 trailing bytes" in reason


def test_unknown_packet_length_drops_only_that_packet() -> None:
    odd = frame([random_packet(RNG, 8, 408065), b"\x00" * 20, random_packet(RNG, 8, 408065)])
    result = decode_frames([odd])
    assert result.packets == 2
    (rejection,) = result.rejected
    assert rejection.packet_index == 1 and "unknown packet length 20" in rejection.reason
    assert result.rejected_frames == 0


def test_empty_and_short_frames() -> None:
    assert len(reasons([b"", b"\x00\x01"])) == 2


def test_heartbeats_give_no_rows() -> None:
    result = decode_frames([b"\x00"] * 5)
    assert (result.heartbeats, result.packets, result.rejected) == (5, 0, [])
    assert result.ticks.schema.equals(DECODED_TICK_SCHEMA)


def test_text_messages_are_returned_apart_from_ticks() -> None:
    order = json.dumps({"type": "order", "data": {"order_id": "1", "status": "COMPLETE"}})
    error = json.dumps({"type": "error", "data": "Can't subscribe to more than 3000 instruments."})
    message = json.dumps({"type": "message", "data": "hello"})
    unknown = json.dumps({"type": "instruments_meta", "data": {"count": 86481}})
    result = decode_frames([order, GOOD, error, message, unknown, "not json", "[1, 2]"])
    assert [t["type"] for t in result.texts] == ["order", "error", "message", "instruments_meta"]
    assert result.texts[1]["data"].startswith("Can't subscribe")
    assert [t["frame_index"] for t in result.texts] == [0, 2, 3, 4]
    assert result.packets == 3
    assert [r.frame_index for r in result.rejected] == [5, 6]
    assert all("text message" in r.reason for r in result.rejected)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=8))
def test_random_bytes_never_raise(frames: list[bytes]) -> None:
    result = decode_frames(frames)
    assert result.ticks.schema.equals(DECODED_TICK_SCHEMA)
    assert len(result.frame_index) == result.packets
    accounted = {r.frame_index for r in result.rejected} | set(result.frame_index.tolist())
    for i, data in enumerate(frames):
        assert len(data) == 1 or i in accounted, f"frame {i} neither decoded nor rejected"


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
    truncate=st.integers(0, 2000),
)
def test_mutated_frames_never_raise_and_accepted_ones_match_kiteconnect(
    seed: int, cuts: list[tuple[int, int]], truncate: int
) -> None:
    rng = random.Random(seed)
    data = bytearray(
        frame([random_packet(rng, rng.choice((8, 28, 32, 44, 184))) for _ in range(8)])
    )
    for position, value in cuts:
        data[position % len(data)] = value
    data = bytes(data[: max(truncate, 2)])
    result = decode_frames([data])
    assert len(result.frame_index) == result.packets
    if not result.rejected:  # a mutation that still frames correctly must decode like kiteconnect
        assert our_rows(result.ticks) == [
            {**dict.fromkeys(DECODED_TICK_SCHEMA.names), **row} for row in kiteconnect_rows([data])
        ]
