"""Decoder throughput: our vectorised `decode_frames` vs kiteconnect's `KiteTicker._parse_binary`.

Both parse the same full-mode (184-byte) frames, measured in this run; the figure that matters
is the ratio. Frames hold `--per-frame` packets, as a busy Kite connection sends them.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from kiteconnect import KiteTicker

from tick_assets.sources.kite.codec import decode_frames, encode_frames


def full_mode_frames(
    packets: int, per_frame: int, seed: int = 0, index_share: float = 0.0
) -> list[bytes]:
    """Realistic full-mode ticks for 500 NSE equities (token segment 1), via our encoder.

    With `index_share`, that share of instruments are indices (segment 9), whose 32-byte
    packets then sit in the same frames as the 184-byte ones, as on a real mixed shard.
    """
    rng = np.random.default_rng(seed)
    segment = np.where(rng.random(500) < index_share, 9, 1).astype(np.uint32)
    tokens = (rng.integers(1, 1 << 20, 500, dtype=np.uint32) << 8) | segment
    token = tokens[rng.integers(0, 500, packets)]
    price = np.round(rng.uniform(50, 5000, packets), 2)
    ts = np.datetime64("2026-11-20T04:00:00", "ns") + rng.integers(0, 22_500, packets).astype(
        "timedelta64[s]"
    )
    columns: dict[str, object] = {
        "instrument_token": token,
        "mode": "full",
        "last_price": price,
        "last_traded_quantity": rng.integers(1, 500, packets),
        "average_traded_price": price,
        "volume_traded": rng.integers(0, 10_000_000, packets),
        "total_buy_quantity": rng.integers(0, 1_000_000, packets),
        "total_sell_quantity": rng.integers(0, 1_000_000, packets),
        "open": price,
        "high": price + 1,
        "low": price - 1,
        "close": price - 0.5,
        "last_trade_time": ts,
        "exchange_timestamp": ts,
    }
    for side, sign in (("bid", -1), ("ask", 1)):
        for level in range(1, 6):
            columns[f"{side}_price_{level}"] = price + sign * 0.05 * level
            columns[f"{side}_quantity_{level}"] = rng.integers(1, 5000, packets)
            columns[f"{side}_orders_{level}"] = rng.integers(1, 50, packets)
    return encode_frames(columns, packets_per_frame=per_frame)


def best_rate(fn, packets: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return packets / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--baseline-packets", type=int, default=100_000)
    parser.add_argument("--per-frame", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--index-share",
        type=float,
        default=0.02,
        help="share of index instruments in the extra mixed-frame case (0 skips it)",
    )
    args = parser.parse_args()

    ticker = KiteTicker("api_key", "access_token")
    print(f"decoder benchmark (python {platform.python_version()}, full-mode 184-byte packets)")
    cases = [(per_frame, 0.0) for per_frame in args.per_frame]
    if args.index_share > 0:
        cases.append((max(args.per_frame), args.index_share))
    for per_frame, index_share in cases:
        frames = full_mode_frames(args.packets, per_frame, index_share=index_share)
        baseline_frames = frames[: max(1, args.baseline_packets // per_frame)]
        baseline_packets = sum(int.from_bytes(f[:2], "big") for f in baseline_frames)

        def kiteconnect_parse(baseline_frames: list[bytes] = baseline_frames) -> None:
            for data in baseline_frames:
                ticker._parse_binary(data)

        decoded = decode_frames(frames)
        assert decoded.packets == args.packets and not decoded.rejected
        ours = best_rate(lambda frames=frames: decode_frames(frames), args.packets, args.repeats)
        theirs = best_rate(kiteconnect_parse, baseline_packets, max(2, args.repeats // 2))
        mixed = f", {index_share:.0%} index instruments (mixed frames)" if index_share else ""
        print(f"  {per_frame} packets/frame{mixed}")
        print(f"    kiteconnect _parse_binary : {theirs:>12,.0f} packets/s ({baseline_packets:,})")
        print(f"    tick_assets decode_frames : {ours:>12,.0f} packets/s ({args.packets:,})")
        print(f"    ratio                     : {ours / theirs:>12.1f}x (goal >= 50x)")


if __name__ == "__main__":
    main()
