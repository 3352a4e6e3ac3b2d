"""The encoder (the simulator's side) is the exact inverse of the decoder."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tick_assets.sources.kite.codec import decode_frames, divisors, encode_frames
from tick_assets_tests.kite_frames import SEGMENTS, frame, random_packet, random_token


def canonical_frames(rng: random.Random, n_frames: int, per_frame: int) -> list[bytes]:
    """Frames as Kite sends them: index tokens only in 28/32-byte packets, others in 8/44/184."""
    frames = []
    for _ in range(n_frames):
        packets = []
        for _ in range(per_frame):
            token = random_token(rng)
            lengths = (8, 28, 32) if token & 0xFF == 9 else (8, 44, 184)
            packets.append(random_packet(rng, rng.choice(lengths), token))
        frames.append(frame(packets))
    return frames


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), per_frame=st.integers(1, 40), n_frames=st.integers(1, 5))
def test_bytes_round_trip(seed: int, per_frame: int, n_frames: int) -> None:
    frames = canonical_frames(random.Random(seed), n_frames, per_frame)
    decoded = decode_frames(frames).ticks
    # Random index packets carry a price-change field that is not decoded (kiteconnect
    # recomputes `change`), so the re-encoded bytes can differ there: compare decoded tables.
    again = encode_frames(decoded, packets_per_frame=per_frame)
    assert decode_frames(again).ticks.equals(decoded)
    assert [len(f) for f in again] == [len(f) for f in frames]


@pytest.mark.parametrize("segment", [s for s in SEGMENTS if s != 9])  # indices send 28/32 bytes
def test_full_mode_bytes_are_identical(segment: int) -> None:
    rng = random.Random(segment)
    frames = [frame([random_packet(rng, 184, random_token(rng, segment)) for _ in range(50)])]
    assert encode_frames(decode_frames(frames).ticks, packets_per_frame=50) == frames


def test_numpy_columns_encode_like_a_table() -> None:
    """The simulator hands numpy columns (scalars broadcast) rather than an Arrow table."""
    tokens = np.array([408065, 256265, 5720322], dtype=np.uint32)
    price = np.array([1573.7, 24100.55, 24150.0])
    ts = np.array(["2026-11-20T04:00:00"] * 3, dtype="datetime64[ns]")
    columns = {
        "instrument_token": tokens,
        "mode": "full",
        "last_price": price,
        "close": price - 10,
        "open": price - 5,
        "high": price + 1,
        "low": price - 7,
        "volume_traded": np.array([10, 0, 99]),
        "exchange_timestamp": ts,
        "last_trade_time": ts,
        "bid_price_1": price - 0.05,
        "bid_quantity_1": np.array([1, 0, 2]),
    }
    frames = encode_frames(columns, packets_per_frame=2)
    assert len(frames) == 2
    ticks = decode_frames(frames).ticks
    assert ticks.column("last_price").to_pylist() == price.tolist()
    assert ticks.column("mode").to_pylist() == ["full"] * 3
    assert ticks.column("bid_price_1").to_pylist() == [1573.65, None, 24149.95]  # index: no depth
    assert str(ticks.column("exchange_timestamp")[0]) == "2026-11-20 04:00:00+00:00"
    expected_change = (price - (price - 10)) * 100 / (price - 10)
    assert ticks.column("change").to_pylist() == expected_change.tolist()


def test_encoder_rejects_bad_input_with_the_column_named() -> None:
    table = pa.table({"instrument_token": pa.array([408065], pa.uint32()), "mode": ["fast"]})
    with pytest.raises(ValueError, match="mode 'fast'"):
        encode_frames(table)
    with pytest.raises(ValueError, match="'last_price'"):
        encode_frames({"instrument_token": np.array([408065]), "mode": "ltp", "last_price": -1.0})
    with pytest.raises(ValueError, match="packets_per_frame"):
        encode_frames({"instrument_token": np.array([1]), "mode": "ltp"}, packets_per_frame=0)


def test_prices_survive_every_divisor() -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 2**32, 1000, dtype=np.uint64)
    tokens = (rng.integers(1, 2**24, 1000, dtype=np.uint64) << 8 | 3).astype(np.uint32)
    price = raw / divisors(tokens)
    frames = encode_frames({"instrument_token": tokens, "mode": "ltp", "last_price": price})
    assert decode_frames(frames).ticks.column("last_price").to_numpy().tolist() == price.tolist()
