"""What the capture engine needs from a venue, and nothing more.

A venue adapter (e.g. `tick_assets.sources.kite.stream.KiteStream`) knows its wire protocol:
where to connect and with which headers, what to send after connecting, how to decode a batch
of messages, which connect errors mean "stop retrying", which of its ticks are cached repeats,
and when its market is open (the small types it returns are in `tick_assets.sources.stream`).
The engine knows none of that: it only moves messages, keeps time, reconnects, and writes what
the adapter decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa

from tick_assets.sources.stream import CachedTickPolicy, ConnectFailure, ConnectRequest


class Decoded(Protocol):
    """A decoded batch of messages (what `tick_assets.sources.kite.codec.DecodeResult` is)."""

    ticks: pa.Table  # one row per packet, in arrival order, the venue's schema minus receipt
    frame_index: np.ndarray  # row -> index of the message it came from
    texts: list[dict]  # parsed text messages, each with its "frame_index"
    rejected: list  # items with .frame_index, .packet_index (None: whole frame) and .reason
    heartbeats: int


class Credentials(Protocol):
    """Per-shard credentials; their repr must not show secrets."""


class VenueAdapter(Protocol):
    name: str
    #: Journal schema: the decoded columns plus `received_at` and `connection`.
    schema: pa.Schema
    key_column: str  # the instrument key (Kite: instrument_token)
    event_time_column: str  # the venue's own timestamp (Kite: exchange_timestamp)
    cached_ticks: CachedTickPolicy | None

    def connect_request(self, credentials: Credentials) -> ConnectRequest: ...

    def subscribe_messages(self, instruments: Sequence[int]) -> list[str]: ...

    def subscribed_instruments(self, sent: str) -> Sequence[int] | None:
        """The instruments a sent message subscribes (None if it is not a subscribe)."""
        ...

    def decode(self, messages: Sequence[bytes | str]) -> Decoded: ...

    def classify_connect_error(self, exc: BaseException) -> ConnectFailure: ...

    def in_session(self, venue_ns: int) -> bool:
        """Is the market open at this instant of the venue's clock (for the no-ticks alert)?"""
        ...
