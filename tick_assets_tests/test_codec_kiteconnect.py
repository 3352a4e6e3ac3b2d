"""Differential test: our vectorised decoder equals kiteconnect's own parser, field for field."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tick_assets.sources.kite.codec import decode_frames
from tick_assets.sources.kite.schema import DECODED_TICK_SCHEMA
from tick_assets_tests.kite_frames import (
    PACKET_LENGTHS,
    SEGMENTS,
    frame,
    kiteconnect_rows,
    our_rows,
    random_frame,
    random_packet,
    random_token,
)


def assert_same_as_kiteconnect(frames: list[bytes]) -> None:
    result = decode_frames(frames)
    assert result.rejected == []
    theirs = kiteconnect_rows(frames)
    ours = our_rows(result.ticks)
    assert len(ours) == len(theirs)
    for i, (mine, kite) in enumerate(zip(ours, theirs, strict=True)):
        for column, value in mine.items():
            expected = kite.get(column)  # absent in kiteconnect's dict <=> null in ours
            assert value == expected, f"row {i} column {column}: ours {value!r} kite {expected!r}"
            if isinstance(expected, float):
                assert type(value) is float
        assert set(kite) <= set(mine), f"row {i}: kiteconnect keys we lack: {set(kite) - set(mine)}"


@pytest.mark.parametrize("length", PACKET_LENGTHS)
@pytest.mark.parametrize("segment", SEGMENTS)
def test_every_packet_kind_in_every_segment(length: int, segment: int) -> None:
    rng = random.Random(length * 100 + segment)
    packets = [random_packet(rng, length, random_token(rng, segment)) for _ in range(40)]
    assert_same_as_kiteconnect([frame(packets[:25]), frame(packets[25:])])


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), sizes=st.lists(st.integers(1, 60), min_size=1, max_size=8))
def test_random_batches_of_mixed_frames(seed: int, sizes: list[int]) -> None:
    rng = random.Random(seed)
    frames = [random_frame(rng, n) for n in sizes]
    assert_same_as_kiteconnect(frames)


def test_uniform_and_mixed_frames_keep_arrival_order() -> None:
    rng = random.Random(7)
    frames = [
        random_frame(rng, 30, (184,)),
        random_frame(rng, 30),
        b"\x00",
        random_frame(rng, 5, (8,)),
        random_frame(rng, 12, (32, 184)),
    ]
    result = decode_frames(frames)
    assert result.heartbeats == 1
    assert result.frame_index.tolist() == [0] * 30 + [1] * 30 + [3] * 5 + [4] * 12
    assert_same_as_kiteconnect(frames)


def test_known_packet_values() -> None:
    """The INFY full packet from zerodha/kiteconnect-mocks (ticker_full.packet), by hand."""
    words = (408065, 157370, 1, 157267, 1, 0, 0, 157000, 157550, 156800, 156550, 1625461887)
    packet = struct.pack(">16I", *words, 0, 0, 0, 1625461887)
    packet += struct.pack(">IIH2x", 5, 157340, 1) * 10
    result = decode_frames([frame([packet])])
    row = result.ticks.to_pylist()[0]
    assert row["instrument_token"] == 408065
    assert row["last_price"] == 1573.70
    assert row["mode"] == "full" and row["tradable"] is True
    assert row["exchange_timestamp"].isoformat() == "2021-07-05T05:11:27+00:00"
    assert row["bid_price_1"] == 1573.40 and row["ask_orders_5"] == 1
    assert result.ticks.schema.equals(DECODED_TICK_SCHEMA)


def test_divisors_per_segment() -> None:
    rng = random.Random(3)
    frames = []
    for segment in (1, 3, 6, 9, 12):
        token = random_token(rng, segment)
        frames.append(frame([struct.pack(">II", token, 123456789)]))
    prices = decode_frames(frames).ticks.column("last_price").to_pylist()
    assert prices == [1234567.89, 12.3456789, 12345.6789, 1234567.89, 12345.6789]
    tradable = decode_frames(frames).ticks.column("tradable").to_pylist()
    assert tradable == [True, True, True, False, True]
