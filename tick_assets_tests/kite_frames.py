"""Kite wire frames built with plain `struct` (independent of our codec) and kiteconnect's view of them."""

from __future__ import annotations

import random
import struct
from datetime import datetime

from kiteconnect import KiteTicker

from tick_assets.sources.kite.schema import DEPTH_LEVELS

PACKET_LENGTHS = (8, 28, 32, 44, 184)
SEGMENTS = tuple(range(1, 13))  # every kiteconnect segment, incl. cds 3, bcd 6, indices 9, nco 12


def random_token(rng: random.Random, segment: int | None = None) -> int:
    segment = rng.choice(SEGMENTS) if segment is None else segment
    return rng.randrange(1, 1 << 24) << 8 | segment


def random_packet(rng: random.Random, length: int, token: int | None = None) -> bytes:
    """A packet of `length` bytes with random field values (all fields are 4-byte aligned)."""
    token = random_token(rng) if token is None else token
    words = [token] + [rng.randrange(1 << 32) for _ in range(length // 4 - 1)]
    if length == 184:  # depth entries are (qty u32, price u32, orders u16, 2 pad bytes)
        head = struct.pack(">16I", *words[:16])
        depth = b"".join(
            struct.pack(
                ">IIH2x", rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(1 << 16)
            )
            for _ in range(2 * DEPTH_LEVELS)
        )
        return head + depth
    return struct.pack(f">{length // 4}I", *words)


def frame(packets: list[bytes]) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(
        struct.pack(">H", len(p)) + p for p in packets
    )


def random_frame(rng: random.Random, n: int, lengths: tuple[int, ...] = PACKET_LENGTHS) -> bytes:
    return frame([random_packet(rng, rng.choice(lengths)) for _ in range(n)])


def kiteconnect_rows(frames: list[bytes]) -> list[dict]:
    """kiteconnect's own parse of the frames, flattened to our column names."""
    ticker = KiteTicker("api_key", "access_token")
    rows = []
    for data in frames:
        for tick in ticker._parse_binary(data):
            row = {k: v for k, v in tick.items() if k not in ("ohlc", "depth")}
            row.update(tick.get("ohlc", {}))
            for side, name in (("buy", "bid"), ("sell", "ask")):
                for level, entry in enumerate(tick.get("depth", {}).get(side, []), start=1):
                    row[f"{name}_price_{level}"] = entry["price"]
                    row[f"{name}_quantity_{level}"] = entry["quantity"]
                    row[f"{name}_orders_{level}"] = entry["orders"]
            for key in ("last_trade_time", "exchange_timestamp"):
                if isinstance(row.get(key), datetime):  # naive local time -> epoch seconds
                    row[key] = int(row[key].timestamp())
            rows.append(row)
    return rows


def our_rows(table) -> list[dict]:
    """Decoded rows as dicts with timestamps as epoch seconds, like `kiteconnect_rows`."""
    rows = table.to_pylist()
    for row in rows:
        for key in ("last_trade_time", "exchange_timestamp"):
            if row[key] is not None:
                assert row[key].tzinfo is not None, f"{key} must be timezone-aware"
                row[key] = int(row[key].timestamp())
    return rows
