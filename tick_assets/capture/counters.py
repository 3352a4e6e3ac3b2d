"""Per-shard counters and the accounting chain they must satisfy.

Every message is counted where it is received and again where it is written, so the chain
    messages received = binary frames + text messages (as written to the raw archive)
    binary frames     = heartbeats + data frames
    packets decoded   = rows journaled + cached ticks superseded + duplicates (capture.dedupe)
can be checked, and matched against what the venue (or the simulator's per-connection counters)
says it sent. Each field is written by one thread only (receive loop or writer), so no locks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

_DIGITS = re.compile(r"\d+")


def reason_key(reason: str) -> str:
    """A rejection reason with its numbers blanked, so counts group by kind of fault."""
    return _DIGITS.sub("N", reason)


@dataclass
class ShardCounters:
    # --- receive loop ---------------------------------------------------------------------
    messages_received: int = 0
    bytes_received: int = 0
    connect_attempts: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    stalls: int = 0
    spilled_messages: int = 0  # items (messages, requests, events) that went via the spill file
    # --- writer -------------------------------------------------------------------------------
    messages_written: int = 0  # received messages written to the raw archive
    binary_frames: int = 0
    text_messages: int = 0
    heartbeats: int = 0
    data_frames: int = 0
    packets_decoded: int = 0
    rejected_frames: int = 0
    rejected_packets: int = 0
    rejected_reasons: Counter = field(default_factory=Counter)
    texts_by_type: Counter = field(default_factory=Counter)
    cached_superseded: int = 0
    duplicates: int = 0  # ticks equal to the latest kept tick of their instrument
    rows_journaled: int = 0
    spill_drained: int = 0
    flushes: int = 0
    last_message_ns: int | None = None  # receipt time (venue clock) of the last written message

    def snapshot(self) -> dict:
        out = asdict(self)
        out["rejected_reasons"] = dict(self.rejected_reasons)
        out["texts_by_type"] = dict(self.texts_by_type)
        return out

    def accounting(self) -> dict[str, bool]:
        """Each link of the chain, True when it adds up (after the writer has drained)."""
        return {
            "received == written": self.messages_received == self.messages_written,
            "written == binary + text": self.messages_written
            == self.binary_frames + self.text_messages,
            "binary == heartbeats + data": self.binary_frames == self.heartbeats + self.data_frames,
            "decoded == journaled + superseded + duplicates": self.packets_decoded
            == self.rows_journaled + self.cached_superseded + self.duplicates,
        }
